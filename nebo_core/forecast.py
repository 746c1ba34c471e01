"""Looking ahead: how fast each budget window burns, and whether it lasts until its reset.

Nebo reports, in every response, how much each window has left and when it resets. The
tracker keeps a short series of those readings per account and window; :func:`forecast_window`
turns one series into a :class:`WindowForecast` (a pure function, no I/O, no clock of its own).

The burn rate is the least-squares slope of the server's *used* amount over time, so spend by
other processes and machines sharing the token counts too, and the late arrival of one
concurrent response cannot double-count. Two horizons: ``short`` (the last few readings, which
follows a change of pace within three calls) and ``long`` (up to :data:`LONG_HORIZON_S`). The
projection uses the faster of the two: a budget forecast errs on the side of running out.
A series restarts when the window resets (its used amount falls by half or more, or its limit
changes), so a rolled window never shows a negative burn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nebo_core.budget import BudgetSnapshot, WindowName, WindowState

SHORT_SAMPLES = 4
"""Readings in the short horizon: a change of pace shows within three calls."""
LONG_HORIZON_S = 300.0
"""The long horizon: readings younger than this (relative to the newest)."""
MAX_SAMPLES = 4096
"""Readings kept per account and window, at most (within the long horizon)."""


@dataclass(frozen=True)
class Reading:
    """One response's view of one window: when (this machine's clock), how much used, of what limit."""

    at: float
    """Seconds since the epoch, by this machine's clock (``observed_at``)."""
    used_micro: int
    limit_micro: int
    reset_at: datetime | None


def reading_of(window: WindowState, observed_at: datetime) -> Reading | None:
    """A window state as a reading (``None`` when the server did not report both numbers)."""
    if window.limit_micro is None or window.remaining_micro is None or window.limit_micro <= 0:
        return None
    used = max(window.limit_micro - window.remaining_micro, 0)
    return Reading(observed_at.timestamp(), used, window.limit_micro, window.reset_at)


class Series:
    """The readings of one window since its last reset, within :data:`LONG_HORIZON_S` of the newest
    (not thread-safe: the tracker locks). Running sums make both slopes O(1) per forecast."""

    def __init__(self, maxlen: int = MAX_SAMPLES) -> None:
        self.readings: deque[Reading] = deque()
        self.maxlen = maxlen
        self.peak = 0
        self._t0 = 0.0
        self._sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # n, t, u, tt, tu (t relative to _t0)

    def add(self, reading: Reading) -> None:
        """Append a reading, restarting the series when the window reset or its limit changed (the
        same response seen twice, by its headers and then by its record, counts once)."""
        if self.readings:
            last = self.readings[-1]
            if reading == last:
                return
            rolled = self.peak > 0 and reading.used_micro <= self.peak // 2 and reading.at >= last.at
            if reading.limit_micro != last.limit_micro or rolled:
                self.clear()
        if not self.readings:
            self._t0 = reading.at
        self.readings.append(reading)
        self.peak = max(self.peak, reading.used_micro)
        self._count(reading, 1.0)
        newest = max(reading.at, self.readings[0].at)
        while len(self.readings) > self.maxlen or (
            len(self.readings) > 2 and newest - self.readings[0].at > LONG_HORIZON_S
        ):
            self._count(self.readings.popleft(), -1.0)

    def clear(self) -> None:
        """Forget every reading."""
        self.readings.clear()
        self.peak = 0
        self._sums = [0.0, 0.0, 0.0, 0.0, 0.0]

    def _count(self, r: Reading, sign: float) -> None:
        t = r.at - self._t0
        u = float(r.used_micro)
        sums = self._sums
        sums[0] += sign
        sums[1] += sign * t
        sums[2] += sign * u
        sums[3] += sign * t * t
        sums[4] += sign * t * u

    def long_slope(self) -> float | None:
        """The least-squares burn rate over every reading held (the long horizon)."""
        n, st, su, stt, stu = self._sums
        if n < 2:
            return None
        var = stt - st * st / n
        if var <= 1e-9:
            return None
        return max((stu - st * su / n) / var, 0.0)

    def short_slope(self) -> float | None:
        """The least-squares burn rate over the last :data:`SHORT_SAMPLES` readings."""
        k = min(SHORT_SAMPLES, len(self.readings))
        return slope(self.readings[i] for i in range(len(self.readings) - k, len(self.readings)))


def slope(points: Iterable[Reading]) -> float | None:
    """Least-squares slope of used microdollars over seconds (``None``: under two readings or no time)."""
    pts = list(points)
    if len(pts) < 2:
        return None
    n = len(pts)
    t0 = pts[0].at
    mean_t = sum(p.at - t0 for p in pts) / n
    mean_u = sum(p.used_micro for p in pts) / n
    var = sum((p.at - t0 - mean_t) ** 2 for p in pts)
    if var <= 0.0:
        return None
    cov = sum((p.at - t0 - mean_t) * (p.used_micro - mean_u) for p in pts)
    return max(cov / var, 0.0)


