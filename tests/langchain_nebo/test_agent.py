"""A real LangChain v1 agent with two tools completes a task on the emulator; totals match the ledger."""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

from langchain_nebo import ChatNebo, NeboBudgetCallbackHandler


@tool
def get_population(city: str) -> str:
    """Return the population of a city."""
    return f"The population of {city} is 2,100,000."


@tool
def get_mayor(city: str) -> str:
    """Return the mayor of a city."""
    return f"The mayor of {city} is Jane Doe."


def test_agent_uses_tool_results_and_handler_matches_ledger(connect: dict[str, Any], emu: Any) -> None:
    start = len(emu.ledger)
    handler = NeboBudgetCallbackHandler()
    agent = create_agent(ChatNebo(model="gpt-5-mini", **connect), tools=[get_population, get_mayor])
    result = agent.invoke(
        {"messages": [("user", "What is the population of the city of Paris?")]},
        config={"callbacks": [handler]},
    )
    messages = result["messages"]
    tool_results = [m for m in messages if isinstance(m, ToolMessage)]
    assert tool_results
    assert "2,100,000" in str(tool_results[0].content)
    assert "2,100,000" in str(messages[-1].content)  # the final answer uses the tool's result
    assert handler.successful_requests >= 2
    assert handler.total_cost_micro == emu.ledger_total_micro() - sum(
        e.cost_micro for e in emu.ledger[:start]
    )
