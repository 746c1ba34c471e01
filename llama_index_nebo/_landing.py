"""``NeboFunctionAgent``: a LlamaIndex ``FunctionAgent`` that lands softly before the budget runs out.

LlamaIndex agents have no middleware; the seam is the agent's ``take_step(ctx, llm_input, tools,
memory)``, which every ``FunctionAgent`` turn goes through (alone, or inside an
``AgentWorkflow``). Past a wind-down threshold, read from the tracker's latest budget snapshot
and forecast with no network call, the turn runs with no tools (so none reach the wire and the
model must answer in text) and with a wrap-up instruction appended to its input as a system
message, for that turn only. ``FunctionAgent`` passes ``tool_choice`` only on a run's first
turn (``initial_tool_choice``), so removing the tools is the one way to switch them off here.
The thresholds are :mod:`nebo_core.landing`'s, shared with ``langchain_nebo.middleware`` (the
adapters never import each other).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.agent.workflow.agent_context import AgentContext
from llama_index.core.agent.workflow.workflow_events import AgentOutput
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.memory import BaseMemory
from llama_index.core.tools import AsyncBaseTool

from llama_index_nebo._llm import Nebo
from nebo_core.errors import NeboConfigurationError
from nebo_core.landing import WIND_DOWN_MESSAGE, WindDown
from nebo_core.tracker import BudgetTracker

WIND_DOWN_KEY = "nebo_wind_down"
"""The ``ctx.store`` key that holds why the last turn was wound down (``None``: it was not)."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class _Landing:
    """An agent's wind-down settings and where it reads the budget."""

    wind_down: WindDown
    tracker: BudgetTracker
    account: str | None
    clock: Callable[[], datetime]


class NeboFunctionAgent(FunctionAgent):
    """A ``FunctionAgent`` that ends with an answer instead of running into the Nebo budget.

    Takes what ``FunctionAgent`` takes, plus the wind-down thresholds (any one crossed triggers
    it): ``wind_down_at`` (used fraction of the tighter window, e.g. ``0.9``),
    ``wind_down_below_micro`` (microdollars left in the tighter window) and
    ``wind_down_within_s`` (the forecast says the binding window runs out before its reset,
    within this many seconds). Past it, a turn runs without tools and with
    ``wind_down_message`` appended as a system message; the reason is kept in
    ``ctx.store["nebo_wind_down"]``. The budget is read from ``tracker``, by default the
    ``Nebo`` LLM's own (for another LLM, pass the tracker that its calls feed).
    """

    _landing: _Landing | None = PrivateAttr(default=None)

    def __init__(
        self,
        *args: Any,
        wind_down_at: float | None = None,
        wind_down_within_s: float | None = None,
        wind_down_below_micro: int | None = None,
        wind_down_message: str | None = None,
        tracker: BudgetTracker | None = None,
        account: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
        **kwargs: Any,
    ) -> None:
        wind_down = WindDown.build(wind_down_at, wind_down_within_s, wind_down_below_micro, wind_down_message)
        given = [name for name, value in (("tracker", tracker), ("account", account)) if value is not None]
        if wind_down is None and given:
            raise NeboConfigurationError(
                f"{' and '.join(given)} serve only the wind-down: set wind_down_at, wind_down_within_s "
                "or wind_down_below_micro"
            )
        super().__init__(*args, **kwargs)
        if wind_down is None:
            return
        if tracker is None and isinstance(self.llm, Nebo):
            tracker = self.llm.tracker
            account = account if account is not None else self.llm._clients.account
        if tracker is None:
            raise NeboConfigurationError(
                f"the wind-down reads a Nebo budget tracker, and {type(self.llm).__name__} has none: "
                "pass tracker= (the one its calls record into)"
            )
        self._landing = _Landing(wind_down, tracker, account, clock)

    def wind_down_reason(self) -> str | None:
        """Why the next turn would be wound down now (``None``: it would not, or no threshold is set)."""
        landing = self._landing
        if landing is None:
            return None
        tracker, account, now = landing.tracker, landing.account, landing.clock()
        snapshot = tracker.snapshot if account is None else tracker.snapshot_for(account)
        forecast = tracker.forecast(account, now) if landing.wind_down.within_s is not None else None
        return landing.wind_down.reason(snapshot, forecast, now)

    async def take_step(
        self,
        ctx: AgentContext,
        llm_input: list[ChatMessage],
        tools: Sequence[AsyncBaseTool],
        memory: BaseMemory,
    ) -> AgentOutput:
        """One turn; past the threshold, with no tools and the wrap-up instruction."""
        landing, reason = self._landing, self.wind_down_reason()
        if landing is not None:
            await ctx.store.set(WIND_DOWN_KEY, reason)
        if reason is None or landing is None:
            return await super().take_step(ctx, llm_input, tools, memory)
        # FunctionAgent sends [*llm_input, *this run's tool exchanges]: the note goes after the
        # conversation so far and before the current run's tool calls, never between a call and
        # its result (which the API would refuse).
        note = ChatMessage(role=MessageRole.SYSTEM, content=landing.wind_down.message)
        return await super().take_step(ctx, [*llm_input, note], [], memory)


__all__ = ["WIND_DOWN_KEY", "WIND_DOWN_MESSAGE", "NeboFunctionAgent"]
