"""``NeboBudgetMiddleware``: a LangChain v1 agent that acts on Nebo budgets before each model call.

Before each model call it asks the :class:`~nebo_core.policy.BudgetPolicy` (without holding
a reservation; the model reserves for itself) and carries out the decision: go, wait for a
reset (``time.sleep`` or ``asyncio.sleep``, so an async run can be cancelled), switch to a
fallback model (``request.override(model=...)``), or stop: end the run gracefully with an
AI message (``jump_to: "end"``) or raise the non-retryable budget error. After each call it
adds the call's exact cost to the agent state (``nebo_spend_micro``, ``nebo_calls``).

Soft landing: past a wind-down threshold (a used fraction of the tighter window, a floor of
microdollars left, or a forecast of exhaustion within N seconds, all read from the tracker
with no network call), the next model call gets a short wrap-up instruction appended for that
call only and its tools disabled (``tool_choice="none"``, or removed), so the agent ends with
an answer instead of running into the wall. The thresholds are :mod:`nebo_core.landing`'s,
shared with the LlamaIndex adapter. See ``docs/agents.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    hook_config,
)
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langgraph.runtime import Runtime
from langgraph.types import Command
from typing_extensions import NotRequired

from nebo_core.errors import NeboBudgetExhausted, NeboConfigurationError
from nebo_core.landing import WIND_DOWN_MESSAGE, WindDown
from nebo_core.policy import BudgetPolicy, CallPlan, Decision, Refuse, Wait, default_policy
from nebo_core.tracker import BudgetTracker, default_tracker

ExitBehavior = Literal["end", "raise"]
ToolsOff = Literal["none", "remove"]
"""How a wound-down call disables tools: ``"none"`` sends ``tool_choice="none"`` with the tools
still bound (the prompt prefix, and so the provider's prompt cache, stays the same);
``"remove"`` sends no tools at all."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class _WindDown(WindDown):
    """The shared wind-down thresholds (:class:`~nebo_core.landing.WindDown`), plus how a
    wound-down call disables tools."""

    tools: ToolsOff = "none"

    @classmethod
    def settings(
        cls,
        at: float | None,
        within_s: float | None,
        below_micro: int | None,
        message: str | None,
        tools: ToolsOff | None,
    ) -> _WindDown | None:
        """The settings, or ``None`` when no threshold is set; each bad value raises naming its
        keyword (``wind_down_tools`` first, then the shared thresholds and the message)."""
        if tools is not None and tools not in ("none", "remove"):
            raise NeboConfigurationError(f"wind_down_tools must be 'none' or 'remove'; got {tools!r}")
        shared = WindDown.build(at, within_s, below_micro, message, also={"wind_down_tools": tools})
        if shared is None:
            return None
        return cls(
            shared.at,
            shared.within_s,
            shared.below_micro,
            shared.message,
            tools if tools is not None else "none",
        )


class NeboBudgetState(AgentState[Any]):
    """Agent state with what this thread's model calls cost on Nebo."""

    nebo_spend_micro: NotRequired[int]
    nebo_calls: NotRequired[int]
    nebo_model: NotRequired[str | None]
    """The fallback model chosen for the next call (``None``: the agent's own)."""
    nebo_wind_down: NotRequired[str | None]
    """Why the last model call was wound down (wrap-up instruction, tools off); ``None``: it was not."""


def _model_name(model: Any) -> str | None:
    name = getattr(model, "model_name", None)
    return name if isinstance(name, str) else None


def _cost(messages: list[BaseMessage]) -> int:
    total = 0
    for message in messages:
        nebo = message.response_metadata.get("nebo") if isinstance(message, AIMessage) else None
        cost = nebo.get("cost_micro") if isinstance(nebo, dict) else None
        total += cost if isinstance(cost, int) else 0
    return total


class NeboBudgetMiddleware(AgentMiddleware[NeboBudgetState, Any, Any]):
    """Applies a Nebo budget policy before every model call of an agent.

    Give it the same ``policy`` (and ``tracker``) as the ``ChatNebo`` the agent runs, so the
    check here and the reservation in the model use one store. ``exit_behavior="end"`` stops
    the run with an AI message saying why; ``"raise"`` raises :class:`NeboBudgetExhausted`.

    Soft landing (off unless a threshold is set; any threshold crossed triggers it):
    ``wind_down_at`` (used fraction of the tighter window, e.g. ``0.9``), ``wind_down_below_micro``
    (microdollars left in the tighter window) and ``wind_down_within_s`` (the tracker's forecast
    says the binding window runs out before its reset, within this many seconds). Past it, the
    model call gets ``wind_down_message`` appended as a system message (for that call only) and
    its tools disabled as ``wind_down_tools`` says; the reason lands in ``nebo_wind_down``. Put
    this middleware last in the list (innermost), so no other middleware turns the tools back on.
    """

    state_schema = NeboBudgetState

    def __init__(
        self,
        policy: BudgetPolicy | None = None,
        *,
        tracker: BudgetTracker | None = None,
        exit_behavior: ExitBehavior = "end",
        model: str = "auto",
        scope: str | None = None,
        account: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wind_down_at: float | None = None,
        wind_down_within_s: float | None = None,
        wind_down_below_micro: int | None = None,
        wind_down_message: str | None = None,
        wind_down_tools: ToolsOff | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__()
        if exit_behavior not in ("end", "raise"):
            raise NeboConfigurationError(f"exit_behavior must be 'end' or 'raise'; got {exit_behavior!r}")
        self.wind_down = _WindDown.settings(
            wind_down_at, wind_down_within_s, wind_down_below_micro, wind_down_message, wind_down_tools
        )
        """The soft-landing settings (``None``: off)."""
        self._clock = clock
        self.policy = policy if policy is not None else default_policy()
        self.tracker = tracker if tracker is not None else default_tracker()
        self.exit_behavior: ExitBehavior = exit_behavior
        self.model = model
        """The model name assumed before the first call shows the agent's own."""
        self.scope = scope
        self.account = account
        """Whose Nebo budget to check (``ChatNebo.account``); learnt from the agent's model on its
        first call when not given (until then, the freshest snapshot of any account)."""
        self._sleep = sleep
        self._asleep = asleep

    # -- pure steps -----------------------------------------------------------------------

    def _plan(self, state: NeboBudgetState, step: int) -> CallPlan:
        return CallPlan("chat", self.model, self.scope, step, account=self.account)

    def _outcome(self, state: NeboBudgetState, decision: Decision) -> dict[str, Any] | None:
        if isinstance(decision, Refuse):
            if self.exit_behavior == "raise":
                raise decision.error
            text = f"Stopped: the Nebo budget does not allow another model call. {decision.error.message}"
            return {"jump_to": "end", "messages": [AIMessage(content=text)]}
        switched = decision.model if decision.model != self.model else None
        return {"nebo_model": switched} if switched != state.get("nebo_model") else None

    def _request(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        current = _model_name(request.model)
        if current is not None and self.model == "auto":
            self.model = current
        account = getattr(request.model, "account", None)
        if self.account is None and isinstance(account, str):
            self.account = account
        chosen = request.state.get("nebo_model")
        if chosen and current is not None and chosen != current:
            return request.override(model=request.model.model_copy(update={"model_name": chosen}))
        return request

    def _land(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any], str | None]:
        """The request as sent: wound down (wrap-up note appended, tools off) past the threshold."""
        if self.wind_down is None:
            return request, None
        snapshot = self.tracker.snapshot if self.account is None else self.tracker.snapshot_for(self.account)
        now = self._clock()
        wants_forecast = self.wind_down.within_s is not None
        forecast = self.tracker.forecast(self.account, now) if wants_forecast else None
        reason = self.wind_down.reason(snapshot, forecast, now)
        if reason is None:
            return request, None
        messages = [*request.messages, SystemMessage(content=self.wind_down.message)]
        # The agent factory ignores tool_choice for structured output (it forces "any" for a
        # ToolStrategy and drops it for a ProviderStrategy): there, only removing the tools works.
        if self.wind_down.tools == "remove" or request.response_format is not None:
            return request.override(messages=messages, tools=[], tool_choice=None), reason
        if not request.tools:
            return request.override(messages=messages), reason
        return request.override(messages=messages, tool_choice="none"), reason

    def _record(
        self, request: ModelRequest[Any], response: ModelResponse[Any], wound_down: str | None = None
    ) -> ExtendedModelResponse[Any]:
        spent, calls = request.state.get("nebo_spend_micro"), request.state.get("nebo_calls")
        update: dict[str, Any] = {
            "nebo_spend_micro": (spent if isinstance(spent, int) else 0) + _cost(response.result),
            "nebo_calls": (calls if isinstance(calls, int) else 0) + 1,
        }
        if self.wind_down is not None:
            update["nebo_wind_down"] = wound_down
        return ExtendedModelResponse(response, Command(update=update))

    def _stopped(self, err: NeboBudgetExhausted) -> ModelResponse[Any]:
        text = f"Stopped: the Nebo budget does not allow another model call. {err.message}"
        return ModelResponse([AIMessage(content=text)])

    # -- hooks ----------------------------------------------------------------------------

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: NeboBudgetState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Ask the policy; wait, switch model, end the run or raise."""
        step = 0
        decision = self.policy.check(self._plan(state, step), self.tracker)
        while isinstance(decision, Wait):  # past max_steps the policy refuses: the loop ends
            self._sleep(decision.seconds)
            self.policy.slept(decision)
            step += 1
            decision = self.policy.check(self._plan(state, step), self.tracker)
        return self._outcome(state, decision)

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: NeboBudgetState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """The async twin of :meth:`before_model` (waits with ``asyncio.sleep``: cancellable)."""
        step = 0
        decision = await self.policy.acheck(self._plan(state, step), self.tracker)
        while isinstance(decision, Wait):  # past max_steps the policy refuses: the loop ends
            await self._asleep(decision.seconds)
            self.policy.slept(decision)
            step += 1
            decision = await self.policy.acheck(self._plan(state, step), self.tracker)
        return self._outcome(state, decision)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Call the (possibly switched, possibly wound-down) model and record its cost in the state."""
        sent, reason = self._land(self._request(request))
        try:
            return self._record(request, handler(sent), reason)
        except NeboBudgetExhausted as err:  # the model's own reservation lost a race
            if self.exit_behavior == "raise":
                raise
            return self._stopped(err)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """The async twin of :meth:`wrap_model_call`."""
        sent, reason = self._land(self._request(request))
        try:
            return self._record(request, await handler(sent), reason)
        except NeboBudgetExhausted as err:
            if self.exit_behavior == "raise":
                raise
            return self._stopped(err)


__all__ = ["WIND_DOWN_MESSAGE", "NeboBudgetMiddleware", "NeboBudgetState", "ToolsOff"]
