"""Chat streams: readers over a response the client has already opened.

The client runs the exchange until the stream's first chunk (a transient failure before it,
an in-stream rate-limit event included, is retried there), then hands the open response
here. A stream never opens itself. It yields standard OpenAI chunks, repaired by the
engine; after the first chunk, errors surface with the partial answer. Usage is recorded
and the budget reservation settled when the stream ends, and also when it is closed early
or breaks, with whatever the headers and the cumulative usage had shown so far.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import httpx

from nebo_core.budget import BudgetSnapshot, UsageRecord
from nebo_core.exchange import Chunk, Exchange
from nebo_core.forecast import BudgetForecast
from nebo_core.sse import StreamState
from nebo_core.transport import aend_stream, astream_chunks, end_stream, stream_chunks


class _StreamView:
    """What both readers show: the assembled message, its usage and budget."""

    def __init__(self, ex: Exchange) -> None:
        self._ex = ex

    @property
    def state(self) -> StreamState:
        """The stream's accumulated state (pure; see :class:`~nebo_core.sse.StreamState`)."""
        return self._ex.state

    @property
    def snapshot(self) -> BudgetSnapshot | None:
        """The budget the response headers reported."""
        return self._ex.state.snapshot

    @property
    def request_id(self) -> str | None:
        """The server's request id, when it sent one."""
        return self._ex.state.request_id

    @property
    def records(self) -> list[UsageRecord]:
        """Every usage record of the call: attempts charged at an estimate before the stream
        opened, then the stream's own (once it has ended or been closed)."""
        return list(self._ex.records)

    @property
    def headers(self) -> dict[str, str]:
        """The response's headers, names lower-cased."""
        return dict(self._ex.response.headers)

    @property
    def usage(self) -> UsageRecord | None:
        """What the stream cost (set once it has ended or been closed)."""
        return self._ex.record

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message assembled so far."""
        return self._ex.state.message

    @property
    def finish_reason(self) -> str | None:
        """Why the model stopped (``None`` until it has)."""
        return self._ex.state.finish_reason

    def completion(self) -> dict[str, Any]:
        """Everything streamed so far as a standard ``chat.completion`` body."""
        return self._ex.state.completion()

    @property
    def forecast(self) -> BudgetForecast:
        """Where the account's windows are heading, as of now (:mod:`nebo_core.forecast`)."""
        return self._ex.tracker.forecast(self._ex.account)


class ChatStream(_StreamView):
    """A sync chat stream: iterate for standard OpenAI chunks; use as a context manager."""

    def __init__(self, ex: Exchange, response: Any, lines: Iterator[str], hx: ModuleType = httpx) -> None:
        super().__init__(ex)
        self._response = response
        self._chunks = stream_chunks(ex, response, lines, hx)
        self._closed = False

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        try:
            return next(self._chunks)
        except StopIteration:
            self._close(complete=True)
            raise
        except BaseException:
            self._close(complete=False)
            raise

    def _close(self, complete: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._chunks.close()
        end_stream(self._ex, self._response, complete)

    def close(self) -> None:
        """Stop reading; usage seen so far is recorded (marked incomplete if unfinished)."""
        self._close(complete=False)


class AsyncChatStream(_StreamView):
    """The async twin of :class:`ChatStream`: ``async with`` and ``async for``."""

    def __init__(
        self, ex: Exchange, response: Any, lines: AsyncIterator[str], hx: ModuleType = httpx
    ) -> None:
        super().__init__(ex)
        self._response = response
        self._chunks = astream_chunks(ex, lines, hx)
        self._closed = False

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self

    async def __anext__(self) -> Chunk:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            await self._close(complete=True)
            raise
        except BaseException:
            await self._close(complete=False)
            raise

    async def _close(self, complete: bool) -> None:
        if self._closed:
            return
        self._closed = True
        await self._chunks.aclose()
        await aend_stream(self._ex, self._response, complete)

    async def aclose(self) -> None:
        """Stop reading; usage seen so far is recorded (marked incomplete if unfinished)."""
        await self._close(complete=False)
