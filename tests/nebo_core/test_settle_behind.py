"""Settlements sent behind (``RedisBudgetStore(settle_within_s=...)``): a capped call waits for its
reservation only, and its settlement reaches Redis with the next batch; the promises that must
survive it, each on real Redis with the emulator's ledger as the truth:

- a settlement lands within ``settle_within_s`` even if the process never calls again;
- near a cap, settlements go at once (a reservation there sees every real cost);
- a process that exits without closing anything (spawned, forked, or a plain script) leaves no
  settlement behind; one killed with ``kill -9`` leaves its reservations to be charged, never lost;
- a batch that times out (Redis paused) is sent again and counts once;
- a script Redis forgot (``SCRIPT FLUSH``) is loaded again; threads sharing a store settle exactly;
- a forked child never sends its parent's queue; bad ``settle_within_s`` is refused by name.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from nebo_core import AsyncNeboClient, Cap, NeboClient, NeboConfigurationError
from nebo_core.policy import BudgetPolicy
from nebo_core.stores import RedisBudgetStore
from nebo_emulator import NeboEmulator

pytestmark = pytest.mark.redis

BODY = {"model": "gpt-5-nano", "messages": [{"role": "user", "content": "Say hi to Ada"}]}
SCOPE = {"org": "acme", "user": "u1"}
ROOM = [Cap("org", 10**12), Cap("user", 10**11)]
ROOT = Path(__file__).resolve().parents[2]


def _namespace() -> str:
    return f"behind-{uuid.uuid4().hex[:8]}"


def _observer(url: str, namespace: str) -> RedisBudgetStore:
    """A second store on the same namespace (in this process, its reads send ours first)."""
    return RedisBudgetStore.from_url(url, namespace=namespace)


def _in_redis(url: str, namespace: str, key: str = "org=acme") -> tuple[int, int]:
    """(spent, reserved) of a line as Redis holds it now: what another process would read."""
    client = redis.Redis.from_url(url)
    spent, reserved = client.hmget(f"{{{namespace}}}:lines", f"s:{key}", f"r:{key}")
    client.close()
    return int(spent or 0), int(reserved or 0)


def _wait_for(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_settlement_goes_behind_and_lands_within_settle_within_s(redis_url: str, is_async: bool) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace, settle_within_s=1.0)
    policy = BudgetPolicy(caps=ROOM, store=store, estimate_micro=500)

    def check(emu: NeboEmulator) -> None:
        ledger = emu.ledger_total_micro()
        assert ledger > 0
        # Not settled yet: the call still holds its estimate, so the fleet sees it in flight.
        assert _in_redis(redis_url, namespace) == (0, 500)
        sent_at = time.monotonic()
        assert _wait_for(lambda: _in_redis(redis_url, namespace) == (ledger, 0), 5.0)
        assert time.monotonic() - sent_at < 4.0  # the flusher sent it, with the client still open

    with NeboEmulator() as emu:
        if is_async:

            async def one() -> None:
                async with AsyncNeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
                    await c.chat(BODY, scope=SCOPE)
                    await asyncio.to_thread(check, emu)

            asyncio.run(one())
        else:
            with NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
                c.chat(BODY, scope=SCOPE)
                check(emu)
    store.close()


def test_closing_a_client_sends_what_its_store_holds_back(redis_url: str) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace, settle_within_s=60.0)
    policy = BudgetPolicy(caps=ROOM, store=store)
    with NeboEmulator() as emu:
        with NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
            c.chat(BODY, scope=SCOPE)
            store.flush()  # the model's first cost, read back by the next call's estimate
            first = emu.ledger_total_micro()
            for _ in range(3):
                c.chat(BODY, scope=SCOPE)
            assert _in_redis(redis_url, namespace)[0] == first
        assert _in_redis(redis_url, namespace) == (emu.ledger_total_micro(), 0)
    store.close()


def test_a_read_through_another_store_sees_what_this_process_settled(redis_url: str) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace, settle_within_s=60.0)
    policy = BudgetPolicy(caps=ROOM, store=store)
    other = _observer(redis_url, namespace)
    with NeboEmulator() as emu:
        c = NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy)
        for _ in range(3):
            c.chat(BODY, scope=SCOPE)
        assert _in_redis(redis_url, namespace)[0] < emu.ledger_total_micro()  # not all sent yet
        assert other.spent("org=acme") == emu.ledger_total_micro()
        assert BudgetPolicy(caps=ROOM, store=other).spent_micro({"org": "acme"}) == emu.ledger_total_micro()
        c.close()
    other.close()
    store.close()


def test_near_a_cap_a_settlement_goes_at_once(redis_url: str) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace, settle_within_s=30.0)
    # Room for 20 calls of the estimate: fewer than ROOMY_CALLS, so no settlement waits.
    policy = BudgetPolicy(caps=[Cap("org", 10_000)], store=store, estimate_micro=500)
    with NeboEmulator() as emu, NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
        for _ in range(3):
            c.chat(BODY, scope={"org": "acme"})
            assert _in_redis(redis_url, namespace) == (emu.ledger_total_micro(), 0)
    store.close()


def test_a_settlement_that_shows_the_budget_exhausted_goes_at_once(redis_url: str) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace, settle_within_s=60.0)
    policy = BudgetPolicy(caps=ROOM, store=store)
    with NeboEmulator() as probe, NeboClient(api_key=probe.token, base_url=probe.base_url) as c:
        cost = c.chat(BODY).usage.cost_micro or 0
    assert cost > 0
    with (
        NeboEmulator(session_limit_micro=2 * cost) as emu,
        NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c,
    ):
        c.chat(BODY, scope=SCOPE)
        assert _in_redis(redis_url, namespace)[0] < emu.ledger_total_micro()  # behind: room to spare
        c.chat(BODY, scope=SCOPE)  # spends the session's last credit: its snapshot says exhausted
        assert _in_redis(redis_url, namespace) == (emu.ledger_total_micro(), 0)
        admin = redis.Redis.from_url(redis_url)
        assert admin.hget(f"{{{namespace}}}:snapshot:{c.settings.account or '-'}", "x") == b"1"
        admin.close()
    store.close()


def test_settle_within_zero_settles_every_call_at_once(redis_url: str) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace, settle_within_s=0)
    policy = BudgetPolicy(caps=ROOM, store=store)
    with NeboEmulator() as emu, NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
        c.chat(BODY, scope=SCOPE)
        assert _in_redis(redis_url, namespace) == (emu.ledger_total_micro(), 0)
        assert emu.ledger_total_micro() > 0
    store.close()


@pytest.mark.parametrize("bad", [-1, float("nan"), "0.05", True])
def test_a_bad_settle_within_s_is_refused_by_name(redis_url: str, bad: Any) -> None:
    with pytest.raises(NeboConfigurationError, match="settle_within_s"):
        RedisBudgetStore.from_url(redis_url, namespace=_namespace(), settle_within_s=bad)


# --- processes that end ---------------------------------------------------------------------------


def _calls_and_leaves(url: str, namespace: str, base_url: str, token: str, n: int) -> None:
    """Make ``n`` capped calls and return without closing the client, the store or the policy."""
    store = RedisBudgetStore.from_url(url, namespace=namespace, settle_within_s=60.0)
    policy = BudgetPolicy(caps=ROOM, store=store)
    client = NeboClient(api_key=token, base_url=base_url, policy=policy)
    for _ in range(n):
        client.chat(BODY, scope=SCOPE)


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_a_worker_that_exits_without_closing_leaves_no_settlement_behind(redis_url: str, start: str) -> None:
    namespace = _namespace()
    other = _observer(redis_url, namespace)
    with NeboEmulator() as emu:
        ctx = multiprocessing.get_context(start)
        worker = ctx.Process(
            target=_calls_and_leaves, args=(redis_url, namespace, emu.base_url, emu.token, 5)
        )
        worker.start()
        worker.join(60)
        assert worker.exitcode == 0
        # settle_within_s=60 and nothing closed: only the exit hooks can have sent these.
        assert (other.spent("org=acme"), other.reserved("org=acme")) == (emu.ledger_total_micro(), 0)
        assert len(emu.ledger) == 5
    other.close()


def test_a_script_that_ends_without_closing_leaves_no_settlement_behind(redis_url: str) -> None:
    namespace = _namespace()
    other = _observer(redis_url, namespace)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from tests.nebo_core.test_settle_behind import _calls_and_leaves as run; "
        "run(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], 4)"
    )
    with NeboEmulator() as emu:
        done = subprocess.run(
            [sys.executable, "-c", code, str(ROOT), redis_url, namespace, emu.base_url, emu.token],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert (other.spent("org=acme"), other.reserved("org=acme")) == (emu.ledger_total_micro(), 0)
        assert len(emu.ledger) == 4
    other.close()


def _calls_then_waits(url: str, namespace: str, base_url: str, token: str, done: Any) -> None:
    store = RedisBudgetStore.from_url(url, namespace=namespace, settle_within_s=60.0)
    policy = BudgetPolicy(caps=ROOM, store=store, estimate_micro=500, reservation_ttl=0.5)
    client = NeboClient(api_key=token, base_url=base_url, policy=policy)
    for _ in range(3):
        client.chat(BODY, scope=SCOPE)
    done.set()
    time.sleep(60)


def test_a_worker_killed_with_settlements_queued_is_charged_never_lost(redis_url: str) -> None:
    namespace = _namespace()
    other = _observer(redis_url, namespace)
    with NeboEmulator() as emu:
        ctx = multiprocessing.get_context("spawn")
        done = ctx.Event()
        worker = ctx.Process(
            target=_calls_then_waits, args=(redis_url, namespace, emu.base_url, emu.token, done)
        )
        worker.start()
        assert done.wait(60)
        os.kill(worker.pid or 0, signal.SIGKILL)
        worker.join(10)
        ledger = emu.ledger_total_micro()
    # Its three holds expire (0.5 s) and are charged at their estimate: over the ledger, marked uncertain.
    assert _wait_for(lambda: other.reserved("org=acme") == 0, 10.0)
    assert other.spent("org=acme") == 3 * 500 >= ledger
    assert other.uncertain("org=acme") == 3 * 500
    other.close()


def _child_queue_size(store: RedisBudgetStore, out: Any) -> None:
    out.put(len(store._settles))


def test_a_forked_child_never_sends_its_parents_queue(redis_url: str) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace, settle_within_s=60.0)
    policy = BudgetPolicy(caps=ROOM, store=store)
    with NeboEmulator() as emu, NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
        c.chat(BODY, scope=SCOPE)
        store.flush()  # the model's first cost, read back by the next call's estimate
        for _ in range(3):
            c.chat(BODY, scope=SCOPE)
        assert len(store._settles) == 3
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        child = ctx.Process(target=_child_queue_size, args=(store, out))
        child.start()
        assert out.get(timeout=30) == 0  # the child starts with an empty queue
        child.join(30)
        assert child.exitcode == 0
        assert len(store._settles) == 3  # the parent's are still its own to send
        assert policy.spent_micro({"org": "acme"}) == emu.ledger_total_micro()
    store.close()


# --- failures on the way ----------------------------------------------------------------------------


def test_a_batch_that_times_out_is_sent_again_and_counts_once(redis_url: str) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(
        redis_url, namespace=namespace, settle_within_s=0.05, socket_timeout=0.3
    )
    policy = BudgetPolicy(caps=ROOM, store=store)
    admin = redis.Redis.from_url(redis_url)
    with NeboEmulator() as emu, NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
        for _ in range(5):
            c.chat(BODY, scope=SCOPE)
        admin.execute_command("CLIENT", "PAUSE", 1200, "WRITE")  # the batch's script waits, then runs
        time.sleep(1.6)  # the flusher timed out at least once meanwhile, and sent the batch again
        store.flush()
        assert policy.spent_micro({"org": "acme"}) == emu.ledger_total_micro()
        assert store.reserved("org=acme") == 0
    admin.close()
    store.close()


def test_a_script_redis_forgot_is_loaded_again(redis_url: str) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace)
    policy = BudgetPolicy(caps=ROOM, store=store)
    admin = redis.Redis.from_url(redis_url)
    with NeboEmulator() as emu, NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
        c.chat(BODY, scope=SCOPE)
        admin.script_flush()
        c.chat(BODY, scope=SCOPE)  # a reservation: NOSCRIPT, loaded, sent again
        admin.script_flush()
        assert policy.spent_micro({"org": "acme"}) == emu.ledger_total_micro()  # a batch, the same
    admin.close()
    store.close()


def test_threads_sharing_a_store_settle_exactly(redis_url: str) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace, settle_within_s=0.02)
    policy = BudgetPolicy(caps=ROOM, store=store)
    with NeboEmulator() as emu, NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:

        def work() -> None:
            for _ in range(25):
                c.chat(BODY, scope=SCOPE)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(emu.ledger) == 150
        assert policy.spent_micro({"org": "acme"}) == emu.ledger_total_micro()
        assert store.reserved("org=acme") == 0
    store.close()


def test_a_cluster_store_settles_every_call_at_once(redis_cluster: str) -> None:
    namespace = _namespace()
    store = RedisBudgetStore.from_url(redis_cluster, namespace=namespace, cluster=True)
    policy = BudgetPolicy(caps=ROOM, store=store)
    other = RedisBudgetStore.from_url(redis_cluster, namespace=namespace, cluster=True)
    with NeboEmulator() as emu, NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
        c.chat(BODY, scope=SCOPE)
        assert other.spent("org=acme") == emu.ledger_total_micro() > 0
    other.close()
    store.close()
