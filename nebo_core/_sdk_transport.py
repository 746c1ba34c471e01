"""The HTTP transport that makes the ``openai`` SDK Nebo-safe, for ``httpx`` (SDK 2.x) and ``httpx2`` (3.x).

It sits under the SDK's HTTP client and is the one place every SDK response passes: it
records budget headers and usage into the tracker, fixes chat request bodies for Nebo
(:func:`nebo_core.wire.prepare_chat_body`, usage always requested), owns the one retry
layer (transient failures only; a budget 429 reaches the SDK after exactly one request),
and rewrites Nebo's quirky SSE streams into standard ones with the same
:class:`~nebo_core.stream.StreamState` the core clients use, ending the body at
``finish_reason`` even when ``[DONE]`` never comes. The two HTTP libraries share one API,
so the logic is written once against a module object and bound to it by :func:`_bound`.

Streams are retried like plain calls, but only until their first chunk: the transport reads
ahead to the first repaired chunk before handing the response to the SDK, so a 429/5xx, a
dropped connection or an in-stream rate-limit event before any output is retried (never a
budget one); after that nothing is replayed and the error reaches the SDK as it would.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from nebo_core import wire
from nebo_core._grace import SyncGrace, deadline, next_line
from nebo_core.budget import BudgetSnapshot, CallKind
from nebo_core.errors import NeboConnectionError, NeboError, NeboStreamTruncated
from nebo_core.retry import RetryPolicy
from nebo_core.stream import DONE, SSEDecoder, StreamState
from nebo_core.tracker import BudgetTracker

_HOP_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})
"""Dropped from rewritten responses: the body we hand on is decoded and re-framed."""


def http_module(openai_module: ModuleType) -> ModuleType:
    """The HTTP library the installed SDK is built on: ``httpx2`` (openai 3.x) or ``httpx`` (2.x)."""
    default_client = getattr(openai_module, "DefaultHttpxClient", None)
    for base in getattr(default_client, "__mro__", ()):
        root = str(getattr(base, "__module__", "")).split(".")[0]
        if root in ("httpx2", "httpx"):
            return importlib.import_module(root)
    return importlib.import_module("httpx")


def _event(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


@dataclass
class _Call:
    """What the transport knows about one SDK request."""

    kind: CallKind | None
    requested: str
    stream: bool
    include_usage: bool
    before: BudgetSnapshot | None
    started: float
    choices: int = 1


def plan_request(method: str, path: str, content: bytes) -> tuple[_Call, bytes | None]:
    """Classify a request and, for chat, the Nebo-safe body to send instead (pure)."""
    kind: CallKind | None = None
    if method == "POST" and path.endswith(wire.CHAT_PATH):
        kind = "chat"
    elif method == "POST" and path.endswith(wire.EMBEDDINGS_PATH):
        kind = "embedding"
    try:
        body = json.loads(content) if kind and content else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _Call(kind, "auto", False, False, None, time.perf_counter()), None
    requested = str(body.get("model") or "auto")
    stream = kind == "chat" and bool(body.get("stream"))
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    call = _Call(kind, requested, stream, include_usage, None, time.perf_counter(), choices)
    if kind != "chat":
        return call, None
    fixed = wire.prepare_chat_body(body, stream=stream)
    if stream:
        # Always ask for usage so the stream can end at finish_reason and be costed; the usage
        # chunk is passed on only when the caller asked for it (the stream they see is unchanged).
        fixed["stream_options"] = {**fixed["stream_options"], "include_usage": True}
    return call, json.dumps(fixed, separators=(",", ":")).encode()


class _Repair:
    """Nebo SSE lines in, standard SSE bytes out; ends at completion (pure, no I/O)."""

    def __init__(self, call: _Call, snapshot: BudgetSnapshot, request_id: str | None) -> None:
        self.call = call
        self.state = StreamState(snapshot, request_id, call.choices)
        self.decoder = SSEDecoder()
        self.error: NeboError | None = None
        self.ended = False
        self.recorded = False

    def feed(self, line: str | None) -> bytes:
        """One line of the upstream body, or ``None`` at its end."""
        if self.ended:
            return b""
        if line is None:
            data = self.decoder.flush()
            out = self._data(data) if data is not None else b""
            return out if self.ended else out + self._end()
        data = self.decoder.feed_line(line)
        return self._data(data) if data is not None else b""

    def _data(self, data: str) -> bytes:
        try:
            chunks = self.state.feed_data(data)
        except NeboError as err:
            # The SDK raises its own APIError for an error event; hand it the event as sent.
            self.error, self.ended = err, True
            return _event(data)
        out = b"".join(_event(json.dumps(c, separators=(",", ":"))) for c in chunks)
        return out + self._end() if self.state.done else out

    def _end(self) -> bytes:
        self.ended = True
        try:
            tail = self.state.finish()
        except NeboStreamTruncated as err:
            self.error = err
            error = {"message": err.message, "type": "stream_truncated", "code": "stream_truncated"}
            return _event(json.dumps({"error": error}))
        usage = b"".join(_event(json.dumps(c, separators=(",", ":"))) for c in tail)
        return (usage if self.call.include_usage else b"") + _event(DONE)


class TransportCore:
    """Every decision of the SDK transport; the sync and async transports only do I/O."""

    def __init__(
        self, hx: ModuleType, tracker: BudgetTracker, retry: RetryPolicy, account: str | None = None
    ) -> None:
        self.hx = hx
        self.tracker = tracker
        self.retry = retry
        self.account = account

    def prepare(self, request: Any) -> tuple[Any, _Call]:
        """The request to send (chat bodies fixed for Nebo) and what it is; body already read."""
        call, content = plan_request(request.method, request.url.path, request.content)
        call.before = self.tracker.snapshot_for(self.account)
        if content is None:
            return request, call
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
        new = self.hx.Request(
            request.method, request.url, headers=headers, content=content, extensions=request.extensions
        )
        return new, call

    def observe(self, headers: Any) -> tuple[BudgetSnapshot, BudgetSnapshot | None]:
        """Record a response's budget headers; also the tracker's snapshot just before."""
        snapshot = wire.parse_budget_headers(headers, account=self.account)
        prior = self.tracker.snapshot_for(self.account)
        self.tracker.observe(snapshot)
        return snapshot, prior

    def delay(self, error: NeboError, attempt: int) -> float | None:
        """Seconds before the next try, or ``None`` to hand the failure to the SDK."""
        return self.retry.delay(error, attempt)

    @staticmethod
    def connection_error(exc: Exception) -> NeboError:
        """The typed twin of a transport failure, for the retry decision only (the SDK sees ``exc``)."""
        return NeboConnectionError(f"the connection to Nebo failed: {type(exc).__name__}")

    def is_sse(self, call: _Call, upstream: Any) -> bool:
        content_type = upstream.headers.get("content-type", "")
        return call.stream and upstream.status_code < 400 and content_type.startswith("text/event-stream")

    def _headers(self, upstream: Any) -> list[tuple[str, str]]:
        return [(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in _HOP_HEADERS]

    def finish_plain(
        self,
        request: Any,
        call: _Call,
        upstream: Any,
        content: bytes,
        snapshot: BudgetSnapshot,
        prior: BudgetSnapshot | None,
    ) -> tuple[Any, NeboError | None]:
        """The response for the SDK, and the typed error it stands for (if it is one)."""
        response = self.hx.Response(
            upstream.status_code,
            headers=self._headers(upstream),
            content=content,
            request=request,
            extensions=upstream.extensions,
        )
        try:
            body: Any = json.loads(content) if content else None
        except ValueError:
            body = content.decode("utf-8", "replace")[:500]
        if upstream.status_code >= 400:
            return response, wire.error_from_response(upstream.status_code, body, upstream.headers, snapshot)
        if call.kind is not None and isinstance(body, dict):
            self.tracker.record(
                wire.usage_record(
                    call.kind,
                    call.requested,
                    body.get("usage"),
                    model=body.get("model") or None,
                    before=call.before if prior is call.before else None,
                    after=snapshot,
                    latency_s=time.perf_counter() - call.started,
                    streamed=False,
                    request_id=wire.request_id_from(upstream.headers),
                )
            )
        return response, None

    def repair(self, call: _Call, upstream: Any, snapshot: BudgetSnapshot) -> _Repair:
        return _Repair(call, snapshot, wire.request_id_from(upstream.headers))

    def stream_response(self, request: Any, upstream: Any, body: Any) -> Any:
        return self.hx.Response(
            upstream.status_code,
            headers=self._headers(upstream),
            stream=body,
            request=request,
            extensions=upstream.extensions,
        )

    def record_stream(self, repair: _Repair) -> None:
        """Record a stream's usage once: at its end, or what was seen when it was closed early."""
        state = repair.state
        if repair.recorded or not (state.chunks_seen or state.usage is not None):
            return
        repair.recorded = True
        complete = repair.ended and repair.error is None
        self.tracker.record(
            wire.usage_record(
                "chat",
                repair.call.requested,
                state.usage,
                model=state.model,
                before=None,
                after=state.snapshot,
                latency_s=time.perf_counter() - repair.call.started,
                streamed=True,
                complete=complete,
                request_id=state.request_id,
            )
        )


