"""Chaos tests for fleet budgets: eight spawned worker processes, real Redis (standalone and a real
3-node cluster), one emulator whose ledger is the truth.

- A fleet with four cap levels and exact (upper-bound) estimates never ends a level above its cap,
  refuses at every level exactly as often as the caps say, and its org spend is the ledger.
- The same fleet with two workers killed with SIGKILL and Redis paused past the store's timeout
  (``on_store_error="open"``): the store never under-counts the ledger, its exact part never
  over-counts it, and every surviving worker charges what went through unchecked.
- Redis restarted without persistence (``on_store_error="closed"``): no call is admitted, and
  none reaches the server, until a worker accepts the loss with ``store.adopt_generation()``.

Sizes scale with ``NEBO_CHAOS_CALLS`` (calls per fleet); ``make soak`` (``-m soak``) runs the
fleets at :data:`SOAK_CALLS`, over 10,000 billed calls per store. Period rolls are covered with an
injected clock in ``test_caps.py``.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from nebo_core import (
    BudgetTracker,
    Cap,
    NeboBudgetExhausted,
    NeboBudgetStoreUnavailable,
    NeboClient,
    NeboStoreStateLost,
)
from nebo_core.policy import BudgetPolicy
from nebo_core.stores import RedisBudgetStore
from nebo_emulator import NeboEmulator

pytestmark = [pytest.mark.redis, pytest.mark.soak]

BODY = {"model": "gpt-5-nano", "messages": [{"role": "user", "content": "Say hi to Ada"}]}
"""The one request every worker sends: the emulator bills it the same every time."""
WORKERS = 8
DEFAULT_CALLS = 3_200
"""Calls per fleet in ``make test`` (1,840 of them billed in the capped fleet)."""
SOAK_CALLS = 17_600
"""Calls per fleet under ``make soak`` / ``-m soak`` (10,120 billed in the capped fleet)."""
BIG = 10**12
"""The emulator's windows: the account never runs out during a fleet."""


def fleet_calls(config: pytest.Config) -> int:
    """How many calls a fleet makes: ``NEBO_CHAOS_CALLS``, else the soak size when ``-m soak``
    selects these tests, else :data:`DEFAULT_CALLS`."""
    env = os.environ.get("NEBO_CHAOS_CALLS")
    if env:
        return int(env)
    expr = str(config.getoption("markexpr", "") or "")
    return SOAK_CALLS if re.search(r"(?<!not )\bsoak\b", expr) else DEFAULT_CALLS


def measure_cost(emu: NeboEmulator) -> int:
    """What the emulator bills for :data:`BODY` (one call, left in its ledger)."""
    with NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker()) as c:
        cost = c.chat(BODY).usage.cost_micro
    assert cost is not None
    assert cost > 0
    return cost


@dataclass(frozen=True)
class Target:
    """Where a worker calls and keeps its budget (pickled to the spawned processes)."""

    base_url: str
    token: str
    redis_url: str
    namespace: str
    cost: int
    """What the emulator bills for :data:`BODY`: every worker's exact, upper-bound estimate."""
    cluster: bool = False


