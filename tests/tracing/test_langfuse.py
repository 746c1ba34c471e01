"""Langfuse sees Nebo's exact cost: what the Langfuse SDK exports, captured on loopback.

Langfuse (5.x, OpenTelemetry-based) prices a generation from its model table unless the
generation carries ``langfuse.observation.cost_details``. With ``telemetry.instrument(...,
langfuse_cost=True)``, Nebo's client span puts the exact cost there: on the generation
Langfuse's LangChain ``CallbackHandler`` opened for the ``ChatNebo`` run (Nebo's own span then
says ``langfuse.observation.type="span"``, so nothing is counted twice), or, for a call made
outside any Langfuse generation, on Nebo's span itself, made a generation. A real ``Langfuse``
client exports OTLP to a loopback endpoint; each test decodes what it received and compares the
cost with the emulator's ledger, to the microdollar.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import nebo_test_raw_server as rs  # registered by tests/conftest.py
import pytest

pytest.importorskip("langfuse")

from langfuse import Langfuse
from langfuse.langchain import CallbackHandler
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider

from langchain_nebo import ChatNebo
from nebo_core import NeboClient, telemetry
from nebo_emulator import NeboEmulator


class FakeLangfuse:
    """A loopback Langfuse endpoint that answers ``{}`` and keeps every OTLP export it was sent."""

    def __init__(self) -> None:
        self._server = rs.RawServer("langfuse", default=rs.empty_json("POST"))

    @property
    def url(self) -> str:
        return self._server.origin

    @property
    def paths(self) -> list[str]:
        """The path of every POST, in order."""
        return [seen.path for seen in self._server.requests if seen.method == "POST"]

    @property
    def exports(self) -> list[bytes]:
        """Every OTLP trace export (a protobuf body), in order."""
        return [
            seen.body
            for seen in self._server.requests
            if seen.method == "POST" and seen.path.endswith("/otel/v1/traces")
        ]

    def spans(self) -> list[tuple[str, dict[str, Any]]]:
        """Every exported span: its name and attributes (JSON strings decoded)."""
        found = []
        for raw in self.exports:
            request = ExportTraceServiceRequest.FromString(raw)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        found.append((span.name, {a.key: _value(a.value) for a in span.attributes}))
        return found

    def close(self) -> None:
        self._server.close()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@pytest.fixture
def langfuse() -> Iterator[tuple[FakeLangfuse, str]]:
    """Loopback Langfuse, a ``Langfuse`` client on its own provider, Nebo's telemetry on it too."""
    fake = FakeLangfuse()
    provider = TracerProvider()
    key = f"pk-lf-{uuid.uuid4()}"  # the SDK keeps one client per public key
    client = Langfuse(
        public_key=key,
        secret_key="sk-lf-test",
        base_url=fake.url,
        tracer_provider=provider,
        otel_compression="none",
    )
    telemetry.instrument(tracer_provider=provider, langfuse_cost=True)
    try:
        yield fake, key
    finally:
        telemetry.instrument()  # back to the default: the global providers, once set
        client.shutdown()
        provider.shutdown()
        fake.close()


def _flush(key: str) -> None:
    from langfuse import get_client

    get_client(public_key=key).flush()


