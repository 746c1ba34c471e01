"""The default budget store: one process, many threads, one lock.

Every method takes the lock once, so a reservation is checked and taken on every line of a
nested scope in one step (no check-then-record race). Reservations expire after their
time-to-live by a monotonic clock: a call that never settles (a stream dropped unread, a
crashed thread) is then charged its reservation, which a late settlement corrects.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence

from nebo_core.budget import BudgetSnapshot
from nebo_core.caps import ROLLING_BUCKETS, CapLine
from nebo_core.stores._base import (
    DONE_TTL_S,
    GONE_TTL_S,
    BudgetStore,
    LineUsage,
    Reservation,
    ReserveResult,
    bucket_of,
    window_of,
)


class InMemoryBudgetStore(BudgetStore):
    """A thread-safe store for one process. ``clock`` (monotonic seconds) is injectable for tests."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._spent: dict[str, int] = {}
        self._buckets: dict[str, dict[int, int]] = {}
        """Rolling lines: bucket index -> spend in it."""
        self._held: dict[str, dict[str, tuple[int, float]]] = {}
        """Line key -> reservation id -> (amount, expires at)."""
        self._stats: dict[str, tuple[int, int]] = {}
        self._snapshots: dict[str | None, BudgetSnapshot] = {}
        self._uncertain: dict[str, int] = {}
        self._gone: OrderedDict[str, tuple[int, float]] = OrderedDict()
        """Expired reservations charged on every line: id -> (amount, forget at), oldest first."""
        self._done: OrderedDict[str, float] = OrderedDict()
        """Settled reservation ids -> forget at, oldest first: a repeated settlement is ignored."""
        self._caps: dict[str, int | None] = {}
        """Every line reserved against -> the cap it was last reserved against."""

    def __repr__(self) -> str:
        return f"InMemoryBudgetStore(scopes={len(self._spent)})"

    # -- under the lock -------------------------------------------------------------------

    def _add(self, key: str, amount: int, now: float) -> None:
        self._spent[key] = self._spent.get(key, 0) + amount
        window = window_of(key)
        if window is not None:
            buckets = self._buckets.setdefault(key, {})
            index = bucket_of(now, window)
            buckets[index] = buckets.get(index, 0) + amount

    def _spent_now(self, key: str, now: float) -> int:
        window = window_of(key)
        if window is None:
            return self._spent.get(key, 0)
        buckets = self._buckets.get(key, {})
        oldest = bucket_of(now, window) - ROLLING_BUCKETS
        for index in [i for i in buckets if i <= oldest]:
            del buckets[index]
        return sum(buckets.values())

    def _live(self, key: str, now: float) -> dict[str, tuple[int, float]]:
        """The live holds of ``key``, after charging every reservation that expired (all its lines)."""
        held = self._held.setdefault(key, {})
        for rid in [r for r, (_, expires) in held.items() if expires <= now]:
            self._expire(rid, now)
        while self._gone and next(iter(self._gone.values()))[1] <= now:
            self._gone.popitem(last=False)
        while self._done and next(iter(self._done.values())) <= now:
            self._done.popitem(last=False)
        return held

    def _expire(self, rid: str, now: float) -> None:
        amount = 0
        for key, held in self._held.items():
            hold = held.pop(rid, None)
            if hold is not None:
                amount = hold[0]
                self._add(key, amount, now)
                self._uncertain[key] = self._uncertain.get(key, 0) + amount
        self._gone[rid] = (amount, now + GONE_TTL_S)

    def _settled(self, reservation: Reservation, now: float) -> bool:
        """Drop ``reservation`` from every line (taking back an expiry's charge); ``False`` if it
        was settled before (a repeated settlement, ignored)."""
        if reservation.id in self._done:
            return False
        self._done[reservation.id] = now + DONE_TTL_S
        gone = self._gone.pop(reservation.id, None)
        for key in reservation.keys:
            self._held.get(key, {}).pop(reservation.id, None)
            if gone is not None:
                self._add(key, -gone[0], now)
                self._uncertain[key] = self._uncertain.get(key, 0) - gone[0]
        return True

    # -- the contract ---------------------------------------------------------------------

    def reserve_lines(
        self,
        lines: Sequence[CapLine],
        model: str,
        amount_micro: int,
        ttl_s: float,
        account: str | None = None,
    ) -> ReserveResult:
        shared = self._snapshots.get(account)
        with self._lock:
            now = self._clock()
            for line in lines:
                self._caps[line.key] = line.cap_micro
            states = []
            for line in lines:
                held = self._live(line.key, now)
                spent = self._spent_now(line.key, now)
                reserved = sum(amount for amount, _ in held.values())
                if line.cap_micro is not None and spent + reserved + amount_micro > line.cap_micro:
                    return ReserveResult(None, spent, reserved, line, shared)
                states.append((spent, reserved))
            rid = uuid.uuid4().hex
            for line in lines:
                self._held.setdefault(line.key, {})[rid] = (amount_micro, now + ttl_s)
            spent, reserved = states[0]
            reservation = Reservation(rid, lines[0].key, amount_micro, model, tuple(lines))
            return ReserveResult(reservation, spent, reserved, lines[0], shared)

    def commit(
        self,
        reservation: Reservation,
        cost_micro: int,
        observed: bool,
        estimated: bool = False,
        snapshot: BudgetSnapshot | None = None,
    ) -> int:
        with self._lock:
            if snapshot is not None:
                self._publish(snapshot)
            now = self._clock()
            if self._settled(reservation, now):
                for key in reservation.keys:
                    self._add(key, cost_micro, now)
                    if estimated:
                        self._uncertain[key] = self._uncertain.get(key, 0) + cost_micro
                if observed:
                    total, count = self._stats.get(reservation.model, (0, 0))
                    self._stats[reservation.model] = (total + cost_micro, count + 1)
            return self._spent_now(reservation.scope, now)

    def release(self, reservation: Reservation) -> None:
        with self._lock:
            self._settled(reservation, self._clock())

    def uncertain(self, scope: str) -> int:
        with self._lock:
            self._live(scope, self._clock())
            return self._uncertain.get(scope, 0)

    def spent(self, scope: str) -> int:
        with self._lock:
            now = self._clock()
            self._live(scope, now)
            return self._spent_now(scope, now)

    def reserved(self, scope: str) -> int:
        with self._lock:
            return sum(amount for amount, _ in self._live(scope, self._clock()).values())

    def lines(self) -> list[LineUsage]:
        with self._lock:
            now = self._clock()
            out = []
            for key in sorted(self._caps):
                held = self._live(key, now)
                out.append(
                    LineUsage(
                        key,
                        self._spent_now(key, now),
                        sum(amount for amount, _ in held.values()),
                        len(held),
                        self._uncertain.get(key, 0),
                        self._caps[key],
                    )
                )
            return out

    def mean_cost(self, model: str) -> float | None:
        with self._lock:
            total, count = self._stats.get(model, (0, 0))
        return total / count if count else None

    def publish(self, snapshot: BudgetSnapshot) -> None:
        with self._lock:
            self._publish(snapshot)

    def _publish(self, snapshot: BudgetSnapshot) -> None:
        held = self._snapshots.get(snapshot.account)
        if held is None or snapshot.observed_at >= held.observed_at:
            self._snapshots[snapshot.account] = snapshot

    def snapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        return self._snapshots.get(account)

    def reset(self) -> None:
        with self._lock:
            for table in (
                self._spent,
                self._buckets,
                self._held,
                self._stats,
                self._snapshots,
                self._uncertain,
                self._gone,
                self._done,
                self._caps,
            ):
                table.clear()
        self._pace_book().reset()
