"""Tests for NeboClient / AsyncNeboClient on an in-memory transport: retries, budgets, streams, embeddings."""

from __future__ import annotations

import json
import pickle
import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from nebo_core import (
    BudgetSnapshot,
    NeboAuthenticationError,
    NeboBudgetExhausted,
    NeboClient,
    NeboConfigurationError,
    NeboConnectionError,
    NeboError,
    NeboRateLimited,
    NeboStreamTruncated,
    NeboUpstreamError,
    WindowState,
)

BODY = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}


# --- retry policy on the wire --------------------------------------------------------------


def test_budget_429_is_one_request_and_typed(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.error(429, "USAGE_LIMIT_EXCEEDED", "all pools empty", **{"Retry-After": "1"}))
    client = nb.client(fake)
    with pytest.raises(NeboBudgetExhausted) as info:
        client.chat(BODY)
    assert len(fake.requests) == 1
    assert fake.sleeps == []
    assert info.value.status == 429
    assert not info.value.is_retryable


def test_transient_429_with_retry_after_is_retried(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.error(429, "rate_limit_exceeded", **{"Retry-After": "1"}), nb.ok())
    client = nb.client(fake)
    res = client.chat(BODY)
    assert res.message["content"] == "hello"
    assert len(fake.requests) == 2
    assert fake.sleeps == [pytest.approx(1.0, abs=0.1)]


def test_401_not_retried(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.error(401, "invalid_api_key", "Incorrect API key"))
    with pytest.raises(NeboAuthenticationError):
        nb.client(fake).chat(BODY)
    assert len(fake.requests) == 1
    assert fake.sleeps == []


def test_502_retried_up_to_max_then_raises(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(*[nb.error(502, message="bad gateway") for _ in range(3)])
    with pytest.raises(NeboUpstreamError, match="bad gateway"):
        nb.client(fake, max_retries=2).chat(BODY)
    assert len(fake.requests) == 3
    assert fake.sleeps == [0.375, 0.75]  # jitter 0: base 0.5 * 2^n * 0.75


def test_connection_error_retried(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), nb.ok())
    assert nb.client(fake).chat(BODY).message["content"] == "hello"
    assert len(fake.requests) == 3
    fake2 = nb.FakeNebo(httpx.ConnectError("refused"))
    with pytest.raises(NeboConnectionError, match="ConnectError"):
        nb.client(fake2, max_retries=0).chat(BODY)


def test_per_call_max_retries(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.error(503), nb.ok())
    with pytest.raises(NeboUpstreamError):
        nb.client(fake).chat(BODY, max_retries=0)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("content", [b"not json", b"{", b"<html>"])
