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

A capped call waits for one round trip, its reservation: the policy settles with
:meth:`RedisBudgetStore.commit_nowait`, which queues the settlement and sends it in a batch
soon after (:mod:`~nebo_core.stores._redis_settle`), and the scripts go out on connections the
store drives itself, one packed ``EVALSHA`` each (:mod:`~nebo_core.stores._redis_wire`).

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
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from nebo_core._loops import close_with_loop
from nebo_core.budget import BudgetSnapshot
from nebo_core.caps import CapLine
from nebo_core.errors import NeboConfigurationError, NeboStoreError
from nebo_core.pacing import Booking
from nebo_core.settings import check_number
from nebo_core.stores._base import (
    BudgetStore,
    LineUsage,
    Reservation,
    ReserveResult,
    decode_snapshot,
    encode_snapshot,
    note_spent,
    window_of,
)
from nebo_core.stores._redis_clients import (
    LoopClient,
    Scripts,
    aclose_scripts,
    close_scripts,
    is_async,
    is_redis_error,
    store_error,
    with_driver_info,
)
from nebo_core.stores._redis_settle import ROOMY_CALLS, SETTLE_WITHIN_S, Queued, SettleQueue
from nebo_core.stores._redis_wire import AsyncWire

logger = logging.getLogger("nebo_core.budget")

_Call = tuple[list[str], list[Any]]
"""The keys and arguments of one script call."""


def _line_spec(lines: Sequence[CapLine]) -> str:
    """The scripts' view of a set of lines, as one JSON argument: key, cap (``-1``: none) and
    window seconds (``0``: none) per line. It is also the hold's record, so any process can
    charge a hold that expires."""
    spec: list[Any] = []
    for line in lines:
        window = line.window_s if line.window_s is not None else window_of(line.key)
        w = int(window) if window is not None and window == int(window) else (window or 0)
        spec += [line.key, -1 if line.cap_micro is None else line.cap_micro, w]
    return json.dumps(spec, separators=(",", ":"))


def _mean(reply: Any) -> float | None:
    total, count = reply
    return int(total) / int(count) if count and int(count) else None


def _snapshot(reply: Any) -> BudgetSnapshot | None:
    return decode_snapshot(reply) if reply else None


