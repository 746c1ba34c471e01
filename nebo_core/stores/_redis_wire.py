"""The Redis store's own connections: one packed ``EVALSHA`` per script call.

redis-py's client path (pool checkout, retry wrapper, argument checks, release) costs more
on loopback than the store's scripts themselves. So the store takes a few connections out of
the client's pool and sends its scripts on them directly: :meth:`Wire.call` packs one
``EVALSHA``, sends it and reads the reply, loading the script first when Redis does not know
it (``NOSCRIPT``: after a restart or ``SCRIPT FLUSH``). Error replies and connection failures
are redis-py's own exceptions, as on its client path.

A thread (or a task) takes a connection for one call, so none is ever shared mid-call. A
process forked with a store keeps none of its parent's connections. The async twin is the same
over a ``redis.asyncio`` client. Redis Cluster clients keep redis-py's own path (it routes each
call to its slot's node and follows ``MOVED``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

_hiredis_pack: Any = ...
"""hiredis's command packer (``None``: not installed), looked up on first use: importing
``nebo_core`` imports no Redis library."""


def _evalsha(conn: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
    global _hiredis_pack
    if _hiredis_pack is ...:
        try:
            from hiredis import pack_command as _hiredis_pack
        except ImportError:  # pragma: no cover - the redis extra installs hiredis
            _hiredis_pack = None
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    encoder = getattr(conn, "encoder", None)
    if _hiredis_pack is not None and getattr(encoder, "encoding", None) in ("utf-8", "utf8"):
        return [_hiredis_pack(command)]  # what redis-py's hiredis packer makes, without its checks
    return conn.pack_command(*command)


def _is_noscript(exc: BaseException) -> bool:
    return type(exc).__name__ == "NoScriptError"


class Wire:
    """Script calls on raw connections of a sync ``redis.Redis``; thread-safe."""

    def __init__(self, client: Any) -> None:
        self._pool = client.connection_pool
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _take(self) -> Any:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        try:
            return self._pool.get_connection()
        except TypeError:  # redis-py < 5.3 wants a command name
            return self._pool.get_connection("EVALSHA")

    def call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run ``script`` (a redis-py ``Script``: its ``sha`` and text) and return its reply."""
        conn = self._take()
        try:
            conn.send_packed_command(_evalsha(conn, script, keys, args), check_health=False)
            try:
                return conn.read_response()
            except Exception as exc:
                if not _is_noscript(exc):
                    raise
            conn.send_packed_command(conn.pack_command("SCRIPT", "LOAD", script.script), check_health=False)
            conn.read_response()
            conn.send_packed_command(_evalsha(conn, script, keys, args), check_health=False)
            return conn.read_response()
        finally:
            with self._lock:
                self._idle.append(conn)

    def close(self) -> None:
        """Hand the connections back to the client's pool."""
        with self._lock:
            idle, self._idle = self._idle, []
            mine = self._pid == os.getpid()
        for conn in idle if mine else ():
            self._pool.release(conn)


async def _asend(conn: Any, packed: list[bytes]) -> None:
    """Send on a ``redis.asyncio`` connection. Its own ``send_packed_command`` runs the write in
    ``asyncio.wait_for``, a new task per command on Python < 3.12 (about half the cost of a
    round trip here); a few small buffers go straight to the transport, which writes them at
    once, and only a write that backs up waits for the socket, under the connection's timeout."""
    writer = getattr(conn, "_writer", None)
    if writer is None or writer.transport.is_closing():  # not connected: redis-py connects
        await conn.send_packed_command(packed, check_health=False)
        return
    writer.writelines(packed)
    if writer.transport.get_write_buffer_size():
        try:
            await asyncio.wait_for(writer.drain(), conn.socket_timeout)
        except BaseException:
            await conn.disconnect(nowait=True)
            raise


class AsyncWire:
    """:class:`Wire` over a ``redis.asyncio`` client, for one event loop's tasks."""

    def __init__(self, client: Any) -> None:
        self._pool = client.connection_pool
        self._idle: list[Any] = []

    async def _take(self) -> Any:
        if self._idle:
            return self._idle.pop()
        try:
            return await self._pool.get_connection()
        except TypeError:  # redis-py < 5.3 wants a command name
            return await self._pool.get_connection("EVALSHA")

    async def call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run ``script`` and return its reply."""
        conn = await self._take()
        try:
            await _asend(conn, _evalsha(conn, script, keys, args))
            try:
                return await conn.read_response()
            except Exception as exc:
                if not _is_noscript(exc):
                    raise
            await _asend(conn, conn.pack_command("SCRIPT", "LOAD", script.script))
            await conn.read_response()
            await _asend(conn, _evalsha(conn, script, keys, args))
            return await conn.read_response()
        finally:
            self._idle.append(conn)

    async def close(self) -> None:
        """Hand the connections back to the client's pool."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._pool.release(conn)