@dataclass(frozen=True)
class WindowForecast:
    """Where one window is heading at the recent burn rate."""

    name: WindowName
    limit_micro: int | None
    remaining_micro: int | None
    seconds_to_reset: float | None
    burn_rate_short: float | None
    """Microdollars per second over the last few readings."""
    burn_rate_long: float | None
    """Microdollars per second over up to :data:`LONG_HORIZON_S`."""
    samples: int
    """Readings the rates rest on (since the window's last reset)."""
    calls_left: Mapping[str, int] = field(default_factory=dict)
    """Calls left at the recent mean cost per kind (``chat``, ``embedding``)."""

    @property
    def burn_rate(self) -> float | None:
        """The rate the projection uses: the faster horizon (a budget errs towards running out)."""
        rates = [r for r in (self.burn_rate_short, self.burn_rate_long) if r is not None]
        return max(rates) if rates else None

    @property
    def seconds_to_exhaustion(self) -> float | None:
        """Seconds until nothing is left at :attr:`burn_rate` (``None``: no burn seen; 0: exhausted)."""
        if self.remaining_micro is None:
            return None
        if self.remaining_micro <= 0:
            return 0.0
        rate = self.burn_rate
        if not rate:
            return None
        return self.remaining_micro / rate

    @property
    def exhausts_before_reset(self) -> bool:
        """Whether the window runs dry before it resets, at the current burn rate."""
        left = self.seconds_to_exhaustion
        if left is None:
            return False
        return self.seconds_to_reset is None or left < self.seconds_to_reset

    @property
    def projected_used_fraction_at_reset(self) -> float | None:
        """The share of the limit used by the reset at this burn rate (over 1.0: it runs out first)."""
        if not self.limit_micro or self.remaining_micro is None:
            return None
        used = self.limit_micro - self.remaining_micro
        rate = self.burn_rate or 0.0
        ahead = rate * (self.seconds_to_reset or 0.0)
        return (used + ahead) / self.limit_micro

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the derived fields."""
        return {
            "name": self.name,
            "limit_micro": self.limit_micro,
            "remaining_micro": self.remaining_micro,
            "seconds_to_reset": self.seconds_to_reset,
            "burn_rate_micro_per_s": self.burn_rate,
            "burn_rate_short": self.burn_rate_short,
            "burn_rate_long": self.burn_rate_long,
            "seconds_to_exhaustion": self.seconds_to_exhaustion,
            "exhausts_before_reset": self.exhausts_before_reset,
            "projected_used_fraction_at_reset": self.projected_used_fraction_at_reset,
            "calls_left": dict(self.calls_left),
            "samples": self.samples,
        }


@dataclass(frozen=True)
class BudgetForecast:
    """Both windows' forecasts for one account, and which one binds."""

    account: str | None
    session: WindowForecast
    weekly: WindowForecast
    at: datetime

    @property
    def windows(self) -> tuple[WindowForecast, WindowForecast]:
        """Both windows, session first."""
        return (self.session, self.weekly)

    @property
    def binding(self) -> WindowForecast | None:
        """The window that runs out first: the soonest exhaustion among those that run out before their
        reset; else the one with the highest projected use at its reset; ``None`` when nothing is known."""
        dry = [w for w in self.windows if w.exhausts_before_reset]
        if dry:
            return min(dry, key=lambda w: w.seconds_to_exhaustion or 0.0)
        known = [w for w in self.windows if w.projected_used_fraction_at_reset is not None]
        if not known:
            return None
        return max(known, key=lambda w: w.projected_used_fraction_at_reset or 0.0)

    @property
    def known(self) -> bool:
        """Whether any window was reported."""
        return any(w.limit_micro is not None for w in self.windows)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        binding = self.binding
        return {
            "account": self.account,
            "at": self.at.isoformat(),
            "session": self.session.to_dict(),
            "weekly": self.weekly.to_dict(),
            "binding": binding.name if binding is not None else None,
        }


def forecast_window(
    window: WindowState,
    series: Series | None,
    now: datetime,
    mean_cost: Mapping[str, float] | None = None,
) -> WindowForecast:
    """One window's forecast from its latest state and its readings (pure: ``now`` is given)."""
    short = series.short_slope() if series is not None else None
    long = series.long_slope() if series is not None else None
    calls_left: dict[str, int] = {}
    if window.remaining_micro is not None and mean_cost:
        for kind, mean in mean_cost.items():
            if mean > 0:
                calls_left[kind] = int(max(window.remaining_micro, 0) // mean)
    return WindowForecast(
        name=window.name,
        limit_micro=window.limit_micro,
        remaining_micro=window.remaining_micro,
        seconds_to_reset=window.seconds_to_reset(now),
        burn_rate_short=short,
        burn_rate_long=long,
        samples=len(series.readings) if series is not None else 0,
        calls_left=calls_left,
    )


def forecast(
    snapshot: BudgetSnapshot | None,
    series: Mapping[str, Series],
    now: datetime,
    mean_cost: Mapping[str, float] | None = None,
    account: str | None = None,
) -> BudgetForecast:
    """Both windows' forecasts from the latest snapshot and the readings (pure)."""
    snap = snapshot if snapshot is not None else BudgetSnapshot()
    server_now = now + timedelta(seconds=snap.resolved_skew())  # reset times are the server's
    return BudgetForecast(
        account=snap.account if snapshot is not None else account,
        session=forecast_window(snap.session, series.get("session"), server_now, mean_cost),
        weekly=forecast_window(snap.weekly, series.get("weekly"), server_now, mean_cost),
        at=now,
    )
