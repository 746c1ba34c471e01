"""Money under faults: the server's ledger is the truth, and spend is never under-counted.

A call that may have been billed (its request went out, then a timeout, a cut connection, a
cancellation or a dead worker) is charged its estimate and recorded as uncertain; a call
that certainly was not (nothing listening) costs nothing. The tracker's reconciliation shows
what the server billed that no exact record accounts for. Against the emulator's ledger,
in one process and in four (one of them killed with SIGKILL), through Redis.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from nebo_core import AsyncNeboClient, BudgetTracker, NeboBudgetExhausted, NeboClient, NeboConnectionError
from nebo_core.budget import UsageRecord
from nebo_core.policy import BudgetPolicy, CallPlan
from nebo_core.stores import RedisBudgetStore
from nebo_emulator import NeboEmulator

PROMPTS = [
    "Say hi to Ada",
    "Name three prime numbers",
    "What is the capital of France? Answer in one word.",
    "Summarise: the quick brown fox jumps over the lazy dog, twice, then rests.",
]


def body(i: int) -> dict[str, Any]:
    return {"model": "gpt-5-mini", "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}


def settled_ledger(emu: NeboEmulator, entries: int, timeout: float = 10.0) -> int:
    """The ledger total once ``entries`` charges are in (a delayed request bills after its client left)."""
    deadline = time.monotonic() + timeout
    while len(emu.ledger) < entries and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(emu.ledger) == entries
    return emu.ledger_total_micro()


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def exact(records: list[UsageRecord]) -> int:
    return sum(r.cost_micro or 0 for r in records if not r.uncertain)


def estimates(records: list[UsageRecord]) -> int:
    return sum(r.cost_micro or 0 for r in records if r.uncertain)


# --- one process: each fault that may have billed is charged; the gap shows its true cost ---------


Run = Callable[[NeboEmulator, BudgetPolicy, BudgetTracker, dict[str, Any], Callable[[], None]], Any]


def run_sync(
    emu: NeboEmulator,
    policy: BudgetPolicy,
    tracker: BudgetTracker,
    kwargs: dict[str, Any],
    fault: Callable[[], None],
) -> Any:
    with NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=tracker, policy=policy) as c:
        c.usage()  # a baseline: the server's running total before the call
        fault()
        try:
            return c.chat(body(0), **kwargs)
        finally:
            c.usage()  # the server's running total after everything settled


def run_async(
    emu: NeboEmulator,
    policy: BudgetPolicy,
    tracker: BudgetTracker,
    kwargs: dict[str, Any],
    fault: Callable[[], None],
) -> Any:
    async def main() -> Any:
        async with AsyncNeboClient(
            api_key=emu.token, base_url=emu.base_url, tracker=tracker, policy=policy
        ) as c:
            await c.usage()
            fault()
            try:
                return await c.chat(body(0), **kwargs)
            finally:
                await c.usage()

    return asyncio.run(main())


@pytest.fixture(params=[run_sync, run_async], ids=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Run:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("fault", "params"),
    [("delay", {"seconds": 0.6}), ("drop_midstream", {})],
    ids=["timeout-after-billing", "cut-after-billing"],
)
def test_a_fault_after_billing_is_charged_and_the_retry_too(
    run: Run, fault: str, params: dict[str, Any]
) -> None:
    with NeboEmulator() as emu:
        policy, tracker = BudgetPolicy(max_spend_micro=1_000_000), BudgetTracker()
        result = run(
            emu, policy, tracker, {"timeout": 0.3, "max_retries": 1}, lambda: emu.inject(fault, **params)
        )
        ledger = settled_ledger(emu, 2)  # the faulted attempt was billed, and so was the retry
        records = tracker.history()
        assert [r.uncertain for r in records] == [True, False]
        cut, good = records
        assert (
            cut.cost_micro == BudgetPolicy().estimate(CallPlan("chat", "gpt-5-mini", body=body(0))) > 0
        )  # cold
        assert good.cost_micro == result.usage.cost_micro == emu.ledger[-1].cost_micro
        # The store holds the exact cost plus the estimate: never less than the ledger.
        assert policy.spent_micro() == exact(records) + estimates(records) >= ledger
        assert policy.uncertain_micro() == cut.cost_micro
        # The server's running total says what the uncertain call really cost.
        recon = tracker.reconciliation()
        assert (recon.server_micro, recon.recorded_micro) == (ledger, good.cost_micro)
        assert recon.gap_micro == ledger - good.cost_micro == emu.ledger[0].cost_micro
        assert (recon.uncertain_calls, recon.uncertain_micro) == (1, cut.cost_micro)


def test_a_request_that_never_left_costs_nothing() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    policy, tracker = BudgetPolicy(max_spend_micro=1_000_000), BudgetTracker()
    with (
        NeboClient(
            api_key="k", base_url=f"http://127.0.0.1:{port}/v1", tracker=tracker, policy=policy, max_retries=1
        ) as c,
        pytest.raises(NeboConnectionError),
    ):
        c.chat(body(0))
    assert tracker.history() == []
    assert (policy.spent_micro(), policy.store.reserved("*"), policy.store.uncertain("*")) == (0, 0, 0)


def test_a_cancelled_call_in_flight_is_charged_its_estimate() -> None:
    async def main(emu: NeboEmulator, policy: BudgetPolicy, tracker: BudgetTracker) -> None:
        async with AsyncNeboClient(
            api_key=emu.token, base_url=emu.base_url, tracker=tracker, policy=policy
        ) as c:
            task = asyncio.create_task(c.chat(body(0)))
            await asyncio.to_thread(wait_for, emu.requests_in_flight)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with NeboEmulator() as emu:
        emu.inject("delay", seconds=0.5)
        policy, tracker = BudgetPolicy(max_spend_micro=1_000_000), BudgetTracker()
        asyncio.run(main(emu, policy, tracker))
        ledger = settled_ledger(emu, 1)
        (record,) = tracker.history()
        assert record.uncertain
        assert policy.spent_micro() == record.cost_micro >= ledger
        assert policy.store.reserved("*") == 0


# --- four processes through Redis, faults and a SIGKILL: the store never under-counts ---------------

CALLS = 40


def _worker(base_url: str, token: str, redis_url: str, ttl: float, out: Any) -> None:
    store = RedisBudgetStore.from_url(redis_url, namespace="money")
    policy = BudgetPolicy(store=store, reservation_ttl=ttl, max_spend_micro=10**9)
    tracker = BudgetTracker()
    errors = 0
    with NeboClient(api_key=token, base_url=base_url, tracker=tracker, policy=policy, timeout=0.3) as c:
        for i in range(CALLS):
            try:
                c.chat(body(i), scope="job", max_retries=1)
            except NeboConnectionError:
                errors += 1
    store.close()
    out.put((exact(tracker.history()), estimates(tracker.history()), errors))


@pytest.mark.redis
def test_four_workers_with_faults_and_a_kill_never_undercount(redis_url: str) -> None:
    ttl = 1.0
    with NeboEmulator() as emu:
        auditor = BudgetTracker()
        with NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=auditor) as c:
            c.usage()
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        workers = [
            ctx.Process(target=_worker, args=(emu.base_url, emu.token, redis_url, ttl, out)) for _ in range(4)
        ]
        for w in workers:
            w.start()
        stop = threading.Event()

        def faults() -> None:  # a timeout after billing or a cut every so often, whoever gets it
            kinds = [("delay", {"seconds": 0.5}), ("drop_midstream", {})]
            i = 0
            while not stop.wait(0.1):
                if not emu.pending_faults:
                    emu.inject(kinds[i % 2][0], **kinds[i % 2][1])
                    i += 1

        injector = threading.Thread(target=faults)
        injector.start()
        while len(emu.ledger) < 30:
            time.sleep(0.01)
        os.kill(workers[0].pid or 0, signal.SIGKILL)  # mid-run: it may hold a reservation, or a billed call
        for w in workers[1:]:
            w.join(60)
        workers[0].join(5)
        stop.set()
        injector.join()
        results = [out.get(timeout=5) for _ in workers[1:]]
        assert workers[0].exitcode == -signal.SIGKILL
        time.sleep(ttl + 0.2)  # the dead worker's reservation expires: charged, not dropped
        while emu.requests_in_flight():
            time.sleep(0.02)
        ledger = emu.ledger_total_micro()
        with NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=auditor) as c:
            c.usage()
        store = RedisBudgetStore.from_url(redis_url, namespace="money")
        spent, uncertain, reserved = store.spent("job"), store.uncertain("job"), store.reserved("job")
        store.close()
    assert reserved == 0
    # Recorded spend plus uncertain charges is never below the ledger; the exact part never above it.
    assert spent >= ledger
    assert spent - uncertain <= ledger
    assert uncertain > 0
    # The server's running total is the ledger; the gap is what exact records missed, and the
    # uncertain charges cover it.
    recon = auditor.reconciliation()
    assert recon.server_micro == ledger
    gap = ledger - (spent - uncertain)
    assert 0 < gap <= uncertain
    survivors_exact = sum(x for x, _, _ in results)
    assert survivors_exact <= spent - uncertain


# --- caps that have room admit calls (request-based estimates) ------------------------------------

ADMIT_CALLS = 100


def _admit_worker(base_url: str, token: str, redis_url: str, cap: int, out: Any) -> None:
    store = RedisBudgetStore.from_url(redis_url, namespace="admit")
    policy = BudgetPolicy(store=store, max_spend_micro=cap)
    refused = 0
    with NeboClient(api_key=token, base_url=base_url, tracker=BudgetTracker(), policy=policy) as c:
        for i in range(ADMIT_CALLS):
            try:
                c.chat(body(i), scope="batch")
            except NeboBudgetExhausted:
                refused += 1
    store.close()
    out.put(refused)


@pytest.mark.redis
def test_a_cap_that_fits_400_calls_admits_at_least_98_percent(redis_url: str) -> None:
    with NeboEmulator() as emu:
        with NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker()) as c:
            costs = [c.chat(body(i)).usage.cost_micro or 0 for i in range(len(PROMPTS))]
        cap = sum(costs[i % len(PROMPTS)] for i in range(ADMIT_CALLS)) * 4  # exactly the 400 calls
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        workers = [
            ctx.Process(target=_admit_worker, args=(emu.base_url, emu.token, redis_url, cap, out))
            for _ in range(4)
        ]
        for w in workers:
            w.start()
        refused = sum(out.get(timeout=120) for _ in workers)
        for w in workers:
            w.join(10)
    assert refused <= 8, f"{refused} of 400 calls refused by a cap they all fit in"
