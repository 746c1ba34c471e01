"""Fleet budgets: nested caps with periods, on every store (in-memory, Redis, a real 3-node Redis
Cluster), idempotent settlement, explicit behaviour when the store fails or loses its state, and
waiters that do not wake as a herd."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from nebo_core import (
    BudgetTracker,
    Cap,
    NeboBudgetExhausted,
    NeboBudgetStoreUnavailable,
    NeboClient,
    NeboConfigurationError,
    NeboStoreError,
    NeboStoreStateLost,
    openai_client,
)
from nebo_core.budget import BudgetSnapshot, UsageRecord, WindowState
from nebo_core.caps import CapLine, parse_scope
from nebo_core.policy import BudgetPolicy, CallPlan, Go, Refuse, Wait
from nebo_core.stores import BudgetStore, InMemoryBudgetStore, RedisBudgetStore
from nebo_emulator import NeboEmulator

T1 = {"org": "acme", "tenant": "t1"}
BODY = {"model": "gpt-5-nano", "messages": [{"role": "user", "content": "Say hi to Ada"}]}


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis", "cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[BudgetStore]:
    if request.param == "memory":
        yield InMemoryBudgetStore()
        return
    namespace = f"caps-{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        s = RedisBudgetStore.from_url(request.getfixturevalue("redis_url"), namespace=namespace)
    else:
        s = RedisBudgetStore.from_url(
            request.getfixturevalue("redis_cluster"), namespace=namespace, cluster=True
        )
    yield s
    s.close()


def spend(policy: BudgetPolicy, scope: Any, cost: int) -> None:
    decision = policy.before_call(CallPlan("chat", "gpt-5-nano", scope), BudgetTracker())
    assert isinstance(decision, Go), decision
    policy.settle(decision, UsageRecord("chat", "gpt-5-nano", cost_micro=cost, cost_source="server"))


def refusal(policy: BudgetPolicy, scope: Any) -> NeboBudgetExhausted:
    decision = policy.before_call(CallPlan("chat", "gpt-5-nano", scope), BudgetTracker())
    assert isinstance(decision, Refuse), decision
    return decision.error


# --- nested levels ------------------------------------------------------------------------------


def test_a_call_reserves_every_level_it_names_and_the_tightest_refuses(store: BudgetStore) -> None:
    policy = BudgetPolicy(
        caps=[Cap("org", 1_000), Cap("tenant", 500), Cap("user", 300)], estimate_micro=100, store=store
    )
    for user in ("u1", "u1", "u1"):
        spend(policy, {**T1, "user": user}, 100)
    err = refusal(policy, {**T1, "user": "u1"})  # u1 has 300 of 300
    assert (err.window, err.level, err.scope, err.code) == (
        "cap",
        "user",
        "org=acme/tenant=t1/user=u1",
        "BUDGET_CAP_REACHED",
    )
    assert "user" in err.message
    spend(policy, {**T1, "user": "u2"}, 100)
    spend(policy, {**T1, "user": "u2"}, 100)
    err = refusal(policy, {**T1, "user": "u3"})  # t1 has 500 of 500, though u3 has spent nothing
    assert err.level == "tenant"
    spend(policy, {"org": "acme", "tenant": "t2", "user": "u1"}, 100)  # same user id, another tenant
    levels = policy.levels({**T1, "user": "u2"})
    assert {k: v["spent_micro"] for k, v in levels.items()} == {"org": 600, "tenant": 500, "user": 200}
    assert levels["tenant"]["key"] == "org=acme/tenant=t1"
    assert policy.spent_micro({"org": "acme"}) == 600
    assert policy.spent_micro({**T1, "user": "u2"}, level="tenant") == 500
    assert policy.remaining_micro({**T1, "user": "u2"}) == 100  # the deepest level: the user's
    assert store.reserved("org=acme") == 0


def test_a_reservation_holds_all_levels_or_none(store: BudgetStore) -> None:
    lines = [CapLine("a", 100), CapLine("a/b", 50)]
    assert store.reserve_lines(lines, "m", 40, 60).reservation is not None
    refused = store.reserve_lines(lines, "m", 20, 60)  # "a" has room (60), "a/b" has not (10)
    assert refused.reservation is None
    assert refused.line == lines[1]
    assert (refused.spent_micro, refused.reserved_micro) == (0, 40)
    assert (store.reserved("a"), store.reserved("a/b")) == (40, 40)  # nothing was taken on "a"


def test_settling_twice_counts_once(store: BudgetStore) -> None:
    held = store.reserve_lines([CapLine("x", None), CapLine("x/y", 500)], "m", 50, 60).reservation
    assert held is not None
    assert store.commit(held, 30, True) == 30
    assert store.commit(held, 30, True) == 30  # a retried settle after a network blip
    store.release(held)
    assert (store.spent("x"), store.spent("x/y"), store.mean_cost("m")) == (30, 30, 30)


def test_a_string_scope_and_max_spend_micro_keep_their_meaning(store: BudgetStore) -> None:
    policy = BudgetPolicy(max_spend_micro=250, estimate_micro=100, store=store)
    spend(policy, "job-42", 100)
    spend(policy, "job-42", 100)
    err = refusal(policy, "job-42")
    assert (err.level, err.scope) == ("scope", "job-42")
    assert policy.spent_micro("job-42") == store.spent("job-42") == 200
    assert policy.remaining_micro("job-42") == 50


# --- periods --------------------------------------------------------------------------------------


def test_a_daily_cap_refuses_at_2359_and_admits_at_midnight_in_its_time_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    now = [datetime(2026, 12, 2, 23, 59, tzinfo=paris)]
    policy = BudgetPolicy(
        caps=[Cap("tenant", 200, period="day", tz="Europe/Paris")],
        estimate_micro=100,
        clock=lambda: now[0].astimezone(timezone.utc),
    )
    spend(policy, T1, 100)
    spend(policy, T1, 100)
    err = refusal(policy, T1)
    assert (err.level, err.period) == ("tenant", "day (Europe/Paris)")
    assert err.reset_at == datetime(2026, 12, 3, tzinfo=paris)
    assert "resets at 2026-12-02T23:00:00+00:00" in err.message
    now[0] = datetime(2026, 12, 3, 0, 0, tzinfo=paris)
    spend(policy, T1, 100)  # a new day: a new budget
    assert policy.spent_micro(T1) == 100


def test_a_wait_policy_waits_for_a_calendar_caps_reset() -> None:
    now = datetime(2026, 12, 2, 23, 59, 30, tzinfo=timezone.utc)
    policy = BudgetPolicy(
        caps=[Cap("user", 100, period="day")],
        estimate_micro=100,
        on_exhausted="wait",
        wait_jitter=0,
        clock=lambda: now,
    )
    spend(policy, {"user": "u"}, 100)
    decision = policy.before_call(CallPlan("chat", "gpt-5-nano", {"user": "u"}), BudgetTracker())
    assert isinstance(decision, Wait)
    assert decision.seconds == pytest.approx(30 + policy.wait_margin)


def test_week_and_month_periods_have_their_calendar_labels() -> None:
    now = datetime(2026, 12, 31, 12, tzinfo=timezone.utc)  # a Thursday
    policy = BudgetPolicy(caps=[Cap("a", 1, period="week"), Cap("b", 1, period="month")], clock=lambda: now)
    week, month = policy.lines({"a": "x", "b": "y"})
    assert (week.key, week.resets_at) == ("a=x@week:2026-W53", datetime(2027, 1, 4, tzinfo=timezone.utc))
    assert (month.key, month.resets_at) == (
        "a=x/b=y@month:2026-12",
        datetime(2027, 1, 1, tzinfo=timezone.utc),
    )


def test_a_rolling_cap_frees_spend_as_it_ages_out() -> None:
    clock = FakeMonotonic()
    policy = BudgetPolicy(
        caps=[Cap("user", 300, period=timedelta(hours=5))],
        estimate_micro=100,
        store=InMemoryBudgetStore(clock=clock),
    )
    scope = {"user": "u"}
    for _ in range(3):
        spend(policy, scope, 100)
        clock.now += 3600
    assert refusal(policy, scope).period == "rolling 5 hours"
    clock.now += 2 * 3600 + 301  # the first 100 is older than 5 hours (and its 5-minute bucket)
    assert policy.spent_micro(scope) == 200
    spend(policy, scope, 100)


@pytest.mark.redis
def test_a_rolling_cap_on_redis_ages_out_by_the_server_clock(redis_url: str) -> None:
    store = RedisBudgetStore.from_url(redis_url, namespace=f"roll-{uuid.uuid4().hex[:6]}")
    policy = BudgetPolicy(
        caps=[Cap("user", 100, period=timedelta(seconds=2))], estimate_micro=100, store=store
    )
    spend(policy, {"user": "u"}, 100)
    assert refusal(policy, {"user": "u"}).level == "user"
    import time

    time.sleep(2.2)
    spend(policy, {"user": "u"}, 100)
    store.close()


# --- bad input ------------------------------------------------------------------------------------


def test_bad_caps_and_scopes_fail_loudly_before_any_call() -> None:
    for make, match in (
        (lambda: Cap("tenant", -1), "non-negative"),
        (lambda: Cap("te nant", 1), "short name"),
        (lambda: Cap("tenant", 1, period="fortnight"), "period must be"),
        (lambda: Cap("tenant", 1, tz="Mars/Olympus"), "unknown time zone"),
        (lambda: BudgetPolicy(caps=[Cap("a", 1), Cap("a", 2)]), "one Cap per level"),
        (lambda: BudgetPolicy(caps=[Cap("scope", 1)], max_spend_micro=5), "shorthand"),
        (lambda: BudgetPolicy(scope={"tenant": ""}), "non-empty"),
    ):
        with pytest.raises(NeboConfigurationError, match=match):
            make()
    with (
        NeboClient(api_key="k", base_url="http://127.0.0.1:9/v1") as c,
        pytest.raises(NeboConfigurationError),
    ):
        c.chat(BODY, scope={"tenant": "a/b"})
    assert parse_scope("org=acme/tenant=t1") == T1
    assert parse_scope("org=acme, tenant=t1") == T1
    assert parse_scope("job-42") == "job-42"


# --- through the clients, against the emulator's ledger -------------------------------------------


@pytest.mark.redis
def test_nested_scopes_through_native_and_sdk_clients_match_the_ledger(redis_url: str) -> None:
    pytest.importorskip("openai")
    store = RedisBudgetStore.from_url(redis_url, namespace=f"nested-{uuid.uuid4().hex[:6]}")
    with NeboEmulator() as emu:
        policy = BudgetPolicy(caps=[Cap("org", 10**6), Cap("tenant", 10**6)], store=store)
        with NeboClient(
            api_key=emu.token, base_url=emu.base_url, policy=policy, tracker=BudgetTracker()
        ) as c:
            record = c.chat(BODY, scope=T1).usage
        sdk = openai_client(api_key=emu.token, base_url=emu.base_url, policy=policy, tracker=BudgetTracker())
        sdk.chat.completions.create(**BODY, extra_headers={"X-Nebo-Scope": "org=acme/tenant=t2"})
        sdk.close()
        assert record.scope == "org=acme/tenant=t1"
        assert policy.spent_micro({"org": "acme"}) == emu.ledger_total_micro()
        assert policy.spent_micro(T1) == record.cost_micro
        assert policy.spent_micro({"org": "acme", "tenant": "t2"}) == emu.ledger[-1].cost_micro
    store.close()


# --- when the store fails -------------------------------------------------------------------------


def _dead_store() -> RedisBudgetStore:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return RedisBudgetStore.from_url(
        f"redis://127.0.0.1:{port}/0", namespace="dead", socket_connect_timeout=0.2
    )


def test_an_unreachable_store_fails_closed_by_default() -> None:
    store = _dead_store()
    with NeboEmulator() as emu:
        policy = BudgetPolicy(max_spend_micro=10**6, store=store)
        with NeboClient(
            api_key=emu.token, base_url=emu.base_url, policy=policy, tracker=BudgetTracker()
        ) as c:
            with pytest.raises(NeboBudgetStoreUnavailable) as info:
                c.chat(BODY, scope="job")
        assert emu.requests == 0
    assert info.value.window == "store"
    assert isinstance(info.value.store_error, NeboStoreError)
    assert "on_store_error" in info.value.message
    store.close()


def test_open_lets_calls_through_and_charges_them_once_the_store_is_back(redis_url: str) -> None:
    store = RedisBudgetStore.from_url(redis_url, namespace=f"open-{uuid.uuid4().hex[:6]}", socket_timeout=0.3)
    admin = redis.Redis.from_url(redis_url)
    with NeboEmulator() as emu:
        policy = BudgetPolicy(max_spend_micro=10**6, store=store, on_store_error="open")
        with NeboClient(
            api_key=emu.token, base_url=emu.base_url, policy=policy, tracker=BudgetTracker()
        ) as c:
            c.chat(BODY, scope="job")  # the generation marker is written: the store is in use
            store.flush()  # its settlement is in Redis (not left behind, to fail in the pause)
            admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")  # Redis stalls past the store's timeout
            paused = c.chat(BODY, scope="job").usage.cost_micro
            assert policy.pending_micro == paused
            import time

            time.sleep(1.6)
            assert policy.settle_pending() == 1
        assert policy.pending_micro == 0
        assert policy.spent_micro("job") == emu.ledger_total_micro()
    admin.close()
    store.close()


def test_local_enforces_the_caps_in_this_process_while_the_store_is_down() -> None:
    store = _dead_store()
    policy = BudgetPolicy(max_spend_micro=200, estimate_micro=100, store=store, on_store_error="local")
    spend(policy, "job", 100)
    spend(policy, "job", 100)
    assert refusal(policy, "job").level == "scope"
    store.close()


@pytest.mark.redis
def test_lost_state_is_detected_not_silently_refilled(redis_url: str) -> None:
    store = RedisBudgetStore.from_url(redis_url, namespace=f"lost-{uuid.uuid4().hex[:6]}")
    policy = BudgetPolicy(max_spend_micro=150, estimate_micro=100, store=store, store_retry_s=0)
    spend(policy, "job", 100)
    admin = redis.Redis.from_url(redis_url)
    admin.flushall()  # a Redis restarted without persistence looks the same
    admin.close()
    with pytest.raises(NeboStoreStateLost):
        store.spent("job")
    err = refusal(policy, "job")
    assert isinstance(err, NeboBudgetStoreUnavailable)
    assert isinstance(err.store_error, NeboStoreStateLost)
    assert "appendonly" in str(err.store_error)
    store.adopt_generation()  # the operator accepts the loss
    spend(policy, "job", 100)
    store.close()


# --- no herd after a reset ------------------------------------------------------------------------


def _wake_times(n: int) -> list[float]:
    now = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
    reset = now + timedelta(seconds=30)
    snapshot = BudgetSnapshot(
        session=WindowState("session", 1000, 0, reset),
        weekly=WindowState("weekly", 5000, 4000, None),
        observed_at=now,
        server_date=now,
    )
    policy = BudgetPolicy(on_exhausted="wait", clock=lambda: now)
    tracker = BudgetTracker()
    tracker.observe(snapshot)
    out = []
    for _ in range(n):
        decision = policy.before_call(CallPlan("chat", "gpt-5-nano"), tracker)
        assert isinstance(decision, Wait)
        out.append(decision.seconds - 30)  # seconds after the reset
    return out


def test_two_hundred_waiters_in_four_processes_wake_spread_out() -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        wakes = [w for part in pool.map(_wake_times, [50] * 4) for w in part]
    assert min(wakes) >= 1.0  # never before the reset (plus the Date header's one-second margin)
    per_second = Counter(int(w) for w in wakes)
    mean_first_10s = sum(per_second[s] for s in range(10)) / 10
    assert max(per_second.values()) <= 3 * mean_first_10s


@pytest.mark.redis
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_capped_call_costs_one_redis_round_trip(redis_url: str, is_async: bool) -> None:
    """A call waits for its reservation only; its settlement goes behind, batched with others
    (``settle_within_s``), and a flush leaves the store's spend equal to the ledger."""
    import asyncio
    import hashlib

    from nebo_core import AsyncNeboClient
    from nebo_core.stores import _redis_lua as lua

    store = RedisBudgetStore.from_url(redis_url, namespace=f"rtt-{uuid.uuid4().hex[:6]}")
    policy = BudgetPolicy(caps=[Cap("org", 10**9), Cap("tenant", 10**9, period="day")], store=store)
    admin = redis.Redis.from_url(redis_url)
    scope = T1
    reserve_sha = hashlib.sha1(lua.RESERVE.encode()).hexdigest()
    settle_sha = hashlib.sha1(lua.SETTLE.encode()).hexdigest()
    with NeboEmulator() as emu:
        seen: list[str] = []

        def monitor(ready: threading.Event) -> None:
            with admin.monitor() as m:
                ready.set()
                for command in m.listen():
                    text = command["command"]
                    if text.startswith("ECHO stop"):
                        return
                    if command.get("client_type") != "lua" and "[0 lua]" not in str(command):
                        seen.append(text)

        async def calls(n: int) -> None:
            async with AsyncNeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
                for _ in range(n):
                    await c.chat(BODY, scope=scope)

        def run(n: int) -> None:
            if is_async:
                asyncio.run(calls(n))
                return
            with NeboClient(api_key=emu.token, base_url=emu.base_url, policy=policy) as c:
                for _ in range(n):
                    c.chat(BODY, scope=scope)

        run(3)  # warm: the generation marker, script loading, the model's mean
        store.flush()
        ready = threading.Event()
        watcher = threading.Thread(target=monitor, args=(ready,))
        watcher.start()
        ready.wait(5)
        run(10)
        store.flush()
        admin.echo("stop")
        watcher.join(10)
        commands = [c for c in seen if c.split(" ", 1)[0] not in ("CLIENT", "HELLO", "SELECT")]
        reserves = [c for c in commands if c.startswith(f"EVALSHA {reserve_sha} ")]
        settles = [c for c in commands if c.startswith(f"EVALSHA {settle_sha} ")]
        assert len(reserves) == 10  # one round trip per call
        assert 1 <= len(settles) <= len(reserves)  # the ten settlements, in batches (50 ms apart)
        assert len(commands) == len(reserves) + len(settles)  # nothing else
        assert policy.spent_micro({"org": "acme"}) == emu.ledger_total_micro()
    admin.close()
    store.close()


