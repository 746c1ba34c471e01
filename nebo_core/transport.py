"""The drivers that run the exchange engine, and the httpx transports built on them.

:func:`drive` and :func:`adrive` carry out an :class:`~nebo_core.exchange.Exchange`'s
actions: ask the budget policy (awaited in async code, so no store round trip blocks an
event loop), sleep, send, read. They are the only place where sync and async differ, and
they take the send step as a function, so the same drivers run under ``NeboClient`` (above
the user's ``httpx`` client: its headers, params, cookies and event hooks apply) and inside
:class:`NeboTransport` (below an SDK's HTTP client). :func:`stream_chunks` and
:func:`astream_chunks` read an open stream with the short grace period for final usage.

:class:`NeboTransport` / :class:`AsyncNeboTransport` are ``httpx`` transports; mount one in
any httpx-based client (``openai_client()`` does, for the openai SDK on ``httpx`` or, bound
by :func:`transport_classes`, on openai 3.x's ``httpx2``) and every Nebo call through it gets
the budget gate, the one retry layer, header observation, stream repair and usage records.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from types import ModuleType
from typing import Any

import httpx

from nebo_core import wire
from nebo_core._grace import SyncGrace, deadline, next_line
from nebo_core.budget import CallKind
from nebo_core.caps import Scope, parse_scope
from nebo_core.errors import (
    NeboBudgetExhausted,
    NeboConfigurationError,
    NeboError,
    NeboStreamError,
)
from nebo_core.exchange import (
    DONE,
    READ_BODY,
    READ_STREAM,
    Action,
    Call,
    Chunk,
    Decide,
    Exchange,
    Fail,
    Send,
    Settle,
    Sleep,
)
from nebo_core.policy import BudgetPolicy, default_policy
from nebo_core.retry import RetryPolicy
from nebo_core.settings import NeboSettings
from nebo_core.sse import DONE as SSE_DONE
from nebo_core.tracker import BudgetTracker, default_tracker

Opener = Callable[[Send], Any]
"""Sends the exchange's request and returns the open response (its body not read)."""
AsyncOpener = Callable[[Send], Awaitable[Any]]


def connect_timeout(total: float) -> float:
    """Connecting never waits as long as reading may (nebo-api.md 11.9: reads may idle minutes)."""
    return min(total, 10.0)


def sent(exc: BaseException, hx: ModuleType = httpx) -> bool:
    """Whether a failed request may have reached the server (then it may have been billed):
    everything but failing to connect (or to get a pooled connection) counts as sent."""
    unsent = tuple(
        getattr(hx, name) for name in ("ConnectError", "ConnectTimeout", "PoolTimeout", "UnsupportedProtocol")
    )
    return not isinstance(exc, unsent)


# --- drivers -------------------------------------------------------------------------------


def drive(ex: Exchange, open_: Opener, sleep: Callable[[float], None], hx: ModuleType = httpx) -> Any:
    """Run ``ex`` to the end, blocking. Returns ``(response, lines)`` of an open stream, else
    ``None`` (the result is in ``ex.result``). Raises the failure's typed error."""
    action: Action = ex.start()
    open_ = ex.telemetry.opener(open_)
    try:
        while True:
            if isinstance(action, Send):
                opened = None
                response = None
                try:
                    response = open_(action)
                    action = ex.head(
                        response.status_code, response.headers, response.headers.get("content-type")
                    )
                    if action is READ_BODY:
                        action = ex.body(response.read())
                    elif action is READ_STREAM:
                        lines = response.iter_lines()
                        while (step := ex.ahead(next(lines, None))) is None:
                            pass
                        action = step
                        if action is DONE:
                            opened = (response, lines)
                except hx.TransportError as exc:
                    ex.cause = exc
                    action = ex.transport_error(
                        exc, timed_out=isinstance(exc, hx.TimeoutException), sent=sent(exc, hx)
                    )
                finally:
                    if response is not None and opened is None:
                        response.close()
                if opened is not None:
                    return opened
            elif isinstance(action, Decide):
                action = ex.decided(ex.policy.decide(action.plan, ex.tracker, action.error))
            elif isinstance(action, Sleep):
                sleep(action.seconds)
                action = ex.resume()
            elif isinstance(action, Settle):
                ex.policy.settle(action.decision, action.record)
                action = ex.resume()
            elif isinstance(action, Fail):
                raise action.error from ex.cause
            else:
                return None
    except BaseException:
        settle = ex.abort()
        if settle is not None:
            ex.policy.settle(settle.decision, settle.record)
        raise


