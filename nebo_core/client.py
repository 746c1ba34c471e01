"""``NeboClient`` and ``AsyncNeboClient``: typed façades over the exchange engine.

They build request bodies and shape results; everything else (the budget gate, the one
retry layer, header observation, status-to-error mapping, stream repair, usage records)
happens in :mod:`nebo_core.exchange`, driven by :mod:`nebo_core.transport`. Requests are
built by the ``httpx`` client (yours, if you pass ``http_client=``), so its headers, params,
cookies and event hooks apply; the ``Authorization`` header always comes from the settings,
and redirects are never followed (they would carry the token elsewhere).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx

from nebo_core import embeddings, wire
from nebo_core.budget import CallKind, UsageReport
from nebo_core.caps import Scope, normalize_scope
from nebo_core.chat_stream import AsyncChatStream, ChatStream
from nebo_core.embeddings import Batch
from nebo_core.errors import NeboConfigurationError
from nebo_core.exchange import Call, Exchange, Send
from nebo_core.models import DEFAULT_EMBEDDING_MODEL
from nebo_core.policy import BudgetPolicy, default_policy
from nebo_core.results import ChatCompletion, EmbeddingResult
from nebo_core.retry import RetryPolicy
from nebo_core.settings import NeboSettings, Secret, check_headers, check_retries, check_timeout
from nebo_core.tracker import BudgetTracker, default_tracker
from nebo_core.transport import adrive, connect_timeout, drive

_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30.0)
"""Idle pooled connections go after 30 s: Nebo's load balancer reaps them at 60-120 s (nebo-api.md 11.9)."""


