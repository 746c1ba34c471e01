"""Pacing: spread a window's budget so it lasts until the reset, shared by a whole fleet.

Nebo says in every response how much each window has left and when it resets, so the pace
is known, not guessed: ``(remaining - reserve) / seconds_to_reset`` microdollars per second,
for the tighter window. It is recomputed from the freshest snapshot on every call, so it
corrects itself: a fleet behind its pace gets a faster one, a fleet ahead a slower one.

Admission is a shared schedule (GCRA, the "virtual scheduling" form of a token bucket): one
key per Nebo account holds the theoretical arrival time (``tat``) of the next call. A call
books ``cost / rate`` seconds of it atomically and waits until its slot; it never asks
twice, so a wait is a single sleep. ``burst_s`` lets a fleet run that many seconds ahead of
its pace. The book lives in the budget store (in-process for
:class:`~nebo_core.stores.InMemoryBudgetStore`, one Lua script for Redis), so eight
processes pace together.

Lanes (``X-Lane``) get priorities: a lane's ``tolerance_s`` is how far behind the schedule
it still books (``None``: always, ``main``); a lane with a small tolerance is held while the
fleet runs at its pace, so ``heartbeat`` and ``events`` wait first. A lane's ``hold_at`` is
a used fraction of the tighter window past which the lane waits for the reset altogether,
so as the window drains the low lanes stop first and ``main`` keeps what is left.

Everything here but :class:`PaceBook` is pure: :func:`pace_steps` yields its store calls for the
policy's drivers to run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from nebo_core.budget import BudgetSnapshot, WindowName
from nebo_core.decisions import CallPlan, Decision, Refuse, Steps, Wait
from nebo_core.errors import NeboBudgetExhausted, NeboConfigurationError
from nebo_core.settings import LANES, check_number


@dataclass(frozen=True)
class LaneRule:
    """How one lane is paced: ``tolerance_s`` behind the schedule it still books (``None``: always);
    past ``hold_at`` (a used fraction of the tighter window) it waits for the reset."""

    tolerance_s: float | None = None
    hold_at: float | None = None


DEFAULT_LANES: Mapping[str, LaneRule] = {
    "main": LaneRule(None, None),
    "subagent": LaneRule(2.0, 0.97),
    "comm": LaneRule(1.0, 0.9),
    "events": LaneRule(0.0, 0.8),
    "heartbeat": LaneRule(0.0, 0.7),
}
"""Main first, heartbeat last: ``main`` always books and is never held; ``heartbeat`` books only
while the fleet is not behind its pace, and stops at 70% used."""


@dataclass(frozen=True)
class Pace:
    """``BudgetPolicy(pace=Pace(...))``: spread each window's budget until its reset.

    ``reserve_fraction`` of each window's limit is kept back (never paced out): slack for
    estimate errors and for spenders outside the fleet. ``burst_s``: how many seconds of pace
    a fleet may spend ahead. ``windows``: which windows set the pace. ``lanes``: per-lane
    rules (:data:`DEFAULT_LANES`); a call with no lane is ``main``. ``min_rate_window_s``: the
    reset is never treated as nearer than this (the last seconds of a window do not get an
    unbounded pace)."""

    reserve_fraction: float = 0.05
    burst_s: float = 0.25
    windows: tuple[WindowName, ...] = ("session", "weekly")
    lanes: Mapping[str, LaneRule] = field(default_factory=lambda: dict(DEFAULT_LANES))
    min_rate_window_s: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= check_number("Pace(reserve_fraction=)", self.reserve_fraction) < 1.0:
            raise NeboConfigurationError(
                f"Pace(reserve_fraction=) must be in [0, 1), got {self.reserve_fraction!r}"
            )
        if not check_number("Pace(burst_s=)", self.burst_s) >= 0.0:
            raise NeboConfigurationError(f"Pace(burst_s=) must be a finite number >= 0, got {self.burst_s!r}")
        if not check_number("Pace(min_rate_window_s=)", self.min_rate_window_s) > 0.0:
            raise NeboConfigurationError(
                f"Pace(min_rate_window_s=) must be seconds > 0, got {self.min_rate_window_s!r}"
            )
        windows = (self.windows,) if isinstance(self.windows, str) else tuple(self.windows)
        object.__setattr__(self, "windows", windows)  # "session" alone means ("session",)
        unknown = [w for w in self.windows if w not in ("session", "weekly")]
        if unknown or not self.windows:
            raise NeboConfigurationError(
                f"Pace(windows=) takes 'session' and/or 'weekly', got {list(self.windows)!r}"
            )
        if not isinstance(self.lanes, Mapping):
            raise NeboConfigurationError(
                f"Pace(lanes=) maps lane names to LaneRule(...), got {type(self.lanes).__name__}"
            )
        bad = sorted(set(self.lanes) - LANES)
        if bad:
            raise NeboConfigurationError(f"Pace(lanes=) names unknown lanes {bad}; lanes are {sorted(LANES)}")
        for name, rule in self.lanes.items():
            if not isinstance(rule, LaneRule):
                raise NeboConfigurationError(f"Pace(lanes=) maps a lane to a LaneRule; {name!r} is not one")
            if rule.hold_at is not None and not 0.0 < check_number("LaneRule(hold_at=)", rule.hold_at) <= 1.0:
                raise NeboConfigurationError(f"LaneRule(hold_at=) for {name!r} must be in (0, 1]")
            if (
                rule.tolerance_s is not None
                and not check_number("LaneRule(tolerance_s=)", rule.tolerance_s) >= 0.0
            ):
                raise NeboConfigurationError(f"LaneRule(tolerance_s=) for {name!r} must be >= 0")

    def rule(self, lane: str | None) -> LaneRule:
        """The rule of ``lane`` (``None`` and unlisted lanes: ``main``'s, else always booking)."""
        return self.lanes.get(lane or "main") or self.lanes.get("main") or LaneRule()


@dataclass(frozen=True)
class PaceTarget:
    """The pace now: ``rate`` microdollars per second for the whole fleet, set by ``window``."""

    rate: float
    window: WindowName
    used_fraction: float
    """The most drained paced window's used fraction (what lanes are held by)."""
    reset_at: datetime | None
    seconds_to_reset: float


def target(snapshot: BudgetSnapshot | None, pace: Pace, now: datetime) -> PaceTarget | None:
    """The fleet's pace from a snapshot (``None``: no window with a limit, remaining and reset known,
    so nothing to pace by). ``now`` is this machine's time; the snapshot's skew is corrected."""
    if snapshot is None:
        return None
    server_now = now + timedelta(seconds=snapshot.resolved_skew())
    best: PaceTarget | None = None
    drained = 0.0
    for window in snapshot.windows:
        if window.name not in pace.windows or not window.limit_micro or window.remaining_micro is None:
            continue
        used = min(max(1.0 - window.remaining_micro / window.limit_micro, 0.0), 1.0)
        drained = max(drained, used)
        left = window.seconds_to_reset(server_now)
        if left is None:
            continue
        spendable = max(window.remaining_micro - pace.reserve_fraction * window.limit_micro, 0.0)
        rate = spendable / max(left, pace.min_rate_window_s)
        if best is None or rate < best.rate:
            best = PaceTarget(rate, window.name, used, window.reset_at, left)
    return None if best is None else replace(best, used_fraction=drained)


@dataclass(frozen=True)
class Booking:
    """The answer of a pace book: ``booked`` (a slot was taken; wait ``wait_s`` for it) or not
    (held: ask again after ``wait_s``)."""

    booked: bool
    wait_s: float


def book(
    tat: float | None, now: float, interval_s: float, burst_s: float, tolerance_s: float | None
) -> tuple[Booking, float | None]:
    """One booking on a schedule (pure): returns the answer and the new ``tat`` (``None``: unchanged).

    The slot starts at ``max(tat, now)``; a lane may book while the slot is at most ``burst_s +
    tolerance_s`` seconds ahead (``tolerance_s=None``: always), and then waits until
    ``slot - burst_s``."""
    slot = now if tat is None or tat < now else tat
    late = slot - now - burst_s
    if tolerance_s is not None and late > tolerance_s:
        return Booking(False, max(late - tolerance_s, 0.01)), None
    return Booking(True, max(late, 0.0)), slot + interval_s


class PaceBook:
    """The in-process schedule: one ``tat`` per key, behind a lock (what the in-memory store uses)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        self._lanes: dict[str, dict[str, int]] = {}

    def book(
        self, key: str, interval_s: float, burst_s: float, tolerance_s: float | None, lane: str = "main"
    ) -> Booking:
        """Book on ``key``'s schedule (see :func:`book`), atomically, counting the answer for ``lane``."""
        with self._lock:
            answer, tat = book(self._tat.get(key), time.time(), interval_s, burst_s, tolerance_s)
            if tat is not None:
                self._tat[key] = tat
            counts = self._lanes.setdefault(lane, {"booked": 0, "held": 0})
            counts["booked" if answer.booked else "held"] += 1
            return answer

    def lanes(self) -> dict[str, dict[str, int]]:
        """Bookings and holds per lane so far."""
        with self._lock:
            return {lane: dict(counts) for lane, counts in self._lanes.items()}

    def reset(self) -> None:
        """Forget every schedule and count."""
        with self._lock:
            self._tat.clear()
            self._lanes.clear()


def held_until_reset(pace: Pace, lane: str | None, goal: PaceTarget) -> bool:
    """Whether ``lane`` waits for the reset now: its ``hold_at`` is passed, or nothing is left to pace."""
    rule = pace.rule(lane)
    if goal.rate <= 0.0:
        return True
    return rule.hold_at is not None and goal.used_fraction >= rule.hold_at


PACE_CODE = "BUDGET_PACED"
"""The code of the refusal when pacing would hold a call longer than ``max_wait``."""


def pace_steps(
    pace: Pace,
    plan: CallPlan,
    cost: float,
    snapshot: BudgetSnapshot | None,
    now: datetime,
    max_wait: float,
    reset_margin: float,
    scope: str | None,
) -> Steps[Decision | None]:
    """The pace decision for ``plan`` as policy steps: ``None`` to go now, else a :class:`Wait` for
    its booked slot (``reason="pace"``), for room or the reset (a held lane: ``"held"``), or a
    refusal past ``max_wait``. ``cost``: what the call is expected to cost (the model's mean, else
    its estimate); ``snapshot``: this process's freshest (``None``: read the one another process
    published); ``reset_margin``: seconds added to a wait for the reset."""
    if snapshot is None:  # this process's first call: another one may have published the budget
        snapshot = yield ("snapshot", (plan.account,))
    goal = target(snapshot, pace, now)
    if goal is None:
        return None  # nothing known to pace by yet: the first response tells
    if held_until_reset(pace, plan.lane, goal):
        wait = Wait(goal.seconds_to_reset + reset_margin, plan.model, goal.reset_at, reason="held")
        return _within(plan, wait, goal, max_wait, scope)
    lane = plan.lane or "main"
    booking: Booking = yield (
        "pace",
        (f"pace:{plan.account or '-'}", cost / goal.rate, pace.burst_s, pace.rule(lane).tolerance_s, lane),
    )
    if booking.booked and booking.wait_s <= 0.0:
        return None
    reason: Literal["pace", "held"] = "pace" if booking.booked else "held"
    return _within(plan, Wait(booking.wait_s, plan.model, None, reason=reason), goal, max_wait, scope)


def _within(plan: CallPlan, wait: Wait, goal: PaceTarget, max_wait: float, scope: str | None) -> Decision:
    """``wait``, unless it takes the call past ``max_wait`` in all: then a refusal."""
    if plan.held_s + wait.seconds <= max_wait:
        return wait
    return Refuse(
        NeboBudgetExhausted(
            f"pacing would hold this {plan.lane or 'main'}-lane call "
            f"{plan.held_s + wait.seconds:.0f} s in all (over max_wait={max_wait:.0f} s): the "
            f"{goal.window} window is {goal.used_fraction:.0%} used and paced at {goal.rate:.0f} "
            "microdollars/s until its reset. Raise max_wait, lower "
            "Pace(reserve_fraction=), or send the call on a higher-priority lane",
            window=goal.window,
            reset_at=goal.reset_at,
            scope=scope,
            code=PACE_CODE,
        ),
        plan.model,
    )


__all__ = [
    "DEFAULT_LANES",
    "PACE_CODE",
    "Booking",
    "LaneRule",
    "Pace",
    "PaceBook",
    "PaceTarget",
    "book",
    "held_until_reset",
    "pace_steps",
    "target",
]