def quiet_store_warnings() -> None:
    """In a worker: the policy logs every call an outage touches (thousands here); the tests count them."""
    logging.getLogger("nebo_core.budget").setLevel(logging.ERROR)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def join_all(procs: list[Any], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
    for p in procs:
        if p.is_alive():  # a hung worker fails the test below; never leave it running
            p.kill()
            p.join(5)


@pytest.fixture(params=["redis", "cluster"])
def fleet_redis(request: pytest.FixtureRequest) -> tuple[str, bool]:
    """(url, cluster): the session's standalone Redis (flushed after the test), or its 3-node cluster."""
    if request.param == "redis":
        return request.getfixturevalue("redis_url"), False
    return request.getfixturevalue("redis_cluster"), True


# --- 1. eight workers x four levels: every level refuses, none ends above its cap ----------------
#
# Four phases, separated by a barrier, each making one level the one that runs out while the levels
# above it keep room for at least one more call, so the refusals per level are exact. Caps are in
# calls of the fixed body (P = calls per worker per phase):
#   run    R = P/2      phase A: each worker's own run r{w} admits R of its P calls
#   user   U = 6P/5     phase B: fresh users u{k}b, two workers each, admit U of 2P
#   tenant T = 34P/5    phase C: t0 and t1 (4P + 2U spent) admit 12P/5 more of 4P each
#   org    O = 92P/5    phase D: fresh tenants t{k}d fill the org (2T spent) with 24P/5 of 8P
# Runs in phases B-D change every R calls and users in C-D are one per worker, so they never bind.


@dataclass(frozen=True)
class FleetCaps:
    """The capped fleet's sizes, in calls of the fixed body."""

    per_phase: int

    @property
    def run(self) -> int:
        return self.per_phase // 2

    @property
    def user(self) -> int:
        return 6 * self.per_phase // 5

    @property
    def tenant(self) -> int:
        return 34 * self.per_phase // 5

    @property
    def org(self) -> int:
        return 92 * self.per_phase // 5

    def caps(self, cost: int) -> list[Cap]:
        return [
            Cap("org", self.org * cost),
            Cap("tenant", self.tenant * cost),
            Cap("user", self.user * cost),
            Cap("run", self.run * cost),
        ]

    def refused(self) -> dict[str, int]:
        """Exactly how many calls each level refuses over the four phases."""
        p = self.per_phase
        return {
            "run": WORKERS * (p - self.run),
            "user": 4 * (2 * p - self.user),
            "tenant": 2 * (4 * p - (self.tenant - 4 * self.run - 2 * self.user)),
            "org": WORKERS * p - (self.org - 2 * self.tenant),
        }


PHASES = "ABCD"


def phase_scope(phase: str, w: int, i: int, run_cap: int) -> dict[str, str]:
    """Worker ``w``'s scope for its ``i``-th call of ``phase``: the org and two tenants are shared
    by all, users by two workers (phases A, B), runs are each worker's own."""
    tenant = f"t{w % 2}" if phase != "D" else f"t{w % 2}d"
    user = {"A": f"u{w % 4}", "B": f"u{w % 4}b"}.get(phase, f"u{w}{phase.lower()}")
    run = f"r{w}" if phase == "A" else f"r{w}{phase.lower()}{i // run_cap}"
    return {"org": "acme", "tenant": tenant, "user": user, "run": run}


def _fleet_worker(target: Target, sizes: FleetCaps, w: int, barrier: Any, out: Any) -> None:
    store = RedisBudgetStore.from_url(target.redis_url, namespace=target.namespace, cluster=target.cluster)
    policy = BudgetPolicy(store=store, caps=sizes.caps(target.cost), estimate_micro=target.cost)
    tracker = BudgetTracker()
    refused: Counter[str] = Counter()
    problems: list[str] = []
    try:
        with NeboClient(api_key=target.token, base_url=target.base_url, tracker=tracker, policy=policy) as c:
            for phase in PHASES:
                barrier.wait(120)
                for i in range(sizes.per_phase):
                    try:
                        c.chat(BODY, scope=phase_scope(phase, w, i, sizes.run))
                    except NeboBudgetExhausted as exc:
                        if exc.window != "cap" or exc.level is None:
                            problems.append(f"phase {phase}: {type(exc).__name__}: {exc}")
                        refused[f"{phase}:{exc.level}"] += 1
    except Exception as exc:  # reported, so the test fails with the reason instead of a hang
        problems.append(f"{type(exc).__name__}: {exc}")
        barrier.abort()
    finally:
        store.close()
    totals = tracker.totals().total  # (its history is bounded)
    out.put(
        {
            "worker": w,
            "refused": dict(refused),
            "admitted": totals.calls,
            "exact_micro": totals.cost_micro - totals.uncertain_micro,
            "uncertain": totals.uncertain_calls,
            "problems": problems,
        }
    )


def run_fleet(emu: NeboEmulator, target: Target, sizes: FleetCaps) -> list[dict[str, Any]]:
    """Run the capped fleet's four phases in eight spawned workers; their reports, by worker."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    barrier = ctx.Barrier(WORKERS)
    workers = [
        ctx.Process(target=_fleet_worker, args=(target, sizes, w, barrier, out)) for w in range(WORKERS)
    ]
    for p in workers:
        p.start()
    try:
        results = [out.get(timeout=600) for _ in workers]
    finally:
        join_all(workers)
    assert [p.exitcode for p in workers] == [0] * WORKERS
    return sorted(results, key=lambda r: r["worker"])


def test_eight_workers_on_four_levels_never_end_above_a_cap_and_match_the_ledger(
    fleet_redis: tuple[str, bool], request: pytest.FixtureRequest
) -> None:
    redis_url, cluster = fleet_redis
    calls = fleet_calls(request.config)
    sizes = FleetCaps(max(10, math.ceil(calls / (WORKERS * len(PHASES)) / 10) * 10))
    with NeboEmulator(session_limit_micro=BIG, weekly_limit_micro=BIG) as emu:
        cost = measure_cost(emu)
        target = Target(emu.base_url, emu.token, redis_url, f"fleet-{uuid.uuid4().hex[:8]}", cost, cluster)
        results = run_fleet(emu, target, sizes)
        billed = emu.ledger[1:]  # after the measuring call
    assert [r["problems"] for r in results] == [[]] * WORKERS
    # Each phase's refusals are at its own level, exactly as many as the caps leave no room for.
    refused: Counter[str] = Counter()
    for r in results:
        refused.update(r["refused"])
    expected = sizes.refused()
    levels = {"A": "run", "B": "user", "C": "tenant", "D": "org"}
    assert dict(refused) == {f"{phase}:{level}": expected[level] for phase, level in levels.items()}
    # The emulator billed every admitted call, each at the estimate; nothing was uncertain.
    assert {e.cost_micro for e in billed} == {cost}
    assert len(billed) == sum(r["admitted"] for r in results) == sizes.org
    assert sum(r["uncertain"] for r in results) == 0
    ledger = sum(e.cost_micro for e in billed)
    store = RedisBudgetStore.from_url(redis_url, namespace=target.namespace, cluster=cluster)
    policy = BudgetPolicy(store=store, caps=sizes.caps(cost))
    try:
        org = {"org": "acme"}
        assert policy.spent_micro(org, level="org") == ledger == sizes.org * cost
        assert sum(r["exact_micro"] for r in results) == ledger
        assert (store.reserved("org=acme"), policy.uncertain_micro(org, level="org")) == (0, 0)
        # Every level of every scope any call named: never above its cap.
        spent: dict[str, int] = {}
        for w in range(WORKERS):
            for phase in PHASES:
                for i in range(0, sizes.per_phase, sizes.run):
                    for level, line in policy.levels(phase_scope(phase, w, i, sizes.run)).items():
                        assert line["spent_micro"] <= line["cap_micro"], (level, line)
                        spent[line["key"]] = line["spent_micro"]
    finally:
        store.close()
    # The binding lines ended exactly full.
    assert [spent[f"org=acme/tenant=t{t}"] for t in (0, 1)] == [sizes.tenant * cost] * 2
    assert [spent[f"org=acme/tenant=t{k % 2}/user=u{k}b"] for k in range(4)] == [sizes.user * cost] * 4
    assert [spent[f"org=acme/tenant=t{w % 2}/user=u{w % 4}/run=r{w}"] for w in range(WORKERS)] == [
        sizes.run * cost
    ] * WORKERS
    late = spent["org=acme/tenant=t0d"] + spent["org=acme/tenant=t1d"]
    assert late == (sizes.org - 2 * sizes.tenant) * cost
    calls = WORKERS * len(PHASES) * sizes.per_phase
    print(
        f"capped fleet: {calls} calls, {len(billed)} billed, ledger {ledger} = org spend, refused {expected}"
    )


# --- 2. the same fleet under chaos: SIGKILL, CLIENT PAUSE, on_store_error="open" --------------------
#
# Two workers are killed mid-run (their holds expire after CHAOS_TTL and are charged). Then Redis is
# paused for 2 s: the survivors make EXTRA_CALLS more calls, which go through unchecked, and drain
# with settle_pending() until nothing is pending, starting while Redis is still paused.

CHAOS_TTL = 1.5
PAUSE_MS = 2_000
EXTRA_CALLS = 25


def _chaos_worker(target: Target, w: int, max_calls: int, paused: Any, out: Any) -> None:
    quiet_store_warnings()
    store = RedisBudgetStore.from_url(
        target.redis_url, namespace=target.namespace, socket_timeout=0.3, socket_connect_timeout=0.3
    )
    caps = [Cap("org", BIG), Cap("tenant", BIG), Cap("user", BIG), Cap("run", BIG)]
    policy = BudgetPolicy(
        store=store, caps=caps, estimate_micro=target.cost, on_store_error="open", reservation_ttl=CHAOS_TTL
    )
    tracker = BudgetTracker()
    late = late_micro = after_pause = 0
    scope = {"org": "acme", "tenant": f"t{w % 2}", "user": f"u{w % 4}", "run": f"r{w}"}
    with NeboClient(api_key=target.token, base_url=target.base_url, tracker=tracker, policy=policy) as c:
        for _ in range(max_calls):
            if paused.is_set():
                after_pause += 1
                if after_pause > EXTRA_CALLS:
                    break
            before = policy.pending_micro
            c.chat(BODY, scope=scope)
            late += policy.pending_micro > before  # went through unchecked, or its settlement failed
            late_micro += max(policy.pending_micro - before, 0)
        drained_from = policy.pending_micro
        deadline = time.monotonic() + 30
        while policy.pending_micro and time.monotonic() < deadline:  # Redis may still be paused
            policy.settle_pending()
            time.sleep(0.05)
    store.close()
    totals = tracker.totals().total
    out.put(
        {
            "worker": w,
            "late": late,
            "late_micro": late_micro,
            "drained_from": drained_from,
            "exact_micro": totals.cost_micro - totals.uncertain_micro,
            "pending_micro": policy.pending_micro,
        }
    )


def test_kills_and_a_paused_redis_never_undercount_and_open_charges_everything(
    redis_url: str, request: pytest.FixtureRequest
) -> None:
    total = max(fleet_calls(request.config) * 5 // 8, 400)
    with NeboEmulator(session_limit_micro=BIG, weekly_limit_micro=BIG) as emu:
        target = Target(emu.base_url, emu.token, redis_url, f"open-{uuid.uuid4().hex[:8]}", measure_cost(emu))
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        paused = ctx.Event()
        workers = [
            ctx.Process(target=_chaos_worker, args=(target, w, total, paused, out)) for w in range(WORKERS)
        ]
        for p in workers:
            p.start()
        killed, survivors = workers[:2], workers[2:]
        try:
            wait_for(lambda: len(emu.ledger) > total // 6, "the fleet to get going")
            for p in killed:  # mid-run: each may hold a reservation, or a call the server is billing
                os.kill(p.pid or 0, signal.SIGKILL)
            wait_for(lambda: len(emu.ledger) > total // 2, "the survivors to go on")
            admin = redis.Redis.from_url(redis_url)
            admin.client_pause(PAUSE_MS, all=True)  # CLIENT PAUSE ... ALL: past the store's timeout
            admin.close()
            paused.set()
            results = [out.get(timeout=120) for _ in survivors]
        finally:
            join_all(workers)
        assert [p.exitcode for p in killed] == [-signal.SIGKILL] * 2
        assert [p.exitcode for p in survivors] == [0] * len(survivors)
        time.sleep(CHAOS_TTL + 0.3)  # the dead workers' holds expire: charged, never dropped
        wait_for(lambda: emu.requests_in_flight() == 0, "the server to finish billing")
        billed = emu.ledger[1:]  # after the measuring call
    ledger = sum(e.cost_micro for e in billed)
    store = RedisBudgetStore.from_url(redis_url, namespace=target.namespace)
    try:
        spent, uncertain = store.spent("org=acme"), store.uncertain("org=acme")
        reserved = store.reserved("org=acme")
    finally:
        store.close()
    late = sum(r["late"] for r in results)
    print(
        f"chaos fleet: {len(billed)} billed, ledger {ledger}, store {spent} of which uncertain {uncertain}; "
        f"{late} calls charged late ({sum(r['late_micro'] for r in results)} micro), drains from "
        f"{[r['drained_from'] for r in results]}"
    )
    assert late >= len(survivors) * EXTRA_CALLS  # the pause did send calls through unchecked
    assert all(r["drained_from"] > 0 for r in results)  # each drained while Redis was paused
    assert [r["pending_micro"] for r in results] == [0] * len(survivors)  # all charged once Redis was back
    assert reserved == 0
    assert spent >= ledger  # never under-counted
    assert spent - uncertain <= ledger  # its exact part never over-counted
    assert sum(r["exact_micro"] for r in results) <= spent - uncertain


# --- 3. Redis restarted without persistence, on_store_error="closed" ------------------------------

RUN, DOWN, RESTARTED, ADOPT, STOP = range(5)
"""The phases of the restart test, read by every worker before each call."""
RETRY_S = 0.5
"""The workers' store_retry_s: how long a failed store is left alone (a stale failure is reported
meanwhile)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """A redis-server of the test's own, without persistence, on a fixed port (so it can be
    restarted in place)."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary, self.port, self.workdir = binary, port, workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.proc = proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _ping(self.port) or proc.poll() is not None, "redis-server to start", 10)
        assert proc.poll() is None, f"redis-server exited with {proc.returncode} on port {self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server this test may stop and start again on the same port."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (apt-get install redis-server); Redis budget tests need it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    server = RedisProcess(binary, _free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class Shared:
    """The phase (the test writes it) and counters per phase and worker (each worker writes its own)."""

    phase: Any
    admitted: Any
    lost: Any
    unavailable: Any
    stale_after_lost: Any
    """Calls not refused as lost after the worker's first lost-state refusal (must stay 0)."""

    @staticmethod
    def cell(phase: int, w: int) -> int:
        return phase * WORKERS + w

    def total(self, counter: Any, phase: int) -> int:
        return sum(counter[self.cell(phase, w)] for w in range(WORKERS))

    def every(
        self, counter: Any, phase: int, at_least: int = 1, who: range = range(WORKERS)
    ) -> Callable[[], bool]:
        return lambda: all(counter[self.cell(phase, w)] >= at_least for w in who)


