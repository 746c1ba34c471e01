"""A short grace period for the final usage of a finished stream, so no reader ever hangs.

Once every choice has its ``finish_reason``, only usage (and maybe ``[DONE]``) can follow.
Nebo puts usage on every chunk and may never send ``[DONE]`` (nebo-api.md 11.4, 11.6);
OpenAI sends usage in a chunk of its own after the finish. A reader whose stream has
finished without final usage waits at most ``GRACE_S`` for it, then stops as if the body
had ended, instead of blocking until the read timeout while the server holds the
connection open. Sync readers cannot time out one read, so a timer shuts the socket down.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

GRACE_S = 2.0


class SyncGrace:
    """Arms once; when it fires, the blocked read of ``response`` fails and the reader stops."""

    def __init__(self, response: Any, grace: float | None = None) -> None:
        self._response = response
        self._grace = GRACE_S if grace is None else grace
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._over = False
        self.fired = False

    def arm(self) -> None:
        """Start the grace period (once; later calls do nothing)."""
        if self._timer is None:
            self._timer = threading.Timer(self._grace, self._cut)
            self._timer.daemon = True
            self._timer.start()

    def _cut(self) -> None:
        with self._lock:  # never cut a connection the stream has already handed back to the pool
            if self._over:
                return
            self.fired = True
            self._cut_now()

    def _cut_now(self) -> None:
        sock = _socket_of(self._response)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked in the reader's thread
        else:
            with contextlib.suppress(Exception):
                self._response.close()

    def cancel(self) -> None:
        """The stream ended: stop the timer, and wait out a cut already in progress."""
        with self._lock:
            self._over = True
        if self._timer is not None:
            self._timer.cancel()


def _socket_of(response: Any) -> socket.socket | None:
    stream = (getattr(response, "extensions", None) or {}).get("network_stream")
    if stream is None:
        return None
    try:
        sock = stream.get_extra_info("socket")
    except Exception:
        return None
    return sock if isinstance(sock, socket.socket) else None


def deadline(finished: bool, current: float | None, grace: float | None = None) -> float | None:
    """The monotonic time by which a finished stream must end (``None`` while it is running)."""
    if not finished:
        return None
    return current if current is not None else time.monotonic() + (GRACE_S if grace is None else grace)


async def next_line(lines: AsyncIterator[str], until: float | None) -> str | None:
    """The next line; ``None`` at the end of the body or once the grace deadline has passed."""
    if until is None:
        return await anext(lines, None)
    remaining = until - time.monotonic()
    if remaining <= 0:
        return None
    try:
        return await asyncio.wait_for(anext(lines, None), remaining)
    except asyncio.TimeoutError:
        return None
