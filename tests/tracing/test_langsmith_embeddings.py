"""LangSmith sees ``NeboEmbeddings`` calls: one ``embedding`` run each, with the exact cost.

LangChain embeddings have no callbacks, so ``NeboEmbeddings`` opens a LangSmith run of its own
when LangSmith traces (the environment, ``tracing_context``, or a traced parent such as a
retriever); the run a real ``langsmith.Client`` posts to a loopback endpoint carries
``extra.metadata.usage_metadata.total_cost`` equal to the emulator's ledger (every batch
request of the call) and the routed model in ``ls_model_name``. Tracing off: nothing is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.langchain import LangChainTracer
from langsmith import Client
from langsmith.run_helpers import tracing_context
from pydantic import SecretStr

from langchain_nebo import NeboEmbeddings
from nebo_core import BudgetPolicy, BudgetTracker
from nebo_emulator import NeboEmulator

if TYPE_CHECKING:
    from tests.tracing.conftest import FakeLangSmith

TEXTS = ["budgets", "limits and pools", "a third, longer text about weekly windows"]


@pytest.fixture
def embeddings(emu: NeboEmulator) -> NeboEmbeddings:
    return NeboEmbeddings(
        api_key=SecretStr(emu.token),
        base_url=emu.base_url,
        tracker=BudgetTracker(),
        policy=BudgetPolicy(),
        chunk_size=2,  # three texts: two requests, two ledger entries, one run
    )


@pytest.fixture
def client(langsmith: FakeLangSmith) -> Iterator[Client]:
    client = Client(api_url=langsmith.url, api_key="ls-test-key", auto_batch_tracing=False)
    try:
        yield client
    finally:
        client.session.close()


def _embedding_runs(langsmith: FakeLangSmith) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(POST, PATCH) of every embedding run, in order."""
    posted = {r["id"]: r for r in langsmith.posted_runs() if r["run_type"] == "embedding"}
    return [(posted[r["id"]], r) for r in langsmith.ended_runs() if r["id"] in posted]


def _check(langsmith: FakeLangSmith, emu: NeboEmulator, token: str) -> dict[str, Any]:
    ((start, end),) = _embedding_runs(langsmith)
    ledger = emu.ledger
    assert len(ledger) == 2
    usage = end["extra"]["metadata"]["usage_metadata"]
    assert usage["total_cost"] == sum(e.cost_micro for e in ledger) / 1_000_000 > 0
    assert usage["input_tokens"] == sum(e.prompt_tokens for e in ledger)
    metadata = end["extra"]["metadata"]
    (routed,) = {e.model for e in ledger}
    assert metadata["ls_model_name"] == routed
    assert metadata["ls_provider"] == "nebo"
    assert metadata["nebo"]["cost_micro"] == sum(e.cost_micro for e in ledger)
    assert sorted(metadata["nebo"]["request_ids"]) == sorted(e.request_id for e in ledger)
    assert start["inputs"] == {"input": TEXTS}
    assert end["outputs"] == {"vectors": 3, "dimensions": end["outputs"]["dimensions"]}
    assert token not in json.dumps(langsmith.received)
    return end


def test_embed_documents_is_a_run_with_the_exact_cost(
    embeddings: NeboEmbeddings, client: Client, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    with tracing_context(enabled=True, client=client):
        vectors = embeddings.embed_documents(TEXTS)
    assert len(vectors) == 3
    _check(langsmith, emu, emu.token)


async def test_aembed_documents_is_a_run_with_the_exact_cost(
    embeddings: NeboEmbeddings, client: Client, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    with tracing_context(enabled=True, client=client):
        vectors = await embeddings.aembed_documents(TEXTS)
    assert len(vectors) == 3
    _check(langsmith, emu, emu.token)


def test_embedding_inside_a_traced_chain_is_its_child(
    embeddings: NeboEmbeddings, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    client = Client(api_url=langsmith.url, api_key="ls-test-key", auto_batch_tracing=False)
    tracer = LangChainTracer(client=client, project_name="nebo-tests")
    try:
        retrieve = RunnableLambda(lambda texts: embeddings.embed_documents(texts), name="retrieve")
        retrieve.invoke(TEXTS, config={"callbacks": [tracer]})
        tracer.wait_for_futures()
    finally:
        client.session.close()
    end = _check(langsmith, emu, emu.token)
    (parent,) = [r for r in langsmith.posted_runs() if r["name"] == "retrieve"]
    assert end["parent_run_id"] == parent["id"]


def test_no_run_when_langsmith_does_not_trace(
    embeddings: NeboEmbeddings, client: Client, langsmith: FakeLangSmith, emu: NeboEmulator
) -> None:
    with tracing_context(enabled=False, client=client):
        embeddings.embed_documents(TEXTS)
    embeddings.embed_query("outside any tracing context")
    assert langsmith.received == []
    assert len(emu.ledger) == 3
