"""RedisBudgetStore from async code: the twins agree with the sync methods, and never block the loop.

Each scenario runs once through the sync methods and once through their ``a``-twins on a real
redis-server, and the answers must be identical. The stall test puts a TCP proxy that delays
every forwarded chunk by 50 ms between the store and Redis: any store round trip made on the
event loop then makes one loop step of 100 ms or more, while 20 ``AsyncNeboClient.chat`` calls
run against the emulator. A store whose twins are made to block must show it, so the test can fail.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio

from nebo_core import AsyncNeboClient, BudgetPolicy, BudgetTracker
from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.errors import NeboConfigurationError
from nebo_core.stores import BudgetStore, RedisBudgetStore

pytestmark = pytest.mark.redis
T = TypeVar("T")

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DELAY_S = 0.050
"""Per forwarded chunk: a store round trip through the proxy takes at least twice this."""
STEP_BOUND_S = DELAY_S
"""The longest loop step allowed: half of one blocking round trip. Non-blocking stores measure
3-26 ms here (the emulator's threads share the GIL); a blocking one, over 200 ms."""
BODY = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}


def snap(remaining: int, at: datetime) -> BudgetSnapshot:
    return BudgetSnapshot(
        session=WindowState("session", 1000, remaining, at + timedelta(hours=5)),
        weekly=WindowState("weekly", 5000, 4000, None),
        active_pool="plan",
        observed_at=at,
        server_date=at + timedelta(seconds=3),
    )


# -- one scenario, run through the sync methods or their async twins ---------------------

Op = Callable[..., Awaitable[Any]]


def sync_ops(store: BudgetStore) -> Callable[[str], Op]:
    def op(name: str) -> Op:
        method = getattr(store, name)

        async def call(*args: Any) -> Any:
            return method(*args)

        return call

    return op


def async_ops(store: BudgetStore) -> Callable[[str], Op]:
    return lambda name: getattr(store, "a" + name)


async def scenario(op: Callable[[str], Op]) -> list[Any]:
    """Every store method, with what it answered (reservation ids left out: they are random)."""
    seen: list[Any] = []

    def note(result: Any) -> Any:
        if hasattr(result, "reservation"):
            r = result.reservation
            seen.append((r and (r.scope, r.model, r.amount_micro), result.spent_micro, result.reserved_micro))
        else:
            seen.append(result)
        return result

    first = note(await op("reserve")("job", "m", 60, 100, 60)).reservation
    note(await op("reserve")("job", "m", 60, 100, 60))  # over the cap: refused
    note(await op("reserved")("job"))
    note(await op("commit")(first, 75, True))
    note(await op("spent")("job"))
    note(await op("reserve")("job", "m", 30, 100, 60))  # 75 + 30 > 100
    held = note(await op("reserve")("job", "m", 25, 100, 60)).reservation
    await op("release")(held)
    note((await op("spent")("job"), await op("reserved")("job")))
    note(await op("mean_cost")("m2"))
    for cost, observed in ((10, True), (20, True), (999, False)):
        res = (await op("reserve")("s", "m2", 1, None, 60)).reservation
        note(await op("commit")(res, cost, observed))
    note(await op("mean_cost")("m2"))
    note(await op("snapshot")())
    await op("publish")(snap(500, T0 + timedelta(seconds=10)))
    await op("publish")(snap(900, T0))  # older: ignored
    note(await op("snapshot")())
    await op("publish")(BudgetSnapshot(observed_at=T0, account="acct"))
    note((await op("snapshot")("acct"), await op("snapshot")(None)))
    await op("reset")()
    note((await op("spent")("job"), await op("mean_cost")("m2"), await op("snapshot")()))
    return seen


def without_leaks(url: str, work: Callable[[], T]) -> T:
    """``work()``, failing if it leaves a connection to ``url``'s server unclosed (its stores are
    garbage once it returns). Only warnings naming that port count: garbage that earlier tests
    left may be collected here too."""
    port = urlsplit(url).port
    marks = (f"port={port},", f"'127.0.0.1', {port})")  # a redis-py Connection's repr, a socket's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        result = work()
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert [leak for leak in leaks if any(mark in leak for mark in marks)] == []
    return result


