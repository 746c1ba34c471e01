"""End to end on the emulator: index the corpus with NeboEmbedding, query with Nebo, run an agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.tools import FunctionTool

from llama_index_nebo import Nebo, NeboBudgetEventHandler, NeboEmbedding
from nebo_emulator import NeboEmulator

CASES = [
    ("How many days is the refund window for annual subscription refunds?", "refund_policy.md", "30 days"),
    ("How many requests per minute does the Team plan API rate limit allow?", "rate_limits.md", "600"),
    ("In which year was Larkspur founded, and by whom?", "history.md", "2014"),
]


@pytest.fixture
def index(conn: dict[str, Any], corpus_dir: Path) -> VectorStoreIndex:
    docs = SimpleDirectoryReader(str(corpus_dir)).load_data()
    assert len(docs) >= 6
    return VectorStoreIndex.from_documents(docs, embed_model=NeboEmbedding(**conn), show_progress=True)


@pytest.mark.parametrize(("question", "source", "fact"), CASES)
def test_rag_retrieves_the_right_file_and_answers(
    emu: NeboEmulator, conn: dict[str, Any], index: VectorStoreIndex, question: str, source: str, fact: str
) -> None:
    nodes = index.as_retriever(similarity_top_k=2).retrieve(question)
    assert nodes[0].metadata["file_name"] == source
    engine = index.as_query_engine(llm=Nebo(**conn), similarity_top_k=2)
    response = engine.query(question)
    assert response.source_nodes[0].metadata["file_name"] == source
    assert fact in str(response)


async def test_rag_async_and_handler_matches_ledger(
    emu: NeboEmulator, conn: dict[str, Any], corpus_dir: Path
) -> None:
    handler = NeboBudgetEventHandler().attach()
    try:
        docs = SimpleDirectoryReader(str(corpus_dir)).load_data()
        index = VectorStoreIndex.from_documents(
            docs, embed_model=NeboEmbedding(embed_batch_size=3, **conn), use_async=True
        )
        engine = index.as_query_engine(llm=Nebo(**conn), streaming=True, similarity_top_k=1)
        question, source, fact = CASES[1]
        response = await engine.aquery(question)
        text = "".join([t async for t in response.async_response_gen()])
        assert fact in text
        assert response.source_nodes[0].metadata["file_name"] == source
    finally:
        handler.detach()
    totals = handler.totals()
    assert handler.cost_micro == emu.ledger_total_micro() > 0
    assert set(totals.by_kind) == {"chat", "embedding"}
    assert totals.by_kind["embedding"].calls == sum(1 for e in emu.ledger if "embed" in e.endpoint)


def lookup_price(plan: str) -> str:
    """Look up the monthly price per seat of a Larkspur plan (Starter, Team or Enterprise)."""
    return {"starter": "9 euros", "team": "29 euros"}.get(plan.lower(), "custom pricing")


def count_seats(team: str) -> int:
    """Count the seats a team needs."""
    return 12


@pytest.mark.parametrize("streaming", [True, False])
async def test_function_agent_completes_a_task(
    emu: NeboEmulator, conn: dict[str, Any], streaming: bool
) -> None:
    handler = NeboBudgetEventHandler().attach()
    try:
        agent = FunctionAgent(
            tools=[FunctionTool.from_defaults(lookup_price), FunctionTool.from_defaults(count_seats)],
            llm=Nebo(**conn),
            system_prompt="You answer questions about Larkspur plans using the tools.",
            streaming=streaming,
        )
        handle = agent.run(user_msg="Use lookup_price to find the price of the plan named Team.")
        calls = []
        async for event in handle.stream_events():
            if type(event).__name__ == "ToolCallResult":
                calls.append((event.tool_name, event.tool_kwargs, str(event.tool_output)))
        result = await handle
    finally:
        handler.detach()
    assert calls
    assert calls[0][0] == "lookup_price"
    assert calls[0][1]["plan"].lower() == "team"
    assert "29 euros" in calls[0][2]
    assert "29 euros" in str(result)
    assert handler.cost_micro == emu.ledger_total_micro() > 0
    assert handler.calls == len(emu.ledger) >= 2
