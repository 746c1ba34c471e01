"""LangSmith sees Nebo's exact cost: the runs LangChain's tracer posts, captured on loopback.

A real ``langsmith.Client`` posts to a fake LangSmith endpoint (a loopback HTTP server); each
test reads the run's final ``PATCH`` and checks ``extra.metadata.usage_metadata.total_cost``
(dollars, what LangSmith reads) against the emulator's ledger entry for the call, and
``ls_model_name`` against the model Nebo routed to. The messages the caller gets keep integer
usage, so ``add_usage`` and ``get_usage_metadata_callback`` go on working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import HumanMessage
from langchain_core.messages.ai import add_usage
from langchain_core.tracers.langchain import LangChainTracer

from langchain_nebo import ChatNebo
from nebo_emulator import NeboEmulator

if TYPE_CHECKING:
    from tests.tracing.conftest import FakeLangSmith


class _Ledger:
    def __init__(self, entries: list[Any]) -> None:
        self.ledger = entries


def _usage_and_model(run: dict[str, Any]) -> tuple[dict[str, Any], str]:
    metadata = run["extra"]["metadata"]
    return metadata["usage_metadata"], metadata["ls_model_name"]


def _check(runs: list[dict[str, Any]], emu: NeboEmulator) -> None:
    """Each run shows exactly one ledger entry's cost, tokens and routed model, one run per entry
    (compared as sorted lists: concurrent calls, as in ``abatch``, end in any order)."""
    ledger = emu.ledger
    assert len(runs) == len(ledger) >= 1
    shown = []
    for run in runs:
        usage, model_name = _usage_and_model(run)
        assert usage["total_cost"] > 0
        shown.append((usage["total_cost"], usage["input_tokens"], usage["output_tokens"], model_name))
    billed = [(e.cost_micro / 1_000_000, e.prompt_tokens, e.completion_tokens, e.model) for e in ledger]
    assert sorted(shown) == sorted(billed)
    assert all(entry.model != "auto" for entry in ledger)


def test_invoke_run_carries_the_exact_cost_and_routed_model(
    model: ChatNebo, tracer: LangChainTracer, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    message = model.invoke("hello", config={"callbacks": [tracer]})
    tracer.wait_for_futures()
    _check(langsmith.ended_runs(), emu)
    assert message.usage_metadata is not None
    assert "total_cost" not in message.usage_metadata  # the caller's usage stays integer
    assert "lc_gateway_metadata" not in message.response_metadata


def test_stream_chunks_merge_under_the_tracer(
    model: ChatNebo, tracer: LangChainTracer, emu: NeboEmulator
) -> None:
    chunks = list(model.stream("hello", config={"callbacks": [tracer]}))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk  # merging uses add_usage: a float cost would raise here
    assert merged.usage_metadata is not None
    assert "total_cost" not in merged.usage_metadata
    assert (
        merged.usage_metadata["total_tokens"] == emu.ledger[0].prompt_tokens + emu.ledger[0].completion_tokens
    )


async def test_async_invoke_and_batch_runs_carry_the_exact_cost(
    model: ChatNebo, tracer: LangChainTracer, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    await model.ainvoke("hello", config={"callbacks": [tracer]})
    await model.abatch(["hello again", "and once more"], config={"callbacks": [tracer]})
    tracer.wait_for_futures()
    _check(langsmith.ended_runs(), emu)


def test_batch_runs_each_carry_their_own_cost(
    model: ChatNebo, tracer: LangChainTracer, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    model.generate([[HumanMessage("one")], [HumanMessage("two, a longer prompt")]], callbacks=[tracer])
    tracer.wait_for_futures()
    runs = langsmith.ended_runs()
    assert len(runs) == 2
    costs = sorted(float(_usage_and_model(run)[0]["total_cost"]) for run in runs)
    assert costs == sorted(entry.cost_micro / 1_000_000 for entry in emu.ledger)


def test_usage_callback_and_add_usage_keep_working_under_the_tracer(
    model: ChatNebo, tracer: LangChainTracer, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    with get_usage_metadata_callback() as usage_cb:
        first = model.invoke("hello", config={"callbacks": [tracer]})
        second = model.invoke("hello again", config={"callbacks": [tracer]})
        streamed = list(model.stream("and a stream", config={"callbacks": [tracer]}))
    tracer.wait_for_futures()
    ledger = emu.ledger
    runs = langsmith.ended_runs()
    _check(runs[:2], _Ledger(ledger[:2]))  # type: ignore[arg-type]
    assert len(ledger) == 3
    (routed,) = {entry.model for entry in ledger}
    totals = usage_cb.usage_metadata[routed]
    assert "total_cost" not in totals
    assert totals["input_tokens"] == sum(entry.prompt_tokens for entry in ledger)
    assert totals["output_tokens"] == sum(entry.completion_tokens for entry in ledger)
    summed = add_usage(add_usage(first.usage_metadata, second.usage_metadata), streamed[-1].usage_metadata)
    assert summed == totals
