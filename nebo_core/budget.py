"""Budget data: what Nebo says is left, and what each call cost.

Money is an ``int`` of microdollars (1 = $0.000001); unknown is ``None``, never 0.
Everything here is a frozen dataclass built by the parsers in :mod:`nebo_core.wire`,
so it can cross threads, processes (pickle) and framework boundaries unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

MICRO_PER_DOLLAR = 1_000_000
SESSION_WINDOW_S = 5 * 3600
WEEKLY_WINDOW_S = 7 * 24 * 3600
MAX_CLOCK_SKEW_S = 3600.0
"""A ``Date`` header further off than this is a broken header, not a skewed clock."""
DATE_BLUR_S = 2.0
"""A ``Date`` header within this of our clock shows no skew: its whole seconds and the response's
transit blur it by up to a second or so."""

WindowName = Literal["session", "weekly"]
CostSource = Literal["server", "headers", "estimate", "unknown"]
CallKind = Literal["chat", "embedding"]


def micro_to_dollars(micro: int | None) -> float | None:
    """Microdollars as dollars (``None`` stays ``None``)."""
    return None if micro is None else micro / MICRO_PER_DOLLAR


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class WindowState:
    """One budget window (the 5-hour session or the 7-day week) as of one response."""

    name: WindowName
    limit_micro: int | None = None
    remaining_micro: int | None = None
    reset_at: datetime | None = None

    @property
    def known(self) -> bool:
        """Whether the server reported this window at all."""
        return self.limit_micro is not None or self.remaining_micro is not None

    @property
    def used_micro(self) -> int | None:
        """Spent in this window, when both limit and remaining are known."""
        if self.limit_micro is None or self.remaining_micro is None:
            return None
        return max(self.limit_micro - self.remaining_micro, 0)

    @property
    def used_fraction(self) -> float | None:
        """Share of the window spent, 0.0 to 1.0."""
        used = self.used_micro
        if used is None or not self.limit_micro:
            return None if used is None else (1.0 if self.remaining_micro == 0 else 0.0)
        return min(max(used / self.limit_micro, 0.0), 1.0)

    @property
    def remaining_dollars(self) -> float | None:
        """What is left, in dollars."""
        return micro_to_dollars(self.remaining_micro)

    @property
    def exhausted(self) -> bool:
        """Whether the server says nothing is left in this window (a limit of 0 means no window)."""
        return self.remaining_micro is not None and self.remaining_micro <= 0 and self.limit_micro != 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with the used fraction."""
        return {
            "name": self.name,
            "limit_micro": self.limit_micro,
            "remaining_micro": self.remaining_micro,
            "reset_at": _jsonable(self.reset_at),
            "used_fraction": self.used_fraction,
        }

    def seconds_to_reset(self, now: datetime | None = None) -> float | None:
        """Seconds until the window resets (never negative)."""
        if self.reset_at is None:
            return None
        return max((self.reset_at - (now or _utcnow())).total_seconds(), 0.0)