# --- sync ----------------------------------------------------------------------------------


class _SyncBody:
    def __init__(
        self, core: TransportCore, repair: _Repair, upstream: Any, lines: Iterator[str], pending: bytes
    ):
        self._core, self._repair, self._upstream = core, repair, upstream
        self._lines, self._pending = lines, pending

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self._pending:
                yield self._pending
            grace = SyncGrace(self._upstream)
            try:
                while not self._repair.ended:
                    if self._repair.state.all_finished:
                        grace.arm()  # only final usage can follow: do not wait for it forever
                    try:
                        line = next(self._lines, None)
                    except self._core.hx.TransportError:
                        line = None  # dropped (or cut after the grace): the body ends here
                    out = self._repair.feed(line)
                    if out:
                        yield out
            finally:
                grace.cancel()
        finally:
            self.close()

    def close(self) -> None:
        self._core.record_stream(self._repair)
        self._upstream.close()


class _SyncTransport:
    """Wraps an inner transport; ``bind`` mixes in the library's ``BaseTransport``."""

    def __init__(self, core: TransportCore, inner: Any, sleep: Callable[[float], None]) -> None:
        self._core, self._inner, self._sleep = core, inner, sleep

    def __repr__(self) -> str:
        return f"NeboSDKTransport(inner={type(self._inner).__name__})"

    def handle_request(self, request: Any) -> Any:
        request.read()
        request, call = self._core.prepare(request)
        attempt = 0
        while True:
            try:
                response, error = self._once(request, call)
            except self._core.hx.TransportError as exc:
                delay = self._core.delay(self._core.connection_error(exc), attempt)
                if delay is None:
                    raise
            else:
                delay = None if error is None else self._core.delay(error, attempt)
                if delay is None:
                    return response
                response.close()
            self._sleep(delay)
            attempt += 1

    def _once(self, request: Any, call: _Call) -> tuple[Any, NeboError | None]:
        core = self._core
        upstream = self._inner.handle_request(request)
        snapshot, prior = core.observe(upstream.headers)
        if not core.is_sse(call, upstream):
            try:
                content = upstream.read()
            finally:
                upstream.close()
            return core.finish_plain(request, call, upstream, content, snapshot, prior)
        repair = core.repair(call, upstream, snapshot)
        try:
            lines, pending = upstream.iter_lines(), b""
            while not pending and not repair.ended:  # read up to the first chunk: errors here retry
                pending = repair.feed(next(lines, None))
        except BaseException:
            upstream.close()
            raise
        if repair.ended:
            upstream.close()
        body = _bound(core.hx, "sync_body")(core, repair, upstream, lines, pending)
        return core.stream_response(request, upstream, body), repair.error

    def close(self) -> None:
        self._inner.close()