def _restart_worker(target: Target, w: int, shared: Shared, out: Any) -> None:
    quiet_store_warnings()
    store = RedisBudgetStore.from_url(target.redis_url, namespace=target.namespace, socket_timeout=0.5)
    caps = [Cap("org", BIG), Cap("tenant", BIG), Cap("user", BIG), Cap("run", BIG)]
    policy = BudgetPolicy(store=store, caps=caps, estimate_micro=target.cost, store_retry_s=RETRY_S)
    scope = {"org": "acme", "tenant": f"t{w % 2}", "user": f"u{w % 4}", "run": f"r{w}"}
    other: list[str] = []
    adopted_pending = -1
    seen_lost = False
    with NeboClient(
        api_key=target.token, base_url=target.base_url, tracker=BudgetTracker(), policy=policy
    ) as c:
        while (phase := shared.phase.value) != STOP:
            if phase == ADOPT and w == 0 and adopted_pending < 0:
                adopted_pending = policy.pending_micro
                store.adopt_generation()  # the operator accepts the loss, on this worker only
                policy.settle_pending()  # charges what it kept, and asks the store again at once
            cell = Shared.cell(phase, w)
            lost = False
            try:
                c.chat(BODY, scope=scope)
                shared.admitted[cell] += 1
            except NeboBudgetStoreUnavailable as exc:
                lost = isinstance(exc.store_error, NeboStoreStateLost)
                (shared.lost if lost else shared.unavailable)[cell] += 1
                time.sleep(0.005)
            except Exception as exc:
                other.append(f"phase {phase}: {type(exc).__name__}: {exc}")
                time.sleep(0.005)
            if phase == RESTARTED:
                shared.stale_after_lost[cell] += seen_lost and not lost
                seen_lost = seen_lost or lost
    store.close()
    out.put(
        {
            "worker": w,
            "other": other[:5],
            "pending_micro": policy.pending_micro,
            "adopted_pending": adopted_pending,
        }
    )


