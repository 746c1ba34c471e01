"""Regressions the exchange-engine redesign fixed, one group per bug, each failing on the old code.

Nebo is a :class:`Recorder` behind ``MockTransport`` of the HTTP library each path runs on
(``httpx`` for ``NeboClient``/``AsyncNeboClient``, the SDK's own for ``openai_client()``), so
every test can count the requests that were really sent and read what they carried.
Payloads come from the ``nb`` fixture (``conftest.py``); sleeps are recorded, never slept.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest

openai = pytest.importorskip("openai")

from nebo_core import (  # noqa: E402
    AsyncNeboClient,
    BudgetPolicy,
    BudgetTracker,
    NeboBudgetExhausted,
    NeboClient,
    NeboConfigurationError,
    NeboConnectionError,
    NeboError,
    NeboTimeoutError,
    RetryPolicy,
    async_openai_client,
    openai_client,
)
from nebo_core.openai_compat import http_module  # noqa: E402
from nebo_core.stores import InMemoryBudgetStore  # noqa: E402

SDK_HX = http_module(openai)
TOKEN = "nebo-regress-token-SECRET-5b1e"
BASE_URL = "https://janus.test/v1"
BODY: dict[str, Any] = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}
EVIL = "https://evil.example/v1/chat/completions"
PATHS = pytest.mark.parametrize("path", ["native-sync", "native-async", "sdk-sync", "sdk-async"])

Reply = Callable[[ModuleType, Any], Any]


class Recorder:
    """A ``MockTransport`` handler: keeps every request, answers with ``reply(hx, request)``."""

    def __init__(self, hx: ModuleType, reply: Reply) -> None:
        self.hx, self.reply = hx, reply
        self.requests: list[Any] = []
        self.sleeps: list[float] = []

    def __call__(self, request: Any) -> Any:
        request.read()
        self.requests.append(request)
        return self.reply(self.hx, request)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


async def chat_on(path: str, reply: Reply, max_retries: int = 2, **kw: Any) -> tuple[Recorder, Any]:
    """One chat call on ``path`` against ``reply``: the recorder, and the exception (or ``None``)."""
    server = Recorder(SDK_HX if path.startswith("sdk") else httpx, reply)
    common: dict[str, Any] = {
        "api_key": TOKEN,
        "base_url": BASE_URL,
        "tracker": BudgetTracker(),
        "policy": kw.pop("policy", None) or BudgetPolicy(),
        "retry": RetryPolicy(max_retries=max_retries, jitter=lambda: 0.0),
        **kw,
    }
    try:
        if path == "native-sync":
            with httpx.Client(transport=httpx.MockTransport(server)) as http:
                with NeboClient(http_client=http, sleep=server.sleep, **common) as client:
                    client.chat(BODY)
        elif path == "native-async":
            async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as ahttp:
                async with AsyncNeboClient(http_client=ahttp, sleep=server.asleep, **common) as aclient:
                    await aclient.chat(BODY)
        elif path == "sdk-sync":
            transport = server.hx.MockTransport(server)
            with openai_client(transport=transport, sleep=server.sleep, **common) as sdk:
                sdk.chat.completions.create(**BODY)
        else:
            transport = server.hx.MockTransport(server)
            async with async_openai_client(transport=transport, sleep=server.asleep, **common) as asdk:
                await asdk.chat.completions.create(**BODY)
    except Exception as exc:
        return server, exc
    return server, None


def ok(nb: SimpleNamespace) -> Reply:
    return lambda hx, req: hx.Response(200, json=nb.completion(), headers=nb.budget_headers())


# --- 1: the connect timeout is short even though reads may idle for minutes -------------------


@PATHS
async def test_connect_timeout_is_at_most_10s_while_read_timeout_is_the_settings(
    path: str, nb: SimpleNamespace
) -> None:
    server, exc = await chat_on(path, ok(nb), timeout=300.0)
    assert exc is None
    (request,) = server.requests
    timeout = request.extensions["timeout"]
    assert timeout["connect"] <= 10.0
    assert timeout["read"] == 300.0


# --- 2: a redirect never carries the token (or the provider key) to another origin ------------


def redirect(hx: ModuleType, request: Any) -> Any:
    """Nebo answers 307 to evil.example, which would happily answer a followed redirect."""
    if request.url.host == "evil.example":
        return hx.Response(200, json={"id": "x", "object": "chat.completion", "choices": []})
    return hx.Response(307, headers={"Location": EVIL})


@PATHS
async def test_a_redirect_is_not_followed_with_credentials(path: str) -> None:
    server, exc = await chat_on(path, redirect, provider_api_key="sk-byok-SECRET", bot_id="bot-7")
    assert isinstance(exc, NeboError if path.startswith("native") else openai.APIError)
    assert server.requests
    assert {r.url.host for r in server.requests} == {"janus.test"}
    for r in server.requests:  # the headers that must never leave for evil.example were on the wire
        assert (r.headers["X-Provider-API-Key"], r.headers["X-Bot-ID"]) == ("sk-byok-SECRET", "bot-7")


@PATHS
async def test_a_redirect_is_a_single_request_and_a_final_error_naming_the_status(path: str) -> None:
    server, exc = await chat_on(path, redirect, max_retries=2)
    assert len(server.requests) == 1
    assert server.sleeps == []
    if path.startswith("native"):
        assert type(exc) is NeboConfigurationError
        assert not exc.is_retryable
        assert exc.status == 307
        assert "redirect" in exc.message
    else:
        assert isinstance(exc, openai.APIStatusError)


# --- 3: the async paths await the budget store; they never call it synchronously -------------

_STORE_METHODS = (
    "reserve",
    "reserve_lines",
    "commit",
    "release",
    "spent",
    "reserved",
    "uncertain",
    "mean_cost",
    "publish",
    "snapshot",
)


class AsyncOnlyStore(InMemoryBudgetStore):
    """An in-memory store whose sync methods fail: any blocking store call on the async path shows."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited: list[str] = []