def test_malformed_json_body(content: bytes, nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(httpx.Response(200, content=content))
    with pytest.raises(NeboUpstreamError, match="not JSON"):
        nb.client(fake, max_retries=0).chat(BODY)


def test_body_without_choices(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.ok({"id": "x"}))
    with pytest.raises(NeboUpstreamError, match="without choices"):
        nb.client(fake, max_retries=0).chat(BODY)


def test_policy_refuses_up_front_when_window_is_empty(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo()
    client = nb.client(fake)
    reset = datetime.now(timezone.utc) + timedelta(hours=2)
    empty = WindowState("session", 100, 0, reset)
    client.tracker.observe(BudgetSnapshot(session=empty, account=client.account))
    with pytest.raises(NeboBudgetExhausted) as info:
        client.chat(BODY)
    assert fake.requests == []
    assert info.value.window == "session"
    assert info.value.reset_at == reset
    with pytest.raises(NeboBudgetExhausted):
        client.embed(["a"])
    assert fake.requests == []


def test_another_accounts_empty_window_does_not_block(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.ok())
    client = nb.client(fake)
    reset = datetime.now(timezone.utc) + timedelta(hours=2)
    other = BudgetSnapshot(session=WindowState("session", 100, 0, reset), account="another-token")
    client.tracker.observe(other)
    client.policy.store.publish(other)
    client.chat(BODY)
    assert len(fake.requests) == 1
    assert client.tracker.snapshot_for("another-token") is other


def test_an_empty_window_without_reset_time_stops_blocking_after_a_minute(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.ok())
    client = nb.client(fake)
    old = datetime.now(timezone.utc) - timedelta(seconds=61)
    empty = WindowState("session", 100, 0, None)
    client.tracker.observe(BudgetSnapshot(session=empty, observed_at=old, account=client.account))
    client.chat(BODY)  # asks the server instead of refusing forever
    assert len(fake.requests) == 1
    fresh = BudgetSnapshot(session=empty, account=client.account)
    client.tracker.observe(fresh)
    with pytest.raises(NeboBudgetExhausted):
        client.chat(BODY)
    assert len(fake.requests) == 1


def test_policy_lets_call_through_after_reset_passed(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.ok())
    client = nb.client(fake)
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    client.tracker.observe(
        BudgetSnapshot(session=WindowState("session", 100, 0, past), account=client.account)
    )
    client.chat(BODY)
    assert len(fake.requests) == 1


# --- what is sent --------------------------------------------------------------------------


def test_request_shape(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.ok())
    client = nb.client(fake, bot_id="bot-1", lane="main", provider_api_key=nb.PROVIDER_KEY)
    msgs = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        }
    ]
    client.chat({"model": "gpt-5-mini", "messages": msgs, "stream": True})
    req = fake.requests[0]
    assert str(req.url) == "https://janus.test/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {nb.TOKEN}"
    assert req.headers["x-provider-api-key"] == nb.PROVIDER_KEY
    assert (req.headers["x-bot-id"], req.headers["x-lane"]) == ("bot-1", "main")
    assert fake.bodies[0]["messages"][0]["content"] == " "
    assert "stream" not in fake.bodies[0]


# --- tracker feeding and cost sources ------------------------------------------------------


def test_every_response_feeds_the_tracker_including_errors(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.error(400, message="bad", **nb.budget_headers(session_remaining=1234)))
    client = nb.client(fake)
    with pytest.raises(Exception):
        client.chat(BODY)
    assert client.tracker.snapshot is not None
    assert client.tracker.snapshot.session.remaining_micro == 1234


def test_cost_sources(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(
        nb.ok(nb.completion(cost=37), headers=nb.budget_headers(session_remaining=1000)),
        nb.ok(nb.completion(cost=None), headers=nb.budget_headers(session_remaining=900)),
        nb.ok(nb.completion(cost=None)),
    )
    client = nb.client(fake)
    first, second, third = (client.chat(BODY).usage for _ in range(3))
    assert (first.cost_micro, first.cost_source) == (37, "server")
    assert (second.cost_micro, second.cost_source) == (100, "headers")
    # Billed, cost unseen: charged the policy's estimate, and the record says so.
    assert third.cost_source == "estimate"
    assert third.uncertain
    assert third.cost_micro is not None
    assert third.cost_micro > 0
    totals = client.tracker.totals()
    t = totals.total
    assert (t.calls, t.cost_micro, t.unknown_cost_calls) == (3, 137 + third.cost_micro, 0)
    assert (t.uncertain_calls, t.uncertain_micro) == (1, third.cost_micro)
    assert first.model == "gpt-5-mini"
    assert first.requested_model == "gpt-5-mini"
    assert first.pool == "plan"
    assert not first.streamed
    assert first.prompt_tokens == 10


# --- streams -------------------------------------------------------------------------------


def test_quirky_stream_is_repaired(nb: SimpleNamespace) -> None:
    body = nb.sse(
        nb.chunk(tool_calls=[nb.call(0, "call_a", "read", '{"path":"/a"}')], usage=nb.usage(5, 1, 3)),
        nb.chunk(tool_calls=[nb.call(0, "call_b", "grep", '{"q":"x"}')], usage=nb.usage(5, 2, 6)),
        nb.chunk(tool_calls=[nb.call(0, "call_b", "grep", '{"q":"x"}')], usage=nb.usage(5, 3, 9)),
        nb.chunk(finish="tool_calls", usage=nb.usage(5, 4, 12)),
    )
    fake = nb.FakeNebo(nb.stream_response(body, nb.budget_headers()))
    client = nb.client(fake)
    with client.stream_chat(BODY) as stream:
        chunks = list(stream)
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert [(tc["index"], tc["id"], tc["function"]["name"]) for tc in calls] == [
        (0, "call_a", "read"),
        (1, "call_b", "grep"),
    ]
    assert stream.message["tool_calls"][1]["function"]["arguments"] == '{"q":"x"}'
    assert stream.finish_reason == "tool_calls"
    assert stream.usage is not None
    assert (stream.usage.cost_micro, stream.usage.completion_tokens, stream.usage.complete) == (12, 4, True)
    assert stream.usage.streamed
    assert client.tracker.totals().total.cost_micro == 12
    assert fake.bodies[0]["stream"] is True
    assert fake.bodies[0]["stream_options"] == {"include_usage": True}


def test_stream_without_done_that_never_closes_ends_at_finish(nb: SimpleNamespace) -> None:
    body = nb.StopAfter(
        nb.sse(nb.chunk("Hel")),
        nb.sse(nb.chunk("lo", finish="stop", usage=nb.usage(cost=21))),
    )
    fake = nb.FakeNebo(nb.stream_response(body))
    with nb.client(fake).stream_chat(BODY) as stream:
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in stream if c["choices"])
    assert text == "Hello"
    assert not body.read_past_end
    assert stream.usage is not None
    assert stream.usage.cost_micro == 21