def test_a_redis_restart_without_persistence_admits_nothing_until_the_loss_is_adopted(
    own_redis: RedisProcess,
) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    ctx = multiprocessing.get_context("spawn")
    n = 5 * WORKERS
    shared = Shared(ctx.Value("i", RUN), *(ctx.Array("i", n) for _ in range(4)))
    with NeboEmulator(session_limit_micro=BIG, weekly_limit_micro=BIG) as emu:
        target = Target(emu.base_url, emu.token, url, "restart", measure_cost(emu))
        out = ctx.Queue()
        workers = [ctx.Process(target=_restart_worker, args=(target, w, shared, out)) for w in range(WORKERS)]
        for p in workers:
            p.start()
        try:
            wait_for(shared.every(shared.admitted, RUN, 5), "every worker to have used the store")
            own_redis.stop()  # SIGTERM: with no persistence, every key is gone
            shared.phase.value = DOWN
            wait_for(shared.every(shared.unavailable, DOWN), "every worker to find Redis down", 10)
            own_redis.start()  # the same port, empty
            shared.phase.value = RESTARTED
            # Workers are sequential: once each has had a call refused as lost, nothing it admitted
            # before the restart is still in flight.
            wait_for(shared.every(shared.lost, RESTARTED), "every worker to see the lost state", 10)
            wait_for(lambda: emu.requests_in_flight() == 0, "the server to finish billing")
            ledger_after_restart = len(emu.ledger)
            wait_for(shared.every(shared.lost, RESTARTED, 20), "more calls after the restart", 10)
            ledger_before_adopt = len(emu.ledger)
            shared.phase.value = ADOPT
            wait_for(shared.every(shared.admitted, ADOPT, 10, range(1)), "the adopting worker to go on", 10)
            wait_for(
                shared.every(shared.lost, ADOPT, 10, range(1, WORKERS)), "the others to go on refusing", 10
            )
            shared.phase.value = STOP
            results = sorted((out.get(timeout=30) for _ in workers), key=lambda r: r["worker"])
        finally:
            shared.phase.value = STOP
            join_all(workers, 5)
        assert [p.exitcode for p in workers] == [0] * WORKERS
        ledger = emu.ledger[1:]  # after the measuring call
    total = shared.total
    counts = {
        name: [total(getattr(shared, name), phase) for phase in (RUN, DOWN, RESTARTED, ADOPT)]
        for name in ("admitted", "unavailable", "lost")
    }
    print(f"restart: calls per phase (run, down, restarted, adopted) {counts}")
    assert [r["other"] for r in results] == [[]] * WORKERS
    # Redis down: refused as unavailable (closed), never admitted.
    assert total(shared.admitted, DOWN) == 0
    # Restarted empty: nothing admitted; once a worker has asked the store, every call of it is
    # refused as lost state (before, the outage's error for up to store_retry_s); none was billed.
    assert total(shared.admitted, RESTARTED) == 0
    assert total(shared.stale_after_lost, RESTARTED) == 0
    assert ledger_before_adopt == ledger_after_restart
    # Adopted on one worker: it goes on (and charges what it kept from the outage); the others,
    # which have not accepted the loss, still refuse.
    assert [shared.admitted[Shared.cell(ADOPT, w)] for w in range(1, WORKERS)] == [0] * (WORKERS - 1)
    assert results[0]["pending_micro"] == 0
    # Every call the server billed is one the workers admitted (before the outage, or after adoption).
    assert len(ledger) == total(shared.admitted, RUN) + total(shared.admitted, ADOPT)
    store = RedisBudgetStore.from_url(url, namespace=target.namespace)
    try:  # the new state holds only what the adopting worker charged: its calls, and what it kept
        adopted = shared.admitted[Shared.cell(ADOPT, 0)] * target.cost + results[0]["adopted_pending"]
        assert store.spent("org=acme") == adopted
    finally:
        store.close()
