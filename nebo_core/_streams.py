"""Chat streams over httpx: one core of pure steps, and thin sync and async readers.

A stream is opened under the same budget policy and retry policy as a plain call: until
its first chunk has been handed to the caller, a transient failure (including an in-stream
rate-limit event) is retried; after that, errors surface with the partial answer. Usage is
recorded when the stream ends, and also when it is closed early or breaks, with whatever
the headers and the cumulative usage had shown so far.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from nebo_core import wire
from nebo_core._grace import SyncGrace, deadline, next_line
from nebo_core.budget import BudgetSnapshot, UsageRecord
from nebo_core.errors import NeboError
from nebo_core.policy import Decision
from nebo_core.stream import SSEDecoder, StreamState

if TYPE_CHECKING:
    from nebo_core.client import AsyncNeboClient, NeboClient

Chunk = dict[str, Any]


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


class _StreamCore:
    """What both readers share: request body, state, decoding, finalisation."""

    def __init__(
        self, body: dict[str, Any], scope: str | None, timeout: float | None, max_retries: int | None
    ) -> None:
        self._body = body
        self._requested = str(body.get("model", "auto"))
        self._scope = scope
        self._timeout = timeout
        self._max_retries = max_retries
        self.state = StreamState()
        self.snapshot: BudgetSnapshot | None = None
        self.usage: UsageRecord | None = None
        self.request_id: str | None = None
        self._decoder = SSEDecoder()
        self._decision: Decision | None = None
        self._started = time.perf_counter()
        self._finalized = False
        self._pending: list[Chunk] = []

    def _payload(self, model: str) -> dict[str, Any]:
        return wire.prepare_chat_body({**self._body, "model": model}, stream=True)

    def _begin(self, snapshot: BudgetSnapshot, headers: httpx.Headers) -> None:
        self.snapshot = snapshot
        self.request_id = wire.request_id_from(headers)
        self.state = StreamState(snapshot, self.request_id, _choices(self._body))
        self._decoder = SSEDecoder()
        self._started = time.perf_counter()

    def _feed_line(self, line: str) -> list[Chunk]:
        data = self._decoder.feed_line(line)
        return self.state.feed_data(data) if data is not None else []

    def _eof(self) -> list[Chunk]:
        out: list[Chunk] = []
        if not self.state.done:
            data = self._decoder.flush()
            if data is not None:
                out = self.state.feed_data(data)
        return out + self.state.finish()

    def _finalize(self, client: NeboClient | AsyncNeboClient, complete: bool) -> None:
        if self._finalized or self._decision is None:
            return
        self._finalized = True
        if self.state.chunks_seen or self.state.usage is not None:
            self.usage = client._chat_record(
                self._requested,
                self.state.completion(),
                self.snapshot,
                None,
                self._started,
                True,
                complete,
                self.request_id,
                self._scope,
            )
        client.policy.settle(self._decision, self.usage)

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message assembled so far."""
        return self.state.message

    @property
    def finish_reason(self) -> str | None:
        """Why the model stopped (``None`` until it has)."""
        return self.state.finish_reason

    def completion(self) -> dict[str, Any]:
        """Everything streamed so far as a standard ``chat.completion`` body."""
        return self.state.completion()