async def test_async_stream_without_done_that_never_closes_ends_at_finish(nb: SimpleNamespace) -> None:
    body = nb.StopAfter(nb.sse(nb.chunk("Hi", finish="stop", usage=nb.usage(cost=4))))
    fake = nb.FakeNebo(nb.stream_response(body))
    async with nb.async_client(fake).stream_chat(BODY) as stream:
        chunks = [c async for c in stream]
    assert chunks[0]["choices"][0]["delta"]["content"] == "Hi"
    assert not body.read_past_end
    assert stream.usage is not None
    assert stream.usage.cost_micro == 4


def test_in_stream_rate_limit_before_first_chunk_is_retried(nb: SimpleNamespace) -> None:
    limited = nb.sse(
        {
            "error": {
                "message": "Rate limit exceeded for user",
                "type": "rate_limit_error",
                "code": "rate_limit_exceeded",
                "retryable": True,
                "retry_after": "2s",
            }
        }
    )
    good = nb.sse(nb.chunk("ok", finish="stop", usage=nb.usage()), done=True)
    fake = nb.FakeNebo(nb.stream_response(limited), nb.stream_response(good))
    with nb.client(fake).stream_chat(BODY) as stream:
        chunks = list(stream)
    assert len(fake.requests) == 2
    assert fake.sleeps == [pytest.approx(2.0)]
    assert chunks[0]["choices"][0]["delta"]["content"] == "ok"


def test_in_stream_rate_limit_exhausts_retries(nb: SimpleNamespace) -> None:
    limited = nb.sse({"error": {"type": "rate_limit_error", "retry_after": "250ms"}})
    fake = nb.FakeNebo(*[nb.stream_response(limited) for _ in range(2)])
    with pytest.raises(NeboRateLimited), nb.client(fake, max_retries=1).stream_chat(BODY) as stream:
        list(stream)
    assert len(fake.requests) == 2


def test_truncated_stream_after_content_raises_with_partial(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.stream_response(nb.sse(nb.chunk("Hel", usage=nb.usage(cost=2)), nb.chunk("lo"))))
    client = nb.client(fake)
    with pytest.raises(NeboStreamTruncated) as info, client.stream_chat(BODY) as stream:
        list(stream)
    assert info.value.partial["content"] == "Hello"
    assert len(fake.requests) == 1  # content was already handed over: not retried
    assert client.tracker.history()[-1].complete is False
    assert client.tracker.history()[-1].cost_micro == 2


def test_truncated_before_any_chunk_is_retried(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.stream_response(b""), nb.stream_response(nb.sse(nb.chunk("x", finish="stop"))))
    with nb.client(fake).stream_chat(BODY) as stream:
        assert [c["choices"][0]["delta"].get("content") for c in stream] == ["x"]
    assert len(fake.requests) == 2


