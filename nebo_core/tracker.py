"""The budget tracker: the freshest snapshot, spend per model and kind, threshold listeners.

One tracker can serve many models and clients, threads and asyncio tasks; every client
feeds it every response (errors and streams included), and the framework adapters read
from it instead of parsing anything. A late response never overwrites a newer snapshot.

The server's ledger is the truth: :meth:`BudgetTracker.reconciliation` compares what the
records account for with what the server says was spent (the session window's limit
minus remaining), so a gap (a call billed whose cost was never seen) is visible.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from nebo_core.budget import BudgetSnapshot, UsageRecord, WindowState, _utcnow
from nebo_core.forecast import BudgetForecast, Series, forecast, reading_of

logger = logging.getLogger("nebo_core.budget")

ThresholdCallback = Callable[[WindowState, float, BudgetSnapshot], None]
RecordCallback = Callable[[UsageRecord], None]
RECENT_COSTS = 32
"""Calls per kind behind a forecast's "calls left" (the recent mean cost)."""


@dataclass(kw_only=True)
class Totals:
    """Calls, tokens and spend for one model, one kind, or everything."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micro: int = 0
    unknown_cost_calls: int = 0
    """Calls whose cost could not be known: :attr:`cost_micro` undercounts by these."""
    total_tokens: int = 0
    uncertain_calls: int = 0
    """Calls that may have been billed with no cost seen, counted at an estimate."""
    uncertain_micro: int = 0
    """The part of :attr:`cost_micro` that is those estimates."""

    def add(self, record: UsageRecord) -> None:
        """Count one call's record."""
        self.add_counts(
            record.prompt_tokens,
            record.completion_tokens,
            record.total_tokens,
            record.cost_micro,
            uncertain=record.uncertain,
        )

    def add_counts(
        self,
        prompt: int | None,
        completion: int | None,
        total: int | None,
        cost: int | None,
        *,
        uncertain: bool = False,
    ) -> None:
        """Count one call from its numbers (``None``: not reported; ``uncertain``: ``cost`` is estimated)."""
        self.calls += 1
        self.prompt_tokens += prompt or 0
        self.completion_tokens += completion or 0
        self.total_tokens += total if total is not None else (prompt or 0) + (completion or 0)
        if cost is None:
            self.unknown_cost_calls += 1
        else:
            self.cost_micro += cost
            if uncertain:
                self.uncertain_calls += 1
                self.uncertain_micro += cost

    @property
    def cost_dollars(self) -> float:
        """:attr:`cost_micro` in dollars."""
        return self.cost_micro / 1_000_000

    def copy(self) -> Totals:
        return replace(self)


@dataclass
class TrackerTotals:
    """A consistent copy of a tracker's counters."""

    total: Totals = field(default_factory=Totals)
    by_model: dict[str, Totals] = field(default_factory=dict)
    by_kind: dict[str, Totals] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""

        def one(t: Totals) -> dict[str, Any]:
            return {**t.__dict__, "cost_dollars": t.cost_dollars}

        return {
            "total": one(self.total),
            "by_model": {k: one(v) for k, v in self.by_model.items()},
            "by_kind": {k: one(v) for k, v in self.by_kind.items()},
        }


@dataclass(frozen=True)
class Reconciliation:
    """What the server says one account spent against what this tracker's records account for.

    ``server_micro`` is the rise of the session window's used amount (limit minus remaining:
    the server's own running total) over the spans this tracker saw; ``recorded_micro`` the
    exact costs of the calls recorded in those spans; ``gap_micro`` their difference: what
    was billed that no exact record shows (the true cost of :attr:`uncertain_calls`, and the
    spend of other processes or machines sharing the token). A span restarts when the
    window's limit changes. The window is rolling (old spend drops off after 5 hours), so
    the comparison is exact over spans shorter than the age of the window's oldest spend,
    and drifts low after that: call :meth:`BudgetTracker.reset` to start afresh. Spend from
    the free, gift and credit pools does not move the session window, so it is outside it.
    """

    account: str | None
    since: datetime | None
    """When the first span started (``None``: no usable snapshot yet)."""
    server_micro: int
    recorded_micro: int
    uncertain_micro: int
    """Charged at estimates for calls that may have been billed (in the same spans)."""
    uncertain_calls: int

    @property
    def gap_micro(self) -> int:
        """Billed by the server, not accounted for by an exact record."""
        return self.server_micro - self.recorded_micro


@dataclass
class _Span:
    """One stretch of a session window seen by one account's tracker, for reconciliation."""

    first: BudgetSnapshot
    start_used: int
    used: int
    limit: int
    recorded: int = 0
    uncertain: int = 0
    uncertain_calls: int = 0


@dataclass
class _Ledger:
    since: datetime
    span: _Span
    closed_server: int = 0
    closed_recorded: int = 0
    closed_uncertain: int = 0
    closed_uncertain_calls: int = 0


