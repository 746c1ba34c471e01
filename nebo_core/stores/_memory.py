"""The default budget store: one process, many threads, one lock.

Every method takes the lock once, so a reservation is checked and taken in one step
(no check-then-record race). Reservations expire after their time-to-live by a
monotonic clock: a call that never settles (a stream dropped unread, a crashed thread)
is then charged its reservation, which a late settlement corrects.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from nebo_core.budget import BudgetSnapshot
from nebo_core.stores._base import BudgetStore, Reservation, ReserveResult

GONE_TTL_S = 86_400.0
"""How long an expired (charged) reservation is remembered, so a late settlement corrects it."""


class InMemoryBudgetStore(BudgetStore):
    """A thread-safe store for one process. ``clock`` (monotonic seconds) is injectable for tests."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._spent: dict[str, int] = {}
        self._held: dict[str, dict[str, tuple[int, float]]] = {}
        self._stats: dict[str, tuple[int, int]] = {}
        self._snapshots: dict[str | None, BudgetSnapshot] = {}
        self._uncertain: dict[str, int] = {}
        self._gone: dict[str, tuple[str, int, float]] = {}
        """Expired reservations charged at their amount: id -> (scope, amount, forget at)."""

    def __repr__(self) -> str:
        return f"InMemoryBudgetStore(scopes={len(self._spent)})"

    def _live(self, scope: str, now: float) -> dict[str, tuple[int, float]]:
        held = self._held.setdefault(scope, {})
        for rid in [r for r, (_, expires) in held.items() if expires <= now]:
            amount, _ = held.pop(rid)
            self._charge(scope, amount)
            self._gone[rid] = (scope, amount, now + GONE_TTL_S)
        for rid in [r for r, (_, _, forget) in self._gone.items() if forget <= now]:
            del self._gone[rid]
        return held

    def _charge(self, scope: str, amount: int) -> None:
        self._spent[scope] = self._spent.get(scope, 0) + amount
        self._uncertain[scope] = self._uncertain.get(scope, 0) + amount

    def _settled(self, reservation: Reservation) -> int:
        """Drop ``reservation``; returns what its expiry had charged (0 if it was live)."""
        if self._held.get(reservation.scope, {}).pop(reservation.id, None) is not None:
            return 0
        gone = self._gone.pop(reservation.id, None)
        if gone is None:
            return 0
        self._charge(reservation.scope, -gone[1])
        return gone[1]

    def reserve(
        self, scope: str, model: str, amount_micro: int, cap_micro: int | None, ttl_s: float
    ) -> ReserveResult:
        with self._lock:
            now = self._clock()
            held = self._live(scope, now)
            spent = self._spent.get(scope, 0)
            reserved = sum(amount for amount, _ in held.values())
            if cap_micro is not None and spent + reserved + amount_micro > cap_micro:
                return ReserveResult(None, spent, reserved)
            rid = uuid.uuid4().hex
            held[rid] = (amount_micro, now + ttl_s)
            return ReserveResult(Reservation(rid, scope, amount_micro, model), spent, reserved)

    def commit(
        self, reservation: Reservation, cost_micro: int, observed: bool, estimated: bool = False
    ) -> int:
        with self._lock:
            self._settled(reservation)
            spent = self._spent.get(reservation.scope, 0) + cost_micro
            self._spent[reservation.scope] = spent
            if estimated:
                self._uncertain[reservation.scope] = self._uncertain.get(reservation.scope, 0) + cost_micro
            if observed:
                total, count = self._stats.get(reservation.model, (0, 0))
                self._stats[reservation.model] = (total + cost_micro, count + 1)
            return spent

    def release(self, reservation: Reservation) -> None:
        with self._lock:
            self._settled(reservation)

    def uncertain(self, scope: str) -> int:
        with self._lock:
            self._live(scope, self._clock())
            return self._uncertain.get(scope, 0)

    def spent(self, scope: str) -> int:
        with self._lock:
            self._live(scope, self._clock())
            return self._spent.get(scope, 0)

    def reserved(self, scope: str) -> int:
        with self._lock:
            return sum(amount for amount, _ in self._live(scope, self._clock()).values())

    def mean_cost(self, model: str) -> float | None:
        with self._lock:
            total, count = self._stats.get(model, (0, 0))
        return total / count if count else None

    def publish(self, snapshot: BudgetSnapshot) -> None:
        with self._lock:
            held = self._snapshots.get(snapshot.account)
            if held is None or snapshot.observed_at >= held.observed_at:
                self._snapshots[snapshot.account] = snapshot

    def snapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        return self._snapshots.get(account)

    def reset(self) -> None:
        with self._lock:
            self._spent.clear()
            self._held.clear()
            self._stats.clear()
            self._snapshots.clear()
            self._uncertain.clear()
            self._gone.clear()
