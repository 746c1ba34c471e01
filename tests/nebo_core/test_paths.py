"""One behaviour suite over the four paths to Nebo: ``NeboClient``, ``AsyncNeboClient``,
``openai_client()`` and ``async_openai_client()``.

Each scenario is written once against a small adapter per path (``chat``, ``stream``,
``embed``, and ``errors``: the exception each path raises for the same condition). Nebo is a
scripted ``MockTransport`` handler of the HTTP library the path runs on (``httpx`` for the
native clients; the SDK's ``httpx2`` on openai 3.x, ``httpx`` on 2.x via ``make test-sdk2``),
so every path gets the same bytes and must send the same requests, sleep the same sleeps and
record the same usage. Payloads come from the ``nb`` fixture (``conftest.py``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from types import ModuleType, SimpleNamespace
from typing import Any, ClassVar

import httpx
import pytest

openai = pytest.importorskip("openai")

from nebo_core import (  # noqa: E402
    AsyncNeboClient,
    BudgetPolicy,
    BudgetTracker,
    NeboAuthenticationError,
    NeboBudgetExhausted,
    NeboClient,
    NeboConnectionError,
    NeboStreamError,
    NeboUpstreamError,
    RetryPolicy,
    async_openai_client,
    openai_client,
)
from nebo_core.openai_compat import http_module  # noqa: E402
from nebo_core.policy import CallPlan  # noqa: E402

SDK_HX = http_module(openai)
TOKEN = "nebo-paths-test-token-SECRET-0c4d"
BASE_URL = "https://janus.test/v1"
BODY: dict[str, Any] = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}
EMBED_MODEL = "neboloop/nebo-embed-small"

# --- the scripted fake Nebo -------------------------------------------------------------------

Reply = Callable[[ModuleType, dict[str, Any]], Any]
"""One canned answer: given the path's HTTP module and the request's JSON body, a response (or a raise)."""


class Server:
    """Answers requests with its replies in order; counts requests and records bodies and sleeps."""

    def __init__(self, hx: ModuleType, replies: tuple[Reply, ...]) -> None:
        self.hx = hx
        self.replies = list(replies)
        self.bodies: list[dict[str, Any]] = []
        self.sleeps: list[float] = []

    @property
    def requests(self) -> int:
        return len(self.bodies)

    def __call__(self, request: Any) -> Any:
        content = request.read()
        self.bodies.append(json.loads(content) if content else {})
        assert self.replies, f"unexpected request #{self.requests}: {request.url}"
        return self.replies.pop(0)(self.hx, self.bodies[-1])

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class _NeverEnds:
    """An SSE body whose connection is never closed (Nebo without ``[DONE]``): reading past it fails."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Any:
        yield self.data
        raise AssertionError("the stream was read past the finish chunk")

    async def __aiter__(self) -> Any:
        yield self.data
        raise AssertionError("the stream was read past the finish chunk")


_NEVER_ENDS = {
    hx.__name__: type("NeverEnds", (_NeverEnds, hx.SyncByteStream, hx.AsyncByteStream), {})
    for hx in (httpx, SDK_HX)
}


def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    """A JSON reply; ``body`` may be a function of the request body (to echo its model)."""
    return lambda hx, req: hx.Response(
        status, json=body(req) if callable(body) else body, headers=headers or {}
    )


