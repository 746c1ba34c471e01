"""Closing per-event-loop resources when their loop ends, whoever ends it.

httpx and redis.asyncio connections belong to the loop that opened them and must be closed
on it. A loop's own ``close()`` is wrapped (on that loop instance only) to run the closers
just before: that covers ``asyncio.run``, ``asyncio.Runner``, pytest-asyncio and loops closed
by hand after ``run_until_complete`` (LlamaIndex's ``asyncio_run`` helper does that in a
worker thread). A loop type that takes no instance attributes (uvloop) gets a parked async
generator instead, which ``asyncio.run`` finalizes before closing its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

Closer = Callable[[], Awaitable[None]]
_HOOKS = "_nebo_close_hooks"


class LoopCloser:
    """Runs one resource's closer once: at the loop's end, or earlier through :meth:`aclose`."""

    def __init__(self, aclose: Closer) -> None:
        self._aclose = aclose
        self._done = False
        self._parked: AsyncGenerator[None, None] | None = None

    async def aclose(self) -> None:
        """Close the resource now (on its loop); later calls do nothing."""
        if not self._done:
            self._done = True
            await self._aclose()

    async def _park(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self.aclose()


def close_with_loop(loop: asyncio.AbstractEventLoop, aclose: Closer) -> LoopCloser:
    """Arrange for ``aclose()`` to run on ``loop`` (which must be running) when it ends."""
    closer = LoopCloser(aclose)
    hooks: list[LoopCloser] | None = getattr(loop, _HOOKS, None)
    if hooks is None:
        hooks = []
        original = loop.close

        def close() -> None:
            if not loop.is_running() and not loop.is_closed():
                for hook in list(hooks):
                    with contextlib.suppress(Exception):
                        loop.run_until_complete(hook.aclose())
            original()

        try:
            loop.close = close  # type: ignore[method-assign]
            setattr(loop, _HOOKS, hooks)
        except AttributeError:
            closer._parked = closer._park()
            with contextlib.suppress(StopIteration):
                closer._parked.asend(None).send(None)  # parked at its yield, tracked by the loop
            return closer
    hooks.append(closer)
    return closer