class BaseClient:
    """Settings, tracker, policy and every pure step of a call (bodies in, results out); no I/O."""

    def __init__(
        self,
        *,
        settings: NeboSettings | None = None,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        provider_api_key: str | Secret | None = None,
        bot_id: str | None = None,
        lane: str | None = None,
        purpose: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        tracker: BudgetTracker | None = None,
        policy: BudgetPolicy | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if settings is None:
            settings = NeboSettings.resolve(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=max_retries,
                provider_api_key=provider_api_key,
                bot_id=bot_id,
                lane=lane,
                purpose=purpose,
                default_headers=default_headers,
                default_query=default_query,
            )
        self.settings = settings
        self.tracker = tracker if tracker is not None else default_tracker()
        self.policy = policy if policy is not None else default_policy()
        self.policy.attach(self.tracker)
        self.retry = retry or RetryPolicy(max_retries=settings.max_retries)
        self.account = settings.account
        self._own_http = True

    def __repr__(self) -> str:
        settings = self.__dict__.get("settings")
        return f"{type(self).__name__}(base_url={settings.base_url if settings else None!r})"

    # -- calls in -------------------------------------------------------------------------

    def _exchange(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        kind: CallKind | None = None,
        *,
        stream: bool = False,
        scope: Scope = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
    ) -> Exchange:
        if body is not None and not isinstance(body, Mapping):
            raise NeboConfigurationError(
                f"the request body must be a dict (an OpenAI request body such as "
                f"{{'messages': [{{'role': 'user', 'content': 'hi'}}]}}), got {type(body).__name__}"
            )
        normalize_scope(scope)  # a bad scope fails here, before anything is sent
        timeout = None if timeout is None else check_timeout(timeout)
        retry = None if max_retries is None else replace(self.retry, max_retries=check_retries(max_retries))
        headers = check_headers(extra_headers) or None
        if extra_query is not None and not isinstance(extra_query, Mapping):
            raise NeboConfigurationError(
                f"extra_query must be a dict of query parameters, got {type(extra_query).__name__}"
            )
        call = Call(
            method,
            path,
            body,
            kind,
            stream=stream,
            scope=scope,
            timeout=timeout,
            retry=retry,
            headers=headers,
            query=dict(extra_query) if extra_query else None,
        )
        return Exchange(
            call,
            tracker=self.tracker,
            policy=self.policy,
            retry=self.retry,
            account=self.account,
            timeout=self.settings.timeout,
            secrets=self.settings.secrets,
            server=self.settings.base_url,
            lane=self.settings.lane,
        )

    def _query(self, ex: Exchange) -> dict[str, Any] | None:
        """The settings' default query, then the call's own ``extra_query``."""
        return {**self.settings.default_query, **(ex.call.query or {})} or None

    def _build(self, http: httpx.Client | httpx.AsyncClient, ex: Exchange, send: Send) -> httpx.Request:
        # Secrets stay in Secret until the request is built.
        headers = wire.request_headers(self.settings, ex.call.headers)
        if send.content is not None:
            headers["Content-Type"] = "application/json"
        if ex.call.stream:
            headers["Accept"] = "text/event-stream"
        total = send.timeout if send.timeout is not None else self.settings.timeout
        timeout = httpx.Timeout(total, connect=connect_timeout(total))
        url = self.settings.base_url + ex.call.path
        if self._own_http:  # nothing of the user's to merge: skip build_request's merging (hot path)
            extensions = {"timeout": timeout.as_dict()}
            return httpx.Request(
                ex.call.method,
                url,
                params=self._query(ex),
                content=send.content,
                headers=headers,
                extensions=extensions,
            )
        return http.build_request(
            ex.call.method,
            url,
            params=self._query(ex),
            content=send.content,
            headers=headers,
            timeout=timeout,
        )

    # -- results out ----------------------------------------------------------------------

    @staticmethod
    def _chat(ex: Exchange) -> ChatCompletion:
        result = ex.result
        assert result is not None
        assert result.record is not None
        return ChatCompletion(
            result.data,
            result.record,
            result.snapshot,
            result.request_id,
            dict(ex.response.headers),
            tuple(ex.records),
            ex.tracker.forecast(ex.account),
        )

    @staticmethod
    def _batch(ex: Exchange) -> Batch:
        result = ex.result
        assert result is not None
        assert result.record is not None
        return embeddings.vectors(result.data), result.data.get("model"), list(ex.records)

    @staticmethod
    def _embed_calls(
        texts: Sequence[str] | str,
        model: str,
        dimensions: int | None,
        encoding_format: str,
        batch_size: int,
        extra_body: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        if extra_body is not None and not isinstance(extra_body, Mapping):
            raise NeboConfigurationError(
                f"extra_body must be a dict of body fields, got {type(extra_body).__name__}"
            )
        return [
            embeddings.embedding_body(part, model, dimensions, encoding_format, extra_body)
            for _, part in embeddings.batches(texts, batch_size)
        ]

    @staticmethod
    def _report(ex: Exchange) -> Any:
        assert ex.result is not None
        return ex.result.data


class NeboClient(BaseClient):
    """Synchronous Nebo client. Pass ``http_client=`` for proxies, certificates or a test transport."""

    def __init__(
        self,
        *,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(limits=_LIMITS, timeout=self.settings.timeout)
        self._sleep = sleep
        if self._own_http:
            # A client dropped without close() (e.g. inside a framework model) still closes its sockets.
            weakref.finalize(self, self._http.close)

    def __enter__(self) -> NeboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Send the settlements its policy's store still holds back, and close the HTTP
        connections this client opened (not a client you passed in)."""
        self.policy.flush()
        if self._own_http:
            self._http.close()

    def _run(self, ex: Exchange) -> Any:
        def open_(send: Send) -> httpx.Response:
            request = self._build(self._http, ex, send)
            return self._http.send(request, stream=True, follow_redirects=False, auth=None)

        return drive(ex, open_, self._sleep)

    # -- API ------------------------------------------------------------------------------

    def chat(
        self,
        body: dict[str, Any],
        *,
        scope: Scope = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
    ) -> ChatCompletion:
        """One chat completion (``body`` is an OpenAI request body)."""
        ex = self._exchange(
            "POST",
            wire.CHAT_PATH,
            body,
            "chat",
            scope=scope,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            extra_query=extra_query,
        )
        self._run(ex)
        return self._chat(ex)

    def stream_chat(
        self,
        body: dict[str, Any],
        *,
        scope: Scope = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
    ) -> ChatStream:
        """Open a chat stream (sent now, read up to its first chunk); iterate for standard chunks."""
        ex = self._exchange(
            "POST",
            wire.CHAT_PATH,
            body,
            "chat",
            stream=True,
            scope=scope,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            extra_query=extra_query,
        )
        response, lines = self._run(ex)
        return ChatStream(ex, response, lines)

    def embed(
        self,
        texts: Sequence[str] | str,
        *,
        model: str = DEFAULT_EMBEDDING_MODEL,
        dimensions: int | None = None,
        batch_size: int = 2048,
        concurrency: int = 4,
        encoding_format: str = "base64",
        extra_body: Mapping[str, Any] | None = None,
        scope: Scope = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
    ) -> EmbeddingResult:
        """Embed ``texts`` in order, ``batch_size`` per request, up to ``concurrency`` requests at once;
        ``extra_body`` fields (``user``...) go into every request."""
        bodies = self._embed_calls(texts, model, dimensions, encoding_format, batch_size, extra_body)

        def run(body: dict[str, Any]) -> Batch:
            ex = self._exchange(
                "POST",
                wire.EMBEDDINGS_PATH,
                body,
                "embedding",
                scope=scope,
                timeout=timeout,
                max_retries=max_retries,
                extra_headers=extra_headers,
                extra_query=extra_query,
            )
            self._run(ex)
            return self._batch(ex)

        if len(bodies) <= 1 or concurrency <= 1:
            results = [run(b) for b in bodies]
        else:
            # Each batch runs in the caller's context (a copy each), so ContextVar-scoped
            # usage collectors and tracing see the calls made in worker threads.
            contexts = [contextvars.copy_context() for _ in bodies]
            with ThreadPoolExecutor(max_workers=min(concurrency, len(bodies))) as pool:
                results = list(pool.map(lambda c, b: c.run(run, b), contexts, bodies))
        return embeddings.join_batches(results)

    def models(self) -> list[wire.ModelInfo]:
        """The models Nebo serves to this token."""
        ex = self._exchange("GET", wire.MODELS_PATH)
        self._run(ex)
        return wire.parse_models_body(self._report(ex))

    def usage(self) -> UsageReport:
        """Budget and pools from ``GET /v1/usage``."""
        ex = self._exchange("GET", wire.USAGE_PATH)
        self._run(ex)
        return wire.parse_usage_body(self._report(ex))


class AsyncNeboClient(BaseClient):
    """Asynchronous Nebo client; the same API as :class:`NeboClient` with ``await``.

    Budget store calls are awaited too (``RedisBudgetStore`` uses ``redis.asyncio``), so a
    call never blocks the event loop."""

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(limits=_LIMITS, timeout=self.settings.timeout)
        self._sleep = sleep

    async def __aenter__(self) -> AsyncNeboClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Send the settlements its policy's store still holds back, and close the HTTP
        connections this client opened (not a client you passed in)."""
        await self.policy.aflush()
        if self._own_http:
            await self._http.aclose()

    async def _run(self, ex: Exchange) -> Any:
        async def open_(send: Send) -> httpx.Response:
            request = self._build(self._http, ex, send)
            return await self._http.send(request, stream=True, follow_redirects=False, auth=None)

        return await adrive(ex, open_, self._sleep)

    # -- API ------------------------------------------------------------------------------

    async def chat(
        self,
        body: dict[str, Any],
        *,
        scope: Scope = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
    ) -> ChatCompletion:
        """One chat completion (``body`` is an OpenAI request body)."""
        ex = self._exchange(
            "POST",
            wire.CHAT_PATH,
            body,
            "chat",
            scope=scope,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            extra_query=extra_query,
        )
        await self._run(ex)
        return self._chat(ex)

    def stream_chat(
        self,
        body: dict[str, Any],
        *,
        scope: Scope = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
    ) -> OpeningStream:
        """Open a chat stream: ``stream = await client.stream_chat(body)``, or
        ``async with client.stream_chat(body) as stream:``; then ``async for`` its chunks."""
        ex = self._exchange(
            "POST",
            wire.CHAT_PATH,
            body,
            "chat",
            stream=True,
            scope=scope,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            extra_query=extra_query,
        )
        return OpeningStream(self, ex)

    async def embed(
        self,
        texts: Sequence[str] | str,
        *,
        model: str = DEFAULT_EMBEDDING_MODEL,
        dimensions: int | None = None,
        batch_size: int = 2048,
        concurrency: int = 4,
        encoding_format: str = "base64",
        extra_body: Mapping[str, Any] | None = None,
        scope: Scope = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
    ) -> EmbeddingResult:
        """Embed ``texts`` in order, ``batch_size`` per request, up to ``concurrency`` requests at once;
        ``extra_body`` fields (``user``...) go into every request."""
        bodies = self._embed_calls(texts, model, dimensions, encoding_format, batch_size, extra_body)
        gate = asyncio.Semaphore(max(concurrency, 1))

        async def run(body: dict[str, Any]) -> Batch:
            async with gate:
                ex = self._exchange(
                    "POST",
                    wire.EMBEDDINGS_PATH,
                    body,
                    "embedding",
                    scope=scope,
                    timeout=timeout,
                    max_retries=max_retries,
                    extra_headers=extra_headers,
                    extra_query=extra_query,
                )
                await self._run(ex)
                return self._batch(ex)

        results = await asyncio.gather(*(run(b) for b in bodies))
        return embeddings.join_batches(results)

    async def models(self) -> list[wire.ModelInfo]:
        """The models Nebo serves to this token."""
        ex = self._exchange("GET", wire.MODELS_PATH)
        await self._run(ex)
        return wire.parse_models_body(self._report(ex))

    async def usage(self) -> UsageReport:
        """Budget and pools from ``GET /v1/usage``."""
        ex = self._exchange("GET", wire.USAGE_PATH)
        await self._run(ex)
        return wire.parse_usage_body(self._report(ex))


class OpeningStream:
    """An async chat stream being opened: await it, or use it as an async context manager."""

    def __init__(self, client: AsyncNeboClient, ex: Exchange) -> None:
        self._client = client
        self._ex = ex
        self._stream: AsyncChatStream | None = None

    async def _open(self) -> AsyncChatStream:
        response, lines = await self._client._run(self._ex)
        self._stream = AsyncChatStream(self._ex, response, lines)
        return self._stream

    def __await__(self) -> Generator[Any, None, AsyncChatStream]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncChatStream:
        return await self._open()

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            await self._stream.aclose()
