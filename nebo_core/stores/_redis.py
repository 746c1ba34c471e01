"""A budget store in Redis, for many processes sharing one Nebo token, from sync and async code.

Every update is one Lua script, so it is atomic on the server: a reservation is checked
against the cap and taken in one step, a settlement swaps the reservation for the real
cost in one step, and a snapshot replaces the stored one only if it was observed later.
Reservation expiry uses the Redis server's clock (``TIME``), so workers with skewed
clocks agree. A worker that dies mid-call (``kill -9``) holds its reservations until
their TTL passes; they are then *charged* (the calls may have been billed), counted in
:meth:`RedisBudgetStore.uncertain`, and corrected if a settlement still arrives.

The async twins await a ``redis.asyncio`` client (one per event loop, since its
connections belong to the loop that opened them), or run the sync client in a worker
thread, so an event loop never blocks on a round trip. Arguments and replies are built
and parsed by the same pure helpers for both. Needs the ``redis`` extra
(``pip install 'nebo-integrations[redis]'``).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nebo_core._loops import LoopCloser, close_with_loop
from nebo_core._version import __version__
from nebo_core.budget import BudgetSnapshot
from nebo_core.errors import NeboConfigurationError
from nebo_core.stores._base import BudgetStore, Reservation, ReserveResult, decode_snapshot, encode_snapshot

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "
# KEYS of every script on a scope: 1 spent hash, 2 held zset (id -> expiry), 3 amounts hash
# (id -> amount), 4 uncertain hash, 5 gone hash (expired id -> amount charged), 6 gone zset
# (expired id -> when to forget it); ARGV[1] is the scope. Expired holds are charged, not dropped.
_PURGE = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(gone) do
  local amount = redis.call('HGET', KEYS[3], id)
  if amount then
    redis.call('HINCRBY', KEYS[1], ARGV[1], amount)
    redis.call('HINCRBY', KEYS[4], ARGV[1], amount)
    redis.call('HSET', KEYS[5], id, amount)
    redis.call('ZADD', KEYS[6], now + 86400, id)
    redis.call('HDEL', KEYS[3], id)
  end
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
local forgotten = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)
if #forgotten > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  redis.call('HDEL', KEYS[5], unpack(forgotten))
end
local reserved = 0
for _, v in ipairs(redis.call('HVALS', KEYS[3])) do reserved = reserved + tonumber(v) end
"""
# Drop reservation ARGV[2]; if its expiry had charged it, take that charge back.
_SETTLED = """
local live = redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if live == 0 then
  local charged = redis.call('HGET', KEYS[5], ARGV[2])
  if charged then
    redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(charged))
    redis.call('HINCRBY', KEYS[4], ARGV[1], -tonumber(charged))
    redis.call('HDEL', KEYS[5], ARGV[2])
    redis.call('ZREM', KEYS[6], ARGV[2])
  end
end
"""
# ARGV: scope, id, amount, cap (-1 = none), ttl.
_RESERVE = (
    _NOW
    + _PURGE
    + """
local spent = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local amount = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
if cap >= 0 and spent + reserved + amount > cap then return {0, spent, reserved} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], amount)
return {1, spent, reserved}
"""
)
# KEYS: the scope's six, then the stats hash. ARGV: scope, id, cost, model, observed, estimated.
_COMMIT = (
    _SETTLED
    + """
if ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[7], ARGV[4] .. '|sum', ARGV[3])
  redis.call('HINCRBY', KEYS[7], ARGV[4] .. '|n', 1)
end
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[4], ARGV[1], ARGV[3]) end
return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[3])
"""
)
_RELEASE = _SETTLED + "return 1"
_RESERVED = _NOW + _PURGE + "return reserved"
_TOTALS = (
    _NOW
    + _PURGE
    + """
local spent = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
return {spent, tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')}
"""
)
# KEYS: snapshot hash. ARGV: observed_at (epoch seconds), json.
_PUBLISH = """
local at = redis.call('HGET', KEYS[1], 'at')
if at and tonumber(at) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'json', ARGV[2])
return 1
"""


_Call = tuple[list[str], list[Any]]
"""The keys and arguments of one script call."""