def _by_type(spans: list[tuple[str, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [attrs for _, attrs in spans if attrs.get("langfuse.observation.type") == kind]


def _nebo_spans(spans: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [attrs for _, attrs in spans if attrs.get("gen_ai.provider.name") == "nebo"]


def _check_langchain_generation(fake: FakeLangfuse, emu: NeboEmulator) -> None:
    spans = fake.spans()
    (entry,) = emu.ledger
    (generation,) = _by_type(spans, "generation")  # Langfuse's, not Nebo's too: no double count
    assert json.loads(generation["langfuse.observation.cost_details"]) == {
        "total": entry.cost_micro / 1_000_000
    }
    assert entry.cost_micro > 0
    usage = json.loads(generation["langfuse.observation.usage_details"])
    assert usage["input"] == entry.prompt_tokens
    assert usage["output"] == entry.completion_tokens
    assert generation["langfuse.observation.model.name"] == entry.model
    (nebo,) = _nebo_spans(spans)
    assert nebo["langfuse.observation.type"] == "span"
    assert nebo["nebo.cost_micro"] == entry.cost_micro
    assert nebo["nebo.request_id"] == entry.request_id
    assert emu.token.encode() not in b"".join(fake.exports)


@pytest.fixture
def model(emu: NeboEmulator, tracker: Any, policy: Any) -> ChatNebo:
    return ChatNebo(api_key=emu.token, base_url=emu.base_url, tracker=tracker, policy=policy)


def test_langchain_generation_carries_the_exact_cost(
    langfuse: tuple[FakeLangfuse, str], model: ChatNebo, emu: NeboEmulator
) -> None:
    fake, key = langfuse
    model.invoke("hello", config={"callbacks": [CallbackHandler(public_key=key)]})
    _flush(key)
    _check_langchain_generation(fake, emu)


def test_langchain_streamed_generation_carries_the_exact_cost(
    langfuse: tuple[FakeLangfuse, str], model: ChatNebo, emu: NeboEmulator
) -> None:
    fake, key = langfuse
    chunks = list(model.stream("hello", config={"callbacks": [CallbackHandler(public_key=key)]}))
    assert chunks
    _flush(key)
    _check_langchain_generation(fake, emu)


async def test_async_langchain_run_gets_the_exact_cost_on_nebo_span(
    langfuse: tuple[FakeLangfuse, str], model: ChatNebo, emu: NeboEmulator
) -> None:
    # Under an async run, LangChain runs Langfuse's (sync) handler in a worker thread, so its
    # generation is never the current span: Nebo's span is then the generation with the cost.
    fake, key = langfuse
    await model.ainvoke("hello", config={"callbacks": [CallbackHandler(public_key=key)]})
    _flush(key)
    spans = fake.spans()
    (entry,) = emu.ledger
    (nebo,) = _nebo_spans(spans)
    assert nebo["langfuse.observation.type"] == "generation"
    assert json.loads(nebo["langfuse.observation.cost_details"]) == {"total": entry.cost_micro / 1_000_000}
    assert nebo["langfuse.observation.model.name"] == entry.model
    (theirs,) = [a for a in _by_type(spans, "generation") if a is not nebo]
    assert "langfuse.observation.cost_details" not in theirs
    assert theirs["langfuse.observation.model.name"] == "auto"  # nothing for Langfuse to price


def test_a_call_outside_any_generation_is_one(
    langfuse: tuple[FakeLangfuse, str], emu: NeboEmulator, tracker: Any, policy: Any
) -> None:
    fake, key = langfuse
    with NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=tracker, policy=policy) as client:
        client.chat({"messages": [{"role": "user", "content": "hello"}]})
        client.embed(["budgets", "limits"])
    _flush(key)
    spans = fake.spans()
    ledger = {e.request_id: e for e in emu.ledger}
    generations = _by_type(spans, "generation")
    assert len(generations) == len(ledger) == 2
    for attrs in generations:
        entry = ledger[attrs["nebo.request_id"]]
        assert json.loads(attrs["langfuse.observation.cost_details"]) == {
            "total": entry.cost_micro / 1_000_000
        }
        assert attrs["langfuse.observation.model.name"] == entry.model
        assert json.loads(attrs["langfuse.observation.usage_details"])["input"] == entry.prompt_tokens
    assert emu.token.encode() not in b"".join(fake.exports)


def test_nothing_for_langfuse_unless_asked(
    langfuse: tuple[FakeLangfuse, str], model: ChatNebo, emu: NeboEmulator
) -> None:
    fake, key = langfuse
    telemetry.instrument(tracer_provider=_provider(key), langfuse_cost=False)
    model.invoke("hello", config={"callbacks": [CallbackHandler(public_key=key)]})
    _flush(key)
    spans = fake.spans()
    assert not any("langfuse.observation.cost_details" in attrs for _, attrs in spans)
    (nebo,) = _nebo_spans(spans)
    assert nebo["nebo.cost_micro"] == emu.ledger[0].cost_micro


def _provider(key: str) -> Any:
    from langfuse import get_client

    return get_client(public_key=key)._resources.tracer_provider  # type: ignore[attr-defined]
