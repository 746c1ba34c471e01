"""A budget store in Redis, for many processes sharing one Nebo token, from sync and async code.

Every update is one Lua script, so it is atomic on the server: a reservation is checked
against the cap of every level of a nested scope and taken on all of them in one step, a
settlement swaps the reservation for the real cost in one step, and a snapshot replaces
the stored one only if it was observed later. Every key carries the namespace as a hash
tag (``{nebo-budget}:spent``), so a script's keys share one slot and the store works on a
Redis Cluster as on one server (one namespace is one slot: shard by namespace, e.g. one per
org). Reservation expiry and rolling periods use the Redis server's clock (``TIME``), so
workers with skewed clocks agree. A worker that dies mid-call (``kill -9``) holds its
reservations until their TTL passes; they are then *charged* (the calls may have been
billed), counted in :meth:`RedisBudgetStore.uncertain`, and corrected if a settlement
still arrives. Settlement is idempotent.

Lost state is detected: the store writes a generation marker on first use and every script
checks it, so a Redis restarted without persistence, a ``FLUSHALL`` or an evicted key makes
the next call raise :class:`~nebo_core.errors.NeboStoreStateLost` instead of silently
refilling every cap. Any Redis failure is raised as :class:`~nebo_core.errors.NeboStoreError`
(the policy's ``on_store_error`` decides what the call does); the connection is never shown.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nebo_core._loops import LoopCloser, close_with_loop
from nebo_core._version import __version__
from nebo_core.budget import BudgetSnapshot
from nebo_core.caps import ROLLING_BUCKETS, CapLine
from nebo_core.errors import NeboConfigurationError, NeboStoreError, NeboStoreStateLost
from nebo_core.stores._base import (
    DONE_TTL_S,
    GONE_TTL_S,
    BudgetStore,
    Reservation,
    ReserveResult,
    decode_snapshot,
    encode_snapshot,
    window_of,
)

# Every scope script: KEYS 1 spent hash, 2 uncertain hash, 3 stats hash, 4 settled zset, 5 generation,
# 6 the account's snapshot hash; then five per line: held zset (id -> expiry), amounts hash (id ->
# amount), gone hash (expired id -> amount charged), gone-at zset (expired id -> when to forget),
# rolling buckets hash.
# ARGV 1 expected generation, 2 line count n, then three per line: key, cap (-1: none), window (0: none).
_PRELUDE = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local gen = redis.call('GET', KEYS[5])
if gen ~= ARGV[1] then return redis.error_reply('NEBO_STATE_LOST') end
local n = tonumber(ARGV[2])
local rest = 2 + 3 * n
local function lk(j, i) return KEYS[6 + (j - 1) * 5 + i] end
local function la(j, i) return ARGV[2 + (j - 1) * 3 + i] end
local function bucket(w) return string.format('%d', math.floor(now / (w / {ROLLING_BUCKETS}))) end
local function add(j, amount)
  amount = string.format('%d', amount)  -- an integer's text: never "-0" or "1e+15"
  redis.call('HINCRBY', KEYS[1], la(j, 1), amount)
  local w = tonumber(la(j, 3))
  if w > 0 then redis.call('HINCRBY', lk(j, 5), bucket(w), amount) end
end
local function spent(j)
  local w = tonumber(la(j, 3))
  if w <= 0 then return tonumber(redis.call('HGET', KEYS[1], la(j, 1)) or '0') end
  local oldest = math.floor(now / (w / {ROLLING_BUCKETS})) - {ROLLING_BUCKETS}
  local total = 0
  local buckets = redis.call('HGETALL', lk(j, 5))
  for i = 1, #buckets, 2 do
    if tonumber(buckets[i]) <= oldest then redis.call('HDEL', lk(j, 5), buckets[i])
    else total = total + tonumber(buckets[i + 1]) end
  end
  return total
end
local function purge(j)
  local expired = redis.call('ZRANGEBYSCORE', lk(j, 1), '-inf', now)
  for _, id in ipairs(expired) do
    local amount = redis.call('HGET', lk(j, 2), id)
    if amount then
      add(j, tonumber(amount))
      redis.call('HINCRBY', KEYS[2], la(j, 1), amount)
      redis.call('HSET', lk(j, 3), id, amount)
      redis.call('ZADD', lk(j, 4), now + {GONE_TTL_S}, id)
      redis.call('HDEL', lk(j, 2), id)
    end
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', lk(j, 1), '-inf', now) end
  local old = redis.call('ZRANGEBYSCORE', lk(j, 4), '-inf', now)
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', lk(j, 4), '-inf', now)
    redis.call('HDEL', lk(j, 3), unpack(old))
  end
  local reserved = 0
  for _, v in ipairs(redis.call('HVALS', lk(j, 2))) do reserved = reserved + tonumber(v) end
  return reserved
end
"""
# ARGV after the lines: id, amount, ttl. Reply: {granted, spent, reserved, line judged, snapshot json}.
_RESERVE = (
    _PRELUDE
    + """
local amount = tonumber(ARGV[rest + 2])
local first = nil
for j = 1, n do
  local reserved = purge(j)
  local s = spent(j)
  if j == 1 then first = {s, reserved} end
  local cap = tonumber(la(j, 2))
  if cap >= 0 and s + reserved + amount > cap then
    return {0, s, reserved, j, redis.call('HGET', KEYS[6], 'json') or ''}
  end
end
for j = 1, n do
  redis.call('ZADD', lk(j, 1), now + tonumber(ARGV[rest + 3]), ARGV[rest + 1])
  redis.call('HSET', lk(j, 2), ARGV[rest + 1], amount)
end
return {1, first[1], first[2], 1, redis.call('HGET', KEYS[6], 'json') or ''}
"""
)
# ARGV after the lines: id, cost (-1: a release), model, observed, estimated, and a snapshot to
# publish (observed_at, json; empty: none). Reply: {applied, spent}.
_SETTLE = (
    _PRELUDE
    + f"""
local id = ARGV[rest + 1]
if ARGV[rest + 7] ~= '' then
  local at = redis.call('HGET', KEYS[6], 'at')
  if not at or tonumber(at) <= tonumber(ARGV[rest + 6]) then
    redis.call('HSET', KEYS[6], 'at', ARGV[rest + 6], 'json', ARGV[rest + 7])
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
if redis.call('ZSCORE', KEYS[4], id) then return {{0, spent(1)}} end
redis.call('ZADD', KEYS[4], now + {DONE_TTL_S}, id)
local cost = tonumber(ARGV[rest + 2])
for j = 1, n do
  redis.call('ZREM', lk(j, 1), id)
  redis.call('HDEL', lk(j, 2), id)
  local charged = redis.call('HGET', lk(j, 3), id)
  if charged then
    add(j, -tonumber(charged))
    redis.call('HINCRBY', KEYS[2], la(j, 1), string.format('%d', -tonumber(charged)))
    redis.call('HDEL', lk(j, 3), id)
    redis.call('ZREM', lk(j, 4), id)
  end
  if cost >= 0 then
    add(j, cost)
    if ARGV[rest + 5] == '1' then redis.call('HINCRBY', KEYS[2], la(j, 1), cost) end
  end
end
if cost >= 0 and ARGV[rest + 4] == '1' then
  redis.call('HINCRBY', KEYS[3], ARGV[rest + 3] .. '|sum', cost)
  redis.call('HINCRBY', KEYS[3], ARGV[rest + 3] .. '|n', 1)
end
return {{1, spent(1)}}
"""
)
# One line: {spent, uncertain, reserved}.
_TOTALS = (
    _PRELUDE
    + """
local reserved = purge(1)
return {spent(1), tonumber(redis.call('HGET', KEYS[2], la(1, 1)) or '0'), reserved}
"""
)
# KEYS: generation. ARGV: a fresh marker. The marker in force (this one, if there was none).
_GENERATION = "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])"
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
    settle: Any
    totals: Any
    generation: Any
    publish: Any

    @classmethod
    def on(cls, client: Any) -> _Scripts:
        texts = (_RESERVE, _SETTLE, _TOTALS, _GENERATION, _PUBLISH)
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


