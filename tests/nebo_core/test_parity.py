"""Sync/async parity: each scenario runs through NeboClient and AsyncNeboClient with identical results."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

BODY = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}
Scenario = Callable[[SimpleNamespace], list[httpx.Response]]


def plain(nb: SimpleNamespace) -> list[httpx.Response]:
    return [nb.ok(headers=nb.budget_headers(session_remaining=5000))]


def stream(nb: SimpleNamespace) -> list[httpx.Response]:
    body = nb.sse(
        nb.chunk("Hel", usage=nb.usage(3, 1, 4)), nb.chunk("lo", finish="stop", usage=nb.usage(3, 2, 8))
    )
    return [nb.stream_response(body, nb.budget_headers())]


def tools(nb: SimpleNamespace) -> list[httpx.Response]:
    body = nb.sse(
        nb.chunk(tool_calls=[nb.call(0, "call_a", "read", '{"path":"/a"}')]),
        nb.chunk(tool_calls=[nb.call(0, "call_b", "grep", '{"q":"x"}')]),
        nb.chunk(tool_calls=[nb.call(0, "call_a", "read", '{"path":"/a"}')]),
        nb.chunk(finish="tool_calls", usage=nb.usage()),
    )
    return [nb.stream_response(body)]


def budget_429(nb: SimpleNamespace) -> list[httpx.Response]:
    return [
        nb.error(429, "USAGE_LIMIT_EXCEEDED", "all pools empty", **nb.budget_headers(session_remaining=0))
    ]


def in_stream_error(nb: SimpleNamespace) -> list[httpx.Response]:
    return [nb.stream_response(nb.sse({"error": {"message": "upstream exploded", "type": "server_error"}}))]


def transient_then_ok(nb: SimpleNamespace) -> list[httpx.Response]:
    return [nb.error(429, "rate_limit_exceeded", **{"Retry-After": "1"}), nb.ok()]


SCENARIOS: list[tuple[str, Scenario, bool]] = [
    ("plain", plain, False),
    ("stream", stream, True),
    ("tools", tools, True),
    ("budget_429", budget_429, False),
    ("budget_429_stream", budget_429, True),
    ("in_stream_error", in_stream_error, True),
    ("transient_then_ok", transient_then_ok, False),
]


def summarize(result: Any, error: BaseException | None, fake: Any, tracker: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": len(fake.requests), "sleeps": fake.sleeps, "bodies": fake.bodies}
    if error is not None:
        out["error"] = (
            type(error).__name__,
            str(error),
            getattr(error, "status", None),
            getattr(error, "code", None),
        )
    else:
        data, chunks, usage = result
        out.update(data=data, chunks=chunks)
        out["usage"] = {k: v for k, v in usage.to_dict().items() if k not in ("latency_s", "snapshot")}
    totals = tracker.totals().to_dict()
    snap = tracker.snapshot
    out["tracker"] = (totals, snap.session.remaining_micro if snap else None)
    return out


def run_sync(nb: SimpleNamespace, scenario: Scenario, streamed: bool) -> dict[str, Any]:
    fake = nb.FakeNebo(*scenario(nb))
    client = nb.client(fake)
    result, error = None, None
    try:
        if streamed:
            with client.stream_chat(BODY) as s:
                chunks = list(s)
            result = (s.completion(), chunks, s.usage)
        else:
            res = client.chat(BODY)
            result = (res.data, None, res.usage)
    except Exception as exc:
        error = exc
    return summarize(result, error, fake, client.tracker)


async def run_async(nb: SimpleNamespace, scenario: Scenario, streamed: bool) -> dict[str, Any]:
    fake = nb.FakeNebo(*scenario(nb))
    client = nb.async_client(fake)
    result, error = None, None
    try:
        if streamed:
            async with client.stream_chat(BODY) as s:
                chunks = [c async for c in s]
            result = (s.completion(), chunks, s.usage)
        else:
            res = await client.chat(BODY)
            result = (res.data, None, res.usage)
    except Exception as exc:
        error = exc
    return summarize(result, error, fake, client.tracker)


@pytest.mark.parametrize(("name", "scenario", "streamed"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
async def test_sync_and_async_agree(
    name: str, scenario: Scenario, streamed: bool, nb: SimpleNamespace
) -> None:
    sync = run_sync(nb, scenario, streamed)
    asyn = await run_async(nb, scenario, streamed)
    assert sync == asyn
    # and the scenario did what it says (so parity is not two identical failures)
    expected_error = {
        "budget_429": "NeboBudgetExhausted",
        "budget_429_stream": "NeboBudgetExhausted",
        "in_stream_error": "NeboStreamError",
    }.get(name)
    if expected_error:
        assert sync["error"][0] == expected_error
        assert sync["requests"] == 1
    else:
        assert "error" not in sync
        assert sync["usage"]["cost_micro"] is not None