# --- async ---------------------------------------------------------------------------------


class _AsyncBody:
    def __init__(
        self, core: TransportCore, repair: _Repair, upstream: Any, lines: AsyncIterator[str], pending: bytes
    ):
        self._core, self._repair, self._upstream = core, repair, upstream
        self._lines, self._pending = lines, pending

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            if self._pending:
                yield self._pending
            until: float | None = None
            while not self._repair.ended:
                until = deadline(self._repair.state.all_finished, until)
                try:
                    line = await next_line(self._lines, until)
                except self._core.hx.TransportError:
                    line = None  # dropped mid-stream: the body ends here
                out = self._repair.feed(line)
                if out:
                    yield out
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        self._core.record_stream(self._repair)
        await self._upstream.aclose()


class _AsyncTransport:
    """The async twin of :class:`_SyncTransport`: the same steps with ``await``."""

    def __init__(self, core: TransportCore, inner: Any, sleep: Callable[[float], Awaitable[None]]) -> None:
        self._core, self._inner, self._sleep = core, inner, sleep

    def __repr__(self) -> str:
        return f"NeboAsyncSDKTransport(inner={type(self._inner).__name__})"

    async def handle_async_request(self, request: Any) -> Any:
        await request.aread()
        request, call = self._core.prepare(request)
        attempt = 0
        while True:
            try:
                response, error = await self._once(request, call)
            except self._core.hx.TransportError as exc:
                delay = self._core.delay(self._core.connection_error(exc), attempt)
                if delay is None:
                    raise
            else:
                delay = None if error is None else self._core.delay(error, attempt)
                if delay is None:
                    return response
                await response.aclose()
            await self._sleep(delay)
            attempt += 1

    async def _once(self, request: Any, call: _Call) -> tuple[Any, NeboError | None]:
        core = self._core
        upstream = await self._inner.handle_async_request(request)
        snapshot, prior = core.observe(upstream.headers)
        if not core.is_sse(call, upstream):
            try:
                content = await upstream.aread()
            finally:
                await upstream.aclose()
            return core.finish_plain(request, call, upstream, content, snapshot, prior)
        repair = core.repair(call, upstream, snapshot)
        try:
            lines, pending = upstream.aiter_lines(), b""
            while not pending and not repair.ended:  # read up to the first chunk: errors here retry
                pending = repair.feed(await anext(lines, None))
        except BaseException:
            await upstream.aclose()
            raise
        if repair.ended:
            await upstream.aclose()
        body = _bound(core.hx, "async_body")(core, repair, upstream, lines, pending)
        return core.stream_response(request, upstream, body), repair.error

    async def aclose(self) -> None:
        await self._inner.aclose()


