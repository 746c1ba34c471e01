"""The Redis clients a :class:`~nebo_core.stores.RedisBudgetStore` runs on: the store's scripts
registered on each client (:class:`Scripts`), the connections it drives itself, how a client
is told sync from async and closed, and how a Redis failure becomes a typed error that never
shows the connection (its URL may hold a password)."""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any

from nebo_core._loops import LoopCloser
from nebo_core._version import __version__
from nebo_core.errors import NeboStoreError, NeboStoreStateLost
from nebo_core.stores import _redis_lua as lua
from nebo_core.stores._redis_wire import AsyncWire, Wire


@dataclass(frozen=True)
class Scripts:
    """One Redis client, sync or asyncio, with the store's scripts registered on it (no I/O:
    a script is sent by its SHA, and loaded on the first ``NOSCRIPT``), and the store's own
    connections to run them on (:mod:`~nebo_core.stores._redis_wire`; ``None`` on a Redis
    Cluster, where redis-py's path routes each call)."""

    client: Any
    reserve: Any
    settle: Any
    totals: Any
    lines: Any
    generation: Any
    publish: Any
    pace: Any
    wire: Any

    @classmethod
    def on(cls, client: Any) -> Scripts:
        script = client.register_script
        return cls(
            client,
            reserve=script(lua.RESERVE),
            settle=script(lua.SETTLE),
            totals=script(lua.TOTALS),
            lines=script(lua.LINES),
            generation=script(lua.GENERATION),
            publish=script(lua.PUBLISH),
            pace=script(lua.PACE),
            wire=wire_for(client),
        )


def wire_for(client: Any) -> Wire | AsyncWire | None:
    """The store's own connections on ``client``: a standalone (or Sentinel-fronted) client has
    one pool to take them from; a cluster client routes per slot, so it keeps its own path."""
    pool = getattr(client, "connection_pool", None)
    if pool is None or not hasattr(pool, "get_connection") or "cluster" in type(client).__module__:
        return None
    return AsyncWire(client) if is_async(client) else Wire(client)


@dataclass(frozen=True)
class LoopClient:
    scripts: Scripts
    closer: LoopCloser


def is_async(client: Any) -> bool:
    aio = sys.modules.get("redis.asyncio")
    if aio is not None and isinstance(client, (aio.Redis, aio.RedisCluster)):
        return True
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


async def aclose_client(client: Any) -> None:
    close = getattr(client, "aclose", None) or client.close  # aclose: redis-py >= 5.0.1
    await close()


async def aclose_scripts(scripts: Scripts) -> None:
    try:
        if scripts.wire is not None:
            await scripts.wire.close()
    finally:
        await aclose_client(scripts.client)


def close_scripts(scripts: Scripts) -> None:
    try:
        if scripts.wire is not None:
            scripts.wire.close()
    finally:
        close_sync(scripts.client)


def with_driver_info(redis: Any, redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    # CLIENT SETINFO then names this library; and a redis-py that has DriverInfo (8.x), given
    # one, stops reading its own version from package metadata for every new connection:
    # file-system I/O on the event loop, up to tens of milliseconds here each time the pool grows.
    driver_info = getattr(redis, "DriverInfo", None)
    if driver_info is None or {"driver_info", "lib_name", "lib_version"} & redis_kwargs.keys():
        return redis_kwargs
    info = driver_info().add_upstream_driver("nebo-integrations", __version__)
    return {**redis_kwargs, "driver_info": info}


def store_error(exc: BaseException, namespace: str) -> NeboStoreError:
    """A Redis failure as a typed error that names the problem, never the connection (its URL may
    hold a password)."""
    if "NEBO_STATE_LOST" in str(exc):
        return NeboStoreStateLost(
            f"the budget state in Redis namespace {namespace!r} is gone (Redis restarted without "
            "persistence, FLUSHALL, or keys evicted): caps would silently start from zero. Restore "
            "Redis from its persistence, or accept the loss with store.adopt_generation(); run Redis "
            "with appendonly yes and maxmemory-policy noeviction"
        )
    return NeboStoreError(f"the Redis budget store failed: {type(exc).__name__}: {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""


def close_sync(client: Any) -> None:
    client.close()
    # A cluster client also keeps the connection it discovered the slots on (redis-py closes only
    # the nodes it routes to): close it too, or it is left for the garbage collector.
    manager = getattr(client, "nodes_manager", None)
    for node in list(getattr(manager, "startup_nodes", {}).values()):
        connection = getattr(node, "redis_connection", None)
        if connection is not None:
            connection.close()


def is_redis_error(exc: BaseException) -> bool:
    redis = sys.modules.get("redis")
    return redis is not None and isinstance(exc, (redis.RedisError, redis.exceptions.RedisClusterException))
