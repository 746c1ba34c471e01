"""Shared fakes for the nebo_core tests: an in-memory Nebo behind ``httpx.MockTransport``.

Tests import nothing from here (``--import-mode=importlib``); they take the ``nb`` fixture,
a namespace of builders: SSE bodies, chunks, budget headers, and clients wired to a
:class:`FakeNebo` whose sleeps are recorded instead of slept.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from nebo_core import AsyncNeboClient, BudgetPolicy, BudgetTracker, NeboClient, RetryPolicy

TOKEN = "nebo-test-token-SECRET-7f3a9c"
PROVIDER_KEY = "sk-provider-SECRET-91bc44"
BASE_URL = "https://janus.test/v1"

Item = Any  # httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeNebo:
    """A queue of canned replies (responses, exceptions or handlers), plus what was sent."""

    def __init__(self, *items: Item, handler: Callable[[httpx.Request], httpx.Response] | None = None):
        self.items = list(items)
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.bodies: list[Any] = []
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            content = request.read()
            self.bodies.append(json.loads(content) if content else None)
            if self.handler is not None:
                item: Item = self.handler
            elif self.items:
                item = self.items.pop(0)
            else:
                raise AssertionError(f"unexpected request #{len(self.requests)}: {request.url}")
        if isinstance(item, BaseException):
            raise item
        if callable(item) and not isinstance(item, httpx.Response):
            return item(request)  # type: ignore[no-any-return]
        return item  # type: ignore[no-any-return]

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class StopAfter(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that yields its parts, then fails if anyone reads further (a connection never closed)."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = parts
        self.read_past_end = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.parts
        self.read_past_end = True
        raise AssertionError("the stream was read past the finish chunk")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        self.read_past_end = True
        raise AssertionError("the stream was read past the finish chunk")


def sse(*events: dict[str, Any] | str, done: bool = False) -> bytes:
    """An SSE body: one ``data:`` event per item (dicts as JSON), optionally ``[DONE]``."""
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def chunk(
    content: str | None = None,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    model: str = "gpt-5-mini",
    choices: bool = True,
) -> dict[str, Any]:
    """One raw ``chat.completion.chunk``."""
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    out: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def call(index: int, id: str | None, name: str | None, args: str | None) -> dict[str, Any]:
    """One raw tool-call delta."""
    out: dict[str, Any] = {"index": index}
    if id is not None:
        out["id"] = id
        out["type"] = "function"
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    out["function"] = fn
    return out


def usage(prompt: int = 10, completion: int = 5, cost: int | None = 37) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    out["total_tokens"] = prompt + completion
    if cost is not None:
        out["cost_micro"] = cost
    return out


def budget_headers(
    session_remaining: int | None = 9_000_000,
    session_limit: int | None = 10_000_000,
    weekly_remaining: int | None = 40_000_000,
    weekly_limit: int | None = 50_000_000,
    pool: str | None = "plan",
    reset: str = "2099-01-01T00:00:00Z",
    **extra: str,
) -> dict[str, str]:
    """Nebo's budget headers (``-Credits`` names)."""
    h: dict[str, str] = {}
    for name, value in (
        ("X-RateLimit-Session-Remaining-Credits", session_remaining),
        ("X-RateLimit-Session-Limit-Credits", session_limit),
        ("X-RateLimit-Weekly-Remaining-Credits", weekly_remaining),
        ("X-RateLimit-Weekly-Limit-Credits", weekly_limit),
    ):
        if value is not None:
            h[name] = str(value)
    h["X-RateLimit-Session-Reset"] = reset
    h["X-RateLimit-Weekly-Reset"] = reset
    if pool is not None:
        h["X-Budget-Active-Pool"] = pool
    h.update(extra)
    return h


def completion(content: str = "hello", cost: int | None = 37, model: str = "gpt-5-mini") -> dict[str, Any]:
    """A non-stream ``chat.completion`` body."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": usage(cost=cost),
    }


def ok(body: Any = None, headers: dict[str, str] | None = None, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=completion() if body is None else body, headers=headers or {})


def stream_response(
    body: bytes | httpx.SyncByteStream, headers: dict[str, str] | None = None
) -> httpx.Response:
    h = {"content-type": "text/event-stream", **(headers or {})}
    if isinstance(body, bytes):
        return httpx.Response(200, content=body, headers=h)
    return httpx.Response(200, stream=body, headers=h)


def error(status: int, code: str | None = None, message: str = "nope", **headers: str) -> httpx.Response:
    err: dict[str, Any] = {"message": message}
    if code is not None:
        err["code"] = code
    return httpx.Response(status, json={"error": err}, headers=headers)


def b64(values: list[float]) -> str:
    import array

    return base64.b64encode(array.array("f", values).tobytes()).decode()


def make_client(
    fake: FakeNebo, *, max_retries: int = 2, tracker: BudgetTracker | None = None, **kw: Any
) -> NeboClient:
    """A sync client on ``fake``: fresh tracker and policy, jitter-free retries, recorded sleeps."""
    return NeboClient(
        api_key=kw.pop("api_key", TOKEN),
        base_url=kw.pop("base_url", BASE_URL),
        http_client=httpx.Client(transport=httpx.MockTransport(fake)),
        sleep=fake.sleep,
        tracker=tracker or BudgetTracker(),
        policy=kw.pop("policy", BudgetPolicy()),
        retry=RetryPolicy(max_retries=max_retries, jitter=lambda: 0.0),
        **kw,
    )


def make_async_client(
    fake: FakeNebo, *, max_retries: int = 2, tracker: BudgetTracker | None = None, **kw: Any
) -> AsyncNeboClient:
    """The async twin of :func:`make_client`."""
    return AsyncNeboClient(
        api_key=kw.pop("api_key", TOKEN),
        base_url=kw.pop("base_url", BASE_URL),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(fake)),
        sleep=fake.asleep,
        tracker=tracker or BudgetTracker(),
        policy=kw.pop("policy", BudgetPolicy()),
        retry=RetryPolicy(max_retries=max_retries, jitter=lambda: 0.0),
        **kw,
    )


@pytest.fixture
def nb() -> SimpleNamespace:
    """Builders for fake Nebo responses and clients (see this module)."""
    return SimpleNamespace(
        TOKEN=TOKEN,
        PROVIDER_KEY=PROVIDER_KEY,
        BASE_URL=BASE_URL,
        FakeNebo=FakeNebo,
        StopAfter=StopAfter,
        sse=sse,
        chunk=chunk,
        call=call,
        usage=usage,
        budget_headers=budget_headers,
        completion=completion,
        ok=ok,
        stream_response=stream_response,
        error=error,
        b64=b64,
        client=make_client,
        async_client=make_async_client,
    )