def _reserve_result(
    rid: str, lines: Sequence[CapLine], model: str, amount_micro: int, reply: Any
) -> ReserveResult:
    ok, spent, reserved, judged, shared = reply
    line = lines[int(judged) - 1]
    snapshot = _snapshot(shared)
    if not int(ok):
        return ReserveResult(None, int(spent), int(reserved), line, snapshot)
    reservation = Reservation(rid, lines[0].key, amount_micro, model, tuple(lines))
    return ReserveResult(reservation, int(spent), int(reserved), line, snapshot)


def _mean(reply: Any) -> float | None:
    total, count = reply
    return int(total) / int(count) if count and int(count) else None


def _snapshot(reply: Any) -> BudgetSnapshot | None:
    return decode_snapshot(reply) if reply else None


def _store_error(exc: BaseException, namespace: str) -> NeboStoreError:
    """A Redis failure as a typed error that names the problem, never the connection (its URL may
    hold a password)."""
    if "NEBO_STATE_LOST" in str(exc):
        return NeboStoreStateLost(
            f"the budget state in Redis namespace {namespace!r} is gone (Redis restarted without "
            "persistence, FLUSHALL, or keys evicted): caps would silently start from zero. Restore "
            "Redis from its persistence, or accept the loss with store.adopt_generation(); run Redis "
            "with appendonly yes and maxmemory-policy noeviction"
        )
    return NeboStoreError(f"the Redis budget store failed: {type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""


class RedisBudgetStore(BudgetStore):
    """Spend, reservations, cost statistics and the freshest snapshot in Redis, under ``namespace``.

    ``client`` is a ``redis.Redis`` or ``redis.cluster.RedisCluster`` (a Sentinel-managed
    master from ``Sentinel.master_for`` too), or their ``redis.asyncio`` twins; pass the other
    kind as ``async_client`` to serve both sync and async callers, or use :meth:`from_url`,
    which does. With a sync client only, the async methods run it in a worker thread; with an
    async client only, the sync methods raise :class:`NeboConfigurationError`. An async
    client you pass serves one event loop (redis.asyncio connections belong to the loop that
    opened them); :meth:`from_url` makes one per loop. The store owns the clients it is
    given: :meth:`close` and :meth:`aclose` close them.
    """

    def __init__(self, client: Any, *, namespace: str = "nebo-budget", async_client: Any = None) -> None:
        if not namespace or any(c in namespace for c in " \n{}"):
            raise NeboConfigurationError(
                f"invalid Redis namespace {namespace!r}: use a short name without spaces or braces "
                "(it becomes the keys' hash tag)"
            )
        if async_client is not None and (_is_async(client) or not _is_async(async_client)):
            raise NeboConfigurationError(
                "RedisBudgetStore(client, async_client=...) takes a redis.Redis (or RedisCluster) as "
                "client and its redis.asyncio twin as async_client"
            )
        if _is_async(client):
            client, async_client = None, client
        self.namespace = namespace
        self._prefix = "{" + namespace + "}"
        self._sync = _Scripts.on(client) if client is not None else None
        self._async = _Scripts.on(async_client) if async_client is not None else None
        self._connect_async: Callable[[], Any] | None = None
        """Set by :meth:`from_url`: builds a ``redis.asyncio`` client (its closure holds the URL)."""
        self._loops: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._lock = threading.Lock()
        self._generation: str | None = None
        """The state generation this store has seen (read or written on first use)."""

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = "nebo-budget", cluster: bool = False, **redis_kwargs: Any
    ) -> RedisBudgetStore:
        """A store on the Redis at ``url`` (``redis://host:port/db``; credentials may be in the URL),
        for sync and async callers: one sync client now, and one ``redis.asyncio`` client per
        event loop that uses the async methods, closed when that loop shuts down (or by
        :meth:`aclose`). ``cluster=True``: ``url`` is any node of a Redis Cluster.
        ``redis_kwargs`` go to both ``from_url`` constructors; ``socket_timeout`` and
        ``socket_connect_timeout`` default to 2 s, so a stalled Redis fails a call (as the policy's
        ``on_store_error`` says) instead of hanging it."""
        try:
            import redis
            import redis.cluster
        except ImportError as exc:  # pragma: no cover - the extra is installed in the test env
            raise NeboConfigurationError(
                "RedisBudgetStore needs the redis package: pip install 'nebo-integrations[redis]'"
            ) from exc
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise NeboConfigurationError(
                "the Redis URL must start with redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)"
            )
        redis_kwargs = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, **redis_kwargs}
        redis_kwargs = _with_driver_info(redis, redis_kwargs)

        def connect_async() -> Any:
            import redis.asyncio
            import redis.asyncio.cluster

            kind = redis.asyncio.cluster.RedisCluster if cluster else redis.asyncio.Redis
            return kind.from_url(url, **redis_kwargs)

        kind = redis.cluster.RedisCluster if cluster else redis.Redis
        try:
            client = kind.from_url(url, **redis_kwargs)
        except redis.RedisError as exc:  # a cluster client reads the slots now
            raise _store_error(exc, namespace) from None
        store = cls(client, namespace=namespace)
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
            _close_sync(self._sync.client)

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

    # -- keys and arguments (shared by the sync and async methods) -------------------------

    def _key(self, name: str) -> str:
        return f"{self._prefix}:{name}"

    def _scope_call(
        self, lines: Sequence[CapLine], generation: str, *tail: Any, account: str | None = None
    ) -> _Call:
        keys = [self._key(n) for n in ("spent", "uncertain", "stats", "settled", "generation")]
        keys.append(self._snapshot_key(account))
        args: list[Any] = [generation, len(lines)]
        for line in lines:
            keys += [self._key(f"{kind}:{line.key}") for kind in ("held", "amt", "gone", "gone-at", "roll")]
            window = line.window_s if line.window_s is not None else window_of(line.key)
            args += [line.key, -1 if line.cap_micro is None else line.cap_micro, window or 0]
        return keys, [*args, *tail]

    def _lines(self, reservation: Reservation) -> list[CapLine]:
        return list(reservation.lines) or [CapLine(reservation.scope, None, window_of(reservation.scope))]

    def _settle_call(
        self,
        reservation: Reservation,
        cost: int,
        observed: bool,
        estimated: bool,
        snapshot: BudgetSnapshot | None,
        generation: str,
    ) -> _Call:
        tail = [reservation.id, cost, reservation.model, int(observed), int(estimated)]
        if snapshot is None:
            tail += ["", ""]
        else:
            tail += [f"{snapshot.observed_at.timestamp():.6f}", encode_snapshot(snapshot)]
        account = snapshot.account if snapshot is not None else None
        return self._scope_call(self._lines(reservation), generation, *tail, account=account)

    def _stats_fields(self, model: str) -> tuple[str, str, str]:
        return self._key("stats"), f"{model}|sum", f"{model}|n"

    def _publish_call(self, snapshot: BudgetSnapshot) -> _Call:
        at = f"{snapshot.observed_at.timestamp():.6f}"
        return [self._snapshot_key(snapshot.account)], [at, encode_snapshot(snapshot)]

    def _snapshot_key(self, account: str | None) -> str:
        return self._key(f"snapshot:{account or '-'}")

    def _generation_call(self) -> _Call:
        return [self._key("generation")], [uuid.uuid4().hex]

    def adopt_generation(self) -> None:
        """Accept that the stored state was lost (after :class:`NeboStoreStateLost`): go on from
        whatever Redis holds now, writing a new generation marker if there is none. Caps start
        again from what is stored, so do this only once the loss is understood."""
        self._generation = None

    # -- sync -----------------------------------------------------------------------------

    def _run(self, script: Callable[..., Any], keys: list[str], args: list[Any]) -> Any:
        try:
            return script(keys=keys, args=args)
        except Exception as exc:
            if isinstance(exc, NeboConfigurationError) or not _is_redis_error(exc):
                raise
            raise _store_error(exc, self.namespace) from None

    def _gen(self) -> str:
        if self._generation is None:
            keys, args = self._generation_call()
            self._generation = _text(self._run(self._conn().generation, keys, args))
        return self._generation

    def reserve_lines(
        self,
        lines: Sequence[CapLine],
        model: str,
        amount_micro: int,
        ttl_s: float,
        account: str | None = None,
    ) -> ReserveResult:
        rid = uuid.uuid4().hex
        keys, args = self._scope_call(lines, self._gen(), rid, amount_micro, ttl_s, account=account)
        return _reserve_result(rid, lines, model, amount_micro, self._run(self._conn().reserve, keys, args))

    def commit(
        self,
        reservation: Reservation,
        cost_micro: int,
        observed: bool,
        estimated: bool = False,
        snapshot: BudgetSnapshot | None = None,
    ) -> int:
        keys, args = self._settle_call(reservation, cost_micro, observed, estimated, snapshot, self._gen())
        return int(self._run(self._conn().settle, keys, args)[1])

    def release(self, reservation: Reservation) -> None:
        keys, args = self._settle_call(reservation, -1, False, False, None, self._gen())
        self._run(self._conn().settle, keys, args)

    def _totals(self, scope: str) -> list[Any]:
        keys, args = self._scope_call([CapLine(scope, None, window_of(scope))], self._gen())
        return list(self._run(self._conn().totals, keys, args))

    def spent(self, scope: str) -> int:
        return int(self._totals(scope)[0])

    def uncertain(self, scope: str) -> int:
        return int(self._totals(scope)[1])

    def reserved(self, scope: str) -> int:
        return int(self._totals(scope)[2])

    def mean_cost(self, model: str) -> float | None:
        conn = self._conn()
        return _mean(
            self._run(lambda keys, args: conn.client.hmget(*keys), list(self._stats_fields(model)), [])
        )

    def publish(self, snapshot: BudgetSnapshot) -> None:
        keys, args = self._publish_call(snapshot)
        self._run(self._conn().publish, keys, args)

    def snapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        conn = self._conn()
        key = self._snapshot_key(account)
        return _snapshot(self._run(lambda keys, args: conn.client.hget(key, "json"), [], []))

    def reset(self) -> None:
        client = self._conn().client
        keys = list(client.scan_iter(match=f"{self._prefix}:*"))
        if keys:
            client.delete(*keys)
        self._generation = None

    # -- async: the same calls, awaited (or the sync ones in a thread, without an async client)

    async def _arun(self, script: Callable[..., Any], keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except Exception as exc:
            if isinstance(exc, NeboConfigurationError) or not _is_redis_error(exc):
                raise
            raise _store_error(exc, self.namespace) from None

    async def _agen(self, conn: _Scripts) -> str:
        if self._generation is None:
            keys, args = self._generation_call()
            self._generation = _text(await self._arun(conn.generation, keys, args))
        return self._generation

    async def areserve_lines(
        self,
        lines: Sequence[CapLine],
        model: str,
        amount_micro: int,
        ttl_s: float,
        account: str | None = None,
    ) -> ReserveResult:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.reserve_lines, lines, model, amount_micro, ttl_s, account)
        rid = uuid.uuid4().hex
        keys, args = self._scope_call(
            lines, await self._agen(conn), rid, amount_micro, ttl_s, account=account
        )
        return _reserve_result(rid, lines, model, amount_micro, await self._arun(conn.reserve, keys, args))

    async def acommit(
        self,
        reservation: Reservation,
        cost_micro: int,
        observed: bool,
        estimated: bool = False,
        snapshot: BudgetSnapshot | None = None,
    ) -> int:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(
                self.commit, reservation, cost_micro, observed, estimated, snapshot
            )
        generation = await self._agen(conn)
        keys, args = self._settle_call(reservation, cost_micro, observed, estimated, snapshot, generation)
        return int((await self._arun(conn.settle, keys, args))[1])

    async def arelease(self, reservation: Reservation) -> None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.release, reservation)
        keys, args = self._settle_call(reservation, -1, False, False, None, await self._agen(conn))
        await self._arun(conn.settle, keys, args)

    async def _atotals(self, scope: str) -> list[Any] | None:
        conn = await self._aconn()
        if conn is None:
            return None
        keys, args = self._scope_call([CapLine(scope, None, window_of(scope))], await self._agen(conn))
        return list(await self._arun(conn.totals, keys, args))

    async def aspent(self, scope: str) -> int:
        totals = await self._atotals(scope)
        return int(totals[0]) if totals is not None else await asyncio.to_thread(self.spent, scope)

    async def auncertain(self, scope: str) -> int:
        totals = await self._atotals(scope)
        return int(totals[1]) if totals is not None else await asyncio.to_thread(self.uncertain, scope)

    async def areserved(self, scope: str) -> int:
        totals = await self._atotals(scope)
        return int(totals[2]) if totals is not None else await asyncio.to_thread(self.reserved, scope)

    async def amean_cost(self, model: str) -> float | None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.mean_cost, model)
        client = conn.client
        return _mean(
            await self._arun(lambda keys, args: client.hmget(*keys), list(self._stats_fields(model)), [])
        )

    async def apublish(self, snapshot: BudgetSnapshot) -> None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.publish, snapshot)
        keys, args = self._publish_call(snapshot)
        await self._arun(conn.publish, keys, args)

    async def asnapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.snapshot, account)
        client, key = conn.client, self._snapshot_key(account)
        return _snapshot(await self._arun(lambda keys, args: client.hget(key, "json"), [], []))

    async def areset(self) -> None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.reset)
        keys = [key async for key in conn.client.scan_iter(match=f"{self._prefix}:*")]
        if keys:
            await conn.client.delete(*keys)
        self._generation = None


def _close_sync(client: Any) -> None:
    client.close()
    # A cluster client also keeps the connection it discovered the slots on (redis-py closes only
    # the nodes it routes to): close it too, or it is left for the garbage collector.
    manager = getattr(client, "nodes_manager", None)
    for node in list(getattr(manager, "startup_nodes", {}).values()):
        connection = getattr(node, "redis_connection", None)
        if connection is not None:
            connection.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_redis_error(exc: BaseException) -> bool:
    redis = sys.modules.get("redis")
    return redis is not None and isinstance(exc, redis.RedisError)
