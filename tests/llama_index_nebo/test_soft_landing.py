"""Soft landing for LlamaIndex: past the threshold, ``NeboFunctionAgent`` ends with an answer, no tool call.

Every chat request is captured on the wire (an httpx request hook on the ``Nebo`` LLM's async
client), so the tests assert what the emulator received: no tools, and the wrap-up note last.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms import MockLLM
from llama_index.core.tools import FunctionTool

from llama_index_nebo import Nebo, NeboFunctionAgent
from llama_index_nebo._landing import WIND_DOWN_KEY, WIND_DOWN_MESSAGE
from nebo_core import BudgetTracker
from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.errors import NeboConfigurationError
from nebo_core.policy import BudgetPolicy
from nebo_emulator import NeboEmulator

# llama-index's workflows package inspects agents through deprecated pydantic attributes.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]

LIMIT = 10_000_000  # the emulator's default session limit
PAST = 400_000  # session micro left: 96% used, past wind_down_at=0.9
RUNS = 20
CITIES = [
    "Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Lisbon", "Dublin", "Oslo",
    "Athens", "Warsaw", "Zurich", "Brussels", "Helsinki", "Budapest", "Sofia", "Riga", "Tallinn", "Vilnius",
]  # fmt: skip
NOTE = {"role": "system", "content": WIND_DOWN_MESSAGE}


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"It is sunny in {city}."


class Setup:
    """An emulator, a ``Nebo`` LLM on it whose chat requests are captured, and its tracker."""

    def __init__(self, emu: NeboEmulator, client: httpx.AsyncClient, sent: list[dict[str, Any]]) -> None:
        self.emu, self.sent, self.tracker = emu, sent, BudgetTracker()
        self.llm = Nebo(
            model="gpt-5-nano",
            api_key=emu.token,
            base_url=emu.base_url,
            tracker=self.tracker,
            policy=BudgetPolicy(),
            async_http_client=client,
        )

    def agent(self, tools: list[Any] | None = None, **kwargs: Any) -> NeboFunctionAgent:
        tools = tools if tools is not None else [FunctionTool.from_defaults(get_weather)]
        return NeboFunctionAgent(tools=tools, llm=self.llm, **kwargs)

    async def prime(self, remaining: int = PAST) -> None:
        """Put the window at ``remaining`` and let the tracker see it in a response."""
        self.emu.set_budget(session_remaining_micro=remaining)
        await self.llm.achat([ChatMessage(role="user", content="Hello.")])


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    sent: list[dict[str, Any]] = []

    async def hook(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            sent.append(json.loads(request.content))

    with NeboEmulator() as emu:
        async with httpx.AsyncClient(event_hooks={"request": [hook]}) as client:
            yield Setup(emu, client, sent)


async def run(agent: FunctionAgent, city: str) -> tuple[AgentOutput, Any]:
    handler = agent.run(f"What is the weather in {city}? Use get_weather.")
    output = await handler
    return output, handler.ctx


def landed(output: AgentOutput) -> bool:
    return not output.tool_calls and bool(str(output.response.content or "").strip())


async def test_past_the_threshold_the_agent_lands_softly_in_20_of_20_runs(setup: Setup) -> None:
    agent = setup.agent(wind_down_at=0.9)
    await setup.prime()
    ok = 0
    for city in CITIES[:RUNS]:
        start, charged = len(setup.sent), len(setup.emu.ledger)
        output, ctx = await run(agent, city)
        wire = setup.sent[start:]
        reason = await ctx.store.get(WIND_DOWN_KEY)
        if (
            landed(output)
            and len(wire) == 1
            and "tools" not in wire[0]
            and "tool_choice" not in wire[0]
            and wire[0]["messages"][-1] == NOTE
            and reason.startswith("the session window is 9")
            and len(setup.emu.ledger) == charged + 1
        ):
            ok += 1
    print(f"LlamaIndex soft landing past the threshold: {ok} of {RUNS} runs")
    assert ok >= 19
    assert ok == RUNS  # the emulator is deterministic: anything less is a regression


async def test_control_below_the_threshold_the_agent_calls_its_tool(setup: Setup) -> None:
    calls: list[str] = []

    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        setup.emu.set_budget(session_remaining_micro=PAST)  # the run spends the window down
        return f"It is sunny in {city}."

    agent = setup.agent([FunctionTool.from_defaults(get_weather)], wind_down_at=0.9)
    output, ctx = await run(agent, "Paris")
    assert calls == ["Paris"]
    assert [bool(b.get("tools")) for b in setup.sent] == [True, True]
    assert not any(m["role"] == "system" for b in setup.sent for m in b["messages"])
    assert "sunny" in str(output.response.content)
    assert await ctx.store.get(WIND_DOWN_KEY) is None
    # The next run starts past the threshold (the second call's response showed it): it lands.
    output, ctx = await run(agent, "Rome")
    assert landed(output)
    assert calls == ["Paris"]
    assert "tools" not in setup.sent[-1]
    assert setup.sent[-1]["messages"][-1] == NOTE
    assert (await ctx.store.get(WIND_DOWN_KEY)).startswith("the session window")


async def test_without_a_threshold_nothing_changes(setup: Setup) -> None:
    await setup.prime()
    output, _ = await run(setup.agent(), "Paris")
    assert setup.sent[1]["tools"]
    assert len(setup.sent) == 3  # the tool call, then the answer
    assert "sunny" in str(output.response.content)


async def test_the_note_and_the_tool_removal_are_for_that_turn_only(setup: Setup) -> None:
    agent = setup.agent(wind_down_below_micro=1_000_000, wind_down_message="Wrap up now.")
    await setup.prime()
    handler = agent.run("What is the weather in Paris? Use get_weather.")
    await handler
    assert setup.sent[-1]["messages"][-1] == {"role": "system", "content": "Wrap up now."}
    memory = await handler.ctx.store.get("memory")
    assert not any(m.role == "system" for m in await memory.aget())


# -- the threshold's own logic ---------------------------------------------------------------------

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def burning(tracker: BudgetTracker, remaining: int, rate: int, reset_in: float) -> None:
    """Four readings 10 s apart ending at NOW, spending ``rate`` micro a second."""
    for k in range(4):
        at = NOW - timedelta(seconds=30 - 10 * k)
        window = WindowState(
            "session", LIMIT, remaining + rate * (30 - 10 * k), NOW + timedelta(seconds=reset_in)
        )
        tracker.observe(BudgetSnapshot(session=window, observed_at=at))


@pytest.mark.parametrize(
    ("within_s", "reset_in", "lands"), [(600, 3600, True), (300, 3600, False), (600, 300, False)]
)
def test_the_forecast_threshold(within_s: float, reset_in: float, lands: bool) -> None:
    tracker = BudgetTracker()
    burning(tracker, remaining=5_000_000, rate=10_000, reset_in=reset_in)  # 500 s of budget left
    agent = NeboFunctionAgent(
        tools=[get_weather], llm=MockLLM(), tracker=tracker, wind_down_within_s=within_s, clock=lambda: NOW
    )
    reason = agent.wind_down_reason()
    assert (reason is not None) is lands
    if lands:
        assert reason == (
            "the session window runs out in about 500 s at the recent burn rate, before its reset "
            "(wind_down_within_s=600)"
        )


def test_a_window_that_reset_since_the_snapshot_does_not_count() -> None:
    tracker = BudgetTracker()
    window = WindowState("session", LIMIT, PAST, NOW - timedelta(seconds=1))
    tracker.observe(BudgetSnapshot(session=window, observed_at=NOW - timedelta(minutes=5)))
    agent = NeboFunctionAgent(llm=MockLLM(), tracker=tracker, wind_down_at=0.9, clock=lambda: NOW)
    assert agent.wind_down_reason() is None


def test_another_llm_needs_the_tracker_its_calls_feed() -> None:
    with pytest.raises(NeboConfigurationError, match="tracker="):
        NeboFunctionAgent(llm=MockLLM(), wind_down_at=0.9)
    assert NeboFunctionAgent(llm=MockLLM()).wind_down_reason() is None  # no threshold: nothing to read
    with pytest.raises(NeboConfigurationError, match="tracker serve only the wind-down"):
        NeboFunctionAgent(llm=MockLLM(), tracker=BudgetTracker())
    with pytest.raises(NeboConfigurationError, match="account serve only the wind-down"):
        NeboFunctionAgent(llm=MockLLM(), account="a")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"wind_down_at": 0}, "wind_down_at"),
        ({"wind_down_at": 1.01}, "wind_down_at"),
        ({"wind_down_at": float("nan")}, "wind_down_at"),
        ({"wind_down_at": True}, "wind_down_at"),
        ({"wind_down_within_s": 0}, "wind_down_within_s"),
        ({"wind_down_within_s": float("inf")}, "wind_down_within_s"),
        ({"wind_down_below_micro": 0}, "wind_down_below_micro"),
        ({"wind_down_below_micro": 2.5}, "wind_down_below_micro"),
        ({"wind_down_at": 0.9, "wind_down_message": " "}, "wind_down_message"),
        ({"wind_down_message": "Wrap up."}, "wind_down_message"),
    ],
)
def test_bad_thresholds_are_refused_by_name(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(NeboConfigurationError, match=named):
        NeboFunctionAgent(llm=MockLLM(), tracker=BudgetTracker(), **kwargs)