@dataclass(frozen=True)
class BudgetSnapshot:
    """Nebo's budget as reported by one response's headers (or by ``/v1/usage``)."""

    session: WindowState = field(default_factory=lambda: WindowState("session"))
    weekly: WindowState = field(default_factory=lambda: WindowState("weekly"))
    free_available_micro: int | None = None
    gift_available_micro: int | None = None
    credits_cents: int | None = None
    active_pool: str | None = None
    observed_at: datetime = field(default_factory=_utcnow)
    """When this response was received, by this machine's clock."""
    server_date: datetime | None = None
    """The server's ``Date`` header: lets a waiting policy correct for clock skew."""
    account: str | None = None
    """Which key at which URL reported this (``NeboSettings.account``, a hash): budget state is
    kept per account."""

    @property
    def known(self) -> bool:
        """Whether any budget header was present."""
        return self.session.known or self.weekly.known or self.active_pool is not None

    @property
    def windows(self) -> tuple[WindowState, WindowState]:
        """Both windows, session first."""
        return (self.session, self.weekly)

    @property
    def binding_window(self) -> WindowState | None:
        """The window with the least room left (by used fraction, then by remaining amount)."""
        known = [w for w in self.windows if w.remaining_micro is not None]
        if not known:
            return None
        return max(known, key=lambda w: (w.used_fraction or 0.0, -(w.remaining_micro or 0)))

    @property
    def remaining_micro(self) -> int | None:
        """What the tighter window still allows."""
        values = [w.remaining_micro for w in self.windows if w.remaining_micro is not None]
        return min(values) if values else None

    @property
    def remaining_dollars(self) -> float | None:
        """:attr:`remaining_micro` in dollars."""
        return micro_to_dollars(self.remaining_micro)

    @property
    def exhausted_window(self) -> WindowState | None:
        """The first window at zero, if any (a call now would get a 429)."""
        return next((w for w in self.windows if w.exhausted), None)

    @property
    def exhausted(self) -> bool:
        """Whether a window is at zero and no free, gift or credit pool can fund a call."""
        if self.exhausted_window is None:
            return False
        pools = (self.free_available_micro, self.gift_available_micro, self.credits_cents)
        return not any(p for p in pools if p)

    def clock_skew(self) -> float:
        """Seconds the server's clock is ahead of ours (0 when unknown or implausible: over an hour)."""
        if self.server_date is None:
            return 0.0
        skew = (self.server_date - self.observed_at).total_seconds()
        return skew if abs(skew) <= MAX_CLOCK_SKEW_S else 0.0

    def resolved_skew(self) -> float:
        """:meth:`clock_skew` when it is more than the ``Date`` header can blur (else 0): what a
        forecast or a pace corrects reset times by. ``Date`` has whole seconds and is stamped before
        the response travels, so an exact clock reads up to a second behind, plus the response's
        transit time; under :data:`DATE_BLUR_S` it is taken as no skew."""
        skew = self.clock_skew()
        return skew if abs(skew) >= DATE_BLUR_S else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO strings), with derived fields."""
        binding = self.binding_window
        # Built by hand, not with dataclasses.asdict: this runs on every call's metadata.
        return {
            "session": self.session.to_dict(),
            "weekly": self.weekly.to_dict(),
            "free_available_micro": self.free_available_micro,
            "gift_available_micro": self.gift_available_micro,
            "credits_cents": self.credits_cents,
            "active_pool": self.active_pool,
            "observed_at": _jsonable(self.observed_at),
            "server_date": _jsonable(self.server_date),
            "account": self.account,
            "remaining_micro": self.remaining_micro,
            "binding_window": binding.name if binding else None,
        }


@dataclass(frozen=True)
class UsageRecord:
    """What one chat or embedding call used and cost."""

    kind: CallKind
    requested_model: str
    model: str | None = None
    """The model Nebo routed to (the response's ``model``)."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    total_tokens: int | None = None
    cost_micro: int | None = None
    cost_source: CostSource = "unknown"
    """``server``: ``usage.cost_micro``; ``headers``: the drop in session remaining; ``estimate``: the
    call may have been billed but its cost is unknown (a timeout or cut after the request was sent,
    a stream closed before its usage), so it is charged the budget policy's estimate; else unknown."""
    pool: str | None = None
    latency_s: float | None = None
    streamed: bool = False
    complete: bool = True
    """False for a stream closed early or broken: the numbers are what was seen so far."""
    snapshot: BudgetSnapshot | None = None
    request_id: str | None = None
    scope: str | None = None

    @property
    def cost_dollars(self) -> float | None:
        """:attr:`cost_micro` in dollars."""
        return micro_to_dollars(self.cost_micro)

    @property
    def uncertain(self) -> bool:
        """The cost is an estimate charged for a call that may have been billed (never zero)."""
        return self.cost_source == "estimate"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with the snapshot expanded."""
        data = {k: _jsonable(v) for k, v in self.__dict__.items() if k != "snapshot"}
        data["cost_dollars"] = self.cost_dollars
        data["snapshot"] = self.snapshot.to_dict() if self.snapshot else None
        return data


@dataclass(frozen=True)
class UsageReport:
    """The body of ``GET /v1/usage``, in either of its known shapes (nebo-api.md section 7)."""

    plan: str | None
    snapshot: BudgetSnapshot
    used_percent: int | None = None
    """The newer monthly shape: the plan's month used, 0-100."""
    included: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def session(self) -> WindowState:
        """The 5-hour window."""
        return self.snapshot.session

    @property
    def weekly(self) -> WindowState:
        """The 7-day window."""
        return self.snapshot.weekly

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "plan": self.plan,
            "used_percent": self.used_percent,
            "included": self.included,
            **self.snapshot.to_dict(),
        }


def call_metadata(
    record: UsageRecord | None, snapshot: BudgetSnapshot | None = None, forecast: Any = None
) -> dict[str, Any]:
    """What the adapters attach to every response as ``nebo``: this call's cost and the budget.

    One shape for every framework: ``cost_micro``, ``cost_dollars``, ``cost_source``, ``model``
    (routed), ``request_id``, ``complete`` (False for a stream closed early), ``snapshot`` and
    ``forecast`` (a :class:`~nebo_core.forecast.BudgetForecast` as a dict, or ``None``).
    """
    snap = snapshot if snapshot is not None else (record.snapshot if record is not None else None)
    return {
        "cost_micro": record.cost_micro if record is not None else None,
        "cost_dollars": record.cost_dollars if record is not None else None,
        "cost_source": record.cost_source if record is not None else "unknown",
        "model": record.model if record is not None else None,
        "request_id": record.request_id if record is not None else None,
        "complete": record.complete if record is not None else False,
        "snapshot": snap.to_dict() if snap is not None else None,
        "forecast": forecast.to_dict() if forecast is not None else None,
    }