async def adrive(
    ex: Exchange, open_: AsyncOpener, sleep: Callable[[float], Awaitable[None]], hx: ModuleType = httpx
) -> Any:
    """The async twin of :func:`drive`: the same actions, awaited."""
    action: Action = ex.start()
    open_ = ex.telemetry.aopener(open_)
    try:
        while True:
            if isinstance(action, Send):
                opened = None
                response = None
                try:
                    response = await open_(action)
                    action = ex.head(
                        response.status_code, response.headers, response.headers.get("content-type")
                    )
                    if action is READ_BODY:
                        action = ex.body(await response.aread())
                    elif action is READ_STREAM:
                        lines = response.aiter_lines()
                        while (step := ex.ahead(await anext(lines, None))) is None:
                            pass
                        action = step
                        if action is DONE:
                            opened = (response, lines)
                except hx.TransportError as exc:
                    ex.cause = exc
                    action = ex.transport_error(
                        exc, timed_out=isinstance(exc, hx.TimeoutException), sent=sent(exc, hx)
                    )
                finally:
                    if response is not None and opened is None:
                        await response.aclose()
                if opened is not None:
                    return opened
            elif isinstance(action, Decide):
                action = ex.decided(await ex.policy.adecide(action.plan, ex.tracker, action.error))
            elif isinstance(action, Sleep):
                await sleep(action.seconds)
                action = ex.resume()
            elif isinstance(action, Settle):
                await ex.policy.asettle(action.decision, action.record)
                action = ex.resume()
            elif isinstance(action, Fail):
                raise action.error from ex.cause
            else:
                return None
    except BaseException:
        settle = ex.abort()
        if settle is not None:
            await ex.policy.asettle(settle.decision, settle.record)
        raise


def stream_chunks(
    ex: Exchange, response: Any, lines: Iterator[str], hx: ModuleType = httpx
) -> Generator[Chunk, None, None]:
    """The standard chunks of an open stream, to its end (raises in-stream errors and truncation).

    A finished stream waits at most a short grace for its final usage: a timer cuts the socket."""
    yield from ex.pending
    ex.pending = []
    grace = SyncGrace(response)
    try:
        while not ex.ended and not ex.state.done:
            if ex.finishing:
                grace.arm()
            try:
                line = next(lines, None)
            except hx.TransportError:
                line = None  # dropped (or cut after the grace): a truncated stream, if unfinished
            if line is None:
                break
            yield from ex.feed_line(line)
    finally:
        grace.cancel()
    yield from ex.end()


async def astream_chunks(
    ex: Exchange, lines: AsyncIterator[str], hx: ModuleType = httpx
) -> AsyncGenerator[Chunk, None]:
    """The async twin of :func:`stream_chunks` (the grace is a deadline on the next read)."""
    for chunk in ex.pending:
        yield chunk
    ex.pending = []
    until: float | None = None
    while not ex.ended and not ex.state.done:
        until = deadline(ex.finishing, until)
        try:
            line = await next_line(lines, until)
        except hx.TransportError:
            line = None
        if line is None:
            break
        for chunk in ex.feed_line(line):
            yield chunk
    for chunk in ex.end():
        yield chunk


def end_stream(ex: Exchange, response: Any, complete: bool) -> None:
    """A stream is over or abandoned: record what it showed, close it, settle its reservation."""
    settle = ex.close_stream(complete)
    response.close()
    if settle is not None:
        ex.policy.settle(settle.decision, settle.record)


async def aend_stream(ex: Exchange, response: Any, complete: bool) -> None:
    """The async twin of :func:`end_stream`."""
    settle = ex.close_stream(complete)
    await response.aclose()
    if settle is not None:
        await ex.policy.asettle(settle.decision, settle.record)


# --- the transports ------------------------------------------------------------------------

SCOPE_HEADER = "X-Nebo-Scope"
"""A request header naming the call's budget scope; read and removed by the transport."""
_HOP_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})
"""Dropped from rewritten responses: the body handed on is decoded and re-framed."""


def call_from_request(method: str, path: str, content: bytes, scope: Scope) -> tuple[Call, bool]:
    """What an HTTP request to Nebo is (pure), and whether its caller asked for stream usage."""
    kind: CallKind | None = None
    if method == "POST" and path.endswith(wire.CHAT_PATH):
        kind = "chat"
    elif method == "POST" and path.endswith(wire.EMBEDDINGS_PATH):
        kind = "embedding"
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if kind is None or not isinstance(body, dict):
        return Call(method, path, None, None, scope=scope), False
    stream = kind == "chat" and bool(body.get("stream"))
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
    return Call(method, path, body, kind, stream=stream, scope=scope), include_usage


def _sse(data: Any) -> bytes:
    return (
        b"data: "
        + (data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode())
        + b"\n\n"
    )


def _error_envelope(error: NeboError) -> dict[str, Any]:
    kind = "insufficient_quota" if isinstance(error, NeboBudgetExhausted) else type(error).__name__
    return {"error": {"message": error.message, "type": kind, "code": error.code}}