class FlakyStore(InMemoryBudgetStore):
    """An in-memory store whose reservations fail while ``down``; counts the attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.attempts = 0

    def reserve_lines(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.down:
            raise NeboStoreError("the Redis budget store failed: ConnectionError: refused")
        return super().reserve_lines(*args, **kwargs)


def test_a_failed_store_is_left_alone_for_store_retry_s_then_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    store = FlakyStore()
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr("nebo_core.store_guard.time", SimpleNamespace(monotonic=lambda: clock.now))
    policy = BudgetPolicy(max_spend_micro=10**6, estimate_micro=10, store=store, store_retry_s=60)
    for _ in range(3):
        assert isinstance(refusal(policy, "job"), NeboBudgetStoreUnavailable)
    assert store.attempts == 1  # the next two were refused without waiting on the store
    store.down = False
    clock.now = 61.0
    spend(policy, "job", 10)
    assert store.attempts == 2


@pytest.fixture
def sentinel(redis_url: str, tmp_path: Any) -> Iterator[tuple[str, int]]:
    """A real Redis Sentinel (redis-server --sentinel) watching the session's Redis as "nebo"."""
    import shutil
    import socket
    import subprocess
    import time
    from urllib.parse import urlsplit

    binary = shutil.which("redis-server")
    assert binary is not None  # redis_url already required it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    master = urlsplit(redis_url).port
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor nebo 127.0.0.1 {master} 1\n")
    proc = subprocess.Popen(
        [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=port, socket_timeout=0.5) as probe:
                    if probe.execute_command("SENTINEL", "get-master-addr-by-name", "nebo"):
                        break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "the sentinel did not start"
            time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.redis
def test_a_sentinel_managed_master_serves_the_store_sync_and_async(sentinel: tuple[str, int]) -> None:
    import asyncio

    import redis.asyncio.sentinel
    import redis.sentinel

    watch = redis.sentinel.Sentinel([sentinel])
    awatch = redis.asyncio.sentinel.Sentinel([sentinel])
    sync, aio = watch.master_for("nebo"), awatch.master_for("nebo")
    store = RedisBudgetStore(sync, namespace=f"sentinel-{uuid.uuid4().hex[:6]}", async_client=aio)
    policy = BudgetPolicy(caps=[Cap("tenant", 250)], estimate_micro=100, store=store)
    spend(policy, T1, 100)

    async def twice() -> None:
        decision = await policy.adecide(CallPlan("chat", "gpt-5-nano", T1), BudgetTracker())
        assert isinstance(decision, Go)
        await policy.asettle(
            decision, UsageRecord("chat", "gpt-5-nano", cost_micro=100, cost_source="server")
        )
        refused = await policy.adecide(CallPlan("chat", "gpt-5-nano", T1), BudgetTracker())
        assert isinstance(refused, Refuse)
        await store.aclose()
        for client in awatch.sentinels:
            await client.aclose()

    asyncio.run(twice())
    assert policy.spent_micro(T1) == 200
    store.close()
    for client in watch.sentinels:
        client.close()


@pytest.fixture
def failing_store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """``(store, fail)``: a Redis store that works, and a function that makes it fail the way the
    test's ``condition`` says: Redis unreachable (nothing listening), stopped, or paused."""
    import shutil
    import socket
    import subprocess
    import time

    condition = request.node.callspec.params["condition"]
    cleanup: list[Callable[[], None]] = []
    if condition == "paused":
        url = request.getfixturevalue("redis_url")
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        url = f"redis://127.0.0.1:{port}/0"
        if condition == "stopped":
            binary = shutil.which("redis-server")
            assert binary is not None
            args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            proc = subprocess.Popen([*args, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
            cleanup.append(lambda: (proc.terminate(), proc.wait(10)))
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
    store = RedisBudgetStore.from_url(
        url, namespace=f"fail-{uuid.uuid4().hex[:6]}", socket_timeout=0.3, socket_connect_timeout=0.3
    )

    def fail() -> None:
        if condition == "paused":
            with redis.Redis.from_url(url) as admin:
                admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        elif condition == "stopped":
            cleanup.pop()()

    yield store, fail  # type: ignore[misc]
    store.close()
    for undo in cleanup:
        undo()


@pytest.mark.redis
@pytest.mark.parametrize("condition", ["unreachable", "stopped", "paused"])
@pytest.mark.parametrize("mode", ["closed", "open", "local"])
def test_each_failure_mode_behaves_as_documented(mode: str, condition: str, failing_store: Any) -> None:
    store, fail = failing_store
    with NeboEmulator() as emu:
        # A cap one estimate wide: a second call while the first's cost is settled does not fit.
        policy = BudgetPolicy(max_spend_micro=100, estimate_micro=100, store=store, on_store_error=mode)  # type: ignore[arg-type]
        with NeboClient(
            api_key=emu.token, base_url=emu.base_url, policy=policy, tracker=BudgetTracker()
        ) as c:
            if condition != "unreachable":
                c.chat(BODY, scope="job")  # the store works, then it fails
            before = emu.requests
            fail()
            if mode == "closed":
                with pytest.raises(NeboBudgetStoreUnavailable):
                    c.chat(BODY, scope="job")
                assert emu.requests == before  # nothing was sent
            elif mode == "open":
                cost = c.chat(BODY, scope="job").usage.cost_micro
                assert policy.pending_micro == cost  # kept, to charge once the store is back
            else:
                c.chat(BODY, scope="job")  # checked against this process's own cap
                with pytest.raises(NeboBudgetExhausted) as info:
                    c.chat(BODY, scope="job")
                assert info.value.window == "cap"
                assert emu.requests == before + 1


class DownStore(InMemoryBudgetStore):
    """Reservations work; settlements fail while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def commit(self, *args: Any, **kwargs: Any) -> int:
        if self.down:
            raise NeboStoreError("the Redis budget store failed: TimeoutError: paused")
        return super().commit(*args, **kwargs)


def test_a_settlement_kept_through_an_outage_is_applied_once_under_its_own_reservation() -> None:
    store = DownStore()
    policy = BudgetPolicy(max_spend_micro=10**6, estimate_micro=100, store=store, store_retry_s=0)
    decision = policy.before_call(CallPlan("chat", "gpt-5-nano", "job"), BudgetTracker())
    assert isinstance(decision, Go)
    store.down = True
    policy.settle(decision, UsageRecord("chat", "gpt-5-nano", cost_micro=9, cost_source="server"))
    assert policy.pending_micro == 9
    assert policy.settle_pending() == 0  # still down: the charge stays pending, visible
    assert policy.pending_micro == 9
    store.down = False
    assert policy.settle_pending() == 1
    assert (policy.pending_micro, policy.spent_micro("job"), store.reserved("job")) == (0, 9, 0)
    assert policy.settle_pending() == 0  # nothing left: applied once
    assert policy.spent_micro("job") == 9


def test_a_policy_keeps_a_scopes_lines_only_while_they_hold() -> None:
    """Lines are kept per scope until a period ends; a clock set back, new caps or a new default
    scope work them out again, and a bad scope is still refused by name."""
    now = [datetime(2026, 12, 2, 23, 59, 59, tzinfo=timezone.utc)]
    policy = BudgetPolicy(caps=[Cap("org", 10**6, period="day"), Cap("user", 10**5)], clock=lambda: now[0])
    scope = {"org": "acme", "user": "u1"}
    first = policy.lines(scope)
    assert [line.key for line in first] == ["org=acme@day:2026-12-02", "org=acme/user=u1"]
    first.clear()  # the caller's own list: the policy's kept lines are not touched
    assert policy.lines(scope)[0].key == "org=acme@day:2026-12-02"
    now[0] += timedelta(seconds=1)  # midnight: a new day, a new line
    assert policy.lines(scope)[0].key == "org=acme@day:2026-12-03"
    now[0] -= timedelta(days=1)  # a clock set back a day
    assert policy.lines(scope)[0].key == "org=acme@day:2026-12-02"
    policy.caps = (Cap("org", 10**6, period="month"),)
    assert [line.key for line in policy.lines(scope)] == ["org=acme@month:2026-12"]
    policy.scope = {"org": "other"}
    assert [line.key for line in policy.lines(None)] == ["org=other@month:2026-12"]
    with pytest.raises(NeboConfigurationError, match="scope id for level 'user'"):
        policy.lines({"org": "acme", "user": ["u1"]})
    with pytest.raises(NeboConfigurationError, match="scope must be a string or a mapping"):
        policy.lines(["org"])  # type: ignore[arg-type]
