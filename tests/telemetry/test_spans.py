"""What a Nebo client span and the metrics say: GenAI convention names, request attributes, retries
and budget decisions as events, errors, streams that break or are closed, uncertain charges, the
cost attributes behind their switch, and the parent/child links. Every call runs on the loopback
emulator; sleeps are recorded (and move the emulator's clock), never slept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.trace import StatusCode

from nebo_core import (
    AsyncNeboClient,
    BudgetPolicy,
    NeboBudgetExhausted,
    NeboClient,
    NeboConnectionError,
    NeboStreamTruncated,
    RetryPolicy,
    telemetry,
)
from nebo_emulator import NeboEmulator

HI = {"messages": [{"role": "user", "content": "Say hello. Context: the sky is blue."}]}
STORY = {"messages": [{"role": "user", "content": "Context: a long answer about cats and dogs. Tell me."}]}


def recorded(sleeps: list[float], emu: NeboEmulator | None = None) -> Callable[[float], None]:
    """A sleep that records its seconds (and moves the emulator's clock) instead of sleeping."""

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if emu is not None:
            emu.clock.advance(seconds)

    return sleep


def arrived(emu: NeboEmulator) -> None:
    """Block until the emulator is serving a request (polled: it has no event to wait on)."""
    while not emu.requests_in_flight():
        time.sleep(0.005)


@pytest.fixture
def client(conn: dict[str, Any]) -> Iterator[NeboClient]:
    with NeboClient(sleep=recorded([]), retry=RetryPolicy(jitter=lambda: 0.0), **conn) as c:
        yield c


def test_a_chat_span_follows_the_genai_conventions(otel: Any, emu: NeboEmulator, client: NeboClient) -> None:
    body = {
        **HI,
        "model": "gpt-5-mini",
        "max_completion_tokens": 64,
        "temperature": 0.5,
        "top_p": 1,
        "seed": 7,
        "stop": "END",
        "n": 2,
        "response_format": {"type": "json_object"},
    }
    result = client.chat(body, scope="team-a")
    span = otel.span()
    (entry,) = emu.ledger
    attrs = span.attributes
    assert span.name == "chat gpt-5-mini"
    assert span.parent is None
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "nebo"
    assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", emu.port)
    assert attrs["gen_ai.request.model"] == "gpt-5-mini"
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.request.temperature"] == 0.5
    assert attrs["gen_ai.request.top_p"] == 1.0
    assert attrs["gen_ai.request.seed"] == 7
    assert attrs["gen_ai.request.stop_sequences"] == ("END",)
    assert attrs["gen_ai.request.choice.count"] == 2
    assert attrs["gen_ai.output.type"] == "json"
    assert "gen_ai.request.stream" not in attrs
    assert attrs["gen_ai.response.model"] == entry.model == result.usage.model
    assert attrs["gen_ai.response.id"] == result.data["id"]
    assert attrs["gen_ai.response.finish_reasons"] == ("stop", "stop")
    assert attrs["gen_ai.usage.input_tokens"] == entry.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == entry.completion_tokens
    assert attrs["nebo.cost_micro"] == entry.cost_micro == result.usage.cost_micro
    assert attrs["nebo.cost_source"] == "server"
    assert attrs["nebo.request_id"] == entry.request_id
    assert attrs["nebo.scope"] == "team-a"
    assert result.snapshot is not None
    assert attrs["nebo.budget.session.remaining_micro"] == result.snapshot.session.remaining_micro
    assert attrs["nebo.budget.weekly.remaining_micro"] == result.snapshot.weekly.remaining_micro
    assert attrs["nebo.budget.active_pool"] == entry.pool == "plan"
    assert attrs["http.response.status_code"] == 200
    assert "gen_ai.usage.cost.amount" not in attrs  # the proposed convention is behind a switch
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()


def test_models_and_usage_calls_get_spans_without_cost(otel: Any, client: NeboClient) -> None:
    client.models()
    client.usage()
    names = [(s.name, s.attributes["gen_ai.operation.name"]) for s in otel.spans()]
    assert names == [("list_models", "list_models"), ("get_usage", "get_usage")]
    for span in otel.spans():
        assert "gen_ai.request.model" not in span.attributes
        assert "nebo.cost_micro" not in span.attributes
        assert span.attributes["gen_ai.provider.name"] == "nebo"


def test_retries_are_events_on_the_one_span(otel: Any, emu: NeboEmulator, conn: dict[str, Any]) -> None:
    sleeps: list[float] = []
    with NeboClient(sleep=recorded(sleeps), retry=RetryPolicy(jitter=lambda: 0.0), **conn) as c:
        emu.inject("502")
        c.chat(HI)
        emu.inject("stream_rate_limit", retry_after="1.5s")
        with c.stream_chat(STORY) as s:
            list(s)
    chat, stream = otel.spans()
    assert [(e.name, dict(e.attributes)) for e in chat.events] == [
        (
            "nebo.retry",
            {"nebo.retry.attempt": 1, "nebo.retry.delay_s": sleeps[0], "error.type": "NeboUpstreamError"},
        )
    ]
    assert [(e.name, dict(e.attributes)) for e in stream.events] == [
        (
            "nebo.retry",
            {"nebo.retry.attempt": 1, "nebo.retry.delay_s": sleeps[1], "error.type": "NeboRateLimited"},
        )
    ]
    assert sleeps == [0.375, 1.5]  # jitter-free backoff, then the stream's retry_after
    assert [s.attributes["nebo.cost_micro"] for s in (chat, stream)] == [e.cost_micro for e in emu.ledger]
    assert chat.status.status_code is stream.status.status_code is StatusCode.UNSET


def test_a_budget_wait_is_an_event(otel: Any, emu: NeboEmulator, conn: dict[str, Any]) -> None:
    sleeps: list[float] = []
    conn["policy"] = BudgetPolicy(on_exhausted="wait", max_wait=6 * 3600)
    with NeboClient(sleep=recorded(sleeps, emu), **conn) as c:
        emu.set_budget(session_remaining_micro=1)
        c.chat(HI)  # funded, and leaves the session window at 0
        c.chat(HI)  # waits for the reset, then goes
    first, second = otel.spans()
    assert first.events == ()
    (wait,) = second.events
    assert wait.name == "nebo.budget.wait"
    assert wait.attributes["nebo.budget.wait_s"] == sleeps[0] > 3600
    assert second.attributes["nebo.cost_micro"] == emu.ledger[-1].cost_micro
    assert second.status.status_code is StatusCode.UNSET


def test_a_call_refused_up_front_has_a_span_and_costs_nothing(
    otel: Any, emu: NeboEmulator, client: NeboClient
) -> None:
    emu.set_budget(session_remaining_micro=1)
    client.chat(HI)  # leaves the session window at 0: the tracker knows
    sent = emu.requests
    with pytest.raises(NeboBudgetExhausted):
        client.chat(HI)
    assert emu.requests == sent  # nothing was sent
    refused = otel.spans()[-1]
    assert [e.name for e in refused.events] == ["nebo.budget.refused"]
    assert refused.events[0].attributes["nebo.budget.window"] == "session"
    assert refused.attributes["error.type"] == "NeboBudgetExhausted"
    assert refused.attributes["nebo.cost_micro"] == 0
    assert refused.attributes["nebo.budget.session.remaining_micro"] == 0
    assert "http.response.status_code" not in refused.attributes
    assert refused.status.status_code is StatusCode.ERROR


def test_a_stream_broken_midway_records_the_error_and_its_cost(
    otel: Any, emu: NeboEmulator, client: NeboClient
) -> None:
    emu.inject("drop_midstream", after_chunks=2)
    with pytest.raises(NeboStreamTruncated), client.stream_chat(STORY) as s:
        list(s)
    span = otel.span()
    (entry,) = emu.ledger
    assert span.attributes["error.type"] == "NeboStreamTruncated"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["nebo.stream.complete"] is False
    assert span.attributes["nebo.stream.closed_early"] is False  # broken, not closed by the caller
    assert span.attributes["nebo.cost_micro"] == entry.cost_micro  # the cumulative usage seen is exact


def test_a_call_cut_after_billing_records_its_uncertain_charge(
    otel: Any, emu: NeboEmulator, conn: dict[str, Any]
) -> None:
    emu.inject("drop_midstream")  # a plain call: billed, then the connection drops before the body
    with NeboClient(max_retries=0, **conn) as c, pytest.raises(NeboConnectionError):
        c.chat(HI)
    span = otel.span()
    (record,) = conn["tracker"].history()
    assert record.uncertain
    assert span.attributes["nebo.cost_source"] == "estimate"
    assert span.attributes["nebo.cost_uncertain"] is True
    assert span.attributes["nebo.cost_micro"] == record.cost_micro > 0  # the estimate, not the ledger's
    assert span.attributes["error.type"] == "NeboConnectionError"
    assert span.status.status_code is StatusCode.ERROR


async def test_a_cancelled_call_ends_its_span_as_cancelled(
    otel: Any, emu: NeboEmulator, conn: dict[str, Any]
) -> None:
    emu.inject("delay", seconds=30)  # the emulator ends the delay when it stops
    async with AsyncNeboClient(**conn) as c:
        task = asyncio.create_task(c.chat(HI))
        await asyncio.to_thread(arrived, emu)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    span = otel.span()
    assert span.attributes["error.type"] == "CancelledError"
    assert span.attributes["nebo.cost_source"] == "estimate"  # the request was out: maybe billed
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize(("switch", "env"), [("arg", None), ("env", "1"), ("off", None), ("env-off", "0")])
def test_the_proposed_cost_attributes_are_behind_a_switch(
    switch: str, env: str | None, otel: Any, emu: NeboEmulator, client: NeboClient, monkeypatch: Any
) -> None:
    if env is not None:
        monkeypatch.setenv(telemetry.ENV_COST_SEMCONV, env)
    telemetry.instrument(
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        emit_cost_semconv=True if switch == "arg" else None,
    )
    client.chat(HI)
    attrs = otel.span().attributes
    if switch in ("arg", "env"):
        assert attrs["gen_ai.usage.cost.amount"] == emu.ledger[0].cost_micro / 1_000_000
        assert attrs["gen_ai.usage.cost.currency"] == "USD"
        assert attrs["gen_ai.usage.cost.source"] == "provider"
    else:
        assert not [k for k in attrs if k.startswith("gen_ai.usage.cost")]


def test_metrics_add_up_to_the_ledger(otel: Any, emu: NeboEmulator, client: NeboClient) -> None:
    client.chat(HI, scope="team-a")
    client.chat({**HI, "model": "gpt-5-nano"})
    client.embed(["one text", "two texts"], model="neboloop/nebo-embed-small")
    ledger = emu.ledger
    cost = otel.points("nebo.cost")
    assert sum(p.value for p in cost) == emu.ledger_total_micro()
    assert {p.attributes.get("nebo.scope") for p in cost} == {"team-a", None}
    assert all(p.attributes["nebo.cost_source"] == "server" for p in cost)
    tokens = otel.points("gen_ai.client.token.usage")
    by_type = {
        t: sum(p.sum for p in tokens if p.attributes["gen_ai.token.type"] == t) for t in ("input", "output")
    }
    assert by_type == {
        "input": sum(e.prompt_tokens for e in ledger),
        "output": sum(e.completion_tokens for e in ledger if e.endpoint == "chat"),
    }
    durations = otel.points("gen_ai.client.operation.duration")
    assert sum(p.count for p in durations) == 3
    assert {p.attributes["gen_ai.operation.name"] for p in durations} == {"chat", "embeddings"}
    assert all(p.attributes["gen_ai.provider.name"] == "nebo" for p in durations + tokens)
    budget = {p.attributes["nebo.budget.window"]: p.value for p in otel.points("nebo.budget.remaining")}
    snapshot = client.tracker.snapshot_for(client.account)
    assert snapshot is not None
    assert budget == {"session": snapshot.session.remaining_micro, "weekly": snapshot.weekly.remaining_micro}
    assert budget["session"] == 10_000_000 - emu.ledger_total_micro()


def test_a_failed_call_is_timed_with_its_error_type(otel: Any, emu: NeboEmulator, client: NeboClient) -> None:
    emu.set_budget(session_remaining_micro=0)
    with pytest.raises(NeboBudgetExhausted):
        client.chat(HI)
    (point,) = otel.points("gen_ai.client.operation.duration")
    assert point.attributes["error.type"] == "NeboBudgetExhausted"
    assert otel.points("nebo.cost") == []
    assert otel.points("gen_ai.client.token.usage") == []


def test_the_span_is_a_child_of_the_callers_and_a_parent_of_the_http_send(
    otel: Any, emu: NeboEmulator, conn: dict[str, Any]
) -> None:
    tracer = otel.tracer_provider.get_tracer("test")
    inner: list[Any] = []

    def hook(request: httpx.Request) -> None:  # runs inside the HTTP send, as an httpx instrumentation would
        with tracer.start_as_current_span("http send") as span:
            inner.append(span)

    with (
        httpx.Client(event_hooks={"request": [hook]}) as http,
        NeboClient(http_client=http, **conn) as c,
        tracer.start_as_current_span("agent step") as outer,
    ):
        c.chat(HI)
    span = otel.span()
    assert span.parent is not None
    assert span.parent.span_id == outer.get_span_context().span_id
    assert span.context.trace_id == outer.get_span_context().trace_id
    (send,) = inner
    assert send.parent.span_id == span.context.span_id


def test_concurrent_embedding_batches_each_get_a_span(
    otel: Any, emu: NeboEmulator, client: NeboClient
) -> None:
    texts = [f"text number {i}" for i in range(6)]
    client.embed(texts, model="neboloop/nebo-embed-small", batch_size=2, concurrency=3)
    spans = otel.spans()
    assert len(spans) == 3 == len(emu.ledger)
    assert {s.attributes["nebo.request_id"]: s.attributes["nebo.cost_micro"] for s in spans} == {
        e.request_id: e.cost_micro for e in emu.ledger
    }