class _TransportBase:
    """What both transports share: settings, tracker, policy, and how answers are shaped."""

    _hx: ModuleType = httpx

    def __init__(
        self,
        inner: Any = None,
        *,
        settings: NeboSettings | None = None,
        tracker: BudgetTracker | None = None,
        policy: BudgetPolicy | None = None,
        retry: RetryPolicy | None = None,
        scope: Scope = None,
        **settings_kwargs: Any,
    ) -> None:
        self.settings = settings if settings is not None else NeboSettings.resolve(**settings_kwargs)
        self.tracker = tracker if tracker is not None else default_tracker()
        self.policy = policy if policy is not None else default_policy()
        self.policy.attach(self.tracker)
        self.retry = retry or RetryPolicy(max_retries=self.settings.max_retries)
        self.scope = scope
        self._inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.settings.base_url!r})"

    def _exchange(self, request: Any) -> tuple[Exchange, Any, bool]:
        header = request.headers.get(SCOPE_HEADER)
        scope = parse_scope(header) if header else self.scope
        call, include_usage = call_from_request(request.method, request.url.path, request.content, scope)
        headers = [
            (k, v)
            for k, v in request.headers.multi_items()
            if k.lower() not in ("content-length", SCOPE_HEADER.lower(), "authorization")
        ]
        present = {k.lower() for k, _ in headers}
        ours = wire.request_headers(self.settings)  # secrets stay in Secret until a request is built
        ours.pop("Accept", None)  # the caller picks JSON or SSE per call
        headers += [(k, v) for k, v in ours.items() if k.lower() not in present or k == wire.H_AUTHORIZATION]
        ex = Exchange(
            call,
            tracker=self.tracker,
            policy=self.policy,
            retry=self.retry,
            account=self.settings.account,
            secrets=self.settings.secrets,
            server=self.settings.base_url,
            lane=request.headers.get("x-lane") or self.settings.lane,
        )
        return ex, (request, headers), include_usage

    def _request(self, template: Any, send: Send) -> Any:
        request, headers = template
        extensions = dict(request.extensions)
        timeout = dict(extensions.get("timeout") or {})
        if timeout.get("connect") is None or timeout["connect"] > connect_timeout(self.settings.timeout):
            timeout["connect"] = connect_timeout(self.settings.timeout)
        extensions["timeout"] = timeout
        content = send.content if send.content is not None else request.content
        return self._hx.Request(
            request.method, request.url, headers=headers, content=content, extensions=extensions
        )

    def _response(self, request: Any, status: int, headers: Any, **body: Any) -> Any:
        kept = [(k, v) for k, v in headers.multi_items() if k.lower() not in _HOP_HEADERS] if headers else []
        return self._hx.Response(status, headers=kept, request=request, **body)

    def _failure(self, ex: Exchange, request: Any, error: NeboError) -> Any:
        """What the HTTP client above sees when the exchange failed: the server's own error
        response when there was one, else a synthesized one of the same meaning."""
        if ex.cause is not None:
            raise ex.cause  # a transport failure stays one (the SDK maps it to its connection error)
        r = ex.response
        if r.content is not None and r.status >= 400:
            content = r.content
            for secret in ex.secrets:  # a gateway may echo our headers: never hand them on
                content = content.replace(secret.encode(), b"***")
            return self._response(request, r.status, r.raw_headers, content=content)
        if isinstance(error, NeboBudgetExhausted):
            return self._response(request, 429, None, json=_error_envelope(error))
        if isinstance(error, NeboStreamError) and ex.call.stream:
            body = _sse(_error_envelope(error))
            return self._response(
                request, 200, self._hx.Headers({"content-type": "text/event-stream"}), content=body
            )
        status = 400 if isinstance(error, NeboConfigurationError) else 502
        return self._response(request, status, None, json=_error_envelope(error))

    def _result(self, ex: Exchange, request: Any) -> Any:
        result = ex.result
        assert result is not None
        return self._response(request, result.status, result.headers, content=result.content)


