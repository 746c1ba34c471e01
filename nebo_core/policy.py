"""Budget policy: what to do before each call and when the budget runs out.

A policy returns *decisions* ("go with model M", "wait N s", "refuse with this error");
the clients carry them out. The default policy only warns (at 80% and 95% of a window)
and refuses a call up front when the freshest snapshot already shows a window at zero,
so no request is sent that can only come back as a budget 429.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from nebo_core.budget import BudgetSnapshot, CallKind, UsageRecord, WindowState
from nebo_core.errors import NeboBudgetExhausted
from nebo_core.tracker import BudgetTracker

logger = logging.getLogger("nebo_core.budget")

Action = Literal["go", "wait", "refuse"]
WarnCallback = Callable[[WindowState, float, BudgetSnapshot], None]


@dataclass(frozen=True)
class CallPlan:
    """A call about to be made: what kind, which model, on whose budget."""

    kind: CallKind
    model: str
    scope: str | None = None
    step: int = 0
    """How many budget decisions this call has already had (waits, fallbacks)."""


@dataclass(frozen=True)
class Decision:
    """What the client does next."""

    action: Action
    model: str
    wait_s: float = 0.0
    error: NeboBudgetExhausted | None = None
    reservation: Any = None
    """An opaque token from a store, settled after the call."""


def exhausted_error(snapshot: BudgetSnapshot, now: datetime | None = None) -> NeboBudgetExhausted | None:
    """The budget error a call would get now, judging by a snapshot (``None`` if it may go)."""
    if not snapshot.exhausted:
        return None
    window = snapshot.exhausted_window
    assert window is not None
    if window.reset_at is not None and window.reset_at <= (now or datetime.now(timezone.utc)):
        return None  # the window has rolled since this snapshot: let the server say
    when = f"; it resets at {window.reset_at.isoformat()}" if window.reset_at else ""
    return NeboBudgetExhausted(
        f"the Nebo {window.name} budget is exhausted{when}",
        window=window.name,
        reset_at=window.reset_at,
        snapshot=snapshot,
        status=None,
        code="USAGE_LIMIT_EXCEEDED",
    )


class BudgetPolicy:
    """Decides before each call and after a budget error; the default warns and raises."""

    def __init__(
        self,
        *,
        warn_at: Sequence[float] = (0.8, 0.95),
        on_warn: WarnCallback | None = None,
        max_steps: int = 8,
    ) -> None:
        self.warn_at = tuple(warn_at)
        self.on_warn = on_warn
        self.max_steps = max_steps
        self._attached: weakref.WeakSet[BudgetTracker] = weakref.WeakSet()

    def attach(self, tracker: BudgetTracker) -> None:
        """Register this policy's warnings on ``tracker`` (once per tracker)."""
        if tracker in self._attached:
            return
        self._attached.add(tracker)
        for fraction in self.warn_at:
            tracker.add_threshold_listener(fraction, self._warn)

    def _warn(self, window: WindowState, fraction: float, snapshot: BudgetSnapshot) -> None:
        logger.warning(
            "Nebo %s budget %.0f%% used (threshold %.0f%%): %s left, resets %s",
            window.name,
            100 * (window.used_fraction or 0.0),
            100 * fraction,
            f"${window.remaining_dollars:.4f}" if window.remaining_dollars is not None else "unknown",
            window.reset_at.isoformat() if window.reset_at else "unknown",
        )
        if self.on_warn is not None:
            self.on_warn(window, fraction, snapshot)

    def before_call(self, plan: CallPlan, tracker: BudgetTracker) -> Decision:
        """Whether the call may go, before any request is sent."""
        snapshot = tracker.snapshot
        error = exhausted_error(snapshot) if snapshot is not None else None
        if error is not None:
            return self.on_exhausted(plan, error, tracker)
        return Decision("go", plan.model)

    def on_exhausted(self, plan: CallPlan, error: NeboBudgetExhausted, tracker: BudgetTracker) -> Decision:
        """What to do when the budget is gone (before the call, or after a budget 429)."""
        return Decision("refuse", plan.model, error=error)

    def settle(self, decision: Decision, record: UsageRecord | None) -> None:
        """After the call: ``record`` is its usage, or ``None`` when it failed."""