def test_early_close_records_incomplete_usage(nb: SimpleNamespace) -> None:
    body = nb.sse(
        nb.chunk("a", usage=nb.usage(5, 1, 10)),
        nb.chunk("b", usage=nb.usage(5, 2, 20)),
        nb.chunk("c", finish="stop", usage=nb.usage(5, 3, 30)),
    )
    fake = nb.FakeNebo(nb.stream_response(body))
    client = nb.client(fake)
    with client.stream_chat(BODY) as stream:
        for _ in stream:
            break
    history = client.tracker.history()
    assert len(history) == 1
    assert history[0].complete is False
    assert history[0].streamed is True
    assert history[0].cost_micro == 10


def test_stream_http_error_is_typed_and_not_retried(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.error(429, "USAGE_LIMIT_EXCEEDED"))
    with pytest.raises(NeboBudgetExhausted), nb.client(fake).stream_chat(BODY) as stream:
        list(stream)
    assert len(fake.requests) == 1


def test_stream_is_open_when_returned_and_closing_early_records_what_was_seen(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.stream_response(nb.sse(nb.chunk("a"), nb.chunk("b", finish="stop"))))
    client = nb.client(fake)
    with client.stream_chat(BODY) as stream:
        assert len(fake.requests) == 1  # opened (and read ahead to its first chunk) before iteration
    assert stream.usage is not None
    assert stream.usage.complete is False


# --- embeddings ----------------------------------------------------------------------------


