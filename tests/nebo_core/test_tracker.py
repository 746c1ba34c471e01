"""Tests for nebo_core.tracker: exact totals under threads and tasks, freshest snapshot, thresholds."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import pytest

from nebo_core import default_tracker
from nebo_core.budget import BudgetSnapshot, UsageRecord, WindowState
from nebo_core.tracker import BudgetTracker

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
MODELS = ["gpt-5-mini", "gpt-5.2", "nebo-1", "text-embedding-3-small"]


def snap(remaining: int, at: datetime = T0, limit: int = 1000, weekly: int | None = None) -> BudgetSnapshot:
    return BudgetSnapshot(
        session=WindowState("session", limit, remaining),
        weekly=WindowState("weekly", 10_000 if weekly is not None else None, weekly),
        observed_at=at,
    )


def rec(i: int, cost: int | None = None) -> UsageRecord:
    model = MODELS[i % len(MODELS)]
    return UsageRecord(
        kind="embedding" if model.startswith("text-") else "chat",
        requested_model="auto",
        model=model,
        prompt_tokens=i % 7,
        completion_tokens=1,
        cost_micro=(i % 11) if cost is None else cost,
    )


def expected_totals(n: int) -> tuple[dict[str, tuple[int, int, int]], dict[str, int]]:
    by_model: dict[str, list[int]] = {}
    by_kind: dict[str, int] = {}
    for i in range(n):
        r = rec(i)
        t = by_model.setdefault(r.model or "", [0, 0, 0])
        t[0] += 1
        t[1] += r.cost_micro or 0
        t[2] += r.prompt_tokens or 0
        by_kind[r.kind] = by_kind.get(r.kind, 0) + (r.cost_micro or 0)
    return {k: tuple(v) for k, v in by_model.items()}, by_kind  # type: ignore[misc]


def check(tracker: BudgetTracker, n: int) -> None:
    totals = tracker.totals()
    by_model, by_kind = expected_totals(n)
    assert totals.total.calls == n
    assert totals.total.cost_micro == sum(v[1] for v in by_model.values())
    assert {k: (v.calls, v.cost_micro, v.prompt_tokens) for k, v in totals.by_model.items()} == by_model
    assert {k: v.cost_micro for k, v in totals.by_kind.items()} == by_kind
    assert totals.total.completion_tokens == n


def test_many_threads_exact_totals() -> None:
    tracker = BudgetTracker()
    threads, per = 16, 500
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        barrier.wait()
        for j in range(per):
            tracker.record(rec(t * per + j))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    check(tracker, threads * per)


async def test_many_tasks_exact_totals() -> None:
    tracker = BudgetTracker()
    tasks, per = 50, 100

    async def work(t: int) -> None:
        for j in range(per):
            tracker.record(rec(t * per + j))
            await asyncio.sleep(0)

    await asyncio.gather(*(work(t) for t in range(tasks)))
    check(tracker, tasks * per)


def test_unknown_cost_is_counted_separately() -> None:
    tracker = BudgetTracker()
    tracker.record(UsageRecord("chat", "auto", model="m", cost_micro=None))
    tracker.record(UsageRecord("chat", "auto", model="m", cost_micro=5))
    t = tracker.totals().total
    assert (t.calls, t.cost_micro, t.unknown_cost_calls) == (2, 5, 1)


def test_model_falls_back_to_requested_model() -> None:
    tracker = BudgetTracker()
    tracker.record(UsageRecord("chat", "auto", model=None, cost_micro=1))
    assert list(tracker.totals().by_model) == ["auto"]


def test_totals_are_a_copy() -> None:
    tracker = BudgetTracker()
    tracker.record(rec(0))
    copy = tracker.totals()
    tracker.record(rec(1))
    assert copy.total.calls == 1
    assert tracker.totals().total.calls == 2
    assert tracker.totals().to_dict()["total"]["calls"] == 2


def test_freshest_snapshot_wins() -> None:
    tracker = BudgetTracker()
    newer, older = snap(500, T0 + timedelta(seconds=5)), snap(900, T0)
    tracker.observe(newer)
    tracker.observe(older)  # a late-arriving older response
    assert tracker.snapshot is newer
    newest = snap(400, T0 + timedelta(seconds=6))
    tracker.observe(newest)
    assert tracker.snapshot is newest


def test_snapshot_via_record_and_empty_snapshots_ignored() -> None:
    tracker = BudgetTracker()
    s = snap(700)
    tracker.record(UsageRecord("chat", "auto", snapshot=s))
    assert tracker.snapshot is s
    tracker.observe(BudgetSnapshot(observed_at=T0 + timedelta(hours=1)))  # no budget headers at all
    tracker.observe(None)
    assert tracker.snapshot is s


def test_freshest_snapshot_across_threads() -> None:
    tracker = BudgetTracker()
    snaps = [snap(1000 - i, T0 + timedelta(milliseconds=i)) for i in range(800)]
    chunks = [snaps[i::8][::-1] for i in range(8)]  # each thread offers its share newest-first

    def work(part: list[BudgetSnapshot]) -> None:
        for s in part:
            tracker.observe(s)

    pool = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert tracker.snapshot is snaps[-1]


def test_threshold_fires_once_per_crossing() -> None:
    tracker = BudgetTracker()
    fired: list[tuple[str, float]] = []
    tracker.add_threshold_listener(0.8, lambda w, f, s: fired.append((w.name, w.used_fraction or 0.0)))
    t = T0
    for remaining in (500, 300, 200, 150, 100, 50):  # crosses 80% used at 200 remaining
        t += timedelta(seconds=1)
        tracker.observe(snap(remaining, t))
    assert fired == [("session", pytest.approx(0.8))]
    for remaining in (900, 100):  # the window rolled, then filled again
        t += timedelta(seconds=1)
        tracker.observe(snap(remaining, t))
    assert [name for name, _ in fired] == ["session", "session"]


def test_threshold_per_window_and_remover() -> None:
    tracker = BudgetTracker()
    fired: list[str] = []
    remove = tracker.add_threshold_listener(0.5, lambda w, f, s: fired.append(w.name), windows=("weekly",))
    tracker.observe(snap(0, T0, weekly=9000))  # session full, weekly 10%: weekly only is watched
    assert fired == []
    tracker.observe(snap(0, T0 + timedelta(seconds=1), weekly=1000))
    assert fired == ["weekly"]
    remove()
    tracker.observe(snap(1000, T0 + timedelta(seconds=2), weekly=9000))
    tracker.observe(snap(0, T0 + timedelta(seconds=3), weekly=0))
    assert fired == ["weekly"]


def test_failing_listener_does_not_break_observe(caplog: pytest.LogCaptureFixture) -> None:
    tracker = BudgetTracker()

    def boom(*_: object) -> None:
        raise RuntimeError("listener bug")

    tracker.add_threshold_listener(0.1, boom)
    tracker.observe(snap(0))
    assert tracker.snapshot is not None
    assert "listener failed" in caplog.text


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_threshold_fraction_validated(fraction: float) -> None:
    with pytest.raises(ValueError, match="threshold fraction"):
        BudgetTracker().add_threshold_listener(fraction, lambda *a: None)


def test_record_listener_and_reset() -> None:
    tracker = BudgetTracker()
    seen: list[UsageRecord] = []
    remove = tracker.add_record_listener(seen.append)
    r = rec(3)
    tracker.record(r)
    assert seen == [r]
    assert tracker.history() == [r]
    remove()
    tracker.record(rec(4))
    assert len(seen) == 1
    tracker.reset()
    assert tracker.totals().total.calls == 0
    assert tracker.snapshot is None
    assert tracker.history() == []


def test_history_is_bounded() -> None:
    tracker = BudgetTracker(history=3)
    for i in range(10):
        tracker.record(rec(i))
    assert [r.prompt_tokens for r in tracker.history()] == [rec(i).prompt_tokens for i in (7, 8, 9)]


def test_default_tracker_is_one_object() -> None:
    results: list[BudgetTracker] = []
    pool = [threading.Thread(target=lambda: results.append(default_tracker())) for _ in range(8)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert all(t is default_tracker() for t in results)
    assert isinstance(default_tracker(), BudgetTracker)


def test_snapshots_and_thresholds_are_kept_per_account() -> None:
    tracker = BudgetTracker()
    fired: list[tuple[str | None, str]] = []
    tracker.add_threshold_listener(
        0.5, lambda w, f, s: fired.append((s.account, w.name)), windows=("session",)
    )
    a = BudgetSnapshot(session=WindowState("session", 100, 10), observed_at=T0, account="a")
    b = BudgetSnapshot(
        session=WindowState("session", 100, 90), observed_at=T0 + timedelta(seconds=1), account="b"
    )
    tracker.observe(a)
    tracker.observe(b)  # newer overall, but it must not replace account a's snapshot
    assert tracker.snapshot_for("a") is a
    assert tracker.snapshot_for("b") is b
    assert tracker.snapshot is b
    a2 = BudgetSnapshot(
        session=WindowState("session", 100, 5), observed_at=T0 + timedelta(seconds=2), account="a"
    )
    tracker.observe(a2)
    b2 = BudgetSnapshot(
        session=WindowState("session", 100, 20), observed_at=T0 + timedelta(seconds=3), account="b"
    )
    tracker.observe(b2)
    assert fired == [("a", "session"), ("b", "session")]  # account b crossed on its own, once
