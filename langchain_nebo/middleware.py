"""``NeboBudgetMiddleware``: a LangChain v1 agent that acts on Nebo budgets before each model call.

Before each model call it asks the :class:`~nebo_core.policy.BudgetPolicy` (without holding
a reservation; the model reserves for itself) and carries out the decision: go, wait for a
reset (``time.sleep`` or ``asyncio.sleep``, so an async run can be cancelled), switch to a
fallback model (``request.override(model=...)``), or stop: end the run gracefully with an
AI message (``jump_to: "end"``) or raise the non-retryable budget error. After each call it
adds the call's exact cost to the agent state (``nebo_spend_micro``, ``nebo_calls``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    hook_config,
)
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.runtime import Runtime
from langgraph.types import Command
from typing_extensions import NotRequired

from nebo_core.errors import NeboBudgetExhausted, NeboConfigurationError
from nebo_core.policy import BudgetPolicy, CallPlan, Decision, Refuse, Wait, default_policy
from nebo_core.tracker import BudgetTracker, default_tracker

ExitBehavior = Literal["end", "raise"]


class NeboBudgetState(AgentState[Any]):
    """Agent state with what this thread's model calls cost on Nebo."""

    nebo_spend_micro: NotRequired[int]
    nebo_calls: NotRequired[int]
    nebo_model: NotRequired[str | None]
    """The fallback model chosen for the next call (``None``: the agent's own)."""


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
    ) -> None:
        super().__init__()
        if exit_behavior not in ("end", "raise"):
            raise NeboConfigurationError(f"exit_behavior must be 'end' or 'raise'; got {exit_behavior!r}")
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

    def _record(self, request: ModelRequest[Any], response: ModelResponse[Any]) -> ExtendedModelResponse[Any]:
        spent, calls = request.state.get("nebo_spend_micro"), request.state.get("nebo_calls")
        update = {
            "nebo_spend_micro": (spent if isinstance(spent, int) else 0) + _cost(response.result),
            "nebo_calls": (calls if isinstance(calls, int) else 0) + 1,
        }
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
        """Call the (possibly switched) model and record its cost in the state."""
        try:
            return self._record(request, handler(self._request(request)))
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
        try:
            return self._record(request, await handler(self._request(request)))
        except NeboBudgetExhausted as err:
            if self.exit_behavior == "raise":
                raise
            return self._stopped(err)


__all__ = ["NeboBudgetMiddleware", "NeboBudgetState"]