def test_async_twins_agree_with_sync_across_event_loops(redis_url: str) -> None:
    def work() -> tuple[list[Any], list[Any], list[Any]]:
        store = RedisBudgetStore.from_url(redis_url, namespace=f"parity-{uuid.uuid4().hex[:8]}")
        expected = asyncio.run(scenario(sync_ops(store)))

        async def closed_by_aclose() -> list[Any]:
            try:
                return await scenario(async_ops(store))
            finally:
                await store.aclose()

        async def closed_at_loop_end() -> list[Any]:
            # No aclose(): asyncio.run's shutdown closes this loop's client.
            return await scenario(async_ops(store))

        first = asyncio.run(closed_by_aclose())
        second = asyncio.run(closed_at_loop_end())  # a new loop: a new client, not the closed one
        store.close()
        return expected, first, second

    expected, first, second = without_leaks(redis_url, work)
    assert first == expected
    assert second == expected
    assert expected[0] == (("job", "m", 60), 0, 0)
    assert expected[1] == (None, 0, 60)


def test_a_store_with_a_sync_client_only_serves_async_code_through_threads(redis_url: str) -> None:
    def work() -> tuple[list[Any], list[Any]]:
        store = RedisBudgetStore(redis.Redis.from_url(redis_url), namespace="sync-only")
        expected = asyncio.run(scenario(sync_ops(store)))

        async def run() -> list[Any]:
            try:
                return await scenario(async_ops(store))
            finally:
                await store.aclose()

        return expected, asyncio.run(run())

    expected, got = without_leaks(redis_url, work)
    assert got == expected


def test_a_store_with_an_async_client_only_refuses_sync_calls(redis_url: str) -> None:
    def work() -> list[Any]:
        store = RedisBudgetStore(redis.asyncio.Redis.from_url(redis_url), namespace="async-only")
        with pytest.raises(NeboConfigurationError, match="sync client.*from_url"):
            store.reserve("job", "m", 1, None, 60)
        with pytest.raises(NeboConfigurationError, match="only an async Redis client"):
            store.spent("job")

        async def run() -> list[Any]:
            try:
                return await scenario(async_ops(store))
            finally:
                await store.aclose()

        return asyncio.run(run())

    got = without_leaks(redis_url, work)
    reference = RedisBudgetStore.from_url(redis_url, namespace="async-only-ref")
    try:
        assert got == asyncio.run(scenario(sync_ops(reference)))
    finally:
        reference.close()


def test_a_sync_and_an_async_client_together_must_be_one_of_each(redis_url: str) -> None:
    def work() -> tuple[int, int]:
        sync_client, async_client = redis.Redis.from_url(redis_url), redis.asyncio.Redis.from_url(redis_url)
        with pytest.raises(NeboConfigurationError, match="async_client"):
            RedisBudgetStore(async_client, async_client=sync_client)
        with pytest.raises(NeboConfigurationError, match="async_client"):
            RedisBudgetStore(sync_client, async_client=sync_client)
        store = RedisBudgetStore(sync_client, namespace="both", async_client=async_client)

        async def run() -> tuple[int, int]:
            try:
                res = (await store.areserve("s", "m", 5, None, 60)).reservation
                assert res is not None
                return await store.acommit(res, 5, True), store.spent("s")
            finally:
                await store.aclose()

        result = asyncio.run(run())
        store.close()
        return result

    assert without_leaks(redis_url, work) == (5, 5)


def test_the_url_stays_private() -> None:
    store = RedisBudgetStore.from_url("redis://:hunter2-SECRET@127.0.0.1:1/0", namespace="x")
    assert "SECRET" not in repr(store)
    assert all("SECRET" not in repr(v) for v in vars(store).values())
    store.close()


# -- the event loop never waits on Redis --------------------------------------------------


