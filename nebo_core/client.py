"""``NeboClient`` and ``AsyncNeboClient``: Nebo over httpx, with one retry layer and budgets built in.

Both clients share every decision with :class:`nebo_core._base.BaseClient`; the bodies here
only send, sleep and await. Every response (errors and streams included) feeds the tracker,
and every call runs under the budget policy: it may be refused before any request is sent,
wait for a reset, or fall back to another model.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import httpx

from nebo_core import wire
from nebo_core._base import BaseClient, Batch, ChatCompletion, EmbeddingResult, Sent, batches, join_batches
from nebo_core._streams import AsyncChatStream, ChatStream
from nebo_core.budget import CallKind, UsageRecord, UsageReport
from nebo_core.errors import NeboBudgetExhausted, NeboError
from nebo_core.models import DEFAULT_EMBEDDING_MODEL
from nebo_core.policy import CallPlan, Decision
from nebo_core.retry import RetryPolicy

T = TypeVar("T")
_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30.0)
"""Idle pooled connections go after 30 s: Nebo's load balancer reaps them at 60-120 s (nebo-api.md 11.9)."""


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
            # A client dropped without close() (e.g. inside a framework model) still closes its
            # sockets instead of leaving them to the garbage collector's ResourceWarning.
            weakref.finalize(self, self._http.close)

    def __enter__(self) -> NeboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections this client opened (not a client you passed in)."""
        if self._own_http:
            self._http.close()

    # -- drivers --------------------------------------------------------------------------

    def _retrying(self, fn: Callable[[], T], retry: RetryPolicy) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except NeboError as err:
                delay = retry.delay(err, attempt)
                if delay is None:
                    raise
                self._sleep(delay)
                attempt += 1

    def _governed(
        self,
        kind: CallKind,
        model: str,
        scope: str | None,
        attempt: Callable[[str], tuple[T, UsageRecord | None]],
        settle: bool = True,
    ) -> tuple[T, Decision]:
        plan = CallPlan(kind, model, scope, account=self.account)
        decision = self._decide(plan)
        while True:
            if decision.action == "wait":
                self._sleep(decision.wait_s)
                plan = replace(plan, step=plan.step + 1)
                decision = self._decide(plan, decision)
                continue
            if decision.action == "refuse":
                assert decision.error is not None
                raise decision.error
            try:
                result, record = attempt(decision.model)
            except NeboBudgetExhausted as err:
                self.policy.settle(decision, None)
                plan = replace(plan, model=decision.model, step=plan.step + 1)
                decision = self._decide(plan, decision, err)
                continue
            except BaseException:
                self.policy.settle(decision, None)
                raise
            if settle:
                self.policy.settle(decision, record)
            return result, decision

    def _governed_open(self, stream: ChatStream) -> Decision:
        retry = self._retry_kw(stream._max_retries)

        def attempt(model: str) -> tuple[None, None]:
            self._retrying(lambda: stream._attempt(model), retry)
            return None, None

        return self._governed("chat", stream._requested, stream._scope, attempt, settle=False)[1]

    def _send(self, request: httpx.Request, retry: RetryPolicy) -> Sent:
        def once() -> Sent:
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                raise self._connection_error(exc) from exc
            return self._received(response)

        return self._retrying(once, retry)

    # -- API ------------------------------------------------------------------------------

    def chat(
        self,
        body: dict[str, Any],
        *,
        scope: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> ChatCompletion:
        """One chat completion (``body`` is an OpenAI request body)."""
        requested = str(body.get("model", "auto"))
        retry = self._retry_kw(max_retries)

        def attempt(model: str) -> tuple[ChatCompletion, UsageRecord]:
            call = self._prepare_chat(body, model, requested, timeout, scope)
            return self._finish_chat(call, self._send(call.request, retry))

        return self._governed("chat", requested, scope, attempt)[0]

    def stream_chat(
        self,
        body: dict[str, Any],
        *,
        scope: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> ChatStream:
        """A chat stream of standard OpenAI chunks; nothing is sent until you iterate."""
        return ChatStream(self, body, scope, timeout, max_retries)

    def _embed_one(
        self,
        texts: list[str],
        model: str,
        dimensions: int | None,
        encoding_format: str,
        scope: str | None,
        timeout: float | None,
        retry: RetryPolicy,
    ) -> Batch:
        def attempt(chosen: str) -> tuple[Batch, UsageRecord]:
            call = self._prepare_embedding(texts, chosen, model, dimensions, encoding_format, timeout, scope)
            return self._finish_embedding(call, self._send(call.request, retry))

        return self._governed("embedding", model, scope, attempt)[0]

    def embed(
        self,
        texts: Sequence[str] | str,
        *,
        model: str = DEFAULT_EMBEDDING_MODEL,
        dimensions: int | None = None,
        batch_size: int = 2048,
        concurrency: int = 4,
        encoding_format: str = "base64",
        scope: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> EmbeddingResult:
        """Embed ``texts`` in order, ``batch_size`` per request, up to ``concurrency`` requests at once."""
        retry = self._retry_kw(max_retries)
        parts = batches(texts, batch_size)

        def run(part: tuple[int, list[str]]) -> Batch:
            return self._embed_one(part[1], model, dimensions, encoding_format, scope, timeout, retry)

        if len(parts) <= 1 or concurrency <= 1:
            results = [run(p) for p in parts]
        else:
            # Each batch runs in the caller's context (a copy each), so ContextVar-scoped
            # usage collectors and tracing see the calls made in worker threads.
            contexts = [contextvars.copy_context() for _ in parts]
            with ThreadPoolExecutor(max_workers=min(concurrency, len(parts))) as pool:
                results = list(pool.map(lambda c, p: c.run(run, p), contexts, parts))
        return join_batches(results)

    def models(self) -> list[wire.ModelInfo]:
        """The models Nebo serves to this token."""
        data = self._send(self._request("GET", wire.MODELS_PATH, None, None, False), self.retry)[0]
        return wire.parse_models_body(data)

    def usage(self) -> UsageReport:
        """Budget and pools from ``GET /v1/usage``."""
        data = self._send(self._request("GET", wire.USAGE_PATH, None, None, False), self.retry)[0]
        report = wire.parse_usage_body(data)
        return report


class AsyncNeboClient(BaseClient):
    """Asynchronous Nebo client; the same API as :class:`NeboClient` with ``await``."""

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
        """Close the HTTP connections this client opened (not a client you passed in)."""
        if self._own_http:
            await self._http.aclose()

    # -- drivers --------------------------------------------------------------------------

    async def _retrying(self, fn: Callable[[], Awaitable[T]], retry: RetryPolicy) -> T:
        attempt = 0
        while True:
            try:
                return await fn()
            except NeboError as err:
                delay = retry.delay(err, attempt)
                if delay is None:
                    raise
                await self._sleep(delay)
                attempt += 1

    async def _governed(
        self,
        kind: CallKind,
        model: str,
        scope: str | None,
        attempt: Callable[[str], Awaitable[tuple[T, UsageRecord | None]]],
        settle: bool = True,
    ) -> tuple[T, Decision]:
        plan = CallPlan(kind, model, scope, account=self.account)
        decision = self._decide(plan)
        while True:
            if decision.action == "wait":
                await self._sleep(decision.wait_s)
                plan = replace(plan, step=plan.step + 1)
                decision = self._decide(plan, decision)
                continue
            if decision.action == "refuse":
                assert decision.error is not None
                raise decision.error
            try:
                result, record = await attempt(decision.model)
            except NeboBudgetExhausted as err:
                self.policy.settle(decision, None)
                plan = replace(plan, model=decision.model, step=plan.step + 1)
                decision = self._decide(plan, decision, err)
                continue
            except BaseException:
                self.policy.settle(decision, None)
                raise
            if settle:
                self.policy.settle(decision, record)
            return result, decision

    async def _governed_open(self, stream: AsyncChatStream) -> Decision:
        retry = self._retry_kw(stream._max_retries)

        async def attempt(model: str) -> tuple[None, None]:
            await self._retrying(lambda: stream._attempt(model), retry)
            return None, None

        return (await self._governed("chat", stream._requested, stream._scope, attempt, settle=False))[1]

    async def _send(self, request: httpx.Request, retry: RetryPolicy) -> Sent:
        async def once() -> Sent:
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                raise self._connection_error(exc) from exc
            return self._received(response)

        return await self._retrying(once, retry)

    # -- API ------------------------------------------------------------------------------

    async def chat(
        self,
        body: dict[str, Any],
        *,
        scope: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> ChatCompletion:
        """One chat completion (``body`` is an OpenAI request body)."""
        requested = str(body.get("model", "auto"))
        retry = self._retry_kw(max_retries)

        async def attempt(model: str) -> tuple[ChatCompletion, UsageRecord]:
            call = self._prepare_chat(body, model, requested, timeout, scope)
            return self._finish_chat(call, await self._send(call.request, retry))

        return (await self._governed("chat", requested, scope, attempt))[0]

    def stream_chat(
        self,
        body: dict[str, Any],
        *,
        scope: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> AsyncChatStream:
        """A chat stream of standard OpenAI chunks (``async with`` / ``async for``)."""
        return AsyncChatStream(self, body, scope, timeout, max_retries)

    async def _embed_one(
        self,
        texts: list[str],
        model: str,
        dimensions: int | None,
        encoding_format: str,
        scope: str | None,
        timeout: float | None,
        retry: RetryPolicy,
    ) -> Batch:
        async def attempt(chosen: str) -> tuple[Batch, UsageRecord]:
            call = self._prepare_embedding(texts, chosen, model, dimensions, encoding_format, timeout, scope)
            return self._finish_embedding(call, await self._send(call.request, retry))

        return (await self._governed("embedding", model, scope, attempt))[0]

    async def embed(
        self,
        texts: Sequence[str] | str,
        *,
        model: str = DEFAULT_EMBEDDING_MODEL,
        dimensions: int | None = None,
        batch_size: int = 2048,
        concurrency: int = 4,
        encoding_format: str = "base64",
        scope: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> EmbeddingResult:
        """Embed ``texts`` in order, ``batch_size`` per request, up to ``concurrency`` requests at once."""
        retry = self._retry_kw(max_retries)
        gate = asyncio.Semaphore(max(concurrency, 1))

        async def run(part: tuple[int, list[str]]) -> Batch:
            async with gate:
                return await self._embed_one(
                    part[1], model, dimensions, encoding_format, scope, timeout, retry
                )

        results = await asyncio.gather(*(run(p) for p in batches(texts, batch_size)))
        return join_batches(results)

    async def models(self) -> list[wire.ModelInfo]:
        """The models Nebo serves to this token."""
        data = (await self._send(self._request("GET", wire.MODELS_PATH, None, None, False), self.retry))[0]
        return wire.parse_models_body(data)

    async def usage(self) -> UsageReport:
        """Budget and pools from ``GET /v1/usage``."""
        data = (await self._send(self._request("GET", wire.USAGE_PATH, None, None, False), self.retry))[0]
        return wire.parse_usage_body(data)
