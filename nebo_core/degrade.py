"""Degrade before exhaustion, restore after the reset: cheaper models when the forecast says so.

``BudgetPolicy(degrade=Degrade(...))``: when the forecast (:mod:`nebo_core.forecast`) says the
binding window runs out before its reset (or it is past ``at_fraction`` used), chat calls move
one step down a chain of cheaper models; if the forecast still says so ``settle_calls`` calls
later, one step further. The step holds until that window's reset (as the server announced it
when the step was taken); the first call after it goes to the requested model again. Embedding
calls never move (another model's vectors live in another space). A call in the middle of a
tool loop (its last message is a tool result) changes nothing, so one tool-calling turn stays
on one model.

:func:`step` is pure: the policy keeps one :class:`DegradeState` per account.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from nebo_core.decisions import CallPlan
from nebo_core.errors import NeboConfigurationError
from nebo_core.forecast import SHORT_SAMPLES, BudgetForecast
from nebo_core.settings import check_number

logger = logging.getLogger("nebo_core.budget")


@dataclass(frozen=True)
class Degrade:
    """Move chat calls to cheaper models before a window runs out.

    ``chain``: cheaper models in order (the next one down is the next in the chain), or ``"auto"``
    (the next cheaper model in the model table). ``at_fraction``: also step down once the
    binding window is this much used (``None``: only on the forecast). ``min_samples``: readings
    the forecast must rest on before it is trusted. ``settle_calls``: calls at one step before
    the next step down (the burn rate needs that long to show the cheaper model)."""

    chain: Sequence[str] | Literal["auto"] = "auto"
    at_fraction: float | None = None
    min_samples: int = 3
    settle_calls: int = SHORT_SAMPLES

    def __post_init__(self) -> None:
        if isinstance(self.chain, str) and self.chain != "auto":
            raise NeboConfigurationError(
                "Degrade(chain=) must be a list of model ids (cheaper ones later) or 'auto'; "
                f"got {self.chain!r}"
            )
        if not isinstance(self.chain, str):
            chain = tuple(self.chain)
            if not chain or not all(isinstance(m, str) and m for m in chain):
                raise NeboConfigurationError(
                    f"Degrade(chain=) must list model ids (non-empty strings); got {list(chain)!r}"
                )
            object.__setattr__(self, "chain", chain)
        at = self.at_fraction
        if at is not None and not 0.0 < check_number("Degrade(at_fraction=)", at) <= 1.0:
            raise NeboConfigurationError(f"Degrade(at_fraction=) must be in (0, 1]; got {at!r}")
        for name, value, low in (
            ("min_samples", self.min_samples, 2),
            ("settle_calls", self.settle_calls, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise NeboConfigurationError(f"Degrade({name}=) must be an int >= {low}; got {value!r}")


@dataclass(frozen=True)
class DegradeState:
    """How far down the chain one account's calls go, until when, and for how many calls so far."""

    depth: int = 0
    until: datetime | None = None
    """The reset of the window that tripped it (this machine's time): the requested model comes back then."""
    calls: int = 0
    """Calls made at this depth."""
    cooldown: int = 0
    """Calls on the requested model after a reset before the forecast may step down again (it
    needs fresh readings)."""


def pressed(forecast: BudgetForecast, degrade: Degrade) -> tuple[bool, datetime | None]:
    """Whether the forecast says to step down now, and the reset of the binding window."""
    binding = forecast.binding
    if binding is None or binding.samples < degrade.min_samples:
        return False, None
    window = forecast.session if binding.name == "session" else forecast.weekly
    reset_at = None
    if window.seconds_to_reset is not None:
        reset_at = forecast.at + timedelta(seconds=window.seconds_to_reset)
    if binding.exhausts_before_reset:
        return True, reset_at
    if degrade.at_fraction is not None and binding.limit_micro and binding.remaining_micro is not None:
        used = 1.0 - binding.remaining_micro / binding.limit_micro
        return used >= degrade.at_fraction, reset_at
    return False, reset_at


def step(
    state: DegradeState, forecast: BudgetForecast, degrade: Degrade, now: datetime, frozen: bool
) -> DegradeState:
    """The state for the next call (pure). ``frozen``: the call continues a tool loop (no change)."""
    if frozen:
        return state
    if state.depth and state.until is not None and now >= state.until:
        # The window reset: back to the requested model, which gets fresh readings before any step down.
        return DegradeState(cooldown=degrade.settle_calls - 1)
    if state.cooldown:
        return replace(state, cooldown=state.cooldown - 1)
    press, reset_at = pressed(forecast, degrade)
    if press and state.depth == 0:
        return DegradeState(1, reset_at, 1)
    if press and state.calls >= degrade.settle_calls:
        return DegradeState(state.depth + 1, state.until or reset_at, 1)
    return replace(state, calls=state.calls + 1) if state.depth else state


class Degrader:
    """One policy's degrade state per account, behind a lock: what :func:`step` says, applied."""

    def __init__(self, degrade: Degrade) -> None:
        self.degrade = degrade
        self._lock = threading.Lock()
        self._states: dict[str | None, DegradeState] = {}

    def apply(
        self,
        plan: CallPlan,
        forecast: BudgetForecast,
        now: datetime,
        next_model: Callable[[CallPlan, Sequence[str] | Literal["auto"]], str | None],
    ) -> CallPlan:
        """``plan`` on the model its account's state calls for (``next_model(plan, chain)``: the
        next cheaper model along the chain); the step change, if any, is logged."""
        with self._lock:
            before = self._states.get(plan.account, DegradeState())
            state = step(before, forecast, self.degrade, now, mid_tool_loop(plan.body))
            self._states[plan.account] = state
        model = plan.model
        for _ in range(state.depth):
            cheaper = next_model(replace(plan, model=model), self.degrade.chain)
            if cheaper is None:
                break
            model = cheaper
        if state.depth != before.depth:  # logged when the step changes, not on every call
            binding = forecast.binding
            logger.info(
                "Nebo budget forecast: the %s window %s; %s -> %s",
                binding.name if binding is not None else "budget",
                "runs short before its reset" if state.depth > before.depth else "has reset",
                plan.model,
                model,
            )
        return replace(plan, model=model) if model != plan.model else plan

    def depth(self, account: str | None) -> int:
        """How many steps down the chain ``account``'s chat calls go now (0: none)."""
        with self._lock:
            state = self._states.get(account)
            return state.depth if state is not None else 0


def mid_tool_loop(body: Mapping[str, Any] | None) -> bool:
    """Whether a chat request continues a tool loop: its last message is a tool result."""
    messages = body.get("messages") if body is not None else None
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        return False
    last = messages[-1]
    return isinstance(last, Mapping) and last.get("role") in ("tool", "function")


__all__ = ["Degrade", "DegradeState", "Degrader", "mid_tool_loop", "pressed", "step"]
