"""Soft landing: past the wind-down threshold, a LangChain v1 agent ends with an answer, not a tool call.

The scripted agent is greedy: an outer middleware asks for ``tool_choice="required"`` on every
call, and the emulator calls a tool whenever tools are offered and not switched off, so without
the wind-down it would call tools until the budget or the recursion limit stops it. Every
request is captured on the wire (an httpx request hook), so the tests assert what the server
received, not what the middleware meant to send. Checkpoint-and-resume after a reset runs on
langgraph's ``InMemorySaver`` with a second agent standing in for a restarted process.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from langchain.agents import create_agent
from langchain.agents.middleware.types import AgentMiddleware, ModelRequest, ModelResponse
from langchain.agents.structured_output import ToolStrategy
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from langchain_nebo import ChatNebo
from langchain_nebo.middleware import WIND_DOWN_MESSAGE, NeboBudgetMiddleware
from nebo_core import BudgetTracker, NeboBudgetExhausted
from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.errors import NeboConfigurationError
from nebo_core.policy import BudgetPolicy
from nebo_emulator import NeboEmulator

LIMIT = 10_000_000  # the emulator's default session limit
PAST = 400_000  # session micro left: 96% used, past wind_down_at=0.9
RUNS = 20
CITIES = [
    "Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Lisbon", "Dublin", "Oslo",
    "Athens", "Warsaw", "Zurich", "Brussels", "Helsinki", "Budapest", "Sofia", "Riga", "Tallinn", "Vilnius",
]  # fmt: skip


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"It is sunny in {city}."


class Greedy(AgentMiddleware[Any, Any, Any]):
    """The scripted agent: it demands a tool call on every model call."""

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResponse[Any]:
        return handler(request.override(tool_choice="required"))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any]:
        return await handler(request.override(tool_choice="required"))


@pytest.fixture
def emu() -> Iterator[NeboEmulator]:
    with NeboEmulator() as e:
        yield e


Wire = tuple[list[dict[str, Any]], httpx.Client]


def capture(sent: list[dict[str, Any]]) -> Callable[[httpx.Request], None]:
    def hook(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            sent.append(json.loads(request.content))

    return hook


@pytest.fixture
def wire() -> Iterator[Wire]:
    """Chat request bodies as sent, and a client that captures them (ours to close)."""
    sent: list[dict[str, Any]] = []
    with httpx.Client(event_hooks={"request": [capture(sent)]}) as client:
        yield sent, client


def make_model(
    emu: NeboEmulator,
    tracker: BudgetTracker,
    policy: BudgetPolicy,
    wire: Wire,
    aclient: httpx.AsyncClient | None = None,
) -> ChatNebo:
    return ChatNebo(
        model="gpt-5-nano",
        api_key=emu.token,
        base_url=emu.base_url,
        tracker=tracker,
        policy=policy,
        http_client=wire[1],
        http_async_client=aclient,
    )


def ask(city: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(f"What is the weather in {city}? Use get_weather.")]}


def landed(result: dict[str, Any]) -> bool:
    """A final AI answer with text and no tool call anywhere in the run."""
    messages = result["messages"]
    last = messages[-1]
    return (
        isinstance(last, AIMessage)
        and not last.tool_calls
        and bool(str(last.content).strip())
        and not any(isinstance(m, ToolMessage) for m in messages)
        and not any(isinstance(m, AIMessage) and m.tool_calls for m in messages)
    )


def wound_down_on_the_wire(body: dict[str, Any], message: str = WIND_DOWN_MESSAGE) -> bool:
    last = body["messages"][-1]
    return body.get("tool_choice") == "none" and last == {"role": "system", "content": message}


# -- the done-when: at least 19 of 20 runs past the threshold land softly -------------------------


def test_past_the_threshold_a_greedy_agent_lands_softly_in_20_of_20_runs(
    emu: NeboEmulator, wire: Wire
) -> None:
    sent = wire[0]
    tracker, policy = BudgetTracker(), BudgetPolicy()
    model = make_model(emu, tracker, policy, wire)
    mw = NeboBudgetMiddleware(policy, tracker=tracker, wind_down_at=0.9)
    agent = create_agent(model, tools=[get_weather], middleware=[Greedy(), mw])
    emu.set_budget(session_remaining_micro=PAST)
    model.invoke("Hello.")  # the tracker learns the budget from a response, as any process does
    ok = 0
    for city in CITIES[:RUNS]:
        start, charged = len(sent), len(emu.ledger)
        result = agent.invoke(ask(city))
        run = sent[start:]
        if (
            landed(result)
            and len(run) == 1
            and wound_down_on_the_wire(run[0])
            and [t["function"]["name"] for t in run[0]["tools"]] == ["get_weather"]  # still bound
            and result["nebo_wind_down"].startswith("the session window is 9")
            and len(emu.ledger) == charged + 1
        ):
            ok += 1
    print(f"soft landing past the threshold: {ok} of {RUNS} runs")
    assert ok >= 19
    assert ok == RUNS  # the emulator is deterministic: anything less is a regression
    assert tracker.snapshot is not None
    assert tracker.snapshot.session.remaining_micro is not None
    assert tracker.snapshot.session.remaining_micro > 0  # landed well before the wall


def test_control_below_the_threshold_the_agent_calls_tools_then_lands_when_it_crosses(
    emu: NeboEmulator, wire: Wire
) -> None:
    """Below the threshold nothing changes; a tool that spends (as in a real run) crosses it, and
    the first call whose tracker has seen the crossing is wound down."""
    sent = wire[0]
    tracker, policy = BudgetTracker(), BudgetPolicy()
    calls: list[str] = []

    @tool
    def get_weather(city: str) -> str:  # noqa: F811 - the same tool, spending as it runs
        """The weather in a city."""
        calls.append(city)
        emu.set_budget(session_remaining_micro=PAST)
        return f"It is sunny in {city}."

    mw = NeboBudgetMiddleware(policy, tracker=tracker, wind_down_at=0.9)
    agent = create_agent(
        make_model(emu, tracker, policy, wire), tools=[get_weather], middleware=[Greedy(), mw]
    )
    result = agent.invoke(ask("Paris"))
    # Call 1 below the threshold; the tool drains the window, but the tracker learns that only
    # from call 2's response (it rests on what the server reported): call 3 is wound down.
    assert [b.get("tool_choice") for b in sent] == ["required", "required", "none"]
    assert not any(m["role"] == "system" for b in sent[:2] for m in b["messages"])
    assert wound_down_on_the_wire(sent[2])
    assert calls == ["Paris", "Paris"]
    last = result["messages"][-1]
    assert isinstance(last, AIMessage)
    assert not last.tool_calls
    assert last.content
    assert result["nebo_wind_down"].startswith("the session window")
    # The wrap-up note was for that call only: it is not in the thread's messages.
    assert not any(isinstance(m, SystemMessage) for m in result["messages"])
    assert result["nebo_spend_micro"] == emu.ledger_total_micro()


def test_control_without_the_wind_down_the_greedy_agent_never_answers(emu: NeboEmulator, wire: Wire) -> None:
    from langgraph.errors import GraphRecursionError

    sent = wire[0]
    tracker, policy = BudgetTracker(), BudgetPolicy()
    model = make_model(emu, tracker, policy, wire)
    emu.set_budget(session_remaining_micro=PAST)
    model.invoke("Hello.")
    agent = create_agent(model, tools=[get_weather], middleware=[Greedy()])
    with pytest.raises(GraphRecursionError):
        agent.invoke(ask("Paris"), {"recursion_limit": 8})
    assert [b.get("tool_choice") for b in sent[1:]] == ["required"] * 4


def test_without_a_threshold_the_request_is_untouched(emu: NeboEmulator, wire: Wire) -> None:
    sent = wire[0]
    tracker, policy = BudgetTracker(), BudgetPolicy()
    model = make_model(emu, tracker, policy, wire)
    emu.set_budget(session_remaining_micro=PAST)
    model.invoke("Hello.")
    mw = NeboBudgetMiddleware(policy, tracker=tracker)
    result = create_agent(model, tools=[get_weather], middleware=[mw]).invoke(ask("Paris"))
    assert any(isinstance(m, ToolMessage) for m in result["messages"])
    assert "tool_choice" not in sent[1]
    assert sent[1]["tools"]
    assert "nebo_wind_down" not in result


def test_wind_down_tools_remove_sends_no_tools(emu: NeboEmulator, wire: Wire) -> None:
    sent = wire[0]
    tracker, policy = BudgetTracker(), BudgetPolicy()
    model = make_model(emu, tracker, policy, wire)
    emu.set_budget(session_remaining_micro=PAST)
    model.invoke("Hello.")
    mw = NeboBudgetMiddleware(
        policy, tracker=tracker, wind_down_at=0.9, wind_down_tools="remove", wind_down_message="Wrap up now."
    )
    result = create_agent(model, tools=[get_weather], middleware=[mw]).invoke(ask("Paris"))
    assert landed(result)
    assert "tools" not in sent[-1]
    assert "tool_choice" not in sent[-1]
    assert sent[-1]["messages"][-1] == {"role": "system", "content": "Wrap up now."}


def test_the_floor_of_microdollars_left_triggers_too(emu: NeboEmulator, wire: Wire) -> None:
    sent = wire[0]
    tracker, policy = BudgetTracker(), BudgetPolicy()
    model = make_model(emu, tracker, policy, wire)
    emu.set_budget(session_remaining_micro=2 * PAST)  # 92% used: under a 0.95 fraction, under the floor
    model.invoke("Hello.")
    mw = NeboBudgetMiddleware(policy, tracker=tracker, wind_down_at=0.95, wind_down_below_micro=1_000_000)
    result = create_agent(model, tools=[get_weather], middleware=[Greedy(), mw]).invoke(ask("Paris"))
    assert landed(result)
    assert wound_down_on_the_wire(sent[-1])
    assert "wind_down_below_micro=1000000" in result["nebo_wind_down"]


async def test_async_agent_lands_softly_with_the_same_wire(emu: NeboEmulator, wire: Wire) -> None:
    sent = wire[0]
    hook = capture(sent)

    async def ahook(request: httpx.Request) -> None:
        hook(request)

    tracker, policy = BudgetTracker(), BudgetPolicy()
    async with httpx.AsyncClient(event_hooks={"request": [ahook]}) as aclient:
        model = make_model(emu, tracker, policy, wire, aclient)
        emu.set_budget(session_remaining_micro=PAST)
        await model.ainvoke("Hello.")
        mw = NeboBudgetMiddleware(policy, tracker=tracker, wind_down_at=0.9)
        agent = create_agent(model, tools=[get_weather], middleware=[Greedy(), mw])
        result = await agent.ainvoke(ask("Paris"))
    assert landed(result)
    assert len(sent) == 2
    assert wound_down_on_the_wire(sent[1])
    sync = agent.invoke(ask("Paris"))
    assert sent[2] == sent[1]  # sync and async send the same body
    assert sync["messages"][-1].content == result["messages"][-1].content


# -- checkpoint at exhaustion, resume after the reset ----------------------------------------------


def test_a_checkpointed_run_resumes_after_the_reset(emu: NeboEmulator) -> None:
    """``on_exhausted="wait"`` with a reset further away than ``max_wait``: the run raises at the
    wall, its checkpoint keeps the tool results, and after the reset a new process resumes the
    thread with ``invoke(None, config)``: the tool does not run again."""
    saver = InMemorySaver()
    config: Any = {"configurable": {"thread_id": "report-42"}}
    calls: list[str] = []

    @tool
    def get_weather(city: str) -> str:  # noqa: F811 - the same tool, spending the rest of the window
        """The weather in a city."""
        calls.append(city)
        emu.set_budget(session_remaining_micro=0)
        return f"It is sunny in {city}."

    def agent() -> Any:  # one "process": its own tracker, policy, model and middleware
        tracker, policy = BudgetTracker(), BudgetPolicy(on_exhausted="wait", max_wait=60)
        model = ChatNebo(
            model="gpt-5-nano", api_key=emu.token, base_url=emu.base_url, tracker=tracker, policy=policy
        )
        mw = NeboBudgetMiddleware(policy, tracker=tracker, exit_behavior="raise", wind_down_at=0.9)
        return create_agent(model, tools=[get_weather], middleware=[mw], checkpointer=saver)

    with pytest.raises(NeboBudgetExhausted) as info:
        agent().invoke(ask("Paris"), config)
    assert info.value.window == "session"
    assert info.value.reset_at is not None
    state = agent().get_state(config)
    assert state.next  # the run stopped before its model call: resumable
    assert isinstance(state.values["messages"][-1], ToolMessage)

    emu.clock.advance(5 * 3600 + 1)  # the session window resets
    result = agent().invoke(None, config)
    last = result["messages"][-1]
    assert isinstance(last, AIMessage)
    assert not last.tool_calls
    assert "sunny" in str(last.content)
    assert calls == ["Paris"]  # resumed, not rerun
    assert len(emu.ledger) == 2  # the refused call was never billed
    assert result["nebo_spend_micro"] == emu.ledger_total_micro()


# -- the threshold's own logic, with the hooks called directly ------------------------------------

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def request(tools: list[Any] | None = None, **overrides: Any) -> ModelRequest[Any]:
    model = GenericFakeChatModel(messages=iter([]))
    return ModelRequest(
        model=model,
        messages=[HumanMessage("Hi")],
        tools=[get_weather] if tools is None else tools,
        state={"messages": []},
        runtime=None,
        **overrides,
    )


def sent_by(mw: NeboBudgetMiddleware, req: ModelRequest[Any]) -> ModelRequest[Any]:
    seen: list[ModelRequest[Any]] = []

    def handler(r: ModelRequest[Any]) -> ModelResponse[Any]:
        seen.append(r)
        return ModelResponse([AIMessage("ok")])

    mw.wrap_model_call(req, handler)
    return seen[0]


def burning(tracker: BudgetTracker, remaining: int, rate: int, reset_in: float) -> None:
    """Four readings 10 s apart ending at NOW, spending ``rate`` micro a second."""
    for k in range(4):
        at = NOW - timedelta(seconds=30 - 10 * k)
        left = remaining + rate * (30 - 10 * k)
        window = WindowState("session", LIMIT, left, NOW + timedelta(seconds=reset_in))
        tracker.observe(BudgetSnapshot(session=window, observed_at=at))


@pytest.mark.parametrize(("within_s", "lands"), [(600.0, True), (300.0, False)])
def test_the_forecast_threshold(within_s: float, lands: bool) -> None:
    tracker = BudgetTracker()
    burning(tracker, remaining=5_000_000, rate=10_000, reset_in=3600)  # 500 s left, reset in an hour
    mw = NeboBudgetMiddleware(
        BudgetPolicy(), tracker=tracker, wind_down_at=0.9, wind_down_within_s=within_s, clock=lambda: NOW
    )
    out = sent_by(mw, request())
    assert (out.tool_choice == "none") is lands
    assert isinstance(out.messages[-1], SystemMessage) is lands


def test_a_fast_burn_that_lasts_until_the_reset_does_not_wind_down() -> None:
    tracker = BudgetTracker()
    burning(tracker, remaining=5_000_000, rate=10_000, reset_in=300)  # runs out in 500 s, resets in 300
    mw = NeboBudgetMiddleware(BudgetPolicy(), tracker=tracker, wind_down_within_s=600, clock=lambda: NOW)
    assert sent_by(mw, request()).tool_choice is None


def test_a_window_that_reset_since_the_snapshot_does_not_count() -> None:
    tracker = BudgetTracker()
    window = WindowState("session", LIMIT, PAST, NOW - timedelta(seconds=1))  # 96% used, reset a second ago
    tracker.observe(BudgetSnapshot(session=window, observed_at=NOW - timedelta(minutes=5)))
    mw = NeboBudgetMiddleware(BudgetPolicy(), tracker=tracker, wind_down_at=0.9, clock=lambda: NOW)
    assert sent_by(mw, request()).tool_choice is None
    later = NeboBudgetMiddleware(
        BudgetPolicy(), tracker=tracker, wind_down_at=0.9, clock=lambda: NOW - timedelta(seconds=2)
    )
    assert sent_by(later, request()).tool_choice == "none"


def test_structured_output_removes_the_tools_instead() -> None:
    class Answer(BaseModel):
        text: str

    tracker = BudgetTracker()
    window = WindowState("session", LIMIT, PAST, NOW + timedelta(hours=1))
    tracker.observe(BudgetSnapshot(session=window, observed_at=NOW))
    mw = NeboBudgetMiddleware(BudgetPolicy(), tracker=tracker, wind_down_at=0.9, clock=lambda: NOW)
    out = sent_by(mw, request(response_format=ToolStrategy(Answer)))
    assert out.tools == []  # the factory adds the Answer tool, and forces it
    assert out.tool_choice is None
    assert sent_by(mw, request(tools=[])).messages[-1] == SystemMessage(WIND_DOWN_MESSAGE)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"wind_down_at": 0}, "wind_down_at"),
        ({"wind_down_at": 1.5}, "wind_down_at"),
        ({"wind_down_at": -0.1}, "wind_down_at"),
        ({"wind_down_at": float("nan")}, "wind_down_at"),
        ({"wind_down_at": float("inf")}, "wind_down_at"),
        ({"wind_down_at": True}, "wind_down_at"),
        ({"wind_down_at": "0.9"}, "wind_down_at"),
        ({"wind_down_within_s": 0}, "wind_down_within_s"),
        ({"wind_down_within_s": -5}, "wind_down_within_s"),
        ({"wind_down_within_s": float("nan")}, "wind_down_within_s"),
        ({"wind_down_within_s": float("inf")}, "wind_down_within_s"),
        ({"wind_down_below_micro": 0}, "wind_down_below_micro"),
        ({"wind_down_below_micro": -1}, "wind_down_below_micro"),
        ({"wind_down_below_micro": 1.5}, "wind_down_below_micro"),
        ({"wind_down_below_micro": True}, "wind_down_below_micro"),
        ({"wind_down_at": 0.9, "wind_down_message": ""}, "wind_down_message"),
        ({"wind_down_at": 0.9, "wind_down_message": "   "}, "wind_down_message"),
        ({"wind_down_at": 0.9, "wind_down_message": 5}, "wind_down_message"),
        ({"wind_down_at": 0.9, "wind_down_tools": "off"}, "wind_down_tools"),
        ({"wind_down_message": "Wrap up."}, "wind_down_message"),
        ({"wind_down_tools": "remove"}, "wind_down_tools"),
    ],
)
def test_bad_thresholds_are_refused_by_name(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(NeboConfigurationError, match=named):
        NeboBudgetMiddleware(BudgetPolicy(), **kwargs)


def test_the_threshold_fraction_one_is_allowed() -> None:
    mw = NeboBudgetMiddleware(BudgetPolicy(), wind_down_at=1, wind_down_below_micro=10)
    assert mw.wind_down is not None
    assert mw.wind_down.at == 1.0
