"""The fault matrix of issue #12: every fault class against every client path, on a raw server.

Nebo here is :class:`RawServer` (``tests/_raw_server.py``): a real HTTP/1.1 server on loopback that
answers each request with scripted bytes, pauses, a cut connection or silence, and records
every request it read. Each fault class (a row) is written once, against a small adapter per
client path and operation (a column):

    path        client                                           operations
    core-sync   nebo_core.NeboClient                             chat, stream, embed
    core-async  nebo_core.AsyncNeboClient                        chat, stream, embed
    lc-sync     langchain_nebo.ChatNebo: invoke, stream          chat, stream
    lc-async    langchain_nebo.ChatNebo: ainvoke, astream        chat, stream
    lc-embed    langchain_nebo.NeboEmbeddings                    embed
    li-sync     llama_index_nebo.Nebo: chat, stream_chat         chat, stream
    li-async    llama_index_nebo.Nebo: achat, astream_chat       chat, stream
    li-embed    llama_index_nebo.NeboEmbedding                   embed
    sdk-sync    nebo_core.openai_client()                        chat, stream, embed
    sdk-async   nebo_core.async_openai_client()                  chat, stream, embed

Every row asserts the exact error type the path raises (``Path.errors`` maps a condition to
each path's class), how many requests the server read, and what was recorded (the tracker's
records, the policy store's spend). Every path runs with ``max_retries=1``, a 0.2 s timeout
(0.1 s where the server never answers), a fresh tracker and a fresh ``BudgetPolicy``. The
framework adapters are built by their own public constructors (key, URL, timeout,
max_retries, tracker, policy), which take no retry policy: a retry there sleeps the core's
default backoff (about 0.5 s). So in the rows where a retry would sleep it (no
``Retry-After``: cuts, timeouts, bad bodies) they run with ``max_retries=0`` (one request
each, which still shows they add no retry layer of their own); the expected count is always
``p.max_retries + 1``.

The MONEY rows state the contract of issue #12 section 5 (a call that may have been billed is
charged its estimate, ``cost_source == "estimate"``); the server's own error answers (a 401, a
budget 429) and a refused connection record nothing.
"""

from __future__ import annotations

import json
import pickle
import traceback
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any, ClassVar

import pytest

openai = pytest.importorskip("openai")

from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from llama_index.core.base.llms.types import ChatMessage, MessageRole  # noqa: E402

import langchain_nebo as lc  # noqa: E402
import llama_index_nebo as li  # noqa: E402
from nebo_core import (  # noqa: E402
    AsyncNeboClient,
    BudgetPolicy,
    BudgetTracker,
    NeboAuthenticationError,
    NeboBudgetExhausted,
    NeboClient,
    NeboConfigurationError,
    NeboConnectionError,
    NeboError,
    NeboRateLimited,
    NeboStreamError,
    NeboStreamTruncated,
    NeboTimeoutError,
    NeboUpstreamError,
    RetryPolicy,
    async_openai_client,
    openai_client,
)

TOKEN = "nebo-fault-token-SECRET-5e1f0c"
PROVIDER_KEY = "sk-fault-provider-SECRET-77aa31"
MODEL = "gpt-5-mini"
EMBED_MODEL = "neboloop/nebo-embed-small"
BODY: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
RETRIES = 1
"""``max_retries`` of every path (but see ``connect(backoff=True)``): a retried fault is read twice."""
TIMEOUT = 0.2
"""Seconds per request (generous for a loopback answer)."""
HANG_TIMEOUT = 0.1
"""Seconds per request where the server never answers: each attempt costs this long."""


# --- Nebo's payloads (nebo-api.md sections 4, 6, 8, 9) -----------------------------------------


def budget_headers(session_remaining: int = 9_000_000, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Nebo's budget headers (the ``-Credits`` names, nebo-api.md 8.2), plus ``extra``."""
    return {
        "X-RateLimit-Session-Remaining-Credits": str(session_remaining),
        "X-RateLimit-Session-Limit-Credits": "10000000",
        "X-RateLimit-Weekly-Remaining-Credits": "40000000",
        "X-RateLimit-Weekly-Limit-Credits": "50000000",
        "X-RateLimit-Session-Reset": "2099-01-01T00:00:00Z",
        "X-RateLimit-Weekly-Reset": "2099-01-01T00:00:00Z",
        "X-Budget-Active-Pool": "plan",
        **(extra or {}),
    }


def usage(cost: int | None = 37, total: Any = 15) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": total}
    if cost is not None:
        out["cost_micro"] = cost
    return out


def completion(message: Any = None, cost: int | None = 37, **fields: Any) -> dict[str, Any]:
    body = {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": message if message is not None else {"role": "assistant", "content": "hello"},
                "finish_reason": "stop",
            }
        ],
        "usage": usage(cost),
    }
    body.update(fields)
    return body


def chunk_event(delta: dict[str, Any], finish: str | None = None, cost: int | None = None) -> str:
    data: dict[str, Any] = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if cost is not None:
        data["usage"] = usage(cost)
    return f"data: {json.dumps(data)}\n\n"


