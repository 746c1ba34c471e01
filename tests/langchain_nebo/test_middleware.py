"""NeboBudgetMiddleware in a real LangChain v1 agent, against the emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from langchain_nebo import ChatNebo
from langchain_nebo.middleware import NeboBudgetMiddleware
from nebo_core import BudgetTracker, NeboBudgetExhausted
from nebo_core.errors import NeboConfigurationError
from nebo_core.policy import BudgetPolicy
from nebo_emulator import NeboEmulator


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"It is sunny in {city}."


@pytest.fixture
def emu() -> Iterator[NeboEmulator]:
    with NeboEmulator() as e:
        yield e


def agent(emu: NeboEmulator, policy: BudgetPolicy, tracker: BudgetTracker, **mw: Any) -> Any:
    model = ChatNebo(
        model="gpt-5-nano", api_key=emu.token, base_url=emu.base_url, policy=policy, tracker=tracker
    )
    middleware = NeboBudgetMiddleware(policy, tracker=tracker, **mw)
    return create_agent(model, tools=[get_weather], middleware=[middleware])


ASK = {"messages": [HumanMessage("What is the weather in Paris? Use get_weather.")]}


def test_agent_stops_gracefully_when_the_cap_is_reached(emu: NeboEmulator) -> None:
    tracker = BudgetTracker()
    policy = BudgetPolicy(max_spend_micro=600, estimate_micro=600)  # room for one call, not two
    result = agent(emu, policy, tracker).invoke(ASK)
    last = result["messages"][-1]
    assert isinstance(last, AIMessage)
    assert last.content.startswith("Stopped: the Nebo budget")
    assert "spending cap" in last.content
    assert result["nebo_calls"] == 1 == len(emu.ledger)
    assert result["nebo_spend_micro"] == emu.ledger_total_micro() == policy.spent_micro() > 0
    assert any(m.type == "tool" for m in result["messages"])  # the first turn ran its tool


def test_agent_runs_to_the_end_within_budget_and_records_spend(emu: NeboEmulator) -> None:
    tracker = BudgetTracker()
    policy = BudgetPolicy(max_spend_micro=1_000_000)
    result = agent(emu, policy, tracker).invoke(ASK)
    assert not result["messages"][-1].content.startswith("Stopped")
    assert result["nebo_calls"] == len(emu.ledger) >= 2
    assert result["nebo_spend_micro"] == emu.ledger_total_micro() == tracker.totals().total.cost_micro


def test_agent_raises_the_typed_error_with_exit_behavior_raise(emu: NeboEmulator) -> None:
    tracker = BudgetTracker()
    policy = BudgetPolicy(max_spend_micro=600, estimate_micro=600)
    with pytest.raises(NeboBudgetExhausted) as info:
        agent(emu, policy, tracker, exit_behavior="raise").invoke(ASK)
    assert info.value.window == "cap"
    assert not info.value.is_retryable


def test_agent_switches_to_a_fallback_model(emu: NeboEmulator) -> None:
    tracker = BudgetTracker()
    # Default estimates: gpt-5.2 21000 micro, gpt-5-nano 600; the cap only fits nano.
    policy = BudgetPolicy(max_spend_micro=5_000, on_exhausted="fallback", fallback=["gpt-5-nano"])
    model = ChatNebo(
        model="gpt-5.2", api_key=emu.token, base_url=emu.base_url, policy=policy, tracker=tracker
    )
    mw = NeboBudgetMiddleware(policy, tracker=tracker, model="gpt-5.2")
    result = create_agent(model, tools=[get_weather], middleware=[mw]).invoke(ASK)
    assert {e.model for e in emu.ledger} == {"gpt-5-nano"}
    assert result["nebo_model"] == "gpt-5-nano"
    ai = [m for m in result["messages"] if isinstance(m, AIMessage)]
    assert ai[0].response_metadata["model_name"] == "gpt-5-nano"


def test_middleware_alone_switches_the_model(emu: NeboEmulator) -> None:
    """Only the middleware holds the policy: the switched model must be the one sent."""
    tracker = BudgetTracker()
    policy = BudgetPolicy(max_spend_micro=5_000, on_exhausted="fallback", fallback=["gpt-5-nano"])
    model = ChatNebo(model="gpt-5.2", api_key=emu.token, base_url=emu.base_url, tracker=tracker)
    mw = NeboBudgetMiddleware(policy, tracker=tracker, model="gpt-5.2")
    create_agent(model, tools=[get_weather], middleware=[mw]).invoke(ASK)
    assert [e.requested_model for e in emu.ledger] == ["gpt-5-nano"] * len(emu.ledger)
    assert emu.ledger


def test_agent_waits_for_the_reset(emu: NeboEmulator) -> None:
    tracker = BudgetTracker()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        emu.clock.advance(seconds)

    policy = BudgetPolicy(on_exhausted="wait", max_wait=6 * 3600)
    emu.set_budget(session_remaining_micro=1)
    result = agent(emu, policy, tracker, sleep=sleep).invoke(ASK)
    assert len(sleeps) == 1
    assert sleeps[0] > 4 * 3600
    assert not result["messages"][-1].content.startswith("Stopped")
    assert result["nebo_spend_micro"] == emu.ledger_total_micro()


async def test_async_agent_stops_gracefully(emu: NeboEmulator) -> None:
    tracker = BudgetTracker()
    policy = BudgetPolicy(max_spend_micro=600, estimate_micro=600)
    result = await agent(emu, policy, tracker).ainvoke(ASK)
    assert result["messages"][-1].content.startswith("Stopped: the Nebo budget")
    assert result["nebo_spend_micro"] == emu.ledger_total_micro()


def test_bad_exit_behavior_is_refused() -> None:
    with pytest.raises(NeboConfigurationError, match="'end' or 'raise'"):
        NeboBudgetMiddleware(BudgetPolicy(), exit_behavior="error")  # type: ignore[arg-type]


def test_readme_middleware_example_runs(
    emu: NeboEmulator,
    run_example: Callable[..., tuple[dict[str, Any], str]],
) -> None:
    spent = run_example("budget-middleware", emu)[1].split()[0]
    assert int(spent) == emu.ledger_total_micro() > 0


def test_middleware_checks_its_own_accounts_budget(emu: NeboEmulator) -> None:
    from datetime import datetime, timedelta, timezone

    from nebo_core.budget import BudgetSnapshot, WindowState

    tracker = BudgetTracker()
    policy = BudgetPolicy()
    model = ChatNebo(api_key=emu.token, base_url=emu.base_url, tracker=tracker, policy=policy)
    reset = datetime.now(timezone.utc) + timedelta(hours=1)
    empty = WindowState("session", 100, 0, reset)
    mw = NeboBudgetMiddleware(policy, tracker=tracker, account=model.account)
    tracker.observe(BudgetSnapshot(session=empty, account="someone-else"))
    result = create_agent(model, tools=[], middleware=[mw]).invoke(ASK)
    assert not result["messages"][-1].content.startswith("Stopped")  # another key's empty window
    policy.store.publish(BudgetSnapshot(session=empty, account=model.account))
    result = create_agent(model, tools=[], middleware=[mw]).invoke(ASK)
    assert result["messages"][-1].content.startswith("Stopped")  # its own, published by another worker