def _at(snapshot: BudgetSnapshot) -> str:
    """A snapshot's ``observed_at`` as the scripts store and compare it."""
    return f"{snapshot.observed_at.timestamp():.6f}"


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

    A policy settles its calls with :meth:`commit_nowait`: the settlement waits, with no I/O,
    and goes in a batch within ``settle_within_s`` (sooner near a cap, before any read, when a
    client closes and at exit: :mod:`~nebo_core.stores._redis_settle`), so a capped call makes
    one round trip, its reservation. ``settle_within_s=0`` settles each call at once; so does
    a cluster client, or an async client given alone (no thread can send for it).
    """

    def __init__(
        self,
        client: Any,
        *,
        namespace: str = "nebo-budget",
        async_client: Any = None,
        settle_within_s: float = SETTLE_WITHIN_S,
    ) -> None:
        if not namespace or any(c in namespace for c in " \n{}"):
            raise NeboConfigurationError(
                f"invalid Redis namespace {namespace!r}: use a short name without spaces or braces "
                "(it becomes the keys' hash tag)"
            )
        if async_client is not None and (is_async(client) or not is_async(async_client)):
            raise NeboConfigurationError(
                "RedisBudgetStore(client, async_client=...) takes a redis.Redis (or RedisCluster) as "
                "client and its redis.asyncio twin as async_client"
            )
        if is_async(client):
            client, async_client = None, client
        self.namespace = namespace
        self._prefix = "{" + namespace + "}"
        self._sync = Scripts.on(client) if client is not None else None
        self._async = Scripts.on(async_client) if async_client is not None else None
        self._connect_async: Callable[[], Any] | None = None
        """Set by :meth:`from_url`: builds a ``redis.asyncio`` client (its closure holds the URL)."""
        self._loops: dict[asyncio.AbstractEventLoop, LoopClient] = {}
        self._lock = threading.Lock()
        self._generation: str | None = None
        """The state generation this store has seen (read or written on first use)."""
        self._keys_by_account: dict[str | None, list[str]] = {}
        self._specs: dict[tuple[Any, ...], str] = {}
        self._shared: dict[str | None, tuple[str, BudgetSnapshot]] = {}
        """Account -> the stored snapshot this store last read or wrote (its ``at`` and itself): a
        reservation fetches the stored one only when it is another."""
        within = check_number("settle_within_s", settle_within_s)
        if within < 0:
            raise NeboConfigurationError(
                f"settle_within_s must be 0 or more seconds; got {settle_within_s!r}"
            )
        behind = self._sync is not None and self._sync.wire is not None
        self._settles = SettleQueue(self._flush_own if behind else None, within)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "nebo-budget",
        cluster: bool = False,
        settle_within_s: float = SETTLE_WITHIN_S,
        **redis_kwargs: Any,
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
        redis_kwargs = with_driver_info(redis, redis_kwargs)

        def connect_async() -> Any:
            import redis.asyncio
            import redis.asyncio.cluster

            kind = redis.asyncio.cluster.RedisCluster if cluster else redis.asyncio.Redis
            return kind.from_url(url, **redis_kwargs)

        kind = redis.cluster.RedisCluster if cluster else redis.Redis
        try:
            client = kind.from_url(url, **redis_kwargs)
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:  # a cluster reads slots now
            raise store_error(exc, namespace) from None
        store = cls(client, namespace=namespace, settle_within_s=settle_within_s)
        store._connect_async = connect_async
        return store

    def __repr__(self) -> str:
        # Never show the connection (its URL may carry a password).
        return f"RedisBudgetStore(namespace={self.namespace!r})"

    # -- clients --------------------------------------------------------------------------

    def _conn(self) -> Scripts:
        if self._sync is None:
            raise NeboConfigurationError(
                "this RedisBudgetStore has only an async Redis client, and was called synchronously: "
                "pass a sync client too, RedisBudgetStore(redis.Redis(...), async_client=...), "
                "or build the store with RedisBudgetStore.from_url(url)"
            )
        return self._sync

    async def _aconn(self) -> Scripts | None:
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
            scripts = Scripts.on(self._connect_async())
            closer = close_with_loop(loop, lambda: aclose_scripts(scripts))
            self._loops[loop] = LoopClient(scripts, closer)
        return scripts

    def _forget_closed_loops(self) -> None:
        # A closed loop has closed its client already (nebo_core._loops.close_with_loop).
        for loop in [loop for loop in self._loops if loop.is_closed()]:
            del self._loops[loop]

    def close(self) -> None:
        """Send the settlements still queued, then close the sync client's connections (async
        clients: see :meth:`aclose`). A Redis that fails now leaves them to be charged when their
        reservations' time-to-live passes (logged)."""
        with self._lock:
            self._forget_closed_loops()
        if self._sync is not None:
            self._last_flush()
            close_scripts(self._sync)

    def _last_flush(self) -> None:
        try:
            self.flush()
        except NeboStoreError as exc:
            logger.warning(
                "closing the Redis budget store with %d settlement(s) not sent (%s): their "
                "reservations are charged when their time-to-live passes",
                len(self._settles),
                type(exc).__name__,
            )

    async def aclose(self) -> None:
        """Close the connections the async methods use in this event loop: the loop's client
        (:meth:`from_url`), the async client you passed, or, with a sync client only, that one."""
        if self._async is not None:
            await aclose_scripts(self._async)
            return
        if self._connect_async is None:
            self.close()
            return
        if self._sync is not None:
            await asyncio.to_thread(self._last_flush)
        with self._lock:
            entry = self._loops.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.closer.aclose()

    # -- keys, arguments and replies (pure, shared by the sync and async methods) ---------

    def _key(self, name: str) -> str:
        return f"{self._prefix}:{name}"

    def _keys(self, account: str | None) -> list[str]:
        keys = self._keys_by_account.get(account)
        if keys is None:
            names = ("generation", "lines", "holds", "timers", "stats")
            keys = [*(self._key(n) for n in names), self._snapshot_key(account)]
            if len(self._keys_by_account) > 1024:
                self._keys_by_account.clear()
            self._keys_by_account[account] = keys
        return keys

    def _spec(self, lines: Sequence[CapLine]) -> str:
        # Built once per set of lines (a scope in its period): a call only looks it up.
        cache_key = tuple((line.key, line.cap_micro, line.window_s) for line in lines)
        found = self._specs.get(cache_key)
        if found is None:
            found = _line_spec(lines)
            if len(self._specs) > 4096:
                self._specs.clear()
            self._specs[cache_key] = found
        return found

    def _reserve_call(
        self,
        lines: Sequence[CapLine],
        generation: str,
        rid: str,
        amount: int,
        ttl: float,
        account: str | None,
    ) -> _Call:
        known = self._shared.get(account)
        at = known[0] if known is not None else ""
        return self._keys(account), [generation, self._spec(lines), rid, amount, ttl, at]

    def _reserve_result(
        self, rid: str, lines: Sequence[CapLine], model: str, amount: int, account: str | None, reply: Any
    ) -> ReserveResult:
        ok, spent, reserved, judged, at, shared, room = reply
        line = lines[int(judged) - 1]
        snapshot = None
        if shared:  # newer than the one this store holds for the account: decoded once, kept
            snapshot = decode_snapshot(shared)
            self._shared[account] = (_text(at), snapshot)
        elif at:
            known = self._shared.get(account)
            snapshot = known[1] if known is not None and known[0] == _text(at) else None
        if not int(ok):
            return ReserveResult(None, int(spent), int(reserved), line, snapshot)
        reservation = Reservation(rid, lines[0].key, amount, model, tuple(lines))
        if self._settles.behind and (int(room) < 0 or int(room) >= ROOMY_CALLS * amount):
            self._settles.roomy(rid)
        return ReserveResult(reservation, int(spent), int(reserved), line, snapshot)

    def _lines_of(self, reservation: Reservation) -> Sequence[CapLine]:
        return reservation.lines or (CapLine(reservation.scope, None, window_of(reservation.scope)),)

    def _settle_call(
        self,
        reservation: Reservation,
        cost: int,
        observed: bool,
        estimated: bool,
        snapshot: BudgetSnapshot | None,
        generation: str,
    ) -> _Call:
        queued = Queued(reservation, cost, observed, estimated, snapshot)
        account = snapshot.account if snapshot is not None else None
        return self._keys(account), [generation, *self._group(queued)]

    def _settled(self, snapshot: BudgetSnapshot | None, reply: Any) -> int:
        if snapshot is not None and int(reply[2]):  # stored: the next reservation need not fetch it
            self._shared[snapshot.account] = (_at(snapshot), snapshot)
        return int(reply[1])

    def _totals_call(self, scope: str, generation: str) -> _Call:
        return self._keys(None), [generation, self._spec((CapLine(scope, None, window_of(scope)),))]

    def _lines_call(self, generation: str) -> _Call:
        return self._keys(None), [generation, "[]"]

    def _stats_fields(self, model: str) -> tuple[str, str, str]:
        return self._key("stats"), f"{model}|sum", f"{model}|n"

    def _publish_call(self, snapshot: BudgetSnapshot) -> _Call:
        return [self._snapshot_key(snapshot.account)], [
            _at(snapshot),
            encode_snapshot(snapshot),
            int(snapshot.exhausted),
        ]

    def _snapshot_key(self, account: str | None) -> str:
        return self._key(f"snapshot:{account or '-'}")

    def _generation_call(self) -> _Call:
        return [self._key("generation")], [uuid.uuid4().hex]

    def adopt_generation(self) -> None:
        """Accept that the stored state was lost (after :class:`NeboStoreStateLost`): go on from
        whatever Redis holds now, writing a new generation marker if there is none. Caps start
        again from what is stored, so do this only once the loss is understood."""
        self._generation = None
        self._shared.clear()

    # -- sync -----------------------------------------------------------------------------

    def _run(self, script: Callable[..., Any], keys: list[str], args: list[Any]) -> Any:
        """Run a script (on the store's own connections when it has them) or a plain command."""
        wire = self._sync.wire if self._sync is not None else None
        try:
            if wire is not None and hasattr(script, "sha"):
                return wire.call(script, keys, args)
            return script(keys=keys, args=args)
        except Exception as exc:
            if isinstance(exc, NeboConfigurationError) or not is_redis_error(exc):
                raise
            raise store_error(exc, self.namespace) from None

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
        rid = os.urandom(16).hex()  # a reservation id (uuid4 costs 1.4 µs more, for no gain here)
        keys, args = self._reserve_call(lines, self._gen(), rid, amount_micro, ttl_s, account)
        reply = self._run(self._conn().reserve, keys, args)
        return self._reserve_result(rid, lines, model, amount_micro, account, reply)

    def commit(
        self,
        reservation: Reservation,
        cost_micro: int,
        observed: bool,
        estimated: bool = False,
        snapshot: BudgetSnapshot | None = None,
    ) -> int:
        keys, args = self._settle_call(reservation, cost_micro, observed, estimated, snapshot, self._gen())
        return self._settled(snapshot, self._run(self._conn().settle, keys, args))

    def commit_nowait(
        self,
        reservation: Reservation,
        cost_micro: int,
        observed: bool,
        estimated: bool = False,
        snapshot: BudgetSnapshot | None = None,
    ) -> None:
        """:meth:`commit`, sent behind (:mod:`~nebo_core.stores._redis_settle`): queued now,
        with no I/O, and sent in a batch within ``settle_within_s``. Near a cap, with a snapshot
        that shows the budget exhausted (the fleet learns it at once), on a cluster client, or
        with ``settle_within_s=0``: a plain :meth:`commit`."""
        if not self._settles.claim(reservation.id, snapshot):
            note_spent(reservation, self.commit(reservation, cost_micro, observed, estimated, snapshot))
        elif self._settles.put(Queued(reservation, cost_micro, observed, estimated, snapshot)):
            self.flush()  # a full queue goes now

    def flush(self) -> None:
        """Send every settlement waiting to go behind, and wait until Redis has applied them
        (every read of this store does this first, so a process reads its own writes: those of
        the other Redis stores in this process too, whose failures stay theirs)."""
        self._flush_own()
        self._settles.send_others()

    def _flush_own(self) -> None:
        if not len(self._settles) and not self._settles.sending:
            return
        groups = self._settles.take_all()
        try:
            for i, (account, group) in enumerate(groups):
                try:
                    keys = self._keys(account)
                    args: list[Any] = [self._gen(), *self._batch(group)]
                    self._replies(group, self._run(self._conn().settle, keys, args), 0)
                    self._settles.sent(group)
                except BaseException:
                    self._settles.put_back([q for _, g in groups[i:] for q in g])
                    raise
        finally:
            self._settles.done()
        self._settles.wait_sent()  # a batch another thread is sending

    @property
    def unsent_micro(self) -> int:
        return self._settles.unsent_micro

    def _batch(self, group: Sequence[Queued]) -> list[Any]:
        """A batch's script arguments, after the generation: nine per settlement. Only the
        newest snapshot goes (the script would keep no other), encoded once."""
        newest = max(
            (q for q in group if q.snapshot is not None),
            key=lambda q: q.snapshot.observed_at if q.snapshot is not None else 0,
            default=None,
        )
        return [arg for q in group for arg in self._group(q, q is newest)]

    def _group(self, queued: Queued, with_snapshot: bool = True) -> list[Any]:
        """A settlement's nine script arguments (see ``SETTLE`` in the scripts)."""
        reservation = queued.reservation
        snapshot = queued.snapshot if with_snapshot else None
        return [
            self._spec(self._lines_of(reservation)),
            reservation.id,
            queued.cost,
            reservation.model,
            int(queued.observed),
            int(queued.estimated),
            "" if snapshot is None else _at(snapshot),
            "" if snapshot is None else encode_snapshot(snapshot),
            "" if snapshot is None else int(snapshot.exhausted),
        ]

    def _replies(self, group: Sequence[Queued], reply: Any, start: int) -> None:
        """Apply the settlements' replies (three values each, from ``reply[start]``)."""
        for i, queued in enumerate(group):
            triple = reply[start + 3 * i : start + 3 * i + 3]
            note_spent(queued.reservation, self._settled(queued.snapshot, triple))

    def release(self, reservation: Reservation) -> None:
        self._settles.claim(reservation.id)
        keys, args = self._settle_call(reservation, -1, False, False, None, self._gen())
        self._run(self._conn().settle, keys, args)

    def _totals(self, scope: str) -> list[Any]:
        self.flush()  # read this process's own settlements too
        keys, args = self._totals_call(scope, self._gen())
        return list(self._run(self._conn().totals, keys, args))

    def spent(self, scope: str) -> int:
        return int(self._totals(scope)[0])

    def uncertain(self, scope: str) -> int:
        return int(self._totals(scope)[1])

    def reserved(self, scope: str) -> int:
        return int(self._totals(scope)[2])

    def lines(self) -> list[LineUsage]:
        self.flush()  # read this process's own settlements too
        keys, args = self._lines_call(self._gen())
        return _usages(self._run(self._conn().lines, keys, args))

    def mean_cost(self, model: str) -> float | None:
        self.flush()  # read this process's own settlements too
        conn = self._conn()
        return _mean(
            self._run(lambda keys, args: conn.client.hmget(*keys), list(self._stats_fields(model)), [])
        )

    def publish(self, snapshot: BudgetSnapshot) -> None:
        keys, args = self._publish_call(snapshot)
        self._run(self._conn().publish, keys, args)

    def snapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        self.flush()  # read this process's own settlements too
        conn = self._conn()
        key = self._snapshot_key(account)
        return _snapshot(self._run(lambda keys, args: conn.client.hget(key, "json"), [], []))

    def _pace_call(
        self, key: str, interval_s: float, burst_s: float, tolerance_s: float | None, lane: str
    ) -> _Call:
        tolerance = -1.0 if tolerance_s is None else tolerance_s
        return [self._key(key), self._key("lanes")], [interval_s, burst_s, tolerance, lane]

    def pace(
        self, key: str, interval_s: float, burst_s: float, tolerance_s: float | None, lane: str = "main"
    ) -> Booking:
        keys, args = self._pace_call(key, interval_s, burst_s, tolerance_s, lane)
        booked, wait = self._run(self._conn().pace, keys, args)
        return Booking(bool(int(booked)), float(wait))

    def lanes(self) -> dict[str, dict[str, int]]:
        conn = self._conn()
        key = self._key("lanes")
        return _lane_counts(self._run(lambda keys, args: conn.client.hgetall(key), [], []))

    def reset(self) -> None:
        client = self._conn().client
        self.flush()
        keys = list(client.scan_iter(match=f"{self._prefix}:*"))
        if keys:
            client.delete(*keys)
        self._generation = None
        self._shared.clear()

    # -- async: the same calls, awaited (or the sync ones in a thread, without an async client)

    async def _arun(
        self, script: Callable[..., Any], keys: list[str], args: list[Any], wire: AsyncWire | None = None
    ) -> Any:
        """:meth:`_run` awaited, on ``wire`` (the loop's own connections) when given."""
        try:
            if wire is not None and hasattr(script, "sha"):
                return await wire.call(script, keys, args)
            return await script(keys=keys, args=args)
        except Exception as exc:
            if isinstance(exc, NeboConfigurationError) or not is_redis_error(exc):
                raise
            raise store_error(exc, self.namespace) from None

    async def _agen(self, conn: Scripts) -> str:
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
        rid = os.urandom(16).hex()  # a reservation id (uuid4 costs 1.4 µs more, for no gain here)
        keys, args = self._reserve_call(lines, await self._agen(conn), rid, amount_micro, ttl_s, account)
        reply = await self._arun(conn.reserve, keys, args, conn.wire)
        return self._reserve_result(rid, lines, model, amount_micro, account, reply)

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
        return self._settled(snapshot, await self._arun(conn.settle, keys, args, conn.wire))

    async def acommit_nowait(
        self,
        reservation: Reservation,
        cost_micro: int,
        observed: bool,
        estimated: bool = False,
        snapshot: BudgetSnapshot | None = None,
    ) -> None:
        """:meth:`commit_nowait` (no I/O, so nothing to await but on a cluster client)."""
        if not self._settles.claim(reservation.id, snapshot):
            spent = await self.acommit(reservation, cost_micro, observed, estimated, snapshot)
            note_spent(reservation, spent)
        elif self._settles.put(Queued(reservation, cost_micro, observed, estimated, snapshot)):
            await self.aflush()

    async def aflush(self) -> None:
        """:meth:`flush`, awaited."""
        if len(self._settles) or self._settles.sending:
            await self._aflush_own()
        if self._settles.others_waiting:  # other stores of this process (their own clients)
            await asyncio.to_thread(self._settles.send_others)

    async def _aflush_own(self) -> None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self._flush_own)
        groups = self._settles.take_all()
        try:
            for i, (account, group) in enumerate(groups):
                try:
                    keys = self._keys(account)
                    args: list[Any] = [await self._agen(conn), *self._batch(group)]
                    self._replies(group, await self._arun(conn.settle, keys, args, conn.wire), 0)
                    self._settles.sent(group)
                except BaseException:
                    self._settles.put_back([q for _, g in groups[i:] for q in g])
                    raise
        finally:
            self._settles.done()
        if self._settles.sending:  # a batch the flusher thread is sending
            await asyncio.to_thread(self._settles.wait_sent)

    async def arelease(self, reservation: Reservation) -> None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.release, reservation)
        keys, args = self._settle_call(reservation, -1, False, False, None, await self._agen(conn))
        await self._arun(conn.settle, keys, args, conn.wire)

    async def _atotals(self, scope: str) -> list[Any] | None:
        conn = await self._aconn()
        if conn is None:
            return None
        await self.aflush()  # read this process's own settlements too
        keys, args = self._totals_call(scope, await self._agen(conn))
        return list(await self._arun(conn.totals, keys, args, conn.wire))

    async def aspent(self, scope: str) -> int:
        totals = await self._atotals(scope)
        return int(totals[0]) if totals is not None else await asyncio.to_thread(self.spent, scope)

    async def auncertain(self, scope: str) -> int:
        totals = await self._atotals(scope)
        return int(totals[1]) if totals is not None else await asyncio.to_thread(self.uncertain, scope)

    async def areserved(self, scope: str) -> int:
        totals = await self._atotals(scope)
        return int(totals[2]) if totals is not None else await asyncio.to_thread(self.reserved, scope)

    async def alines(self) -> list[LineUsage]:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.lines)
        await self.aflush()  # read this process's own settlements too
        keys, args = self._lines_call(await self._agen(conn))
        return _usages(await self._arun(conn.lines, keys, args, conn.wire))

    async def amean_cost(self, model: str) -> float | None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.mean_cost, model)
        await self.aflush()  # read this process's own settlements too
        client = conn.client
        return _mean(
            await self._arun(
                lambda keys, args: client.hmget(*keys), list(self._stats_fields(model)), [], conn.wire
            )
        )

    async def apublish(self, snapshot: BudgetSnapshot) -> None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.publish, snapshot)
        keys, args = self._publish_call(snapshot)
        await self._arun(conn.publish, keys, args, conn.wire)

    async def asnapshot(self, account: str | None = None) -> BudgetSnapshot | None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.snapshot, account)
        await self.aflush()  # read this process's own settlements too
        client, key = conn.client, self._snapshot_key(account)
        return _snapshot(await self._arun(lambda keys, args: client.hget(key, "json"), [], [], conn.wire))

    async def apace(
        self, key: str, interval_s: float, burst_s: float, tolerance_s: float | None, lane: str = "main"
    ) -> Booking:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.pace, key, interval_s, burst_s, tolerance_s, lane)
        keys, args = self._pace_call(key, interval_s, burst_s, tolerance_s, lane)
        booked, wait = await self._arun(conn.pace, keys, args, conn.wire)
        return Booking(bool(int(booked)), float(wait))

    async def areset(self) -> None:
        conn = await self._aconn()
        if conn is None:
            return await asyncio.to_thread(self.reset)
        await self.aflush()
        keys = [key async for key in conn.client.scan_iter(match=f"{self._prefix}:*")]
        if keys:
            await conn.client.delete(*keys)
        self._generation = None
        self._shared.clear()


def _lane_counts(reply: Any) -> dict[str, dict[str, int]]:
    """The lanes hash (``main|booked`` -> n) as ``{lane: {"booked": n, "held": m}}``."""
    out: dict[str, dict[str, int]] = {}
    for field, value in (reply or {}).items():
        lane, _, kind = _text(field).rpartition("|")
        out.setdefault(lane, {"booked": 0, "held": 0})[kind] = int(value)
    return out


def _usages(reply: Any) -> list[LineUsage]:
    """The ``LINES`` script's flat reply as sorted :class:`LineUsage` rows."""
    rows = []
    for i in range(0, len(reply), 6):
        key, spent, reserved, count, uncertain, cap = reply[i : i + 6]
        cap_micro = int(cap)
        rows.append(
            LineUsage(
                _text(key),
                int(spent),
                int(reserved),
                int(count),
                int(uncertain),
                None if cap_micro < 0 else cap_micro,
            )
        )
    return sorted(rows, key=lambda row: row.key)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