def error(status: int, code: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    err: dict[str, Any] = {"message": f"nope ({status})", "type": "error"}
    if code is not None:
        err["code"] = code
    return respond(status, {"error": err}, headers)


def sse(data: bytes, headers: dict[str, str] | None = None, *, never_ends: bool = False) -> Reply:
    def reply(hx: ModuleType, req: dict[str, Any]) -> Any:
        h = {"content-type": "text/event-stream", **(headers or {})}
        if never_ends:
            return hx.Response(200, headers=h, stream=_NEVER_ENDS[hx.__name__](data))
        return hx.Response(200, headers=h, content=data)

    return reply


def drop(hx: ModuleType, req: dict[str, Any]) -> Any:
    raise hx.ConnectError("connection refused")


# --- the four paths ---------------------------------------------------------------------------


class Path:
    """One way to call Nebo. Scenarios use only ``chat(body)`` (the reply text), ``stream(body)``
    (the chunks the caller sees, as dicts), ``embed(texts)`` (vectors), ``errors[condition]``,
    ``code(error)`` (Nebo's error code), and ``server``, ``tracker``, ``policy``."""

    hx: ClassVar[ModuleType]
    errors: ClassVar[dict[str, type[BaseException]]]

    def __init__(self, replies: tuple[Reply, ...], policy: BudgetPolicy, max_retries: int) -> None:
        self.server = Server(self.hx, replies)
        self.tracker = BudgetTracker()
        self.policy = policy
        self.retry = RetryPolicy(max_retries=max_retries, jitter=lambda: 0.0)


NATIVE_ERRORS: dict[str, type[BaseException]] = {
    "budget": NeboBudgetExhausted,
    "auth": NeboAuthenticationError,
    "upstream": NeboUpstreamError,
    "connection": NeboConnectionError,
    "stream": NeboStreamError,
}
SDK_ERRORS: dict[str, type[BaseException]] = {
    "budget": openai.RateLimitError,
    "auth": openai.AuthenticationError,
    "upstream": openai.InternalServerError,
    "connection": openai.APIConnectionError,
    "stream": openai.APIError,
}


class NativeSync(Path):
    hx = httpx
    errors = NATIVE_ERRORS

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.http = httpx.Client(transport=httpx.MockTransport(self.server))
        self.client = NeboClient(
            api_key=TOKEN,
            base_url=BASE_URL,
            http_client=self.http,
            sleep=self.server.sleep,
            tracker=self.tracker,
            policy=self.policy,
            retry=self.retry,
        )

    async def chat(self, body: dict[str, Any]) -> str | None:
        return self.client.chat(body).message["content"]

    async def stream(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self.client.stream_chat(body) as s:
            return list(s)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return self.client.embed(texts, model=EMBED_MODEL).vectors

    def code(self, err: BaseException) -> str | None:
        return getattr(err, "code", None)

    async def close(self) -> None:
        self.client.close()
        self.http.close()


class NativeAsync(NativeSync):
    def __init__(self, *args: Any) -> None:
        Path.__init__(self, *args)
        self.ahttp = httpx.AsyncClient(transport=httpx.MockTransport(self.server))
        self.client = AsyncNeboClient(
            api_key=TOKEN,
            base_url=BASE_URL,
            http_client=self.ahttp,
            sleep=self.server.asleep,
            tracker=self.tracker,
            policy=self.policy,
            retry=self.retry,
        )

    async def chat(self, body: dict[str, Any]) -> str | None:
        return (await self.client.chat(body)).message["content"]

    async def stream(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.client.stream_chat(body) as s:
            return [c async for c in s]

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return (await self.client.embed(texts, model=EMBED_MODEL)).vectors

    async def close(self) -> None:
        await self.client.aclose()
        await self.ahttp.aclose()


class SdkSync(Path):
    hx = SDK_HX
    errors = SDK_ERRORS
    factory: ClassVar[Any] = staticmethod(openai_client)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.client = self.factory(
            api_key=TOKEN,
            base_url=BASE_URL,
            transport=self.hx.MockTransport(self.server),
            sleep=self.server.asleep if self.factory is async_openai_client else self.server.sleep,
            tracker=self.tracker,
            policy=self.policy,
            retry=self.retry,
        )

    async def chat(self, body: dict[str, Any]) -> str | None:
        return self.client.chat.completions.create(**body).choices[0].message.content

    async def stream(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self.client.chat.completions.create(**body, stream=True) as s:
            return [c.model_dump() for c in s]

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [d.embedding for d in self.client.embeddings.create(model=EMBED_MODEL, input=texts).data]

    def code(self, err: BaseException) -> str | None:
        body = getattr(err, "body", None)
        return body.get("code") if isinstance(body, dict) else None

    async def close(self) -> None:
        self.client.close()


class SdkAsync(SdkSync):
    factory = staticmethod(async_openai_client)

    async def chat(self, body: dict[str, Any]) -> str | None:
        return (await self.client.chat.completions.create(**body)).choices[0].message.content

    async def stream(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        async with await self.client.chat.completions.create(**body, stream=True) as s:
            return [c.model_dump() async for c in s]

    async def embed(self, texts: list[str]) -> list[list[float]]:
        result = await self.client.embeddings.create(model=EMBED_MODEL, input=texts)
        return [d.embedding for d in result.data]

    async def close(self) -> None:
        await self.client.close()


Connect = Callable[..., Path]


@pytest.fixture(
    params=[NativeSync, NativeAsync, SdkSync, SdkAsync],
    ids=["native-sync", "native-async", "sdk-sync", "sdk-async"],
)
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    """``connect(*replies, policy=, max_retries=)``: this path on a fresh fake Nebo and tracker."""
    opened: list[Path] = []

    def make(*replies: Reply, policy: BudgetPolicy | None = None, max_retries: int = 2) -> Path:
        # A fresh policy each time: the process-wide default remembers exhausted snapshots.
        path: Path = request.param(replies, policy or BudgetPolicy(), max_retries)
        opened.append(path)
        return path

    yield make
    for path in opened:
        await path.close()


def assemble(chunks: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]], list[str]]:
    """What a by-the-book OpenAI consumer builds: text, and tool calls concatenated by index."""
    text, calls, finishes = [], {}, []
    for c in chunks:
        for choice in c.get("choices") or []:
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            for tc in delta.get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
                fn = tc.get("function") or {}
                slot["id"] += tc.get("id") or ""
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                finishes.append(choice["finish_reason"])
    return "".join(text), [calls[i] for i in sorted(calls)], finishes


def ok(nb: SimpleNamespace, cost: int = 37, **budget: Any) -> Reply:
    """A chat completion that echoes the requested model, with budget headers."""
    return respond(200, lambda req: nb.completion(cost=cost, model=req["model"]), nb.budget_headers(**budget))


# --- 1-4: retries ------------------------------------------------------------------------------


async def test_transient_429_is_retried_once_after_retry_after(connect: Connect, nb: SimpleNamespace) -> None:
    p = connect(error(429, "rate_limit_exceeded", {"Retry-After": "2"}), ok(nb))
    assert await p.chat(BODY) == "hello"
    assert p.server.requests == 2
    assert p.server.sleeps == [pytest.approx(2.0)]
    assert [(r.kind, r.cost_micro) for r in p.tracker.history()] == [("chat", 37)]


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
async def test_budget_429_is_sent_once_and_never_retried(
    connect: Connect, nb: SimpleNamespace, streamed: bool
) -> None:
    headers = {**nb.budget_headers(session_remaining=0), "Retry-After": "1"}
    p = connect(error(429, "USAGE_LIMIT_EXCEEDED", headers))
    with pytest.raises(p.errors["budget"]) as info:
        await (p.stream(BODY) if streamed else p.chat(BODY))
    assert p.code(info.value) == "USAGE_LIMIT_EXCEEDED"
    assert p.server.requests == 1
    assert p.server.sleeps == []
    assert p.tracker.history() == []
    assert p.tracker.snapshot is not None
    assert p.tracker.snapshot.session.remaining_micro == 0


async def test_401_is_not_retried(connect: Connect) -> None:
    p = connect(error(401, "invalid_api_key"))
    with pytest.raises(p.errors["auth"]):
        await p.chat(BODY)
    assert (p.server.requests, p.server.sleeps, p.tracker.history()) == (1, [], [])


async def test_5xx_is_retried_up_to_max_retries_then_surfaces(connect: Connect) -> None:
    p = connect(*[error(502) for _ in range(3)], max_retries=2)
    with pytest.raises(p.errors["upstream"]):
        await p.chat(BODY)
    assert p.server.requests == 3
    assert p.server.sleeps == [0.375, 0.75]  # jitter 0: 0.5 s * 2^n * 0.75
    assert p.tracker.history() == []


async def test_connection_error_is_retried_then_surfaces(connect: Connect, nb: SimpleNamespace) -> None:
    p = connect(drop, ok(nb))
    assert await p.chat(BODY) == "hello"
    assert (p.server.requests, p.server.sleeps) == (2, [0.375])
    assert [r.cost_micro for r in p.tracker.history()] == [37]
    p = connect(drop, drop, max_retries=1)
    with pytest.raises(p.errors["connection"]):
        await p.chat(BODY)
    assert (p.server.requests, p.server.sleeps, p.tracker.history()) == (2, [0.375], [])


# --- 5-6: streams ------------------------------------------------------------------------------


async def test_quirky_stream_comes_out_as_standard_chunks(connect: Connect, nb: SimpleNamespace) -> None:
    a = nb.call(0, "call_a", "read", '{"path":"/a"}')
    b = nb.call(0, "call_b", "grep", '{"q":"x"}')  # a second call, at index 0 too
    body = nb.sse(
        nb.chunk(tool_calls=[a], usage=nb.usage(5, 1, None)),
        nb.chunk(tool_calls=[a], usage=nb.usage(5, 2, None)),  # name and whole arguments again
        nb.chunk(tool_calls=[b], usage=nb.usage(5, 3, None)),
        nb.chunk(tool_calls=[b], usage=nb.usage(5, 4, None)),
        nb.chunk(finish="tool_calls", usage=nb.usage(5, 6, 12)),  # cumulative usage; no [DONE]
    )
    p = connect(sse(body, nb.budget_headers(), never_ends=True))
    text, calls, finishes = assemble(await p.stream(BODY))
    assert calls == [
        {"id": "call_a", "name": "read", "arguments": '{"path":"/a"}'},
        {"id": "call_b", "name": "grep", "arguments": '{"q":"x"}'},
    ]
    assert (text, finishes) == ("", ["tool_calls"])
    assert p.server.requests == 1
    assert p.server.bodies[0]["stream_options"] == {"include_usage": True}
    (record,) = p.tracker.history()
    assert (record.streamed, record.complete, record.cost_micro, record.completion_tokens) == (
        True,
        True,
        12,
        6,
    )
    assert p.tracker.totals().total.cost_micro == 12


async def test_stream_truncated_before_any_chunk_is_retried(connect: Connect, nb: SimpleNamespace) -> None:
    good = nb.sse(nb.chunk("ok", finish="stop", usage=nb.usage(cost=9)))
    p = connect(sse(b""), sse(good))
    assert assemble(await p.stream(BODY))[0] == "ok"
    assert (p.server.requests, p.server.sleeps) == (2, [0.375])
    # The cut attempt reached the server, so it may have been billed: charged its estimate.
    cut, good_one = p.tracker.history()
    assert (cut.streamed, cut.complete, cut.uncertain) == (True, False, True)
    assert cut.cost_micro == BudgetPolicy().estimate(CallPlan("chat", "gpt-5-mini", body=BODY)) > 0  # cold
    assert (good_one.streamed, good_one.complete, good_one.cost_micro) == (True, True, 9)
    assert p.policy.spent_micro() == 9 + cut.cost_micro


async def test_in_stream_rate_limit_before_first_chunk_is_retried(
    connect: Connect, nb: SimpleNamespace
) -> None:
    limited = nb.sse({"error": {"message": "slow down", "type": "rate_limit_error", "retry_after": "250ms"}})
    good = nb.sse(nb.chunk("ok", finish="stop", usage=nb.usage(cost=9)))
    p = connect(sse(limited), sse(good))
    assert assemble(await p.stream(BODY))[0] == "ok"
    assert (p.server.requests, p.server.sleeps) == (2, [0.25])
    assert [(r.streamed, r.cost_micro) for r in p.tracker.history()] == [(True, 9)]


# --- 7-9: budget policy ------------------------------------------------------------------------


async def test_cap_refuses_before_any_request(connect: Connect, nb: SimpleNamespace) -> None:
    policy = BudgetPolicy(max_spend_micro=100, estimate_micro=100)
    p = connect(ok(nb, cost=100), policy=policy)
    assert await p.chat(BODY) == "hello"
    for _ in range(2):
        with pytest.raises(p.errors["budget"]) as info:
            await p.chat(BODY)
        assert p.code(info.value) == "BUDGET_CAP_REACHED"
    if isinstance(info.value, openai.APIStatusError):
        assert info.value.status_code == 429
    assert p.server.requests == 1
    assert policy.spent_micro() == 100
    assert [r.cost_micro for r in p.tracker.history()] == [100]


async def test_wait_sleeps_until_the_window_resets_then_retries_once(
    connect: Connect, nb: SimpleNamespace
) -> None:
    policy = BudgetPolicy(on_exhausted="wait", max_wait=120, wait_margin=1.0, wait_jitter=0)
    exhausted = nb.budget_headers(session_remaining=0, reset="30")  # resets in 30 s
    p = connect(error(429, "USAGE_LIMIT_EXCEEDED", exhausted), ok(nb), policy=policy)
    assert await p.chat(BODY) == "hello"
    assert p.server.requests == 2
    assert p.server.sleeps == [pytest.approx(31.0, abs=0.5)]
    assert [r.cost_micro for r in p.tracker.history()] == [37]


async def test_fallback_sends_the_next_request_to_the_fallback_model(
    connect: Connect, nb: SimpleNamespace
) -> None:
    policy = BudgetPolicy(on_exhausted="fallback", fallback=["gpt-5-nano"])
    exhausted = nb.budget_headers(session_remaining=0)
    p = connect(error(429, "USAGE_LIMIT_EXCEEDED", exhausted), ok(nb, cost=5), policy=policy)
    assert await p.chat({**BODY, "model": "gpt-5.2"}) == "hello"
    assert [b["model"] for b in p.server.bodies] == ["gpt-5.2", "gpt-5-nano"]
    assert p.server.sleeps == []
    (record,) = p.tracker.history()
    assert (record.model, record.cost_micro) == ("gpt-5-nano", 5)
    assert p.tracker.totals().by_model.keys() == {"gpt-5-nano"}


# --- 10: usage records -------------------------------------------------------------------------


async def test_chat_and_embeddings_each_record_cost_and_snapshot(
    connect: Connect, nb: SimpleNamespace
) -> None:
    def embeddings(req: dict[str, Any]) -> dict[str, Any]:
        vector = nb.b64([0.5, 0.25]) if req.get("encoding_format") == "base64" else [0.5, 0.25]
        return {
            "object": "list",
            "model": req["model"],
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3, "cost_micro": 2},
        }

    p = connect(
        ok(nb, cost=40, session_remaining=8_000_000),
        respond(200, embeddings, nb.budget_headers(session_remaining=7_999_000)),
    )
    assert await p.chat(BODY) == "hello"
    assert await p.embed(["hi"]) == [[0.5, 0.25]]
    assert p.server.requests == 2
    chat, emb = p.tracker.history()
    assert [
        (r.kind, r.requested_model, r.cost_micro, r.cost_source, r.snapshot and r.snapshot.remaining_micro)
        for r in (chat, emb)
    ] == [("chat", "gpt-5-mini", 40, "server", 8_000_000), ("embedding", EMBED_MODEL, 2, "server", 7_999_000)]
    assert chat.snapshot is not None
    assert (chat.snapshot.active_pool, chat.snapshot.weekly.remaining_micro) == ("plan", 40_000_000)
    assert p.tracker.snapshot is emb.snapshot


# --- an `event: error` whatever its data: one request, the message kept, no retry -------------


async def test_an_error_event_with_a_bare_message_is_a_stream_error_not_a_truncation(
    connect: Connect,
) -> None:
    p = connect(sse(b'event: error\ndata: {"message": "boom"}\n\n'))
    with pytest.raises(p.errors["stream"]) as info:
        await p.stream(BODY)
    assert "boom" in str(info.value)
    assert p.server.requests == 1
    assert p.server.sleeps == []


# --- a gateway that echoes the token: it never reaches the caller's error --------------------


async def test_a_token_echoed_in_an_error_never_reaches_the_caller(connect: Connect) -> None:
    echo = {"error": {"message": f"bad header Authorization: Bearer {TOKEN}", "type": "invalid_request"}}
    p = connect(respond(400, echo))
    with pytest.raises(Exception) as info:
        await p.chat(BODY)
    err = info.value
    text = f"{err} {err!r} {getattr(err, 'body', '')!r} {getattr(err, 'message', '')}"
    assert TOKEN not in text
    assert "Bearer ***" in text
    assert p.server.requests == 1
