"""Workloads against the emulator that the tests and the benchmarks both run, written once: a
fleet of spawned processes calling on one Redis budget store (paced or not, on lanes), a caller
that keeps a steady rhythm, and how evenly a batch spent a session window.

Private to this project (the ``bench/`` and ``tests/`` suites): not part of the emulator's API.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nebo_core import BudgetPolicy, BudgetTracker, NeboBudgetExhausted, NeboClient, Pace
from nebo_emulator._emulator import NeboEmulator

BODY = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
"""What a batch worker sends."""


@dataclass(frozen=True)
class Batch:
    """One batch: where its workers call, the store they share, and for how long."""

    base_url: str
    token: str
    redis_url: str
    namespace: str
    paced: bool
    seconds: float
    """How long each worker calls, from the common start."""


def batch_worker(batch: Batch, worker: int, lane: str, start: Any, out: Any) -> None:
    """Call as fast as the policy lets, on ``lane``, from the common ``start`` for the batch's
    seconds; a budget 429 is counted, then a short pause. Reports the refusals and the lane counts
    the shared store held as this worker ended."""
    from nebo_core.stores import RedisBudgetStore

    logging.disable(logging.WARNING)  # the policy's 80%/95% warnings: expected here
    store = RedisBudgetStore.from_url(batch.redis_url, namespace=batch.namespace)
    policy = BudgetPolicy(store=store, pace=Pace() if batch.paced else None, max_wait=600, wait_jitter=0)
    refused = 0
    try:
        with NeboClient(
            api_key=batch.token,
            base_url=batch.base_url,
            policy=policy,
            tracker=BudgetTracker(),
            lane=lane,
            max_retries=0,
        ) as client:
            start.wait(60)  # the whole fleet starts together, as one batch would
            until = time.time() + batch.seconds
            while time.time() < until:
                try:
                    client.chat(BODY)
                except NeboBudgetExhausted:
                    refused += 1
                    time.sleep(0.2)
    finally:
        out.put({"worker": worker, "lane": lane, "refused": refused, "lanes": store.lanes()})
        store.close()


def run_batches(
    runs: Sequence[tuple[NeboEmulator, bool, Sequence[str], float]], redis_url: str
) -> list[list[dict[str, Any]]]:
    """Run batches side by side (each: an emulator, paced or not, one worker per lane, seconds),
    each in its own spawned processes and store namespace: their workers' reports, per batch.
    A worker that does not end cleanly raises ``RuntimeError``."""
    ctx = multiprocessing.get_context("spawn")
    started = []
    for emu, paced, lanes, seconds in runs:
        out = ctx.Queue()
        batch = Batch(emu.base_url, emu.token, redis_url, f"batch-{uuid.uuid4().hex[:8]}", paced, seconds)
        start = ctx.Barrier(len(lanes))
        procs = [
            ctx.Process(target=batch_worker, args=(batch, w, lane, start, out))
            for w, lane in enumerate(lanes)
        ]
        for p in procs:
            p.start()
        started.append((out, procs, seconds, start))  # the barrier must outlive its workers' start
    reports = []
    try:
        for out, procs, seconds, _ in started:
            reports.append([out.get(timeout=seconds + 120) for _ in procs])
    finally:
        for _, procs, _, _ in started:
            for p in procs:
                p.join(30)
    codes = [p.exitcode for _, procs, _, _ in started for p in procs]
    if any(code != 0 for code in codes):
        raise RuntimeError(f"batch workers exited with {codes}")
    return reports


def probe_cost(body: dict[str, Any], latency: float = 0.0) -> int:
    """What one call of ``body`` costs, on a throwaway emulator."""
    with (
        NeboEmulator(latency=latency) as probe,
        NeboClient(api_key=probe.token, base_url=probe.base_url, tracker=BudgetTracker()) as client,
    ):
        cost = client.chat(body).usage.cost_micro
    if not cost:
        raise RuntimeError(f"the emulator billed nothing for {body['model']!r}")
    return cost


def emulator_for(
    window: float, exhaust_at: float, cost_per_s: float, latency: float
) -> tuple[NeboEmulator, int]:
    """An emulator (not started) whose session window a spender of ``cost_per_s`` would exhaust
    at ``exhaust_at`` of it, and that session limit."""
    limit = int(cost_per_s * window * exhaust_at)
    emu = NeboEmulator(
        session_window_s=window, weekly_window_s=window * 10, session_limit_micro=limit, latency=latency
    )
    return emu, limit


def spread(ledger: Sequence[Any], window: float, limit: int) -> dict[str, Any]:
    """How a batch spent a session window: micro spent before the reset the server announced (the
    first charge ages out then), its share of ``limit``, spend per twelfth of the window, and the
    coefficient of variation of those buckets."""
    start = ledger[0].at.timestamp()
    reset = math.ceil(start + window)
    buckets = [0] * 12
    for e in ledger:
        i = int((e.at.timestamp() - start) // (window / 12))
        if i < 12:
            buckets[i] += e.cost_micro
    spent = sum(e.cost_micro for e in ledger if e.at.timestamp() < reset)
    cv = statistics.pstdev(buckets) / statistics.mean(buckets)
    return {"spent_micro": spent, "spent": spent / limit, "buckets": buckets, "cv": cv}


class Rhythm:
    """Calls ``client.chat(body)`` on a steady beat that does not drift (each call is due a gap
    after the last was due, not after it ended)."""

    def __init__(self, client: NeboClient, body: dict[str, Any]) -> None:
        self.client, self.body = client, body
        self.next_at = time.monotonic()

    def spend(self, calls: int, gap: float) -> None:
        """``calls`` calls, ``gap`` seconds apart."""
        for _ in range(calls):
            time.sleep(max(self.next_at - time.monotonic(), 0.0))
            self.client.chat(self.body)
            self.next_at += gap
