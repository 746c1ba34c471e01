"""Caps under concurrency: 8 threads through one in-memory policy, 4 processes through Redis.

With a cap that allows N calls and an exact estimate, exactly N calls succeed (the documented
slack is zero when the estimate is exact), the rest get NeboBudgetExhausted, and what the
clients counted equals the emulator's ledger to the microdollar.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest

from nebo_core import BudgetTracker, NeboBudgetExhausted, NeboClient
from nebo_core.policy import BudgetPolicy
from nebo_core.stores import RedisBudgetStore
from nebo_emulator import NeboEmulator

BODY = {"model": "gpt-5-nano", "messages": [{"role": "user", "content": "Say hi to Ada"}]}
CALLS = 50
ALLOWED = 120


def measure(emu: NeboEmulator) -> int:
    with NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker()) as c:
        cost = c.chat(BODY).usage.cost_micro
    assert cost
    return cost


def test_eight_threads_share_one_cap_exactly() -> None:
    with NeboEmulator() as emu:
        cost = measure(emu)
        base = emu.ledger_total_micro()
        tracker = BudgetTracker()
        policy = BudgetPolicy(max_spend_micro=ALLOWED * cost, estimate_micro=cost)
        ok, refused, other = [0], [0], []
        lock = threading.Lock()
        with NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=tracker, policy=policy) as c:

            def worker() -> None:
                for _ in range(CALLS):
                    try:
                        c.chat(BODY, scope="job")
                        with lock:
                            ok[0] += 1
                    except NeboBudgetExhausted as err:
                        with lock:
                            refused[0] += err.window == "cap"
                    except Exception as err:  # pragma: no cover - reported below
                        other.append(err)

            threads = [threading.Thread(target=worker) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert other == []
        assert ok[0] == ALLOWED
        assert refused[0] == 8 * CALLS - ALLOWED
        assert tracker.totals().total.cost_micro == emu.ledger_total_micro() - base == ALLOWED * cost
        assert policy.spent_micro("job") == ALLOWED * cost
        assert policy.store.reserved("job") == 0


def _process_worker(base_url: str, token: str, redis_url: str, cap: int, cost: int) -> dict[str, Any]:
    store = RedisBudgetStore.from_url(redis_url, namespace="fleet")
    policy = BudgetPolicy(max_spend_micro=cap, estimate_micro=cost, store=store)
    tracker = BudgetTracker()
    ok = refused = 0
    with NeboClient(api_key=token, base_url=base_url, tracker=tracker, policy=policy) as c:
        for _ in range(CALLS):
            try:
                c.chat(BODY, scope="fleet-job")
                ok += 1
            except NeboBudgetExhausted:
                refused += 1
    store.close()
    return {"ok": ok, "refused": refused, "cost": tracker.totals().total.cost_micro}


@pytest.mark.redis
def test_four_processes_share_one_cap_through_redis(redis_url: str) -> None:
    with NeboEmulator() as emu:
        cost = measure(emu)
        base = emu.ledger_total_micro()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(4) as pool:
            args = [(emu.base_url, emu.token, redis_url, ALLOWED * cost, cost)] * 4
            results = pool.starmap(_process_worker, args)
        assert sum(r["ok"] for r in results) == ALLOWED
        assert sum(r["refused"] for r in results) == 4 * CALLS - ALLOWED
        client_total = sum(r["cost"] for r in results)
        store = RedisBudgetStore.from_url(redis_url, namespace="fleet")
        assert client_total == store.spent("fleet-job") == emu.ledger_total_micro() - base
        assert store.reserved("fleet-job") == 0
        store.close()