class DelayProxy:
    """A TCP proxy on 127.0.0.1 to ``target``, delaying every forwarded chunk by ``delay`` s.

    It runs on its own loop in its own thread (a store that blocks the test's loop must not
    block the proxy too), closes every connection on exit, and stops by itself after
    ``lifetime`` seconds."""

    def __init__(self, target: tuple[str, int], delay: float, lifetime: float = 60.0) -> None:
        self.target, self.delay, self.lifetime = target, delay, lifetime
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            await asyncio.sleep(self.delay)
            dst.write(data)
            await dst.drain()
        dst.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers = [writer]
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            writers.append(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in writers:
                w.close()
            for w in writers:
                try:
                    await w.wait_closed()
                except (OSError, asyncio.CancelledError):
                    pass

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await asyncio.wait_for(self._stop.wait(), self.lifetime)
        except asyncio.TimeoutError:
            pass
        finally:
            server.close()
            await server.wait_closed()
        # asyncio.run then cancels the connection handlers, which close their sockets.


class BlockingRedisStore(RedisBudgetStore):
    """The twins call the sync methods on the loop: what a sync Redis client in a coroutine does."""

    areserve = BudgetStore.areserve
    areserve_lines = BudgetStore.areserve_lines
    auncertain = BudgetStore.auncertain
    acommit = BudgetStore.acommit
    arelease = BudgetStore.arelease
    aspent = BudgetStore.aspent
    areserved = BudgetStore.areserved
    amean_cost = BudgetStore.amean_cost
    apublish = BudgetStore.apublish
    asnapshot = BudgetStore.asnapshot
    areset = BudgetStore.areset


@contextmanager
def longest_loop_step() -> Iterator[list[tuple[float, str]]]:
    """Collect the durations of the running loop's steps (one callback or task resumption) that
    take over 5 ms, as asyncio's debug mode reports them; the list is filled when the block ends.

    A step is what a blocking call stretches: a store round trip made on the loop is one step of
    at least 2 x DELAY_S. Lateness of a 1 ms sleep would also count the GIL waits of the emulator's
    threads in this process, which on a 2-core machine reach 15-45 ms with no Redis at all; GIL
    waits stretch steps too, but less (up to about 26 ms)."""
    loop = asyncio.get_running_loop()
    steps: list[tuple[float, str]] = []

    class Steps(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            args = record.args if isinstance(record.args, tuple) else ()
            if str(record.msg).startswith("Executing ") and args and isinstance(args[-1], float):
                steps.append((args[-1], str(args[0])[:500]))

    handler, logger = Steps(), logging.getLogger("asyncio")
    debug, slow, level = loop.get_debug(), loop.slow_callback_duration, logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # the level asyncio reports slow steps at
    gc.collect()
    gc.disable()  # a collection pause is no store I/O
    loop.set_debug(True)
    loop.slow_callback_duration = 0.005
    try:
        yield steps
    finally:
        loop.set_debug(debug)
        loop.slow_callback_duration = slow
        gc.enable()
        logger.setLevel(level)
        logger.removeHandler(handler)


def make_store(kind: str, url: str) -> RedisBudgetStore:
    namespace = f"stall-{kind}-{uuid.uuid4().hex[:8]}"
    if kind == "sync-client-in-threads":
        return RedisBudgetStore(redis.Redis.from_url(url), namespace=namespace)
    cls = BlockingRedisStore if kind == "blocking" else RedisBudgetStore
    # No socket timeouts: the blocking store holds the loop on purpose, so its own connects may wait.
    timeouts: dict[str, Any] = (
        {"socket_timeout": None, "socket_connect_timeout": None} if kind == "blocking" else {}
    )
    return cls.from_url(url, namespace=namespace, **timeouts)


@pytest.mark.parametrize("kind", ["from-url", "sync-client-in-threads", "blocking"])
async def test_store_io_never_stalls_the_event_loop(redis_url: str, nebo_emulator: Any, kind: str) -> None:
    target = urlsplit(redis_url)
    with DelayProxy((target.hostname or "127.0.0.1", target.port or 6379), DELAY_S) as proxy:
        store = make_store(kind, f"redis://127.0.0.1:{proxy.port}/0")
        policy = BudgetPolicy(store=store, max_spend_micro=10**9)
        client = AsyncNeboClient(
            api_key=nebo_emulator.token,
            base_url=nebo_emulator.base_url,
            policy=policy,
            tracker=BudgetTracker(),
        )
        try:
            # Unmeasured: first-use imports, and pools grown to the load (Redis connections, worker threads).
            warm = await client.chat(BODY)
            await asyncio.gather(*(store.aspent("warm-up") for _ in range(20)))
            with longest_loop_step() as steps:
                results = await asyncio.gather(
                    *(client.chat(BODY) for _ in range(20)), return_exceptions=True
                )
            spent = await policy.aspent_micro()
        finally:
            await client.aclose()
            await store.aclose()
            store.close()
    assert [r for r in results if isinstance(r, BaseException)] == []
    costs = [r.usage.cost_micro or 0 for r in [warm, *results] if not isinstance(r, BaseException)]
    assert all(c > 0 for c in costs)
    assert spent == sum(costs)
    longest, step = max(steps, default=(0.0, ""))
    if kind == "blocking":
        assert longest >= 2 * DELAY_S, f"a blocking store held the loop only {longest * 1000:.0f} ms"
    else:
        assert longest < STEP_BOUND_S, f"a loop step took {longest * 1000:.0f} ms (blocking I/O?): {step}"
