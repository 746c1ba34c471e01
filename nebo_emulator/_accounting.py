"""Budget accounting as nebo-api.md section 10 describes it, behind one lock.

Pools are drawn free, then gift, then plan, then credits. The plan pool is two rolling
windows (5 h session, 7 d weekly) over a list of timestamped charges; both must have room.
``charge()`` picks the pool, records the charge and the ledger entry, and returns the
budget before and after, all atomically, so concurrent requests can never overspend
silently or lose a charge. Simplification (documented): a request's whole cost goes to
the pool that was active when it arrived, never split; a pool it overdraws is clamped at 0.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Pool = Literal["free", "gift", "plan", "credits"]
Endpoint = Literal["chat", "embedding"]

SESSION_WINDOW = timedelta(hours=5)
WEEKLY_WINDOW = timedelta(days=7)
MICRO_PER_CENT = 10_000


@dataclass(frozen=True)
class LedgerEntry:
    """One charged request, as the emulator billed it: the truth a client's records are checked against."""

    request_id: str
    endpoint: Endpoint
    requested_model: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_micro: int
    pool: Pool
    at: datetime
    streamed: bool


@dataclass(frozen=True)
class BudgetView:
    """The account at one instant: what the budget headers and ``/v1/usage`` show."""

    at: datetime
    session_limit: int
    session_used: int
    session_reset: datetime
    weekly_limit: int
    weekly_used: int
    weekly_reset: datetime
    free: int
    gift: int
    credits_micro: int
    active_pool: Pool

    @property
    def session_remaining(self) -> int:
        return max(self.session_limit - self.session_used, 0)

    @property
    def weekly_remaining(self) -> int:
        return max(self.weekly_limit - self.weekly_used, 0)

    @property
    def credits_cents(self) -> int:
        return self.credits_micro // MICRO_PER_CENT

    @property
    def fundable(self) -> bool:
        """Whether any pool has something left, i.e. the next request would be served."""
        plan_open = self.session_remaining > 0 and self.weekly_remaining > 0
        return self.free > 0 or self.gift > 0 or plan_open or self.credits_micro > 0


class UsageLimitExceeded(Exception):
    """Every pool is empty: the request must be refused with 429 ``USAGE_LIMIT_EXCEEDED``."""

    def __init__(self, view: BudgetView) -> None:
        super().__init__("usage limit exceeded")
        self.view = view


@dataclass(frozen=True)
class Charged:
    """The outcome of a charge: the entry recorded and the budget just before and just after it."""

    entry: LedgerEntry
    before: BudgetView
    after: BudgetView


class _Window:
    """Timestamped plan charges inside one rolling window."""

    def __init__(self, length: timedelta) -> None:
        self.length = length
        self.charges: list[tuple[datetime, int]] = []

    def prune(self, now: datetime) -> None:
        cutoff = now - self.length
        self.charges = [(at, amount) for at, amount in self.charges if at > cutoff]

    def used(self) -> int:
        return sum(amount for _, amount in self.charges)

    def reset(self, now: datetime) -> datetime:
        # Rolling: room comes back when the oldest charge drops out (nebo-api.md section 10).
        return min(at for at, _ in self.charges) + self.length if self.charges else now + self.length


