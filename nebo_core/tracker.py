"""The budget tracker: the freshest snapshot, spend per model and kind, threshold listeners.

One tracker can serve many models and clients, threads and asyncio tasks; every client
feeds it every response (errors and streams included), and the framework adapters read
from it instead of parsing anything. A late response never overwrites a newer snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from nebo_core.budget import BudgetSnapshot, UsageRecord, WindowState

logger = logging.getLogger("nebo_core.budget")

ThresholdCallback = Callable[[WindowState, float, BudgetSnapshot], None]
RecordCallback = Callable[[UsageRecord], None]


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

    def add(self, record: UsageRecord) -> None:
        """Count one call's record."""
        self.add_counts(
            record.prompt_tokens, record.completion_tokens, record.total_tokens, record.cost_micro
        )

    def add_counts(
        self, prompt: int | None, completion: int | None, total: int | None, cost: int | None
    ) -> None:
        """Count one call from its numbers (``None``: not reported)."""
        self.calls += 1
        self.prompt_tokens += prompt or 0
        self.completion_tokens += completion or 0
        self.total_tokens += total if total is not None else (prompt or 0) + (completion or 0)
        if cost is None:
            self.unknown_cost_calls += 1
        else:
            self.cost_micro += cost

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
            listeners = list(self._record_listeners)
        self.observe(record.snapshot)
        for listener in listeners:
            try:
                listener(record)
            except Exception:
                logger.exception("a Nebo usage listener failed")

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
