"""One BudgetPolicy governs a LlamaIndex FunctionAgent: the run stops with a typed error at the cap."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.tools import FunctionTool

from llama_index_nebo import Nebo
from nebo_core import BudgetTracker, NeboBudgetExhausted
from nebo_core.policy import BudgetPolicy
from nebo_emulator import NeboEmulator

# llama-index's workflows package inspects agents through deprecated pydantic attributes.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"It is sunny in {city}."


@pytest.fixture
def emu() -> Iterator[NeboEmulator]:
    with NeboEmulator() as e:
        yield e


def make_agent(emu: NeboEmulator, policy: BudgetPolicy, tracker: BudgetTracker) -> FunctionAgent:
    llm = Nebo(model="gpt-5-nano", api_key=emu.token, base_url=emu.base_url, policy=policy, tracker=tracker)
    return FunctionAgent(tools=[FunctionTool.from_defaults(get_weather)], llm=llm)


async def test_function_agent_stops_with_a_typed_error_at_the_cap(emu: NeboEmulator) -> None:
    tracker = BudgetTracker()
    policy = BudgetPolicy(max_spend_micro=600, estimate_micro=600, scope="agent-run")  # one call fits
    with pytest.raises(NeboBudgetExhausted) as info:
        await make_agent(emu, policy, tracker).run("What is the weather in Paris? Use get_weather.")
    err = info.value
    assert (err.window, err.scope, err.is_retryable) == ("cap", "agent-run", False)
    assert "spending cap" in str(err)
    assert "max_spend_micro" in str(err)
    assert len(emu.ledger) == 1  # the first turn ran; the second was refused before sending
    assert policy.spent_micro("agent-run") == emu.ledger_total_micro() == tracker.totals().total.cost_micro


async def test_function_agent_finishes_within_budget(emu: NeboEmulator) -> None:
    tracker = BudgetTracker()
    policy = BudgetPolicy(max_spend_micro=1_000_000)
    answer = await make_agent(emu, policy, tracker).run("What is the weather in Paris? Use get_weather.")
    assert "sunny" in str(answer)
    assert policy.spent_micro() == emu.ledger_total_micro()
    assert len(emu.ledger) >= 2