class Accountant:
    """Owns every pool, both windows and the ledger; all reads and writes take one lock."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        session_limit_micro: int,
        weekly_limit_micro: int,
        free_micro: int = 0,
        gift_micro: int = 0,
        credits_cents: int = 0,
        session_window: timedelta = SESSION_WINDOW,
        weekly_window: timedelta = WEEKLY_WINDOW,
    ) -> None:
        for name, length in (("session_window", session_window), ("weekly_window", weekly_window)):
            if length <= timedelta(0):
                raise ValueError(f"{name} must be a positive duration, got {length!r}")
        self._now = clock
        self._lock = threading.Lock()
        self._session_limit = session_limit_micro
        self._weekly_limit = weekly_limit_micro
        self._session = _Window(session_window)
        self._weekly = _Window(weekly_window)
        self._free = free_micro
        self._gift = gift_micro
        self._credits_micro = credits_cents * MICRO_PER_CENT
        self._ledger: list[LedgerEntry] = []

    def view(self) -> BudgetView:
        """The account now, with the pool the next request would draw from."""
        with self._lock:
            return self._view_locked(self._now())

    def charge(
        self,
        *,
        request_id: str,
        endpoint: Endpoint,
        requested_model: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost_micro: int,
        streamed: bool,
    ) -> Charged:
        """Fund and record one request atomically; raises ``UsageLimitExceeded`` when nothing is left."""
        with self._lock:
            now = self._now()
            before = self._view_locked(now)
            if not before.fundable:
                raise UsageLimitExceeded(before)
            pool = before.active_pool
            if pool == "free":
                self._free = max(self._free - cost_micro, 0)
            elif pool == "gift":
                self._gift = max(self._gift - cost_micro, 0)
            elif pool == "plan":
                self._session.charges.append((now, cost_micro))
                self._weekly.charges.append((now, cost_micro))
            else:
                self._credits_micro = max(self._credits_micro - cost_micro, 0)
            entry = LedgerEntry(
                request_id,
                endpoint,
                requested_model,
                model,
                prompt_tokens,
                completion_tokens,
                cost_micro,
                pool,
                now,
                streamed,
            )
            self._ledger.append(entry)
            after = self._view_locked(now)
            # The header names the pool that funded this request, not the next one.
            after = BudgetView(**{**after.__dict__, "active_pool": pool})
            return Charged(entry, before, after)

    def ledger(self) -> list[LedgerEntry]:
        """A snapshot copy of every charge so far."""
        with self._lock:
            return list(self._ledger)

    def set_budget(
        self,
        *,
        session_remaining_micro: int | None = None,
        weekly_remaining_micro: int | None = None,
        free_micro: int | None = None,
        gift_micro: int | None = None,
        credits_cents: int | None = None,
    ) -> None:
        """Force the account into a state (e.g. a window almost empty) without touching the ledger.

        A forced window holds one synthetic charge made now, so it recovers like a real one.
        """
        with self._lock:
            now = self._now()
            for window, limit, remaining in (
                (self._session, self._session_limit, session_remaining_micro),
                (self._weekly, self._weekly_limit, weekly_remaining_micro),
            ):
                if remaining is not None:
                    used = max(limit - remaining, 0)
                    window.charges = [(now, used)] if used else []
            if free_micro is not None:
                self._free = free_micro
            if gift_micro is not None:
                self._gift = gift_micro
            if credits_cents is not None:
                self._credits_micro = credits_cents * MICRO_PER_CENT

    def _view_locked(self, now: datetime) -> BudgetView:
        self._session.prune(now)
        self._weekly.prune(now)
        session_used, weekly_used = self._session.used(), self._weekly.used()
        plan_open = session_used < self._session_limit and weekly_used < self._weekly_limit
        pool: Pool
        if self._free > 0:
            pool = "free"
        elif self._gift > 0:
            pool = "gift"
        elif plan_open or self._credits_micro <= 0:
            # With everything empty the plan is still named: it is what the user waits for.
            pool = "plan"
        else:
            pool = "credits"
        return BudgetView(
            at=now,
            session_limit=self._session_limit,
            session_used=session_used,
            session_reset=self._session.reset(now),
            weekly_limit=self._weekly_limit,
            weekly_used=weekly_used,
            weekly_reset=self._weekly.reset(now),
            free=self._free,
            gift=self._gift,
            credits_micro=self._credits_micro,
            active_pool=pool,
        )


def seconds_until(when: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` until ``when`` (rounded up, never negative)."""
    return max(math.ceil((when - now).total_seconds()), 0)
