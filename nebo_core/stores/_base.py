"""The store contract a budget policy keeps its shared state in, and the snapshot codec stores use.

A store holds what must be consistent across threads (in-memory) or processes (Redis):
spend per line (a scope's level and period: :class:`~nebo_core.caps.CapLine`), in-flight
reservations with a time-to-live, observed cost per model (for estimates), and the freshest
budget snapshot. Every method is one atomic step, so a policy never does a read-modify-write
of its own: one reservation checks and holds every level of a nested scope at once.

A line whose key ends in ``@last:<seconds>`` is rolling: its spend is summed over that many
seconds (in :data:`~nebo_core.caps.ROLLING_BUCKETS` buckets), so old spend ages out.
Settlement is idempotent: settling a reservation twice (a retried settle after a network
blip) counts once.

Money is never lost: a reservation whose time-to-live passes unsettled (its worker died,
or its call outlived the TTL) is *charged*, not dropped, since its call may have been
billed; if the call settles later, the settlement corrects the charge to the real cost
(or refunds it on a release). :meth:`BudgetStore.uncertain` says how much of a scope's
spend is such estimates.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.caps import ROLLING_BUCKETS, CapLine
from nebo_core.pacing import Booking, PaceBook

logger = logging.getLogger("nebo_core.budget")

GONE_TTL_S = 86_400.0
"""How long an expired (charged) reservation is remembered: a late settlement within it corrects
the charge."""
DONE_TTL_S = 600.0
"""How long a settled reservation is remembered: a repeated settlement within it is ignored."""


def note_spent(reservation: Reservation, spent_micro: int) -> None:
    """Log when a settlement left the reservation's first line over its cap (by one call's
    estimate error: the reservation fitted, the real cost did not)."""
    first = reservation.lines[0] if reservation.lines else None
    if first is not None and first.cap_micro is not None and spent_micro > first.cap_micro:
        logger.info(
            "Nebo scope %r spent %d micro, over its cap of %d by one call's estimate error",
            reservation.scope,
            spent_micro,
            first.cap_micro,
        )


def window_of(key: str) -> float | None:
    """The rolling window of a line key (``...@last:18000`` -> 18000.0), else ``None``."""
    _, sep, tail = key.rpartition("@last:")
    return float(tail) if sep and tail.isdigit() else None


def bucket_of(now: float, window: float) -> int:
    """The rolling bucket ``now`` (seconds) falls in, for a window of ``window`` seconds."""
    return int(now // (window / ROLLING_BUCKETS))


@dataclass(frozen=True)
class Reservation:
    """An amount held against every line of a call's scope while the call is in flight."""

    id: str
    scope: str
    """The first line's key (a plain scope's name)."""
    amount_micro: int
    model: str
    lines: tuple[CapLine, ...] = ()
    """Every line held (one per capped level); empty means the one line ``scope``."""

    @property
    def keys(self) -> tuple[str, ...]:
        """The store keys this reservation holds."""
        return tuple(line.key for line in self.lines) if self.lines else (self.scope,)


@dataclass(frozen=True)
class LineUsage:
    """One store line as it stands: for views such as ``nebo top``."""

    key: str
    """The line key (:attr:`CapLine.key <nebo_core.caps.CapLine.key>`)."""
    spent_micro: int
    """Settled spend (a rolling line: within its window), estimates of expired holds included."""
    reserved_micro: int
    """Held by live reservations."""
    in_flight: int
    """Live reservations on this line."""
    uncertain_micro: int
    """The part of :attr:`spent_micro` that is estimates."""
    cap_micro: int | None
    """The cap last reserved against (``None``: uncapped, or unknown)."""


@dataclass(frozen=True)
class ReserveResult:
    """The answer to a reservation request, with the state of the line it was judged on."""

    reservation: Reservation | None
    """``None`` when a cap would be exceeded."""
    spent_micro: int
    reserved_micro: int
    """Held by other in-flight calls (not counting this one), on :attr:`line`."""
    line: CapLine | None = None
    """The line that refused (or the first line, when granted)."""
    snapshot: BudgetSnapshot | None = None
    """The freshest budget snapshot shared in the store for the account asked about, read in the
    same step (so a decision costs one round trip)."""


