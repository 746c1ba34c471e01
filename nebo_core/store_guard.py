"""What a budget policy does when its store fails: ``on_store_error``, the pause, kept settlements.

A :class:`StoreGuard` belongs to one :class:`~nebo_core.policy.BudgetPolicy`. When a store
call raises :class:`~nebo_core.errors.NeboStoreError` (Redis down, paused past its timeout,
or its state lost), the guard:

- remembers the failure for ``retry_s`` seconds, so calls meanwhile go by the mode at once
  instead of each waiting out a socket timeout;
- decides by the mode: ``closed`` refuses with :class:`NeboBudgetStoreUnavailable`, ``open``
  lets the call through unchecked, ``local`` hands the decision to an in-process store;
- keeps every settlement the store could not take (a call that already happened is never
  dropped) and replays them as store steps once it answers again, under the call's own
  reservation when it had one, so an expired hold's charge is corrected, not doubled.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Literal

from nebo_core.budget import UsageRecord
from nebo_core.caps import CapLine
from nebo_core.decisions import CallPlan, Decision, Go, Refuse, Steps
from nebo_core.errors import NeboBudgetStoreUnavailable, NeboStoreError
from nebo_core.stores import BudgetStore, InMemoryBudgetStore, Reservation, ReserveResult

logger = logging.getLogger("nebo_core.budget")

StoreErrorMode = Literal["closed", "open", "local"]
STORE_CODE = "BUDGET_STORE_UNAVAILABLE"


@dataclass(frozen=True)
class Pending:
    """A settlement the store could not take, replayed by :meth:`StoreGuard.replay_steps`."""

    lines: tuple[CapLine, ...]
    model: str
    cost: int | None
    """``None``: a release."""
    estimated: bool
    reservation: Reservation | None = None
    """The call's own reservation (``None`` for a call let through unchecked)."""


class StoreGuard:
    """A policy's answer to store failures (see the module docstring); thread-safe."""

    def __init__(self, mode: StoreErrorMode, retry_s: float) -> None:
        self.mode: StoreErrorMode = mode
        self.retry_s = float(retry_s)
        self._lock = threading.Lock()
        self._error: NeboStoreError | None = None
        self._down_until = 0.0
        self._local: InMemoryBudgetStore | None = None
        self._local_ids: set[str] = set()
        self._pending: list[Pending] = []

    # -- the pause after a failure ----------------------------------------------------------

    def down(self) -> NeboStoreError | None:
        """The store's last failure while it is presumed down, else ``None``."""
        with self._lock:
            if self._error is not None and time.monotonic() < self._down_until:
                return self._error
            return None

    def broke(self, exc: NeboStoreError) -> NeboStoreError:
        """Note a failure: the store is left alone for ``retry_s``."""
        with self._lock:
            self._error = exc
            self._down_until = time.monotonic() + self.retry_s
        return exc

    def back(self) -> None:
        """The store answered: the pause ends."""
        with self._lock:
            self._error = None
            self._down_until = 0.0

    # -- deciding without the store -----------------------------------------------------------

    def decision(
        self, plan: CallPlan, lines: list[CapLine], scope: str, exc: NeboStoreError
    ) -> Decision | None:
        """The decision by the mode (``None``: ``local``, decide again on :meth:`local_store`)."""
        if self.mode == "local":
            logger.warning("Nebo budget store failed (%s); enforcing caps in this process only", exc)
            return None
        if self.mode == "open":
            logger.warning("Nebo budget store failed (%s); letting the call through unchecked", exc)
            return Go(plan.model, None, tuple(lines))
        error = NeboBudgetStoreUnavailable(
            f"the budget could not be checked, so the call was not sent: {exc.message} "
            "(on_store_error='closed'; choose 'open' or 'local' to keep calling while the store is down)",
            window="store",
            scope=scope,
            code=STORE_CODE,
        )
        error.store_error = exc
        return Refuse(error, plan.model)

    def local_store(self) -> InMemoryBudgetStore:
        """The in-process store of ``on_store_error="local"``."""
        with self._lock:
            if self._local is None:
                self._local = InMemoryBudgetStore()
            return self._local

    def local(self, decision: Decision) -> Decision:
        """A decision taken on the local store: its reservation is settled there too."""
        if isinstance(decision, Go) and decision.reservation is not None:
            with self._lock:
                self._local_ids.add(decision.reservation.id)
        return decision

    def store_for(self, decision: Decision, store: BudgetStore) -> BudgetStore:
        """Where ``decision`` settles: the local store if it was taken there, else ``store``."""
        if isinstance(decision, Go) and decision.reservation is not None and self._local_ids:
            with self._lock:
                local = decision.reservation.id in self._local_ids
                self._local_ids.discard(decision.reservation.id)
            if local:
                return self.local_store()
        return store

    # -- settlements kept through an outage ---------------------------------------------------

    def unchecked(self, decision: Go, record: UsageRecord) -> None:
        """A call let through unchecked has ended: its cost is kept, to charge every line later."""
        cost = record.cost_micro if record.cost_micro is not None else 0
        with self._lock:
            self._pending.append(Pending(decision.unchecked, decision.model, cost, record.uncertain))

    def keep(self, decision: Decision, record: UsageRecord | None, exc: NeboStoreError) -> None:
        """A settlement the store could not take: kept, and replayed under the call's own
        reservation when it had one (so an expiry's charge is corrected, not doubled)."""
        if not isinstance(decision, Go):
            return
        reservation = decision.reservation
        if reservation is None:
            if not decision.unchecked or record is None:
                return
            entry = Pending(decision.unchecked, decision.model, record.cost_micro or 0, record.uncertain)
        elif record is None:
            entry = Pending(reservation.lines, decision.model, None, False, reservation)  # a release
        else:
            cost = record.cost_micro if record.cost_micro is not None else reservation.amount_micro
            estimated = record.uncertain or record.cost_micro is None
            entry = Pending(reservation.lines, decision.model, cost, estimated, reservation)
        logger.warning("Nebo budget store failed settling a call (%s); kept to settle later", exc)
        with self._lock:
            self._pending.append(entry)

    @property
    def pending(self) -> bool:
        """Whether settlements are waiting for the store."""
        return bool(self._pending)

    @property
    def pending_micro(self) -> int:
        """The spend kept so far."""
        with self._lock:
            return sum(p.cost or 0 for p in self._pending)

    def replay_steps(self) -> Steps[int]:
        """Apply the kept settlements (as store steps); whatever a failure leaves undone stays kept."""
        with self._lock:
            pending, self._pending = self._pending, []
        done = 0
        try:
            for i, entry in enumerate(pending):
                if entry.reservation is not None and entry.cost is None:
                    yield ("release", (entry.reservation,))
                elif entry.reservation is not None:
                    assert entry.cost is not None
                    yield ("commit", (entry.reservation, entry.cost, False, entry.estimated))
                else:  # an unchecked call: charged on every line, under a reservation of its own
                    uncapped = [replace(line, cap_micro=None) for line in entry.lines]
                    result: ReserveResult = yield ("reserve_lines", (uncapped, entry.model, 0, 60.0))
                    assert result.reservation is not None
                    yield ("commit", (result.reservation, entry.cost or 0, False, entry.estimated))
                done = i + 1
        finally:
            with self._lock:
                self._pending[:0] = pending[done:]
        return done