@dataclass(frozen=True)
class _Scripts:
    """One Redis client, sync or asyncio, with this module's scripts registered on it (no I/O:
    a script is sent by its SHA, and loaded on the first ``NOSCRIPT``)."""

    client: Any
    reserve: Any
    commit: Any
    release: Any
    reserved: Any
    totals: Any
    publish: Any

    @classmethod
    def on(cls, client: Any) -> _Scripts:
        texts = (_RESERVE, _COMMIT, _RELEASE, _RESERVED, _TOTALS, _PUBLISH)
        return cls(client, *(client.register_script(text) for text in texts))


@dataclass(frozen=True)
class _LoopClient:
    scripts: _Scripts
    closer: LoopCloser


def _is_async(client: Any) -> bool:
    aio = sys.modules.get("redis.asyncio")
    if aio is not None and isinstance(client, (aio.Redis, aio.RedisCluster)):
        return True
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


async def _aclose_client(client: Any) -> None:
    close = getattr(client, "aclose", None) or client.close  # aclose: redis-py >= 5.0.1
    await close()


def _with_driver_info(redis: Any, redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    # CLIENT SETINFO then names this library; and a redis-py that has DriverInfo (8.x), given
    # one, stops reading its own version from package metadata for every new connection:
    # file-system I/O on the event loop, up to tens of milliseconds here each time the pool grows.
    driver_info = getattr(redis, "DriverInfo", None)
    if driver_info is None or {"driver_info", "lib_name", "lib_version"} & redis_kwargs.keys():
        return redis_kwargs
    info = driver_info().add_upstream_driver("nebo-integrations", __version__)
    return {**redis_kwargs, "driver_info": info}


def _reserve_result(rid: str, scope: str, model: str, amount_micro: int, reply: Any) -> ReserveResult:
    ok, spent, reserved = reply
    reservation = Reservation(rid, scope, amount_micro, model) if int(ok) else None
    return ReserveResult(reservation, int(spent), int(reserved))


def _mean(reply: Any) -> float | None:
    total, count = reply
    return int(total) / int(count) if count and int(count) else None


def _snapshot(reply: Any) -> BudgetSnapshot | None:
    return decode_snapshot(reply) if reply else None


class RedisBudgetStore(BudgetStore):
    """Spend, reservations, cost statistics and the freshest snapshot in Redis, under ``namespace``.

    ``client`` is a ``redis.Redis`` or a ``redis.asyncio.Redis``; pass the other kind as
    ``async_client`` to serve both sync and async callers, or use :meth:`from_url`, which
    does. With a sync client only, the async methods run it in a worker thread; with an
    async client only, the sync methods raise :class:`NeboConfigurationError`. An async
    client you pass serves one event loop (redis.asyncio connections belong to the loop that
    opened them); :meth:`from_url` makes one per loop. The store owns the clients it is
    given: :meth:`close` and :meth:`aclose` close them.
    """

    def __init__(self, client: Any, *, namespace: str = "nebo-budget", async_client: Any = None) -> None:
        if not namespace or any(c in namespace for c in " \n{}"):
            raise NeboConfigurationError(
                f"invalid Redis namespace {namespace!r}: use a short name without spaces or braces"
            )
        if async_client is not None and (_is_async(client) or not _is_async(async_client)):
            raise NeboConfigurationError(
                "RedisBudgetStore(client, async_client=...) takes a redis.Redis as client and a "
                "redis.asyncio.Redis as async_client"
            )
        if _is_async(client):
            client, async_client = None, client
        self.namespace = namespace
        self._sync = _Scripts.on(client) if client is not None else None
        self._async = _Scripts.on(async_client) if async_client is not None else None
        self._connect_async: Callable[[], Any] | None = None
        """Set by :meth:`from_url`: builds a ``redis.asyncio`` client (its closure holds the URL)."""
        self._loops: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "nebo-budget", **redis_kwargs: Any) -> RedisBudgetStore:
        """A store on the Redis at ``url`` (``redis://host:port/db``; credentials may be in the URL),
        for sync and async callers: one sync client now, and one ``redis.asyncio`` client per
        event loop that uses the async methods, closed when that loop shuts down (or by
        :meth:`aclose`). ``redis_kwargs`` go to both ``from_url`` constructors."""
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the extra is installed in the test env
            raise NeboConfigurationError(
                "RedisBudgetStore needs the redis package: pip install 'nebo-integrations[redis]'"
            ) from exc
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise NeboConfigurationError(
                "the Redis URL must start with redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)"
            )

        redis_kwargs = _with_driver_info(redis, redis_kwargs)

        def connect_async() -> Any:
            import redis.asyncio

            return redis.asyncio.Redis.from_url(url, **redis_kwargs)

        store = cls(redis.Redis.from_url(url, **redis_kwargs), namespace=namespace)
        store._connect_async = connect_async
        return store

    def __repr__(self) -> str:
        # Never show the connection (its URL may carry a password).
        return f"RedisBudgetStore(namespace={self.namespace!r})"

    # -- clients --------------------------------------------------------------------------

    def _conn(self) -> _Scripts:
        if self._sync is None:
            raise NeboConfigurationError(
                "this RedisBudgetStore has only an async Redis client, and was called synchronously: "
                "pass a sync client too, RedisBudgetStore(redis.Redis(...), async_client=...), "
                "or build the store with RedisBudgetStore.from_url(url)"
            )
        return self._sync

    async def _aconn(self) -> _Scripts | None:
        """The asyncio client for the running loop; ``None`` when there is none (then the async
        methods run the sync client in a worker thread)."""
        if self._async is not None or self._connect_async is None:
            return self._async
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._loops.get(loop)
            if entry is not None:
                return entry.scripts
            self._forget_closed_loops()
            scripts = _Scripts.on(self._connect_async())
            closer = close_with_loop(loop, lambda: _aclose_client(scripts.client))
            self._loops[loop] = _LoopClient(scripts, closer)
        return scripts

    def _forget_closed_loops(self) -> None:
        # A closed loop has closed its client already (nebo_core._loops.close_with_loop).
        for loop in [loop for loop in self._loops if loop.is_closed()]:
            del self._loops[loop]

    def close(self) -> None:
        """Close the sync client's connections (async clients: see :meth:`aclose`)."""
        with self._lock:
            self._forget_closed_loops()
        if self._sync is not None:
            self._sync.client.close()

    async def aclose(self) -> None:
        """Close the connections the async methods use in this event loop: the loop's client
        (:meth:`from_url`), the async client you passed, or, with a sync client only, that one."""
        if self._async is not None:
            await _aclose_client(self._async.client)
            return
        if self._connect_async is None:
            self.close()
            return
        with self._lock:
            entry = self._loops.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.closer.aclose()

    # -- arguments (shared by the sync and async methods) ---------------------------------

    def _keys(self, scope: str) -> list[str]:
        ns = self.namespace
        return [
            f"{ns}:spent",
            f"{ns}:held:{scope}",
            f"{ns}:amt:{scope}",
            f"{ns}:uncertain",
            f"{ns}:gone:{scope}",
            f"{ns}:gone-at:{scope}",
        ]

    def _reserve_call(
        self, scope: str, amount_micro: int, cap_micro: int | None, ttl_s: float
    ) -> tuple[str, list[str], list[Any]]:
        rid = uuid.uuid4().hex
        cap = -1 if cap_micro is None else cap_micro
        return rid, self._keys(scope), [scope, rid, amount_micro, cap, ttl_s]

    def _commit_call(
        self, reservation: Reservation, cost_micro: int, observed: bool, estimated: bool
    ) -> _Call:
        keys = [*self._keys(reservation.scope), f"{self.namespace}:stats"]
        args = [
            reservation.scope,
            reservation.id,
            cost_micro,
            reservation.model,
            int(observed),
            int(estimated),
        ]
        return keys, args

    def _release_call(self, reservation: Reservation) -> _Call:
        return self._keys(reservation.scope), [reservation.scope, reservation.id]

    def _stats_fields(self, model: str) -> tuple[str, str, str]:
        return f"{self.namespace}:stats", f"{model}|sum", f"{model}|n"

    def _publish_call(self, snapshot: BudgetSnapshot) -> _Call:
        at = f"{snapshot.observed_at.timestamp():.6f}"
        return [self._snapshot_key(snapshot.account)], [at, encode_snapshot(snapshot)]

    def _snapshot_key(self, account: str | None) -> str:
        return f"{self.namespace}:snapshot:{account or '-'}"

    # -- sync -----------------------------------------------------------------------------

    def reserve(
        self, scope: str, model: str, amount_micro: int, cap_micro: int | None, ttl_s: float
    ) -> ReserveResult:
        rid, keys, args = self._reserve_call(scope, amount_micro, cap_micro, ttl_s)
        return _reserve_result(rid, scope, model, amount_micro, self._conn().reserve(keys=keys, args=args))

    def commit(
        self, reservation: Reservation, cost_micro: int, observed: bool, estimated: bool = False
    ) -> int:
        keys, args = self._commit_call(reservation, cost_micro, observed, estimated)
        return int(self._conn().commit(keys=keys, args=args))

    def release(self, reservation: Reservation) -> None:
        keys, args = self._release_call(reservation)
        self._conn().release(keys=keys, args=args)

    def spent(self, scope: str) -> int:
        return int(self._conn().totals(keys=self._keys(scope), args=[scope])[0])

    def uncertain(self, scope: str) -> int:
        return int(self._conn().totals(keys=self._keys(scope), args=[scope])[1])

    def reserved(self, scope: str) -> int:
        return int(self._conn().reserved(keys=self._keys(scope), args=[scope]))

    def mean_cost(self, model: str) -> float | None:
        return _mean(self._conn().client.hmget(*self._stats_fields(model)))

    def publish(self, snapshot: BudgetSnapshot) -> None:
        keys, args = self._publish_call(snapshot)
        self._conn().publish(keys=keys, args=args)

    def snapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        return _snapshot(self._conn().client.hget(self._snapshot_key(account), "json"))

    def reset(self) -> None:
        client = self._conn().client
        keys = list(client.scan_iter(match=f"{self.namespace}:*"))
        if keys:
            client.delete(*keys)

    # -- async: the same calls, awaited (or the sync ones in a thread, without an async client)

    async def areserve(
        self, scope: str, model: str, amount_micro: int, cap_micro: int | None, ttl_s: float
    ) -> ReserveResult:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.reserve, scope, model, amount_micro, cap_micro, ttl_s)
        rid, keys, args = self._reserve_call(scope, amount_micro, cap_micro, ttl_s)
        return _reserve_result(rid, scope, model, amount_micro, await conn.reserve(keys=keys, args=args))

    async def acommit(
        self, reservation: Reservation, cost_micro: int, observed: bool, estimated: bool = False
    ) -> int:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.commit, reservation, cost_micro, observed, estimated)
        keys, args = self._commit_call(reservation, cost_micro, observed, estimated)
        return int(await conn.commit(keys=keys, args=args))

    async def arelease(self, reservation: Reservation) -> None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.release, reservation)
        keys, args = self._release_call(reservation)
        await conn.release(keys=keys, args=args)

    async def aspent(self, scope: str) -> int:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.spent, scope)
        return int((await conn.totals(keys=self._keys(scope), args=[scope]))[0])

    async def auncertain(self, scope: str) -> int:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.uncertain, scope)
        return int((await conn.totals(keys=self._keys(scope), args=[scope]))[1])

    async def areserved(self, scope: str) -> int:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.reserved, scope)
        return int(await conn.reserved(keys=self._keys(scope), args=[scope]))

    async def amean_cost(self, model: str) -> float | None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.mean_cost, model)
        return _mean(await conn.client.hmget(*self._stats_fields(model)))

    async def apublish(self, snapshot: BudgetSnapshot) -> None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.publish, snapshot)
        keys, args = self._publish_call(snapshot)
        await conn.publish(keys=keys, args=args)

    async def asnapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.snapshot, account)
        return _snapshot(await conn.client.hget(self._snapshot_key(account), "json"))

    async def areset(self) -> None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.reset)
        keys = [key async for key in conn.client.scan_iter(match=f"{self.namespace}:*")]
        if keys:
            await conn.client.delete(*keys)