class ChatStream(_StreamCore):
    """A sync chat stream: iterate for standard OpenAI chunks; use as a context manager."""

    def __init__(
        self,
        client: NeboClient,
        body: dict[str, Any],
        scope: str | None,
        timeout: float | None,
        max_retries: int | None,
    ) -> None:
        super().__init__(body, scope, timeout, max_retries)
        self._client = client
        self._response: httpx.Response | None = None
        self._lines: Iterator[str] | None = None
        self._iterator: Iterator[Chunk] | None = None

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Chunk]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    def __next__(self) -> Chunk:
        return next(iter(self))

    def _run(self) -> Iterator[Chunk]:
        try:
            self._decision = self._client._governed_open(self)
            yield from self._pending
            assert self._lines is not None
            grace = SyncGrace(self._response)
            try:
                while not self.state.done:
                    if self.state.all_finished:
                        grace.arm()  # only final usage can follow: do not wait for it forever
                    try:
                        line = next(self._lines, None)
                    except httpx.TransportError:
                        line = None  # a dropped connection is a truncated stream (raised by _eof)
                    if line is None:
                        break
                    yield from self._feed_line(line)
            finally:
                grace.cancel()
            yield from self._eof()
            self._finalize(self._client, complete=True)
        finally:
            self.close()

    def _attempt(self, model: str) -> None:
        """One try at opening: send, check status, read up to the first chunk (raises NeboError)."""
        self._release()
        client = self._client
        request = client._request("POST", wire.CHAT_PATH, self._payload(model), self._timeout, True)
        try:
            response = client._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise client._connection_error(exc) from exc
        self._response = response
        try:
            snapshot = client._observe(response.headers)[0]
            if response.status_code >= 400:
                client._finish(response.status_code, response.read(), response.headers, snapshot)
            self._begin(snapshot, response.headers)
            self._lines = response.iter_lines()
            self._pending = []
            while not self._pending and not self.state.done:
                line = next(self._lines, None)
                if line is None:
                    self._pending = self._eof()
                    break
                self._pending = self._feed_line(line)
        except httpx.TransportError as exc:
            self._release()
            raise client._connection_error(exc) from exc
        except NeboError:
            self._release()
            raise

    def _release(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def close(self) -> None:
        """Stop reading; usage seen so far is recorded (marked incomplete)."""
        if self._iterator is not None and not self._finalized:
            self._finalize(self._client, complete=False)
        self._release()


class AsyncChatStream(_StreamCore):
    """The async twin of :class:`ChatStream`: ``async with`` and ``async for``."""

    def __init__(
        self,
        client: AsyncNeboClient,
        body: dict[str, Any],
        scope: str | None,
        timeout: float | None,
        max_retries: int | None,
    ) -> None:
        super().__init__(body, scope, timeout, max_retries)
        self._client = client
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._iterator: AsyncIterator[Chunk] | None = None

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Chunk]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def __anext__(self) -> Chunk:
        return await self.__aiter__().__anext__()

    async def _run(self) -> AsyncIterator[Chunk]:
        try:
            self._decision = await self._client._governed_open(self)
            for chunk in self._pending:
                yield chunk
            assert self._lines is not None
            until: float | None = None
            while not self.state.done:
                until = deadline(self.state.all_finished, until)
                try:
                    line = await next_line(self._lines, until)
                except httpx.TransportError:
                    line = None  # a dropped connection is a truncated stream (raised by _eof)
                if line is None:
                    break
                for chunk in self._feed_line(line):
                    yield chunk
            for chunk in self._eof():
                yield chunk
            self._finalize(self._client, complete=True)
        finally:
            await self.aclose()

    async def _attempt(self, model: str) -> None:
        """One try at opening (see :meth:`ChatStream._attempt`)."""
        await self._release()
        client = self._client
        request = client._request("POST", wire.CHAT_PATH, self._payload(model), self._timeout, True)
        try:
            response = await client._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise client._connection_error(exc) from exc
        self._response = response
        try:
            snapshot = client._observe(response.headers)[0]
            if response.status_code >= 400:
                client._finish(response.status_code, await response.aread(), response.headers, snapshot)
            self._begin(snapshot, response.headers)
            self._lines = response.aiter_lines()
            self._pending = []
            while not self._pending and not self.state.done:
                line = await anext(self._lines, None)
                if line is None:
                    self._pending = self._eof()
                    break
                self._pending = self._feed_line(line)
        except httpx.TransportError as exc:
            await self._release()
            raise client._connection_error(exc) from exc
        except NeboError:
            await self._release()
            raise

    async def _release(self) -> None:
        if self._response is not None:
            await self._response.aclose()
            self._response = None

    async def aclose(self) -> None:
        """Stop reading; usage seen so far is recorded (marked incomplete)."""
        if self._iterator is not None and not self._finalized:
            self._finalize(self._client, complete=False)
        await self._release()
