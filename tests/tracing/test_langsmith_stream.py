"""LangSmith sees the exact cost of streamed ``ChatNebo`` runs (``stream`` / ``astream``).

langchain-core's ``stream()`` calls ``_stream`` without the run manager; ``ChatNebo`` finds the
run's tracers anyway, so the run LangChain's tracer posts (captured on a loopback LangSmith
endpoint) carries ``extra.metadata.usage_metadata.total_cost`` equal to the emulator's ledger
entry, and ``ls_model_name`` the routed model. A stream closed early ends its run in error; the
run still gets what the stream had shown (the client's record of the call), which is at most the
ledger entry (Nebo bills the whole answer). The chunks the caller gets keep integer usage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages.ai import add_usage
from langchain_core.tracers.langchain import LangChainTracer

from langchain_nebo import ChatNebo
from nebo_emulator import NeboEmulator

if TYPE_CHECKING:
    from tests.tracing.conftest import FakeLangSmith

STORY = "Tell me a long story about the sea, with many words in it."


def _usage(run: dict[str, Any]) -> dict[str, Any]:
    usage = run["extra"]["metadata"]["usage_metadata"]
    assert isinstance(usage, dict)
    return usage


def _assert_exact(run: dict[str, Any], entry: Any) -> None:
    usage = _usage(run)
    assert usage["total_cost"] == entry.cost_micro / 1_000_000 > 0
    assert usage["input_tokens"] == entry.prompt_tokens
    assert usage["output_tokens"] == entry.completion_tokens
    assert run["extra"]["metadata"]["ls_model_name"] == entry.model != "auto"
    assert run.get("error") is None


def _merge(chunks: list[Any]) -> Any:
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk  # add_usage: a float cost in usage_metadata would raise here
    return merged


def test_stream_read_fully_carries_the_exact_cost(
    model: ChatNebo, tracer: LangChainTracer, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    chunks = list(model.stream("hello", config={"callbacks": [tracer]}))
    tracer.wait_for_futures()
    (run,) = langsmith.ended_runs()
    (entry,) = emu.ledger
    _assert_exact(run, entry)
    merged = _merge(chunks)
    assert merged.usage_metadata is not None
    assert "total_cost" not in merged.usage_metadata
    assert merged.usage_metadata["input_tokens"] == entry.prompt_tokens
    assert merged.response_metadata["nebo"]["cost_micro"] == entry.cost_micro


async def test_astream_read_fully_carries_the_exact_cost(
    model: ChatNebo, tracer: LangChainTracer, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    chunks = [c async for c in model.astream("hello", config={"callbacks": [tracer]})]
    tracer.wait_for_futures()
    (run,) = langsmith.ended_runs()
    (entry,) = emu.ledger
    _assert_exact(run, entry)
    assert "total_cost" not in _merge(chunks).usage_metadata


def test_streaming_invoke_carries_the_exact_cost(
    emu: NeboEmulator, tracer: LangChainTracer, langsmith: FakeLangSmith, model: ChatNebo
) -> None:
    streaming = model.model_copy(update={"streaming": True})
    message = streaming.invoke("hello", config={"callbacks": [tracer]})
    tracer.wait_for_futures()
    (run,) = langsmith.ended_runs()
    usage = _usage(run)
    (entry,) = emu.ledger
    assert usage["total_cost"] == entry.cost_micro / 1_000_000 > 0
    assert message.usage_metadata is not None
    assert "total_cost" not in message.usage_metadata


def _record(model: ChatNebo) -> Any:
    return model.tracker.history()[-1]  # type: ignore[union-attr]


def test_stream_closed_early_carries_what_it_showed(
    model: ChatNebo, tracer: LangChainTracer, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    stream = model.stream(STORY, config={"callbacks": [tracer]})
    next(stream)
    next(stream)
    stream.close()
    tracer.wait_for_futures()
    (run,) = langsmith.ended_runs()
    (entry,) = emu.ledger
    record = _record(model)
    assert record.complete is False
    assert record.request_id == entry.request_id
    usage = _usage(run)
    assert run["error"]  # closed early: LangChain ends the run with an error
    assert usage["total_cost"] == record.cost_micro / 1_000_000
    assert 0 < record.cost_micro <= entry.cost_micro
    assert usage["input_tokens"] == record.prompt_tokens == entry.prompt_tokens
    assert usage["output_tokens"] == record.completion_tokens
    assert run["extra"]["metadata"]["ls_model_name"] == entry.model


async def test_astream_closed_early_carries_what_it_showed(
    model: ChatNebo, tracer: LangChainTracer, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    stream = model.astream(STORY, config={"callbacks": [tracer]})
    await anext(stream)
    await anext(stream)
    await stream.aclose()
    tracer.wait_for_futures()
    (run,) = langsmith.ended_runs()
    (entry,) = emu.ledger
    usage = _usage(run)
    assert run["error"]
    assert 0 < usage["total_cost"] <= entry.cost_micro / 1_000_000
    assert usage["input_tokens"] == entry.prompt_tokens
    assert run["extra"]["metadata"]["ls_model_name"] == entry.model


def test_stream_closed_after_its_last_chunk_carries_the_ledger_cost(
    model: ChatNebo, tracer: LangChainTracer, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    stream = model.stream("hello", config={"callbacks": [tracer]})
    for chunk in stream:
        if chunk.usage_metadata:  # the final chunk: usage, cost and model
            break
    stream.close()
    tracer.wait_for_futures()
    (run,) = langsmith.ended_runs()
    (entry,) = emu.ledger
    usage = _usage(run)
    assert usage["total_cost"] == entry.cost_micro / 1_000_000 > 0
    assert usage["output_tokens"] == entry.completion_tokens


def test_usage_callback_sums_streams_under_the_tracer(
    model: ChatNebo, tracer: LangChainTracer, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    with get_usage_metadata_callback() as usage_cb:
        first = list(model.stream("hello", config={"callbacks": [tracer]}))
        second = list(model.stream("hello again", config={"callbacks": [tracer]}))
    tracer.wait_for_futures()
    ledger = emu.ledger
    for run, entry in zip(langsmith.ended_runs(), ledger, strict=True):
        _assert_exact(run, entry)
    (routed,) = {entry.model for entry in ledger}
    totals = usage_cb.usage_metadata[routed]
    assert "total_cost" not in totals
    assert totals["input_tokens"] == sum(entry.prompt_tokens for entry in ledger)
    assert totals["output_tokens"] == sum(entry.completion_tokens for entry in ledger)
    assert add_usage(_merge(first).usage_metadata, _merge(second).usage_metadata) == totals


@pytest.mark.parametrize("method", ["stream", "astream"])
async def test_stream_without_a_tracer_is_left_alone(model: ChatNebo, method: str) -> None:
    if method == "stream":
        chunks = list(model.stream("hello"))
    else:
        chunks = [c async for c in model.astream("hello")]
    assert "total_cost" not in _merge(chunks).usage_metadata