def _used(snapshot: BudgetSnapshot) -> tuple[int, int] | None:
    w = snapshot.session
    if w.limit_micro is None or w.remaining_micro is None:
        return None
    return w.limit_micro, w.limit_micro - w.remaining_micro


@dataclass
class _Threshold:
    fraction: float
    callback: ThresholdCallback
    windows: tuple[str, ...]
    armed: dict[str, bool] = field(default_factory=dict)


class BudgetTracker:
    """Thread- and task-safe record of what Nebo reported and what calls cost."""

    def __init__(self, history: int = 1000) -> None:
        self._lock = threading.Lock()
        self._snapshot: BudgetSnapshot | None = None
        self._accounts: dict[str | None, BudgetSnapshot] = {}
        self._totals = TrackerTotals()
        self._history: deque[UsageRecord] = deque(maxlen=history)
        self._thresholds: list[_Threshold] = []
        self._record_listeners: list[RecordCallback] = []
        self._ledgers: dict[str | None, _Ledger] = {}
        self._series: dict[str | None, dict[str, Series]] = {}
        self._recent_costs: dict[str, deque[int]] = {}

    @property
    def snapshot(self) -> BudgetSnapshot | None:
        """The freshest budget snapshot seen (by observation time), whichever account sent it."""
        return self._snapshot

    def snapshot_for(self, account: str | None) -> BudgetSnapshot | None:
        """The freshest snapshot of one account (``NeboSettings.account``): what budget decisions use,
        so one exhausted token never blocks another sharing this tracker."""
        return self._accounts.get(account)

    def observe(self, snapshot: BudgetSnapshot | None) -> None:
        """Offer a snapshot; kept only if it is newer than its account's and says anything."""
        if snapshot is None or not snapshot.known:
            return
        with self._lock:
            self._follow(snapshot)
            self._read(snapshot)
            held = self._accounts.get(snapshot.account)
            if held is not None and snapshot.observed_at < held.observed_at:
                return
            self._accounts[snapshot.account] = snapshot
            if self._snapshot is None or snapshot.observed_at >= self._snapshot.observed_at:
                self._snapshot = snapshot
            fired = self._check_thresholds(snapshot)
        for callback, window, fraction in fired:
            try:
                callback(window, fraction, snapshot)
            except Exception:  # a listener's bug must not fail the call that fed it
                logger.exception("a Nebo budget threshold listener failed")

    def record(self, record: UsageRecord) -> None:
        """Count one call's usage and observe its snapshot."""
        key = record.model or record.requested_model
        with self._lock:
            self._totals.total.add(record)
            # get-then-insert, not setdefault(key, Totals()): that builds a Totals on every call
            for table, name in ((self._totals.by_model, key), (self._totals.by_kind, record.kind)):
                totals = table.get(name)
                if totals is None:
                    totals = table[name] = Totals()
                totals.add(record)
            self._history.append(record)
            if record.cost_micro is not None and record.complete:
                costs = self._recent_costs.get(record.kind)
                if costs is None:
                    costs = self._recent_costs[record.kind] = deque(maxlen=RECENT_COSTS)
                costs.append(record.cost_micro)
            listeners = list(self._record_listeners)
        self.observe(record.snapshot)
        with self._lock:
            self._reconcile(record)
        for listener in listeners:
            try:
                listener(record)
            except Exception:
                logger.exception("a Nebo usage listener failed")

    # -- forecasting from the server's remaining counter ----------------------------------

    def _read(self, snapshot: BudgetSnapshot) -> None:
        """Add each window's reading to its account's series (under the lock)."""
        per_window = self._series.get(snapshot.account)
        if per_window is None:
            per_window = self._series[snapshot.account] = {}
        for window in snapshot.windows:
            reading = reading_of(window, snapshot.observed_at)
            if reading is None:
                continue
            series = per_window.get(window.name)
            if series is None:
                series = per_window[window.name] = Series()
            series.add(reading)

    def forecast(self, account: str | None = None, now: datetime | None = None) -> BudgetForecast:
        """Where each window of ``account`` is heading at the recent burn rate, and which one binds
        (:class:`~nebo_core.forecast.BudgetForecast`); ``None``: the account of :attr:`snapshot`.
        No network call: it rests on the readings of the responses this tracker has seen."""
        with self._lock:
            if account is None and self._snapshot is not None:
                account = self._snapshot.account
            snapshot = self._accounts.get(account)
            series = dict(self._series.get(account, {}))
            means = {k: sum(v) / len(v) for k, v in self._recent_costs.items() if v}
            return forecast(snapshot, series, now or _utcnow(), means, account)

    # -- reconciliation with the server's running total -----------------------------------

    def _follow(self, snapshot: BudgetSnapshot) -> None:
        """Track the session window's used amount (under the lock)."""
        used = _used(snapshot)
        if used is None:
            return
        limit, now_used = used
        ledger = self._ledgers.get(snapshot.account)
        if ledger is None:
            self._ledgers[snapshot.account] = _Ledger(
                snapshot.observed_at, _Span(snapshot, now_used, now_used, limit)
            )
            return
        span = ledger.span
        if limit == span.limit:
            span.used = max(span.used, now_used)  # responses may land out of order: the most seen
            return
        # The plan changed the limit: close the span, start another.
        ledger.closed_server += span.used - span.start_used
        ledger.closed_recorded += span.recorded
        ledger.closed_uncertain += span.uncertain
        ledger.closed_uncertain_calls += span.uncertain_calls
        ledger.span = _Span(snapshot, now_used, now_used, limit)

    def _reconcile(self, record: UsageRecord) -> None:
        """Count a record into its account's span (under the lock). The response that opened the
        span is already in its starting total, so its own record is not counted again."""
        account = record.snapshot.account if record.snapshot is not None else None
        ledger = self._ledgers.get(account)
        if ledger is None or record.cost_micro is None:
            return
        span = ledger.span
        if record.uncertain:
            span.uncertain += record.cost_micro
            span.uncertain_calls += 1
        elif record.snapshot is not span.first:
            span.recorded += record.cost_micro

    def reconciliation(self, account: str | None = None) -> Reconciliation:
        """The server's spend for ``account`` against this tracker's records (see :class:`Reconciliation`);
        ``None``: the account of the freshest snapshot, as :attr:`snapshot`."""
        with self._lock:
            if account is None and None not in self._ledgers and self._snapshot is not None:
                account = self._snapshot.account
            ledger = self._ledgers.get(account)
            if ledger is None:
                return Reconciliation(account, None, 0, 0, 0, 0)
            span = ledger.span
            return Reconciliation(
                account,
                ledger.since,
                ledger.closed_server + span.used - span.start_used,
                ledger.closed_recorded + span.recorded,
                ledger.closed_uncertain + span.uncertain,
                ledger.closed_uncertain_calls + span.uncertain_calls,
            )

    def totals(self) -> TrackerTotals:
        """A consistent copy of every counter."""
        with self._lock:
            t = self._totals
            return TrackerTotals(
                t.total.copy(),
                {k: v.copy() for k, v in t.by_model.items()},
                {k: v.copy() for k, v in t.by_kind.items()},
            )

    def history(self) -> list[UsageRecord]:
        """The most recent records, oldest first (bounded)."""
        with self._lock:
            return list(self._history)

    def add_threshold_listener(
        self,
        fraction: float,
        callback: ThresholdCallback,
        windows: tuple[str, ...] = ("session", "weekly"),
    ) -> Callable[[], None]:
        """Call ``callback(window, fraction, snapshot)`` once when a window's used fraction reaches
        ``fraction``, and again only after it has dropped below (the window rolled). Returns a remover."""
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"threshold fraction must be in (0, 1], got {fraction!r}")
        threshold = _Threshold(fraction, callback, windows, {})
        with self._lock:
            self._thresholds.append(threshold)

        def remove() -> None:
            with self._lock:
                if threshold in self._thresholds:
                    self._thresholds.remove(threshold)

        return remove

    def add_record_listener(self, callback: RecordCallback) -> Callable[[], None]:
        """Call ``callback(record)`` after every recorded call. Returns a remover."""
        with self._lock:
            self._record_listeners.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._record_listeners:
                    self._record_listeners.remove(callback)

        return remove

    def _check_thresholds(
        self, snapshot: BudgetSnapshot
    ) -> list[tuple[ThresholdCallback, WindowState, float]]:
        fired = []
        for threshold in self._thresholds:
            for window in snapshot.windows:
                if window.name not in threshold.windows or window.used_fraction is None:
                    continue
                reached = window.used_fraction >= threshold.fraction
                key = f"{snapshot.account}:{window.name}"  # each account's windows cross on their own
                if reached and threshold.armed.get(key, True):
                    threshold.armed[key] = False
                    fired.append((threshold.callback, window, threshold.fraction))
                elif not reached:
                    threshold.armed[key] = True
        return fired

    def reset(self) -> None:
        """Forget counters, history and the snapshot (listeners stay)."""
        with self._lock:
            self._snapshot = None
            self._accounts.clear()
            self._totals = TrackerTotals()
            self._history.clear()
            self._ledgers.clear()
            self._series.clear()
            self._recent_costs.clear()


_default: BudgetTracker | None = None
_default_lock = threading.Lock()


def default_tracker() -> BudgetTracker:
    """The process-wide tracker every model and client uses unless given another."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = BudgetTracker()
    return _default