# --- binding to httpx / httpx2 ---------------------------------------------------------------

_BOUND: dict[tuple[str, str], type] = {}
_BASES = {
    "sync_body": (_SyncBody, "SyncByteStream"),
    "async_body": (_AsyncBody, "AsyncByteStream"),
    "sync": (_SyncTransport, "BaseTransport"),
    "async": (_AsyncTransport, "AsyncBaseTransport"),
}


def _bound(hx: ModuleType, role: str) -> type:
    """Our class for ``role`` with the library's base mixed in (the libraries type-check these)."""
    key = (hx.__name__, role)
    if key not in _BOUND:
        ours, base = _BASES[role]
        _BOUND[key] = type(ours.__name__.lstrip("_"), (ours, getattr(hx, base)), {})
    return _BOUND[key]


def sync_transport(
    hx: ModuleType, core: TransportCore, inner: Any | None, sleep: Callable[[float], None]
) -> Any:
    """A ``BaseTransport`` of ``hx`` around ``inner`` (default: a plain ``HTTPTransport``)."""
    return _bound(hx, "sync")(core, inner if inner is not None else hx.HTTPTransport(), sleep)


def async_transport(
    hx: ModuleType, core: TransportCore, inner: Any | None, sleep: Callable[[float], Awaitable[None]]
) -> Any:
    """An ``AsyncBaseTransport`` of ``hx`` around ``inner`` (default: ``AsyncHTTPTransport``)."""
    return _bound(hx, "async")(core, inner if inner is not None else hx.AsyncHTTPTransport(), sleep)