class BudgetStore(ABC):
    """Where a :class:`~nebo_core.policy.BudgetPolicy` keeps spend, reservations and snapshots."""

    @abstractmethod
    def reserve_lines(
        self,
        lines: Sequence[CapLine],
        model: str,
        amount_micro: int,
        ttl_s: float,
        account: str | None = None,
    ) -> ReserveResult:
        """Atomically: charge expired reservations (their calls may have been billed), then hold
        ``amount_micro`` on every line if each has ``spent + reserved + amount <= cap``
        (uncapped lines always have room); else hold nothing and say which line refused. The
        result carries the shared snapshot of ``account`` too."""

    def reserve(
        self, scope: str, model: str, amount_micro: int, cap_micro: int | None, ttl_s: float
    ) -> ReserveResult:
        """:meth:`reserve_lines` on the one line ``scope`` (the flat cap of earlier versions)."""
        return self.reserve_lines([CapLine(scope, cap_micro, window_of(scope))], model, amount_micro, ttl_s)

    def pace(
        self, key: str, interval_s: float, burst_s: float, tolerance_s: float | None, lane: str = "main"
    ) -> Booking:
        """Book ``interval_s`` seconds on the pace schedule ``key`` (:mod:`nebo_core.pacing`),
        atomically for every user of this store, and count the answer for ``lane``. This default
        keeps the schedule in this process; a networked store overrides it so a fleet shares one."""
        return self._pace_book().book(key, interval_s, burst_s, tolerance_s, lane)

    async def apace(
        self, key: str, interval_s: float, burst_s: float, tolerance_s: float | None, lane: str = "main"
    ) -> Booking:
        """The async twin of :meth:`pace`."""
        return self.pace(key, interval_s, burst_s, tolerance_s, lane)

    def lanes(self) -> dict[str, dict[str, int]]:
        """Pace bookings and holds per lane (``{"main": {"booked": 12, "held": 0}}``), fleet-wide
        for a networked store: what ``nebo top`` shows."""
        return self._pace_book().lanes()

    def _pace_book(self) -> PaceBook:
        book = self.__dict__.get("_pace_schedule")
        if book is None:
            book = self.__dict__.setdefault("_pace_schedule", PaceBook())
        return cast(PaceBook, book)

    @abstractmethod
    def commit(
        self,
        reservation: Reservation,
        cost_micro: int,
        observed: bool,
        estimated: bool = False,
        snapshot: BudgetSnapshot | None = None,
    ) -> int:
        """Atomically replace ``reservation`` by the real cost (correcting the charge if it had
        expired); returns the scope's new spend. ``observed``: ``cost_micro`` is a server-reported
        cost (it then feeds the per-model mean used for estimates); ``estimated``: it is an
        estimate for a call that may have been billed (counted in :meth:`uncertain`);
        ``snapshot``: published in the same step (as :meth:`publish`)."""

    def commit_nowait(
        self,
        reservation: Reservation,
        cost_micro: int,
        observed: bool,
        estimated: bool = False,
        snapshot: BudgetSnapshot | None = None,
    ) -> None:
        """:meth:`commit`, without waiting for the store to answer where it can send the
        settlement behind (Redis); here, a plain :meth:`commit`. A policy settles its calls this
        way: the caller has its answer already, and the settlement's reply tells it nothing."""
        note_spent(reservation, self.commit(reservation, cost_micro, observed, estimated, snapshot))

    def flush(self) -> None:
        """Send what :meth:`commit_nowait` left queued, and wait until it is applied (nothing
        here: this store commits at once)."""

    async def aflush(self) -> None:
        """:meth:`flush`, awaited."""

    @property
    def unsent_micro(self) -> int:
        """Settled spend this store could not send yet (it failed to go at least once; sent
        again later). Always 0 for a store that commits at once."""
        return 0

    @abstractmethod
    def release(self, reservation: Reservation) -> None:
        """Drop a reservation without spending (the call failed unbilled); refunds it if it had
        expired and been charged."""

    @abstractmethod
    def uncertain(self, scope: str) -> int:
        """The part of ``scope``'s spend that is estimates: calls that may have been billed
        with no cost seen (timeouts, cuts, dead workers' expired reservations)."""

    @abstractmethod
    def spent(self, scope: str) -> int:
        """Settled spend of line ``scope`` in microdollars (a rolling line: within its window)."""

    @abstractmethod
    def reserved(self, scope: str) -> int:
        """Microdollars held by live (unexpired) reservations on line ``scope``."""

    @abstractmethod
    def lines(self) -> list[LineUsage]:
        """Every line reserved against since the last :meth:`reset`, sorted by key, as it stands now
        (expired reservations charged first, as every step does)."""

    @abstractmethod
    def mean_cost(self, model: str) -> float | None:
        """Mean observed cost of one call to ``model`` (``None`` before the first)."""

    @abstractmethod
    def publish(self, snapshot: BudgetSnapshot) -> None:
        """Offer a snapshot; kept (per ``snapshot.account``) only if observed later than the one held."""

    @abstractmethod
    def snapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        """The freshest snapshot any user of this store has published for ``account``."""

    @abstractmethod
    def reset(self) -> None:
        """Forget everything (spend, reservations, statistics, snapshot)."""

    # -- async twins: a store without I/O simply calls the sync method; a networked store
    # (Redis) overrides them so an event loop never blocks on a round trip.

    async def areserve_lines(
        self,
        lines: Sequence[CapLine],
        model: str,
        amount_micro: int,
        ttl_s: float,
        account: str | None = None,
    ) -> ReserveResult:
        """The async twin of :meth:`reserve_lines`."""
        return self.reserve_lines(lines, model, amount_micro, ttl_s, account)

    async def areserve(
        self, scope: str, model: str, amount_micro: int, cap_micro: int | None, ttl_s: float
    ) -> ReserveResult:
        """The async twin of :meth:`reserve`."""
        line = CapLine(scope, cap_micro, window_of(scope))
        return await self.areserve_lines([line], model, amount_micro, ttl_s)

    async def acommit(
        self,
        reservation: Reservation,
        cost_micro: int,
        observed: bool,
        estimated: bool = False,
        snapshot: BudgetSnapshot | None = None,
    ) -> int:
        """The async twin of :meth:`commit`."""
        return self.commit(reservation, cost_micro, observed, estimated, snapshot)

    async def acommit_nowait(
        self,
        reservation: Reservation,
        cost_micro: int,
        observed: bool,
        estimated: bool = False,
        snapshot: BudgetSnapshot | None = None,
    ) -> None:
        """:meth:`commit_nowait`, awaited."""
        note_spent(reservation, await self.acommit(reservation, cost_micro, observed, estimated, snapshot))

    async def auncertain(self, scope: str) -> int:
        """The async twin of :meth:`uncertain`."""
        return self.uncertain(scope)

    async def arelease(self, reservation: Reservation) -> None:
        """The async twin of :meth:`release`."""
        self.release(reservation)

    async def aspent(self, scope: str) -> int:
        """The async twin of :meth:`spent`."""
        return self.spent(scope)

    async def areserved(self, scope: str) -> int:
        """The async twin of :meth:`reserved`."""
        return self.reserved(scope)

    async def alines(self) -> list[LineUsage]:
        """The async twin of :meth:`lines`."""
        return self.lines()

    async def amean_cost(self, model: str) -> float | None:
        """The async twin of :meth:`mean_cost`."""
        return self.mean_cost(model)

    async def apublish(self, snapshot: BudgetSnapshot) -> None:
        """The async twin of :meth:`publish`."""
        self.publish(snapshot)

    async def asnapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        """The async twin of :meth:`snapshot`."""
        return self.snapshot(account)

    async def areset(self) -> None:
        """The async twin of :meth:`reset`."""
        self.reset()


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _window(data: dict[str, Any], name: str) -> WindowState:
    w = data.get(name) or {}
    return WindowState(
        name,  # type: ignore[arg-type]
        w.get("limit_micro"),
        w.get("remaining_micro"),
        _parse_dt(w.get("reset_at")),
    )