class Overlap:
    """Measures how many requests are in flight at once; the first waits (briefly) for company."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.together = threading.Event()

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight >= 2:
                self.together.set()
        self.together.wait(timeout=2.0)  # returns at once when requests really overlap

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


def embedding_handler(nb: SimpleNamespace, overlap: Overlap | None = None):  # type: ignore[no-untyped-def]
    def handle(request: httpx.Request) -> httpx.Response:
        if overlap is not None:
            overlap.enter()
            overlap.leave()
        body = json.loads(request.content)
        fmt = body.get("encoding_format", "float")
        data = []
        for i, text in reversed(list(enumerate(body["input"]))):  # out of order on purpose
            vec = [float(len(text)), float(ord(text[0])) / 2, -1.25]
            data.append(
                {"object": "embedding", "index": i, "embedding": nb.b64(vec) if fmt == "base64" else vec}
            )
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": data,
                "model": "text-embedding-3-small",
                "usage": {
                    "prompt_tokens": len(body["input"]),
                    "total_tokens": len(body["input"]),
                    "cost_micro": 2,
                },
            },
        )

    return handle


def expected_vec(text: str) -> list[float]:
    t = text or " "
    return [float(len(t)), float(ord(t[0])) / 2, -1.25]


@pytest.mark.parametrize("fmt", ["base64", "float"])
def test_embeddings_batched_in_order(fmt: str, nb: SimpleNamespace) -> None:
    overlap = Overlap()
    fake = nb.FakeNebo(handler=embedding_handler(nb, overlap))
    texts = [f"text-{i}" + "x" * i for i in range(7)]
    res = nb.client(fake).embed(texts, batch_size=2, concurrency=3, encoding_format=fmt)
    assert res.vectors == [expected_vec(t) for t in texts]
    assert len(fake.requests) == 4
    assert sorted(len(b["input"]) for b in fake.bodies) == [1, 2, 2, 2]
    assert len(res.usage) == 4
    assert res.cost_micro == 8
    assert res.model == "text-embedding-3-small"
    assert all(u.kind == "embedding" for u in res.usage)
    assert overlap.peak >= 2  # batches really ran concurrently


async def test_async_embeddings_batched_in_order(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(handler=embedding_handler(nb))
    texts = [chr(97 + i) * (i + 1) for i in range(5)]
    res = await nb.async_client(fake).embed(texts, batch_size=2, concurrency=2)
    assert res.vectors == [expected_vec(t) for t in texts]
    assert len(fake.requests) == 3


def test_empty_strings_are_sent_as_space(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(handler=embedding_handler(nb))
    res = nb.client(fake).embed(["", "a", ""], encoding_format="float")
    assert fake.bodies[0]["input"] == [" ", "a", " "]
    assert res.vectors[0] == expected_vec(" ")


def test_embedding_count_mismatch(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.ok({"data": [], "model": "m"}))
    with pytest.raises(NeboUpstreamError, match="0 embeddings for 2 inputs"):
        nb.client(fake, max_retries=0).embed(["a", "b"])


def test_no_texts_no_requests(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo()
    assert nb.client(fake).embed([]).vectors == []
    assert fake.requests == []


# --- models and usage ----------------------------------------------------------------------


def test_models_and_usage(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(
        nb.ok({"object": "list", "data": [{"id": "nebo-1", "owned_by": "neboai"}]}),
        nb.ok({"plan": "plus", "all_models": {"session_used": 1, "session_limit": 10}}),
    )
    client = nb.client(fake)
    assert [m.id for m in client.models()] == ["nebo-1"]
    report = client.usage()
    assert report.plan == "plus"
    assert report.session.remaining_micro == 9
    assert [r.url.path for r in fake.requests] == ["/v1/models", "/v1/usage"]


def test_own_http_client_is_not_closed(nb: SimpleNamespace) -> None:
    http = httpx.Client(transport=httpx.MockTransport(nb.FakeNebo(nb.ok())))
    with NeboClient(api_key=nb.TOKEN, base_url=nb.BASE_URL, http_client=http) as client:
        assert client.settings.base_url == nb.BASE_URL
    assert not http.is_closed
    http.close()


# --- end to end against the emulator (loopback) --------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string"}},
                "required": ["zone"],
            },
        },
    },
]


def emu_client(emu, sleeps: list[float] | None = None) -> NeboClient:  # type: ignore[no-untyped-def]
    from nebo_core import BudgetPolicy, BudgetTracker, RetryPolicy

    return NeboClient(
        api_key=emu.token,
        base_url=emu.base_url,
        tracker=BudgetTracker(),
        policy=BudgetPolicy(),
        retry=RetryPolicy(max_retries=2, jitter=lambda: 0.0),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )


def test_emulator_round_trip_and_ledger(nebo_emulator) -> None:  # type: ignore[no-untyped-def]
    emu = nebo_emulator
    with emu_client(emu) as client:
        res = client.chat(
            {
                "model": "gpt-5-mini",
                "messages": [
                    {
                        "role": "user",
                        "content": "Context: The capital of France is Paris. Question: capital of France?",
                    }
                ],
            }
        )
        assert "Paris" in res.message["content"]
        assert res.usage.cost_source == "server"
        assert res.usage.cost_micro > 0
        with client.stream_chat(
            {
                "model": "gpt-5-mini",
                "tools": TOOLS,
                "messages": [{"role": "user", "content": "Weather in Paris, time in UTC?"}],
            }
        ) as s:
            chunks = list(s)
        names = [c["function"]["name"] for c in s.message["tool_calls"]]
        assert names == ["get_weather", "get_time"]
        assert all(json.loads(c["function"]["arguments"]) for c in s.message["tool_calls"])
        streamed = [tc for ch in chunks for c in ch["choices"] for tc in c["delta"].get("tool_calls", [])]
        assert sorted({tc["index"] for tc in streamed}) == [0, 1]  # distinct indices after repair
        assert sum(1 for tc in streamed if tc.get("function", {}).get("name")) == 2  # each name once
        emb = client.embed(["the cat sat", "the cat sat down", "quantum chromodynamics"])
        assert len(emb.vectors) == 3
        assert len(emb.vectors[0]) == 1536

        def cos(a: list[float], b: list[float]) -> float:
            return sum(x * y for x, y in zip(a, b)) / (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5

        assert cos(emb.vectors[0], emb.vectors[1]) > cos(emb.vectors[0], emb.vectors[2])
        assert any(m.id == "gpt-5-mini" for m in client.models())
        report = client.usage()
        assert report.session.limit_micro is not None
        records = client.tracker.history()
        assert len(records) == 3
        assert sum(r.cost_micro or 0 for r in records) == emu.ledger_total_micro()
        assert report.session.used_micro == emu.ledger_total_micro()


def test_emulator_faults_are_retried(nebo_emulator) -> None:  # type: ignore[no-untyped-def]
    emu = nebo_emulator
    sleeps: list[float] = []
    with emu_client(emu, sleeps) as client:
        emu.inject("502")
        assert client.chat({"messages": [{"role": "user", "content": "hi"}]}).message["role"] == "assistant"
        emu.inject("stream_rate_limit", retry_after="1.2s")  # a rate-limit event inside a 200 stream
        with client.stream_chat({"messages": [{"role": "user", "content": "hi"}]}) as s:
            list(s)
        assert s.usage is not None
        assert s.usage.complete
    assert len(sleeps) == 2
    assert sleeps[1] == pytest.approx(1.2)


def test_emulator_budget_exhaustion(nebo_emulator) -> None:  # type: ignore[no-untyped-def]
    emu = nebo_emulator
    with emu_client(emu) as client:
        client.chat({"messages": [{"role": "user", "content": "hi"}]})
        emu.set_budget(session_remaining_micro=0)
        before = emu.requests
        with pytest.raises(NeboBudgetExhausted):
            client.chat({"messages": [{"role": "user", "content": "hi"}]})
        assert emu.requests == before + 1  # one request, no retries
        with pytest.raises(NeboBudgetExhausted):
            client.chat({"messages": [{"role": "user", "content": "hi"}]})
        assert emu.requests == before + 1  # refused up front from the tracker's snapshot


def test_emulator_drop_midstream_is_truncated(nebo_emulator) -> None:  # type: ignore[no-untyped-def]
    emu = nebo_emulator
    with emu_client(emu) as client:
        emu.inject("drop_midstream", after_chunks=2)
        with (
            pytest.raises(NeboStreamTruncated) as info,
            client.stream_chat(
                {
                    "messages": [
                        {"role": "user", "content": "Context: a long answer about cats and dogs. Tell me."}
                    ]
                }
            ) as s,
        ):
            list(s)
        assert info.value.partial.get("role") == "assistant"
        assert client.tracker.history()[-1].complete is False


async def test_async_early_close_records_incomplete_usage(nb: SimpleNamespace) -> None:
    body = nb.sse(
        nb.chunk("a", usage=nb.usage(5, 1, 10)), nb.chunk("b", finish="stop", usage=nb.usage(5, 2, 20))
    )
    client = nb.async_client(nb.FakeNebo(nb.stream_response(body)))
    async with client.stream_chat(BODY) as stream:
        async for _ in stream:
            break
    history = client.tracker.history()
    assert [(r.complete, r.streamed, r.cost_micro) for r in history] == [(False, True, 10)]


def test_embed_takes_one_string_as_one_text(nebo_emulator) -> None:
    from nebo_core import BudgetPolicy, BudgetTracker, NeboClient

    with NeboClient(
        api_key=nebo_emulator.token,
        base_url=nebo_emulator.base_url,
        tracker=BudgetTracker(),
        policy=BudgetPolicy(),
    ) as client:
        result = client.embed("hello")
    assert len(result.vectors) == 1
    assert len(result.vectors[0]) == 1536
    assert len(nebo_emulator.ledger) == 1


def test_embedding_arguments_fail_before_any_request(nb: SimpleNamespace) -> None:
    from nebo_core.errors import NeboConfigurationError

    fake = nb.FakeNebo()
    client = nb.client(fake)
    with pytest.raises(NeboConfigurationError, match="batch size must be >= 1"):
        client.embed(["a"], batch_size=0)
    with pytest.raises(NeboConfigurationError, match="it returns up to 1536"):
        client.embed(["a"], dimensions=5000)
    assert fake.requests == []


# --- bad input is a typed error before anything is sent ----------------------------------------


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda c: c.chat("hello"), "request body must be a dict"),
        (lambda c: c.chat({"messages": [{"role": "user", "content": object()}]}), "cannot be sent as JSON"),
        (lambda c: c.chat(BODY, timeout=-1), "timeout must be"),
        (lambda c: c.chat(BODY, timeout=float("nan")), "timeout must be"),
        (lambda c: c.chat(BODY, timeout=0), "timeout must be"),
        (lambda c: c.chat(BODY, max_retries=-1), "max_retries must be"),
        (lambda c: c.embed(None), "string or a list of strings"),
        (lambda c: c.embed(["ok", 3]), "item 1 is int"),
    ],
)
def test_bad_input_is_a_configuration_error_and_nothing_is_sent(
    nb: SimpleNamespace, call: Any, fragment: str
) -> None:
    fake = nb.FakeNebo()
    with pytest.raises(NeboConfigurationError, match=fragment):
        call(nb.client(fake))
    assert fake.requests == []


def test_a_token_echoed_by_the_server_never_reaches_the_error(nb: SimpleNamespace) -> None:
    echoed = f"invalid header Authorization: Bearer {nb.TOKEN} (provider {nb.PROVIDER_KEY})"
    fake = nb.FakeNebo(httpx.Response(400, json={"error": {"message": echoed}}))
    client = nb.client(fake, provider_api_key=nb.PROVIDER_KEY)
    with pytest.raises(NeboError) as info:
        client.chat(BODY)
    text = str(info.value) + repr(info.value.body) + repr(pickle.dumps(info.value))
    assert nb.TOKEN not in text
    assert nb.PROVIDER_KEY not in text
    assert "Bearer ***" in str(info.value)


def test_per_call_extra_headers_reach_the_wire_and_never_replace_the_token(nb: SimpleNamespace) -> None:
    vectors = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "model": "neboloop/nebo-embed-small",
        "usage": {"prompt_tokens": 1, "total_tokens": 1, "cost_micro": 1},
    }
    fake = nb.FakeNebo(nb.ok(nb.completion()), nb.ok(vectors))
    client = nb.client(fake)
    client.chat(BODY, extra_headers={"X-Trace": "t-1", "X-Lane": "events"})
    client.embed(["a"], extra_headers={"X-Trace": "t-2"})
    chat, embed = fake.requests
    assert (chat.headers["x-trace"], chat.headers["x-lane"], embed.headers["x-trace"]) == (
        "t-1",
        "events",
        "t-2",
    )
    assert chat.headers["authorization"] == f"Bearer {nb.TOKEN}"
    for bad, match in (
        ({"Authorization": "Bearer other"}, "may not set Authorization"),
        ({"X-Bad": "two\nlines"}, "printable ASCII"),
        (["X-List"], "must be a dict"),
    ):
        with pytest.raises(NeboConfigurationError, match=match):
            client.chat(BODY, extra_headers=bad)  # type: ignore[arg-type]
    assert len(fake.requests) == 2  # refused before anything was sent


def test_embed_extra_body_reaches_every_batch_and_cannot_override_its_own_fields(nb: SimpleNamespace) -> None:
    def vectors(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content)["input"])
        data = [{"object": "embedding", "index": i, "embedding": [0.5, 0.25]} for i in range(n)]
        usage = {"prompt_tokens": n, "total_tokens": n, "cost_micro": 1}
        return httpx.Response(
            200, json={"object": "list", "data": data, "usage": usage}, headers=nb.budget_headers()
        )

    fake = nb.FakeNebo(handler=vectors)
    client = nb.client(fake)
    client.embed(["a", "b", "c"], batch_size=2, concurrency=1, extra_body={"user": "u-1"})
    assert [b["user"] for b in fake.bodies] == ["u-1", "u-1"]
    for bad in ({"model": "other"}, {"input": ["x"]}):
        with pytest.raises(NeboConfigurationError, match="extra_body may not set"):
            client.embed(["a"], extra_body=bad)
    assert len(fake.requests) == 2


def test_extra_query_reaches_the_url_and_response_headers_come_back(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.ok(nb.completion(), headers={"x-trace": "t-9"}), nb.ok(nb.completion()))
    client = nb.client(fake)
    res = client.chat(BODY, extra_query={"api-version": "2026-01"})
    assert fake.requests[0].url.params["api-version"] == "2026-01"
    assert res.headers["x-trace"] == "t-9"
    with pytest.raises(NeboConfigurationError, match="extra_query must be a dict"):
        client.chat(BODY, extra_query=["x"])  # type: ignore[arg-type]
    assert len(fake.requests) == 1