def embeddings(data: Any = None, cost: int | None = 2, total: Any = 1) -> dict[str, Any]:
    usage_: dict[str, Any] = {"prompt_tokens": 1, "total_tokens": total}
    if cost is not None:
        usage_["cost_micro"] = cost
    return {
        "object": "list",
        "data": data if data is not None else [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
        "model": "text-embedding-3-small",
        "usage": usage_,
    }


def nebo_error(message: str, code: str | None = None, type_: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message}
    if code is not None:
        err["code"] = code
    if type_ is not None:
        err["type"] = type_
    return {"error": err}


STREAM_EVENTS = [
    chunk_event({"role": "assistant", "content": "hel"}),
    chunk_event({"content": "lo"}),
    chunk_event({}, finish="stop", cost=37),
    "data: [DONE]\n\n",
]


def ok(raw: ModuleType, op: str, headers: dict[str, str] | None = None) -> list[Any]:
    """A good answer to ``op``: it costs 37 microdollars (chat, stream) or 2 (embed)."""
    h = budget_headers() if headers is None else headers
    if op == "stream":
        return list(raw.sse(STREAM_EVENTS, h, delay=0.005))
    if op == "embed":
        return list(raw.respond_json(200, embeddings(), h))
    return list(raw.respond_json(200, completion(), h))


OK_COST = {"chat": 37, "stream": 37, "embed": 2}
OK_TEXT = {"chat": "hello", "stream": "hello"}

# --- the paths ----------------------------------------------------------------------------------

HELLO_LC = "hi"
HELLO_LI = [ChatMessage(role=MessageRole.USER, content="hi")]


class Path:
    """One way to call Nebo: ``call(op)`` returns the text (chat, stream) or the vectors (embed).

    ``errors[condition]`` is the exact class this path raises for a condition."""

    name: ClassVar[str]
    ops: ClassVar[tuple[str, ...]]
    errors: ClassVar[dict[str, type[BaseException]]]
    fast_retry: ClassVar[bool] = False
    """Whether the path takes a retry policy (so its retries need not sleep the default backoff)."""
    raw_body: ClassVar[bool] = False
    """Whether the result is the server's body as sent (core, SDK): its values are not retyped."""

    def __init__(
        self, base_url: str, *, api_key: str = TOKEN, max_retries: int = RETRIES, timeout: float = TIMEOUT
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.max_retries = max_retries
        self.tracker = BudgetTracker()
        self.policy = BudgetPolicy()  # fresh: the default policy remembers exhaustion process-wide
        self.settings: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": max_retries,
            "provider_api_key": PROVIDER_KEY,
        }
        self.build()

    def build(self) -> None:
        raise NotImplementedError

    async def call(self, op: str) -> Any:
        return await getattr(self, op)()

    async def close(self) -> None:
        """Close what the path opened (nothing, where the framework owns the client)."""

    @property
    def spent(self) -> int:
        """What the policy store holds as spent for the (global) scope."""
        return self.policy.spent_micro()

    def records(self) -> list[Any]:
        return self.tracker.history()


CORE_ERRORS: dict[str, type[BaseException]] = {
    "budget": NeboBudgetExhausted,
    "rate": NeboRateLimited,
    "upstream": NeboUpstreamError,
    "auth": NeboAuthenticationError,
    "config": NeboConfigurationError,
    "connection": NeboConnectionError,
    "timeout": NeboTimeoutError,
    "stream": NeboStreamError,
    "truncated": NeboStreamTruncated,
}
LC_ERRORS: dict[str, type[BaseException]] = {
    "budget": lc.NeboBudgetExhaustedError,
    "rate": lc.NeboRateLimitError,
    "upstream": lc.NeboAPIError,
    "auth": lc.NeboModelAuthenticationError,
    "config": lc.NeboInvalidRequestError,
    "connection": lc.NeboModelConnectionError,
    "timeout": lc.NeboModelTimeoutError,
    "stream": lc.NeboStreamAPIError,
    "truncated": lc.NeboStreamTruncatedError,
}
SDK_ERRORS: dict[str, type[BaseException]] = {
    "budget": openai.RateLimitError,
    "rate": openai.RateLimitError,
    "upstream": openai.InternalServerError,
    "auth": openai.AuthenticationError,
    "config": openai.BadRequestError,
    "connection": openai.APIConnectionError,
    "timeout": openai.APITimeoutError,
    "stream": openai.APIError,
    "truncated": openai.APIError,
}


class CoreSync(Path):
    name = "core-sync"
    ops = ("chat", "stream", "embed")
    fast_retry = True
    raw_body = True
    errors = CORE_ERRORS

    def build(self) -> None:
        retry = RetryPolicy(max_retries=self.max_retries, base_delay=0.005, jitter=lambda: 0.0)
        self.client = NeboClient(**self.settings, tracker=self.tracker, policy=self.policy, retry=retry)

    async def chat(self) -> Any:
        return self.client.chat(BODY).message["content"]

    async def stream(self) -> Any:
        with self.client.stream_chat(BODY) as s:
            return "".join(
                (c["choices"][0]["delta"].get("content") or "") if c.get("choices") else "" for c in s
            )

    async def embed(self) -> Any:
        return self.client.embed(["hi"], model=EMBED_MODEL).vectors

    async def close(self) -> None:
        self.client.close()


class CoreAsync(Path):
    name = "core-async"
    ops = ("chat", "stream", "embed")
    fast_retry = True
    raw_body = True
    errors = CORE_ERRORS

    def build(self) -> None:
        retry = RetryPolicy(max_retries=self.max_retries, base_delay=0.005, jitter=lambda: 0.0)
        self.client = AsyncNeboClient(**self.settings, tracker=self.tracker, policy=self.policy, retry=retry)

    async def chat(self) -> Any:
        return (await self.client.chat(BODY)).message["content"]

    async def stream(self) -> Any:
        async with self.client.stream_chat(BODY) as s:
            return "".join(
                [(c["choices"][0]["delta"].get("content") or "") if c.get("choices") else "" async for c in s]
            )

    async def embed(self) -> Any:
        return (await self.client.embed(["hi"], model=EMBED_MODEL)).vectors

    async def close(self) -> None:
        await self.client.aclose()


class LcSync(Path):
    name = "lc-sync"
    ops = ("chat", "stream")
    errors = LC_ERRORS

    def build(self) -> None:
        self.llm = lc.ChatNebo(model=MODEL, **self.settings, tracker=self.tracker, policy=self.policy)

    async def chat(self) -> Any:
        return self.llm.invoke(HELLO_LC).content

    async def stream(self) -> Any:
        return "".join(str(c.content) for c in self.llm.stream(HELLO_LC))


class LcAsync(LcSync):
    name = "lc-async"

    async def chat(self) -> Any:
        return (await self.llm.ainvoke(HELLO_LC)).content

    async def stream(self) -> Any:
        return "".join([str(c.content) async for c in self.llm.astream(HELLO_LC)])


class LcEmbed(Path):
    name = "lc-embed"
    ops = ("embed",)
    errors = LC_ERRORS

    def build(self) -> None:
        self.emb = lc.NeboEmbeddings(
            model=EMBED_MODEL, **self.settings, tracker=self.tracker, policy=self.policy
        )

    async def embed(self) -> Any:
        return self.emb.embed_documents(["hi"])


class LiSync(Path):
    name = "li-sync"
    ops = ("chat", "stream")
    errors = CORE_ERRORS  # llama_index_nebo raises nebo_core's errors unchanged

    def build(self) -> None:
        self.llm = li.Nebo(MODEL, **self.settings, tracker=self.tracker, policy=self.policy)

    async def chat(self) -> Any:
        return self.llm.chat(HELLO_LI).message.content

    async def stream(self) -> Any:
        return "".join(r.delta or "" for r in self.llm.stream_chat(HELLO_LI))


class LiAsync(LiSync):
    name = "li-async"

    async def chat(self) -> Any:
        return (await self.llm.achat(HELLO_LI)).message.content

    async def stream(self) -> Any:
        return "".join([r.delta or "" async for r in await self.llm.astream_chat(HELLO_LI)])


class LiEmbed(Path):
    name = "li-embed"
    ops = ("embed",)
    errors = CORE_ERRORS

    def build(self) -> None:
        self.emb = li.NeboEmbedding(EMBED_MODEL, **self.settings, tracker=self.tracker, policy=self.policy)

    async def embed(self) -> Any:
        return self.emb.get_text_embedding_batch(["hi"])


class SdkSync(Path):
    name = "sdk-sync"
    ops = ("chat", "stream", "embed")
    fast_retry = True
    raw_body = True
    errors = SDK_ERRORS
    factory: ClassVar[Any] = staticmethod(openai_client)

    def build(self) -> None:
        retry = RetryPolicy(max_retries=self.max_retries, base_delay=0.005, jitter=lambda: 0.0)
        self.client = self.factory(**self.settings, tracker=self.tracker, policy=self.policy, retry=retry)

    async def chat(self) -> Any:
        return self.client.chat.completions.create(**BODY).choices[0].message.content

    async def stream(self) -> Any:
        with self.client.chat.completions.create(**BODY, stream=True) as s:
            return "".join((c.choices[0].delta.content or "") if c.choices else "" for c in s)

    async def embed(self) -> Any:
        return [d.embedding for d in self.client.embeddings.create(model=EMBED_MODEL, input=["hi"]).data]

    async def close(self) -> None:
        self.client.close()


class SdkAsync(SdkSync):
    name = "sdk-async"
    factory = staticmethod(async_openai_client)

    async def chat(self) -> Any:
        return (await self.client.chat.completions.create(**BODY)).choices[0].message.content

    async def stream(self) -> Any:
        async with await self.client.chat.completions.create(**BODY, stream=True) as s:
            return "".join([(c.choices[0].delta.content or "") if c.choices else "" async for c in s])

    async def embed(self) -> Any:
        result = await self.client.embeddings.create(model=EMBED_MODEL, input=["hi"])
        return [d.embedding for d in result.data]

    async def close(self) -> None:
        await self.client.close()


PATHS: list[type[Path]] = [
    CoreSync,
    CoreAsync,
    LcSync,
    LcAsync,
    LcEmbed,
    LiSync,
    LiAsync,
    LiEmbed,
    SdkSync,
    SdkAsync,
]
CASES = [(cls, op) for cls in PATHS for op in cls.ops]
Connect = Callable[..., Path]


def _cases(*ops: str) -> list[Any]:
    return [pytest.param(cls, op, id=f"{cls.name}/{op}") for cls, op in CASES if op in ops]


ALL_OPS = _cases("chat", "stream", "embed")
CALL_OPS = _cases("chat", "embed")
STREAM_OPS = _cases("stream")


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """``connect(cls, server, backoff=, **kw)``: the path ``cls`` pointed at ``server`` (a server or a
    base URL), closed after the test. ``backoff=True``: the row's retries would sleep the default
    backoff (no ``Retry-After``)."""
    opened: list[Path] = []

    def make(cls: type[Path], server: Any, *, backoff: bool = False, **kw: Any) -> Path:
        if backoff and not cls.fast_retry:
            # The adapters take no retry policy: a retry would sleep the core's default backoff
            # (about 0.5 s). Rows that would sleep it run them without retries: one request each,
            # which still proves they add no retry layer of their own.
            kw.setdefault("max_retries", 0)
        path = cls(server if isinstance(server, str) else server.base_url, **kw)
        opened.append(path)
        return path

    yield make
    for path in opened:
        await path.close()


async def attempt(p: Path, op: str) -> tuple[Any, Exception | None]:
    """What ``op`` returned, or the error it raised."""
    try:
        return await p.call(op), None
    except Exception as err:
        return None, err


async def fails(p: Path, op: str) -> BaseException:
    """The error ``op`` raises on ``p`` (the test fails if it returns)."""
    try:
        result = await p.call(op)
    except Exception as err:
        return err
    pytest.fail(f"{p.name}/{op} returned {result!r} instead of raising")


def expect(p: Path, err: BaseException, condition: str) -> None:
    """``err`` is exactly the class ``p`` raises for ``condition``."""
    wanted = p.errors[condition]
    assert type(err) is wanted, f"{p.name}: expected {wanted.__name__}, got {type(err).__name__}: {err}"


def nothing_recorded(p: Path) -> None:
    assert [(r.cost_source, r.cost_micro) for r in p.records()] == []
    assert p.spent == 0


# --- 1. a budget 429 is sent once, never retried, and spends nothing ----------------------------

BUDGET_429 = nebo_error(
    "usage limit reached: all pools are empty", "USAGE_LIMIT_EXCEEDED", "insufficient_quota"
)


def budget_429(raw: ModuleType) -> list[Any]:
    headers = budget_headers(session_remaining=0, extra={"Retry-After": "1"})
    return list(raw.respond_json(429, BUDGET_429, headers))


@pytest.mark.parametrize(("cls", "op"), ALL_OPS)
async def test_budget_429_is_sent_once(
    cls: type[Path], op: str, connect: Connect, servers: Any, raw: Any
) -> None:
    server = servers().script(budget_429(raw), budget_429(raw))
    p = connect(cls, server)
    expect(p, await fails(p, op), "budget")
    assert server.count == 1
    sent = server.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/embeddings" if op == "embed" else "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["x-provider-api-key"] == PROVIDER_KEY
    assert sent.json["model"] == (EMBED_MODEL if op == "embed" else MODEL)
    nothing_recorded(p)


@pytest.mark.parametrize("form", ["invoke", "ainvoke", "chain", "achain"])
async def test_budget_429_is_sent_once_through_with_retry(
    form: str, connect: Connect, servers: Any, raw: Any
) -> None:
    server = servers().script(*[budget_429(raw)] * 4)
    p = connect(LcSync, server)
    assert isinstance(p, LcSync)
    if form.endswith("chain"):
        prompt = ChatPromptTemplate.from_messages([("user", "{q}")])
        runnable: Any = (prompt | p.llm).with_retry(retry_if_exception_type=lc.RETRYABLE_ERRORS)
        arg: Any = {"q": "hi"}
    else:
        runnable, arg = p.llm.with_retry(stop_after_attempt=4), "hi"
    with pytest.raises(lc.NeboBudgetExhaustedError) as info:
        await runnable.ainvoke(arg) if form.startswith("a") else runnable.invoke(arg)
    assert type(info.value) is lc.NeboBudgetExhaustedError
    assert server.count == 1
    nothing_recorded(p)


async def test_401_is_sent_once_through_with_retry(connect: Connect, servers: Any, raw: Any) -> None:
    server = servers().repeat(raw.respond_json(401, nebo_error("invalid token", "invalid_api_key")), 4)
    p = connect(LcSync, server)
    assert isinstance(p, LcSync)
    with pytest.raises(lc.NeboModelAuthenticationError):
        p.llm.with_retry(stop_after_attempt=4).invoke("hi")
    assert server.count == 1
    nothing_recorded(p)


# --- 2. transient errors: retried up to max_retries, then the typed error ----------------------

TRANSIENT = {
    "429-retry-after": (
        429,
        nebo_error("Rate limit exceeded for user", "rate_limit_exceeded", "rate_limit_error"),
        {"Retry-After": "0.01"},
        "rate",
    ),
    # Retry-After keeps the adapters' retries short (they take no retry policy; see connect()).
    "503": (
        503,
        nebo_error("upstream overloaded", type_="overloaded_error"),
        {"Retry-After": "0"},
        "upstream",
    ),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
@pytest.mark.parametrize(("cls", "op"), ALL_OPS)
async def test_transient_error_is_retried_then_typed(
    cls: type[Path], op: str, fault: str, connect: Connect, servers: Any, raw: Any
) -> None:
    status, body, headers, condition = TRANSIENT[fault]
    server = servers().repeat(raw.respond_json(status, body, {**budget_headers(), **headers}), RETRIES + 2)
    p = connect(cls, server)
    expect(p, await fails(p, op), condition)
    assert server.count == p.max_retries + 1 == RETRIES + 1
    nothing_recorded(p)


# --- 3. a 401 is final -------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "op"), ALL_OPS)
async def test_401_is_sent_once(cls: type[Path], op: str, connect: Connect, servers: Any, raw: Any) -> None:
    server = servers().repeat(raw.respond_json(401, nebo_error("invalid token", "invalid_api_key")), 2)
    p = connect(cls, server)
    expect(p, await fails(p, op), "auth")
    assert server.count == 1
    nothing_recorded(p)


# --- 4. a redirect is refused: credentials never cross origins ---------------------------------


@pytest.mark.parametrize(("cls", "op"), ALL_OPS)
async def test_redirect_is_refused_and_credentials_stay_home(
    cls: type[Path], op: str, connect: Connect, servers: Any, raw: Any
) -> None:
    elsewhere = servers("elsewhere")
    elsewhere.repeat(ok(raw, op), 2)
    server = servers()
    path = "/v1/embeddings" if op == "embed" else "/v1/chat/completions"
    redirect = raw.respond(307, b"", {"Location": elsewhere.origin + path}, content_type=None)
    server.repeat(redirect, 2)
    p = connect(cls, server)
    err = await fails(p, op)
    expect(p, err, "config")
    assert "redirect" in str(err).lower()
    assert elsewhere.origin.split("//")[1] in str(err)  # it names where it was sent
    assert server.count == 1
    assert elsewhere.count == 0
    nothing_recorded(p)


# --- 5. secrets a gateway echoes never reach the caller's error --------------------------------


def echo_secrets(raw: ModuleType, status: int) -> Callable[[Any], list[Any]]:
    """An error whose message and body quote the request's credentials, in every form."""

    def reply(seen: Any) -> list[Any]:
        bearer = seen.headers.get("authorization", "")
        bare = bearer.split(" ", 1)[-1]
        provider = seen.headers.get("x-provider-api-key", "")
        message = (
            f"bad header Authorization: {bearer}; token={bare}; padded=' {bare}\t'; "
            f"key {provider}; bearer-again=Bearer  {bare} "
        )
        body = nebo_error(message, "invalid_request", "invalid_request_error")
        body["error"]["param"] = bearer
        body["echo"] = {"authorization": bearer, "x-provider-api-key": provider, "list": [bare, f" {bare} "]}
        return list(raw.respond_json(status, body))

    return reply


def leaked(err: BaseException) -> list[str]:
    """Where a secret appears: str, repr, the pickle, or the formatted traceback."""
    places = {
        "str": str(err),
        "repr": repr(err),
        "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__)),
    }
    try:
        places["pickle"] = pickle.dumps(err).decode("latin-1")
    except Exception as exc:  # reported by the assertion below, not hidden
        places["pickle"] = f"<unpicklable: {type(exc).__name__}: {exc}>"
    found = [
        f"{where}:{name}"
        for where, text in places.items()
        for name, secret in (("token", TOKEN), ("provider-key", PROVIDER_KEY))
        if secret in text
    ]
    if places["pickle"].startswith("<unpicklable"):
        found.append(places["pickle"])
    return found


KEY_FORMS = {"bare": TOKEN, "bearer": f"Bearer {TOKEN}", "padded": f"  {TOKEN}\t"}


@pytest.mark.parametrize("typed", list(KEY_FORMS))
@pytest.mark.parametrize(("cls", "op"), ALL_OPS)
async def test_echoed_secrets_never_reach_the_error(
    cls: type[Path], op: str, typed: str, connect: Connect, servers: Any, raw: Any
) -> None:
    server = servers().repeat(echo_secrets(raw, 401), 2)
    p = connect(cls, server, api_key=KEY_FORMS[typed])
    err = await fails(p, op)
    expect(p, err, "auth")
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"  # the echo is real
    assert leaked(err) == []
    assert server.count == 1


@pytest.mark.parametrize(("cls", "op"), STREAM_OPS)
async def test_secrets_echoed_in_an_error_event_never_reach_the_error(
    cls: type[Path], op: str, connect: Connect, servers: Any, raw: Any
) -> None:
    def reply(seen: Any) -> list[Any]:
        bearer = seen.headers.get("authorization", "")
        bare, provider = bearer.split(" ", 1)[-1], seen.headers.get("x-provider-api-key")
        data = {"message": f"denied {bearer} /{bare}/ {provider}"}
        return list(raw.sse([f"event: error\ndata: {json.dumps(data)}\n\n"], budget_headers()))

    server = servers().repeat(reply, 2)
    p = connect(cls, server)
    err = await fails(p, op)
    expect(p, err, "stream")
    assert "denied" in str(err)
    assert leaked(err) == []
    assert server.count == 1


# --- 6. no header value raises: a Date in year 9999 on a good answer ---------------------------


@pytest.mark.parametrize(("cls", "op"), ALL_OPS)
async def test_a_date_in_year_9999_does_not_break_a_good_answer(
    cls: type[Path], op: str, connect: Connect, servers: Any, raw: Any
) -> None:
    headers = budget_headers(
        extra={"Date": "Fri, 31 Dec 9999 23:59:59 GMT", "X-RateLimit-Session-Reset": "3600"}
    )
    server = servers().script(ok(raw, op, headers))
    p = connect(cls, server)
    result = await p.call(op)
    assert result == ([[0.5, 0.25]] if op == "embed" else OK_TEXT[op])
    assert server.count == 1
    assert [(r.cost_source, r.cost_micro) for r in p.records()] == [("server", OK_COST[op])]
    assert p.spent == OK_COST[op]


# --- 7. malformed 200 bodies: a typed upstream error or a best-effort result -------------------

MALFORMED_CHAT: dict[str, bytes] = {
    "invalid-json": b'{"id": "chatcmpl-fault", "choices": [',
    "non-utf8": b'{"choices": "\xff\xfe\xfa\x80"}',
    "json-array": json.dumps([completion()]).encode(),
    "choices-null": json.dumps(completion() | {"choices": [None]}).encode(),
    "tool-calls-garbage": json.dumps(
        completion({"role": "assistant", "content": None, "tool_calls": "garbage"})
    ).encode(),
    "total-tokens-x": json.dumps(completion() | {"usage": usage(cost=37, total="x")}).encode(),
    "content-42": json.dumps(completion({"role": "assistant", "content": 42})).encode(),
}
MALFORMED_EMBED: dict[str, bytes] = {
    "invalid-json": b'{"object": "list", "data": [',
    "non-utf8": b'{"data": "\xff\xfe\xfa\x80"}',
    "json-array": json.dumps([embeddings()]).encode(),
    "data-null": json.dumps(embeddings([None])).encode(),
    "embedding-garbage": json.dumps(
        embeddings([{"object": "embedding", "index": 0, "embedding": "garbage"}])
    ).encode(),
    "total-tokens-x": json.dumps(embeddings(total="x")).encode(),
    "embedding-42": json.dumps(embeddings([{"object": "embedding", "index": 0, "embedding": 42}])).encode(),
}
UNTYPED = (AttributeError, TypeError, KeyError, IndexError, ValueError, UnicodeError)


def _malformed_cases() -> list[Any]:
    out = []
    for param in CALL_OPS:
        cls, op = param.values
        table = MALFORMED_EMBED if op == "embed" else MALFORMED_CHAT
        out += [pytest.param(cls, op, variant, id=f"{param.id}/{variant}") for variant in table]
    return out


@pytest.mark.parametrize(("cls", "op", "variant"), _malformed_cases())
async def test_a_malformed_200_is_a_typed_error_or_a_best_effort_result(
    cls: type[Path], op: str, variant: str, connect: Connect, servers: Any, raw: Any
) -> None:
    body = (MALFORMED_EMBED if op == "embed" else MALFORMED_CHAT)[variant]
    server = servers().repeat(raw.respond(200, body, budget_headers()), RETRIES + 2)
    p = connect(cls, server, backoff=True)
    result, err = await attempt(p, op)
    if err is not None:
        assert type(err) is p.errors["upstream"], (
            f"{p.name}/{op} on {variant}: expected {p.errors['upstream'].__name__} or a result, "
            f"got {type(err).__module__}.{type(err).__name__}: {err}"
        )
        # An upstream error is transient (is_retryable): retried like a 502, as for every bad body.
        assert server.count == p.max_retries + 1
        return
    assert server.count == 1
    if p.raw_body:
        return  # the server's body as sent: whatever value it held is the result
    # A framework's types hold: text is a string (or None); a vector is floats, one per input.
    if op == "embed":
        assert isinstance(result, list)
        assert len(result) == 1
        assert all(isinstance(x, float) for x in result[0])
    else:
        assert result is None or isinstance(result, str)


# --- 8. a stream answered without an event stream is an error, never an empty answer -----------

NOT_A_STREAM = {
    "plain-json": (json.dumps(completion()).encode(), "application/json"),
    "html-portal": (b"<html><body><h1>Sign in to the Wi-Fi</h1></body></html>", "text/html; charset=utf-8"),
}


@pytest.mark.parametrize("variant", list(NOT_A_STREAM))
@pytest.mark.parametrize(("cls", "op"), STREAM_OPS)
async def test_a_stream_answered_with_a_plain_body_is_a_typed_error(
    cls: type[Path], op: str, variant: str, connect: Connect, servers: Any, raw: Any
) -> None:
    body, content_type = NOT_A_STREAM[variant]
    server = servers().repeat(
        raw.respond(200, body, budget_headers(), content_type=content_type), RETRIES + 2
    )
    p = connect(cls, server, backoff=True)
    expect(p, await fails(p, op), "upstream")
    assert server.count == p.max_retries + 1
    # A 2xx may have been billed: each attempt is charged its estimate, never counted as zero.
    assert [r.cost_source for r in p.records()] == ["estimate"] * server.count
    assert p.spent == sum(r.cost_micro or 0 for r in p.records())


# --- 9. an `event: error` with a bare message: one request, the message kept ------------------


@pytest.mark.parametrize(("cls", "op"), STREAM_OPS)
async def test_an_error_event_with_a_bare_message_is_a_stream_error(
    cls: type[Path], op: str, connect: Connect, servers: Any, raw: Any
) -> None:
    events = ['event: error\ndata: {"message": "boom"}\n\n']
    server = servers().repeat(raw.sse(events, budget_headers()), RETRIES + 2)
    p = connect(cls, server)
    err = await fails(p, op)
    expect(p, err, "stream")
    assert "boom" in str(err)
    assert server.count == 1
    nothing_recorded(p)


# --- 10. a stream of only `data: [DONE]`: every path does what NeboClient does -----------------


async def _outcome(p: Path, op: str) -> tuple[str, Any]:
    try:
        return "result", await p.call(op)
    except Exception as err:
        condition = next((c for c, cls in p.errors.items() if type(err) is cls), type(err).__name__)
        return "error", condition


@pytest.mark.parametrize(("cls", "op"), STREAM_OPS)
async def test_a_stream_of_only_done_behaves_as_on_the_native_client(
    cls: type[Path], op: str, connect: Connect, servers: Any, raw: Any
) -> None:
    done_only = raw.sse(["data: [DONE]\n\n"], budget_headers())
    server = servers().repeat(done_only, RETRIES + 2)
    p = connect(cls, server, backoff=True)
    native_server = servers("native").repeat(done_only, RETRIES + 2)
    native = connect(CoreSync, native_server, max_retries=p.max_retries)
    reference = await _outcome(native, "stream")
    assert reference[0] == "error" or reference[1] == ""  # never a made-up answer
    outcome = await _outcome(p, op)
    if cls is SdkSync or cls is SdkAsync:
        # The SDK has one class for every in-stream failure: a truncation and an error event alike.
        reference = (reference[0], "stream" if reference[1] == "truncated" else reference[1])
    assert (outcome, server.count) == (reference, native_server.count)
    assert len(p.records()) == len(native.records())
    assert p.spent == native.spent


# --- 11. a cut connection and a server that never answers: typed, retried ----------------------


def cut(raw: ModuleType, op: str, where: str) -> list[Any]:
    """A reply that cuts the connection ``where``: before any answer, after the headers, mid-body."""
    if where == "before-response":
        return [raw.Cut()]
    if op == "stream":
        head = raw.head(
            200, {**budget_headers(), "Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}
        )
        partial = raw.chunk(b'data: {"id": "chatcmpl-fault", "choi')  # half an event: no chunk yet
    else:
        head = raw.head(
            200, {**budget_headers(), "Content-Type": "application/json", "Content-Length": "400"}
        )
        partial = b'{"id": "chatcmpl-fault", "object": "chat.completion", "choi'
    if where == "after-headers":
        return [raw.Write(head), raw.Pause(0.01), raw.Cut()]
    return [raw.Write(head + partial), raw.Pause(0.01), raw.Cut()]


CUTS = ["before-response", "after-headers", "mid-body"]


@pytest.mark.parametrize("where", CUTS)
@pytest.mark.parametrize(("cls", "op"), ALL_OPS)
async def test_a_cut_connection_is_a_typed_connection_error(
    cls: type[Path], op: str, where: str, connect: Connect, servers: Any, raw: Any
) -> None:
    server = servers().repeat(cut(raw, op, where), RETRIES + 2)
    p = connect(cls, server, backoff=True)
    expect(p, await fails(p, op), "connection")
    assert server.count == p.max_retries + 1


@pytest.mark.parametrize(("cls", "op"), ALL_OPS)
async def test_a_server_that_never_answers_is_a_typed_timeout(
    cls: type[Path], op: str, connect: Connect, servers: Any, raw: Any
) -> None:
    server = servers().repeat([raw.Hang()], RETRIES + 2)
    p = connect(cls, server, backoff=True, timeout=HANG_TIMEOUT)
    expect(p, await fails(p, op), "timeout")
    assert server.count == p.max_retries + 1


@pytest.mark.parametrize(("cls", "op"), STREAM_OPS)
async def test_a_stream_cut_after_its_first_chunk_is_a_truncation(
    cls: type[Path], op: str, connect: Connect, servers: Any, raw: Any
) -> None:
    steps = raw.sse(STREAM_EVENTS[:1], budget_headers(), end=False) + [raw.Pause(0.01), raw.Cut()]
    server = servers().repeat(steps, RETRIES + 2)
    p = connect(cls, server)
    expect(p, await fails(p, op), "truncated")
    assert server.count == 1  # the caller has seen a chunk: never re-sent


# --- 12. MONEY: a call that may have been billed is never counted as zero ----------------------


def _maybe_billed(raw: ModuleType, op: str, fault: str) -> list[Any]:
    return [raw.Hang()] if fault == "timeout" else cut(raw, op, fault)


@pytest.mark.parametrize("fault", ["timeout", *CUTS])
@pytest.mark.parametrize(("cls", "op"), ALL_OPS)
async def test_money_an_attempt_that_may_have_been_billed_is_charged_its_estimate(
    cls: type[Path], op: str, fault: str, connect: Connect, servers: Any, raw: Any
) -> None:
    server = servers().repeat(_maybe_billed(raw, op, fault), RETRIES + 2)
    p = connect(cls, server, backoff=True, timeout=HANG_TIMEOUT if fault == "timeout" else TIMEOUT)
    await fails(p, op)
    assert server.count == p.max_retries + 1
    records = p.records()
    assert [r.cost_source for r in records] == ["estimate"] * server.count, [
        (r.cost_source, r.cost_micro) for r in records
    ]
    assert all(r.cost_micro is not None and r.cost_micro > 0 for r in records)
    assert p.spent == sum(r.cost_micro for r in records)


@pytest.mark.parametrize(("cls", "op"), STREAM_OPS)
async def test_money_a_stream_cut_after_its_first_chunk_is_charged_its_estimate(
    cls: type[Path], op: str, connect: Connect, servers: Any, raw: Any
) -> None:
    steps = raw.sse(STREAM_EVENTS[:1], budget_headers(), end=False) + [raw.Pause(0.01), raw.Cut()]
    server = servers().repeat(steps, 2)
    p = connect(cls, server)
    await fails(p, op)
    records = p.records()
    assert [(r.cost_source, r.complete) for r in records] == [("estimate", False)]
    assert records[0].cost_micro is not None
    assert records[0].cost_micro > 0
    assert p.spent == records[0].cost_micro


def _unusable_body(op: str, variant: str) -> bytes:
    """A 2xx body the client must reject: not JSON, a JSON array, or plain JSON for a stream."""
    if variant == "invalid-json":
        return b'{"id": "chatcmpl-fault", "choices": ['
    if variant == "json-array":
        return json.dumps([embeddings() if op == "embed" else completion()]).encode()
    return json.dumps(completion()).encode()


def _unusable_cases() -> list[Any]:
    out = []
    for param in ALL_OPS:
        cls, op = param.values
        variants = ["plain-json-for-a-stream"] if op == "stream" else ["invalid-json", "json-array"]
        out += [pytest.param(cls, op, v, id=f"{param.id}/{v}") for v in variants]
    return out


@pytest.mark.parametrize(("cls", "op", "variant"), _unusable_cases())
async def test_money_a_2xx_the_client_cannot_use_is_never_counted_as_zero(
    cls: type[Path], op: str, variant: str, connect: Connect, servers: Any, raw: Any
) -> None:
    # Nebo answered 2xx, so it may well have billed the call; the client rejects the body (a
    # typed upstream error, retried). Each attempt is a call the ledger may hold.
    body = _unusable_body(op, variant)
    server = servers().repeat(raw.respond(200, body, budget_headers()), RETRIES + 2)
    p = connect(cls, server, backoff=True)
    expect(p, await fails(p, op), "upstream")
    assert server.count == p.max_retries + 1
    records = p.records()
    assert [r.cost_source for r in records] == ["estimate"] * server.count, [
        (r.cost_source, r.cost_micro) for r in records
    ]
    assert all(r.cost_micro is not None and r.cost_micro > 0 for r in records)
    assert p.spent == sum(r.cost_micro for r in records)


@pytest.mark.parametrize("fault", ["401", "budget-429", "connection-refused"])
@pytest.mark.parametrize(("cls", "op"), ALL_OPS)
async def test_money_a_call_answered_with_a_refusal_or_never_sent_records_nothing(
    cls: type[Path], op: str, fault: str, connect: Connect, servers: Any, raw: Any
) -> None:
    if fault == "connection-refused":
        p = connect(cls, f"http://127.0.0.1:{raw.closed_port()}/v1", backoff=True)
        expect(p, await fails(p, op), "connection")
    else:
        server = servers()
        if fault == "401":
            server.repeat(raw.respond_json(401, nebo_error("invalid token", "invalid_api_key")), 2)
        else:
            server.repeat(budget_429(raw), 2)
        p = connect(cls, server)
        expect(p, await fails(p, op), "auth" if fault == "401" else "budget")
        assert server.count == 1
    nothing_recorded(p)


# --- the matrix is what it says ----------------------------------------------------------------


def test_every_path_and_operation_is_in_the_matrix() -> None:
    assert sorted(f"{cls.name}/{op}" for cls, op in CASES) == sorted(
        [
            f"{n}/{op}"
            for n in ("core-sync", "core-async", "sdk-sync", "sdk-async")
            for op in ("chat", "stream", "embed")
        ]
        + [f"{n}/{op}" for n in ("lc-sync", "lc-async", "li-sync", "li-async") for op in ("chat", "stream")]
        + ["lc-embed/embed", "li-embed/embed"]
    )
    assert all(issubclass(cls, NeboError) for cls in CORE_ERRORS.values())
    assert all(issubclass(cls, NeboError) for cls in LC_ERRORS.values())
