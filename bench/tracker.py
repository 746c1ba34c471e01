"""Benchmark 5, the budget tracker: ``BudgetTracker.record`` calls per second from 1 and 8 threads.

Every client records every response into one tracker, so its lock is on every call's path;
this measures how much contention costs (under the GIL, 8 threads cannot beat one, but they
must not collapse either).
"""

from __future__ import annotations

import threading
import time

from bench._common import Table, fmt, median

RECORDS = 20_000
"""Records per thread per round."""


def _round(threads: int, per_thread: int) -> float:
    from nebo_core import BudgetTracker, UsageRecord

    tracker = BudgetTracker()
    record = UsageRecord(
        kind="chat",
        requested_model="auto",
        model="gpt-5-nano",
        prompt_tokens=16,
        completion_tokens=26,
        total_tokens=42,
        cost_micro=12,
        cost_source="server",
    )
    gate = threading.Barrier(threads + 1)

    def work() -> None:
        gate.wait()
        for _ in range(per_thread):
            tracker.record(record)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    totals = tracker.totals()
    if totals.total.calls != threads * per_thread or totals.total.cost_micro != 12 * threads * per_thread:
        raise AssertionError(f"lost records: {totals.total.calls} of {threads * per_thread}")
    return threads * per_thread / elapsed


def run(quick: bool = False) -> tuple[list[Table], dict[int, float]]:
    """The tracker table, and threads -> records per second."""
    rounds, per_thread = (3, RECORDS // 10) if quick else (5, RECORDS)
    results = {n: median([_round(n, per_thread) for _ in range(rounds)]) for n in (1, 8)}
    table = Table("BudgetTracker.record throughput", ["threads", "records/s (median)", "µs/record"])
    for n, rate in results.items():
        table.add(n, fmt(rate), fmt(1e6 / rate, 2))
    table.notes.append(
        f"Median of {rounds} rounds of {per_thread:,} records per thread into one tracker; "
        "totals are checked after each round (no record lost)."
    )
    return [table], results