def _refuse(name: str) -> Callable[..., Any]:
    def method(self: AsyncOnlyStore, *args: Any) -> Any:
        raise AssertionError(f"sync store call on the async path: {name}")

    return method


def _twin(name: str) -> Callable[..., Any]:
    sync = getattr(InMemoryBudgetStore, name)

    async def method(self: AsyncOnlyStore, *args: Any) -> Any:
        self.awaited.append(name)
        return sync(self, *args)

    return method


for _name in _STORE_METHODS:
    setattr(AsyncOnlyStore, _name, _refuse(_name))
    setattr(AsyncOnlyStore, "a" + _name, _twin(_name))


def chat_or_stream(nb: SimpleNamespace) -> Reply:
    def reply(hx: ModuleType, request: Any) -> Any:
        if b'"stream":true' not in request.content:
            return hx.Response(200, json=nb.completion(cost=7), headers=nb.budget_headers())
        body = nb.sse(nb.chunk("hello", finish="stop", usage=nb.usage(cost=7)))
        return hx.Response(
            200, content=body, headers={**nb.budget_headers(), "content-type": "text/event-stream"}
        )

    return reply


async def test_async_nebo_client_awaits_the_store_for_chat_and_stream(nb: SimpleNamespace) -> None:
    store = AsyncOnlyStore()
    policy = BudgetPolicy(store=store, max_spend_micro=10**9)
    transport = httpx.MockTransport(Recorder(httpx, chat_or_stream(nb)))
    async with httpx.AsyncClient(transport=transport) as http:
        async with AsyncNeboClient(api_key=TOKEN, base_url=BASE_URL, http_client=http, policy=policy) as c:
            assert (await c.chat(BODY)).message["content"] == "hello"
            async with c.stream_chat(BODY) as stream:
                deltas = [k["choices"][0]["delta"].get("content") async for k in stream if k["choices"]]
    assert deltas == ["hello"]
    assert store.awaited.count("reserve_lines") == store.awaited.count("commit") == 2
    assert await policy.aspent_micro() == 14


async def test_async_openai_client_awaits_the_store(nb: SimpleNamespace) -> None:
    store = AsyncOnlyStore()
    policy = BudgetPolicy(store=store, max_spend_micro=10**9)
    transport = SDK_HX.MockTransport(Recorder(SDK_HX, chat_or_stream(nb)))
    async with async_openai_client(
        api_key=TOKEN, base_url=BASE_URL, transport=transport, policy=policy
    ) as sdk:
        assert (await sdk.chat.completions.create(**BODY)).choices[0].message.content == "hello"
        async with await sdk.chat.completions.create(**BODY, stream=True) as stream:
            assert [c.choices[0].delta.content async for c in stream if c.choices] == ["hello"]
    assert store.awaited.count("reserve_lines") == store.awaited.count("commit") == 2
    assert await policy.aspent_micro() == 14