def encode_snapshot(snapshot: BudgetSnapshot) -> str:
    """A snapshot as JSON (no secrets are in a snapshot)."""
    return json.dumps(
        {
            name: {
                "limit_micro": w.limit_micro,
                "remaining_micro": w.remaining_micro,
                "reset_at": _dt(w.reset_at),
            }
            for name, w in (("session", snapshot.session), ("weekly", snapshot.weekly))
        }
        | {
            "free_available_micro": snapshot.free_available_micro,
            "gift_available_micro": snapshot.gift_available_micro,
            "credits_cents": snapshot.credits_cents,
            "active_pool": snapshot.active_pool,
            "observed_at": _dt(snapshot.observed_at),
            "server_date": _dt(snapshot.server_date),
            "account": snapshot.account,
        }
    )


def decode_snapshot(text: str | bytes) -> BudgetSnapshot:
    """The inverse of :func:`encode_snapshot`."""
    data = json.loads(text)
    observed = _parse_dt(data.get("observed_at"))
    assert observed is not None
    return BudgetSnapshot(
        session=_window(data, "session"),
        weekly=_window(data, "weekly"),
        free_available_micro=data.get("free_available_micro"),
        gift_available_micro=data.get("gift_available_micro"),
        credits_cents=data.get("credits_cents"),
        active_pool=data.get("active_pool"),
        observed_at=observed,
        server_date=_parse_dt(data.get("server_date")),
        account=data.get("account"),
    )