class NeboTransport(_TransportBase, httpx.BaseTransport):
    """An httpx transport that runs every Nebo call through the exchange engine.

    ``inner`` is the transport that does the network I/O (default: ``HTTPTransport()``; a
    ``MockTransport`` in tests). A call's budget scope comes from the ``X-Nebo-Scope`` request
    header, else ``scope=``. A budget refusal is answered as Nebo would: a 429 with
    ``code`` ``USAGE_LIMIT_EXCEEDED`` (or ``BUDGET_CAP_REACHED`` for a local cap).
    """

    def __init__(
        self, inner: Any = None, *, sleep: Callable[[float], None] = time.sleep, **kwargs: Any
    ) -> None:
        super().__init__(inner if inner is not None else self._hx.HTTPTransport(), **kwargs)
        self._sleep = sleep

    def handle_request(self, request: Any) -> Any:
        request.read()
        ex, template, include_usage = self._exchange(request)

        def open_(send: Send) -> Any:
            return self._inner.handle_request(self._request(template, send))

        try:
            opened = drive(ex, open_, self._sleep, self._hx)
        except NeboError as error:
            return self._failure(ex, request, error)
        if opened is None:
            return self._result(ex, request)
        upstream, lines = opened
        body = _bound(self._hx, "sync_body")(self, ex, upstream, lines, include_usage)
        return self._response(request, upstream.status_code, upstream.headers, stream=body)

    def close(self) -> None:
        """Send the settlements the policy's store holds back (as a client's close does), then
        close the inner transport."""
        self.policy.flush()
        self._inner.close()


class AsyncNeboTransport(_TransportBase, httpx.AsyncBaseTransport):
    """The async twin of :class:`NeboTransport` (budget store calls are awaited)."""

    def __init__(
        self, inner: Any = None, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, **kwargs: Any
    ) -> None:
        super().__init__(inner if inner is not None else self._hx.AsyncHTTPTransport(), **kwargs)
        self._sleep = sleep

    async def handle_async_request(self, request: Any) -> Any:
        await request.aread()
        ex, template, include_usage = self._exchange(request)

        async def open_(send: Send) -> Any:
            return await self._inner.handle_async_request(self._request(template, send))

        try:
            opened = await adrive(ex, open_, self._sleep, self._hx)
        except NeboError as error:
            return self._failure(ex, request, error)
        if opened is None:
            return self._result(ex, request)
        upstream, lines = opened
        body = _bound(self._hx, "async_body")(self, ex, upstream, lines, include_usage)
        return self._response(request, upstream.status_code, upstream.headers, stream=body)

    async def aclose(self) -> None:
        """:meth:`NeboTransport.close`, awaited."""
        await self.policy.aflush()
        await self._inner.aclose()


class _SyncBody:
    """A repaired stream as SSE bytes for the client above (errors become error events)."""

    def __init__(self, owner: _TransportBase, ex: Exchange, upstream: Any, lines: Iterator[str], usage: bool):
        self._owner, self._ex, self._upstream, self._lines, self._usage = owner, ex, upstream, lines, usage
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            try:
                for chunk in stream_chunks(self._ex, self._upstream, self._lines, self._owner._hx):
                    if self._usage or chunk.get("choices"):
                        yield _sse(chunk)
                self._complete = True
                yield _sse(SSE_DONE.encode())
            except NeboError as err:
                yield _sse(_error_envelope(err))
        finally:
            self.close()

    def close(self) -> None:
        end_stream(self._ex, self._upstream, self._complete)


class _AsyncBody:
    """The async twin of :class:`_SyncBody`."""

    def __init__(
        self, owner: _TransportBase, ex: Exchange, upstream: Any, lines: AsyncIterator[str], usage: bool
    ):
        self._owner, self._ex, self._upstream, self._lines, self._usage = owner, ex, upstream, lines, usage
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            try:
                async for chunk in astream_chunks(self._ex, self._lines, self._owner._hx):
                    if self._usage or chunk.get("choices"):
                        yield _sse(chunk)
                self._complete = True
                yield _sse(SSE_DONE.encode())
            except NeboError as err:
                yield _sse(_error_envelope(err))
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await aend_stream(self._ex, self._upstream, self._complete)


# --- binding to httpx2 (openai 3.x) ------------------------------------------------------------

_BASES = {
    "sync": (NeboTransport, "BaseTransport"),
    "async": (AsyncNeboTransport, "AsyncBaseTransport"),
    "sync_body": (_SyncBody, "SyncByteStream"),
    "async_body": (_AsyncBody, "AsyncByteStream"),
}
_BOUND: dict[tuple[str, str], type] = {}


def _bound(hx: ModuleType, role: str) -> Any:
    """Our class for ``role`` with ``hx``'s base class mixed in (the libraries type-check these)."""
    key = (hx.__name__, role)
    cls = _BOUND.get(key)
    if cls is None:
        ours, base = _BASES[role]
        hx_base = getattr(hx, base)
        cls = (
            ours
            if issubclass(ours, hx_base)
            else type(ours.__name__.lstrip("_"), (ours, hx_base), {"_hx": hx})
        )
        _BOUND[key] = cls
    return cls


def transport_classes(hx: ModuleType) -> tuple[type[NeboTransport], type[AsyncNeboTransport]]:
    """:class:`NeboTransport` and :class:`AsyncNeboTransport` for ``hx`` (``httpx`` or ``httpx2``)."""
    return _bound(hx, "sync"), _bound(hx, "async")