# --- 4: running out of policy steps is a typed refusal, not an AssertionError -----------------


@pytest.mark.parametrize("path", ["native-sync", "native-async"])
async def test_running_out_of_budget_steps_raises_budget_exhausted(path: str, nb: SimpleNamespace) -> None:
    def exhausted(hx: ModuleType, request: Any) -> Any:
        headers = nb.budget_headers(session_remaining=0, reset="1")  # the session resets in 1 s
        return hx.Response(
            429, json={"error": {"message": "out", "code": "USAGE_LIMIT_EXCEEDED"}}, headers=headers
        )

    policy = BudgetPolicy(on_exhausted="wait", max_steps=2, wait_jitter=0)
    server, exc = await chat_on(path, exhausted, policy=policy)
    assert isinstance(exc, NeboBudgetExhausted)
    assert "after 3 budget decisions" in exc.message
    assert exc.window == "session"
    # Two requests and one sleep: step 0 admits the call (request 1, a 429); step 1 waits for the
    # reset; step 2 admits again, the policy having slept past that reset (request 2, a 429);
    # step 3 is past max_steps=2, a refusal. A budget 429 is never retried by the retry layer.
    assert len(server.requests) == 2
    assert len(server.sleeps) == 1
    assert 0 < server.sleeps[0] <= 3.0


# --- 5: a user's httpx client is honoured (headers, params, cookies, hooks), the token is ours -


async def test_user_http_client_settings_reach_the_wire_with_the_settings_token(nb: SimpleNamespace) -> None:
    server = Recorder(httpx, ok(nb))
    hooked: list[str] = []
    user: dict[str, Any] = {
        "transport": httpx.MockTransport(server),
        "headers": {"X-Team": "a", "Authorization": "Bearer user-token"},
        "params": {"tenant": "t1"},
        "cookies": {"c": "1"},
        "auth": ("user", "pass"),
    }

    async def ahook(request: httpx.Request) -> None:
        hooked.append("async")

    with httpx.Client(**user, event_hooks={"request": [lambda r: hooked.append("sync")]}) as http:
        with NeboClient(api_key=TOKEN, base_url=BASE_URL, http_client=http, policy=BudgetPolicy()) as client:
            client.chat(BODY)
    async with httpx.AsyncClient(**user, event_hooks={"request": [ahook]}) as ahttp:
        async with AsyncNeboClient(api_key=TOKEN, base_url=BASE_URL, http_client=ahttp) as aclient:
            await aclient.chat(BODY)
    assert hooked == ["sync", "async"]
    for request in server.requests:
        assert request.headers["X-Team"] == "a"
        assert request.url.params["tenant"] == "t1"
        assert request.headers["Cookie"] == "c=1"
        assert request.headers.get_list("Authorization") == [f"Bearer {TOKEN}"]
    assert len(server.requests) == 2


# --- 8: a read timeout is a typed timeout on every path -----------------------------------------


@PATHS
async def test_read_timeout_is_a_timeout_error(path: str) -> None:
    def slow(hx: ModuleType, request: Any) -> Any:
        raise hx.ReadTimeout("no bytes for 300 s", request=request)

    server, exc = await chat_on(path, slow, max_retries=1)
    if path.startswith("native"):
        assert isinstance(exc, NeboTimeoutError)
        assert isinstance(exc, NeboConnectionError)
        assert exc.is_retryable
    else:
        assert isinstance(exc, openai.APITimeoutError)
    assert len(server.requests) == 2  # a timeout is transient: retried once by the one retry layer
    assert server.sleeps == [0.375]


def test_a_provider_refuses_an_httpx_client_it_would_not_use() -> None:
    from nebo_core import NeboConfigurationError as Refused
    from nebo_core import NeboProvider

    client = NeboClient(api_key=TOKEN, base_url=BASE_URL)
    http = httpx.Client()
    try:
        with pytest.raises(Refused, match="not both"):
            NeboProvider(client=client, http_client=http)
    finally:
        http.close()
        client.close()
