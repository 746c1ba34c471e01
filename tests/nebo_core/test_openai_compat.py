"""The Nebo-safe OpenAI SDK client with the REAL ``openai`` SDK (2.x on httpx, 3.x on httpx2).

Nebo is faked at the SDK's own transport layer (``MockTransport`` of whichever HTTP library
the installed SDK uses) with hand-written Nebo-style SSE bodies whose connections never close:
reading past the finish raises. Each scenario runs through the sync and the async client.
The last tests run the same client end to end against the emulator.
"""

from __future__ import annotations

import inspect
import json
import pickle
import subprocess
import sys
from typing import Any

import pytest

openai = pytest.importorskip("openai")

from nebo_core import (  # noqa: E402
    BudgetTracker,
    NeboConfigurationError,
    RetryPolicy,
    async_openai_client,
    openai_client,
)
from nebo_core.openai_compat import SDK_KEY_PLACEHOLDER, http_module  # noqa: E402
from nebo_core.policy import BudgetPolicy  # noqa: E402
from nebo_core.transport import transport_classes  # noqa: E402

hx = http_module(openai)
TOKEN = "nebo-sdk-test-token-SECRET-51e2"
BASE_URL = "https://janus.test/v1"
MODES = pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])


# --- fakes ---------------------------------------------------------------------------------


class Fake:
    """Canned replies in order (responses or exceptions), plus what the SDK sent."""

    def __init__(self, *items: Any) -> None:
        self.items = list(items)
        self.requests: list[Any] = []
        self.bodies: list[Any] = []
        self.sleeps: list[float] = []

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        content = request.read()
        self.bodies.append(json.loads(content) if content else None)
        if not self.items:
            raise AssertionError(f"unexpected request #{len(self.requests)}: {request.url}")
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class NeverEnds(hx.SyncByteStream, hx.AsyncByteStream):  # type: ignore[misc,name-defined]
    """A body that yields its parts, then fails if read further (Nebo keeping the connection open)."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = parts

    def __iter__(self) -> Any:
        yield from self.parts
        raise AssertionError("the stream was read past the finish chunk")

    async def __aiter__(self) -> Any:
        for part in self.parts:
            yield part
        raise AssertionError("the stream was read past the finish chunk")


def event(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def chunk(
    content: str | None = None,
    *,
    tool_calls: Any = None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    choices: bool = True,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    out: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "nebo/fast",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def usage(prompt: int = 10, completion: int = 5, cost: int | None = 37) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cost is not None:
        out["cost_micro"] = cost
    return out


def read_call(call_id: str, path: str) -> dict[str, Any]:
    """Nebo's tool-call delta: index 0 always, the name and the whole arguments every time."""
    args = json.dumps({"path": path})
    return {"index": 0, "id": call_id, "type": "function", "function": {"name": "read", "arguments": args}}


def budget(remaining: int = 9_000_000, limit: int = 10_000_000, **extra: str) -> dict[str, str]:
    return {
        "X-RateLimit-Session-Remaining-Credits": str(remaining),
        "X-RateLimit-Session-Limit-Credits": str(limit),
        "X-RateLimit-Session-Reset": "2099-01-01T00:00:00Z",
        **extra,
    }


def sse_response(*parts: bytes, headers: dict[str, str] | None = None, never_ends: bool = True) -> Any:
    h = {"content-type": "text/event-stream", **budget(), **(headers or {})}
    if never_ends:
        return hx.Response(200, headers=h, stream=NeverEnds(*parts))
    return hx.Response(200, headers=h, content=b"".join(parts))


def completion_body(content: str = "hello", cost: int = 37) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "nebo/fast",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": usage(cost=cost),
    }


def ok(body: Any = None, **headers: str) -> Any:
    return hx.Response(200, json=completion_body() if body is None else body, headers={**budget(), **headers})


def error(status: int, code: str | None = None, message: str = "nope", **headers: str) -> Any:
    err: dict[str, Any] = {"message": message, "type": "error"}
    if code is not None:
        err["code"] = code
    return hx.Response(status, json={"error": err}, headers=headers)


def make(
    fake: Fake, is_async: bool, tracker: BudgetTracker | None = None, max_retries: int = 2, **kw: Any
) -> Any:
    factory = async_openai_client if is_async else openai_client
    return factory(
        api_key=kw.pop("api_key", TOKEN),
        base_url=BASE_URL,
        transport=hx.MockTransport(fake),
        tracker=tracker if tracker is not None else BudgetTracker(),
        retry=RetryPolicy(max_retries=max_retries, jitter=lambda: 0.0),
        sleep=fake.asleep if is_async else fake.sleep,
        policy=kw.pop("policy", None) or BudgetPolicy(),
        **kw,
    )


async def call(method: Any, **kw: Any) -> Any:
    result = method(**kw)
    return await result if inspect.isawaitable(result) else result


async def chat(client: Any, **kw: Any) -> Any:
    kw.setdefault("model", "auto")
    kw.setdefault("messages", [{"role": "user", "content": "read a.txt and b.txt"}])
    return await call(client.chat.completions.create, **kw)


async def drain(result: Any, into: list[Any]) -> list[Any]:
    """Read a sync or async SDK stream into ``into`` (kept if the stream raises)."""
    if hasattr(result, "__aiter__"):
        async for c in result:
            into.append(c)
    else:
        for c in result:
            into.append(c)
    return into


async def stream(client: Any, **kw: Any) -> list[Any]:
    return await drain(await chat(client, stream=True, **kw), [])


def assemble(chunks: list[Any]) -> tuple[str, list[dict[str, str]], list[str]]:
    """What a by-the-book OpenAI consumer builds: concatenate by index (naive on raw Nebo)."""
    text, calls, finishes = [], {}, []
    for c in chunks:
        for choice in c.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = tc.id or slot["id"]
                slot["name"] += (tc.function.name or "") if tc.function else ""
                slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    return "".join(text), [calls[i] for i in sorted(calls)], finishes


def tool_stream() -> Any:
    a, b = read_call("call_a", "a.txt"), read_call("call_b", "b.txt")
    return sse_response(
        event(chunk(tool_calls=[a], usage=usage(10, 2, cost=None))),
        event(chunk(tool_calls=[a], usage=usage(10, 4, cost=None))),  # whole chunk resent
        event(chunk(tool_calls=[b], usage=usage(10, 6, cost=None))),
        event(chunk(tool_calls=[b], usage=usage(10, 8, cost=None))),
        event(chunk(finish="tool_calls", usage=usage(10, 9, cost=321))),
    )


# --- streams ---------------------------------------------------------------------------------


@MODES
async def test_quirky_tool_stream_comes_out_clean(is_async: bool) -> None:
    fake, tracker = Fake(tool_stream()), BudgetTracker()
    chunks = await stream(
        make(fake, is_async, tracker),
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "read",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
                },
            }
        ],
    )
    text, calls, finishes = assemble(chunks)
    assert [c["name"] for c in calls] == ["read", "read"]
    assert [json.loads(c["arguments"]) for c in calls] == [{"path": "a.txt"}, {"path": "b.txt"}]
    assert [c["id"] for c in calls] == ["call_a", "call_b"]
    assert (text, finishes) == ("", ["tool_calls"])
    assert all(c.usage is None for c in chunks)  # the caller did not ask for the usage chunk
    totals = tracker.totals()
    assert (totals.total.calls, totals.total.cost_micro, totals.total.completion_tokens) == (1, 321, 9)
    record = tracker.history()[0]
    assert record.streamed
    assert record.complete
    assert record.model == "nebo/fast"
    assert fake.bodies[0]["stream_options"] == {"include_usage": True}


def test_the_sdks_own_stream_helper_assembles_clean_calls() -> None:
    fake = Fake(tool_stream())
    client = make(fake, False)
    with client.chat.completions.stream(
        model="auto",
        messages=[{"role": "user", "content": "read"}],
    ) as s:
        final = s.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_a", "read", {"path": "a.txt"}),
        ("call_b", "read", {"path": "b.txt"}),
    ]


@MODES
async def test_stream_without_done_ends_at_finish_and_passes_requested_usage(is_async: bool) -> None:
    fake, tracker = (
        Fake(
            sse_response(
                event(chunk("Hello")),
                event(chunk(" world")),
                event(chunk(finish="stop")),
                event(chunk(usage=usage(7, 2, cost=55), choices=False)),
            )
        ),
        BudgetTracker(),
    )
    chunks = await stream(make(fake, is_async, tracker), stream_options={"include_usage": True})
    text, _, finishes = assemble(chunks)
    assert (text, finishes) == ("Hello world", ["stop"])
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == 9
    assert tracker.totals().total.cost_micro == 55
    assert tracker.snapshot is not None
    assert tracker.snapshot.session.remaining_micro == 9_000_000


def test_closing_a_stream_early_records_what_was_seen() -> None:
    fake, tracker = (
        Fake(sse_response(event(chunk("one", usage=usage(4, 1, cost=None))), event(chunk("two")))),
        BudgetTracker(),
    )
    result = make(fake, False, tracker).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "x"}], stream=True
    )
    first = next(iter(result))
    result.close()
    assert first.choices[0].delta.content == "one"
    (record,) = tracker.history()
    assert record.complete is False
    assert record.prompt_tokens == 4


@MODES
async def test_in_stream_error_after_a_chunk_raises_sdk_api_error_and_keeps_partial_usage(
    is_async: bool,
) -> None:
    err = {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
            "retry_after": "5s",
        }
    }
    fake, tracker = (
        Fake(sse_response(event(chunk("par", usage=usage(3, 1, cost=None))), event(err))),
        BudgetTracker(),
    )
    client = make(fake, is_async, tracker)
    result = await chat(client, stream=True)
    seen: list[Any] = []
    with pytest.raises(openai.APIError) as info:
        await drain(result, seen)
    assert [c.choices[0].delta.content for c in seen] == ["par"]
    assert not isinstance(info.value, openai.APIStatusError)
    assert "slow down" in str(info.value)
    assert info.value.body["code"] == "rate_limit_exceeded"
    assert len(fake.requests) == 1
    assert fake.sleeps == []
    record = tracker.history()[0]
    assert record.complete is False
    assert record.prompt_tokens == 3


@MODES
async def test_in_stream_rate_limit_before_first_chunk_is_retried(is_async: bool) -> None:
    err = {"error": {"message": "slow down", "type": "rate_limit_error", "retry_after": "250ms"}}
    fake = Fake(
        sse_response(event(err)),
        sse_response(event(chunk("ok")), event(chunk(finish="stop", usage=usage()))),
    )
    text, _, _ = assemble(await stream(make(fake, is_async)))
    assert text == "ok"
    assert len(fake.requests) == 2
    assert fake.sleeps == [0.25]


@MODES
async def test_in_stream_budget_error_is_not_retried(is_async: bool) -> None:
    err = {"error": {"message": "usage limit", "type": "rate_limit_error", "code": "USAGE_LIMIT_EXCEEDED"}}
    fake = Fake(sse_response(event(err)))
    with pytest.raises(openai.APIError) as info:
        await stream(make(fake, is_async))
    assert info.value.body["code"] == "USAGE_LIMIT_EXCEEDED"
    assert len(fake.requests) == 1
    assert fake.sleeps == []


@MODES
async def test_truncated_stream_raises_instead_of_ending_quietly(is_async: bool) -> None:
    fake, tracker = Fake(sse_response(event(chunk("Hel")), never_ends=False)), BudgetTracker()
    with pytest.raises(openai.APIError, match="before a finish_reason"):
        await stream(make(fake, is_async, tracker, max_retries=0))
    assert tracker.history()[0].complete is False


# --- retries ---------------------------------------------------------------------------------


@MODES
async def test_budget_429_reaches_the_sdk_after_exactly_one_request(is_async: bool) -> None:
    fake, tracker = (
        Fake(error(429, "USAGE_LIMIT_EXCEEDED", "usage limit exceeded", **budget(0))),
        BudgetTracker(),
    )
    client = make(fake, is_async, tracker)
    assert client.max_retries == 0
    with pytest.raises(openai.RateLimitError) as info:
        await chat(client)
    assert info.value.status_code == 429
    assert TOKEN not in str(info.value)
    assert len(fake.requests) == 1
    assert fake.sleeps == []
    assert tracker.snapshot is not None
    assert tracker.snapshot.session.remaining_micro == 0


@MODES
async def test_transient_429_is_retried_once_after_retry_after(is_async: bool) -> None:
    fake = Fake(error(429, "rate_limit_exceeded", "slow down", **{"Retry-After": "1"}), ok())
    result = await chat(make(fake, is_async))
    assert result.choices[0].message.content == "hello"
    assert len(fake.requests) == 2
    assert fake.sleeps == [1.0]


@MODES
async def test_retries_stop_at_the_policy_limit(is_async: bool) -> None:
    fake = Fake(error(502, message="bad gateway"), error(502, message="bad gateway"))
    with pytest.raises(openai.InternalServerError):
        await chat(make(fake, is_async, max_retries=1))
    assert len(fake.requests) == 2
    assert len(fake.sleeps) == 1


@MODES
async def test_connection_errors_are_retried_then_surface_as_sdk_errors(is_async: bool) -> None:
    fake = Fake(hx.ConnectError("refused"), ok())
    assert (await chat(make(fake, is_async))).choices[0].message.content == "hello"
    fake = Fake(hx.ConnectError("refused"))
    with pytest.raises(openai.APIConnectionError):
        await chat(make(fake, is_async, max_retries=0))
    assert len(fake.requests) == 1


@MODES
async def test_auth_error_is_not_retried(is_async: bool) -> None:
    fake = Fake(error(401, "invalid_api_key"))
    with pytest.raises(openai.AuthenticationError):
        await chat(make(fake, is_async))
    assert len(fake.requests) == 1


# --- plain calls, requests, settings ---------------------------------------------------------------


@MODES
async def test_plain_chat_and_embeddings_are_recorded(is_async: bool) -> None:
    emb = {
        "object": "list",
        "model": "neboloop/nebo-embed-small",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
        "usage": {"prompt_tokens": 3, "total_tokens": 3, "cost_micro": 2},
    }
    fake, tracker = Fake(ok(completion_body(cost=40)), ok(emb)), BudgetTracker()
    client = make(fake, is_async, tracker)
    await chat(client, model="nebo/fast")
    vectors = await call(client.embeddings.create, model="neboloop/nebo-embed-small", input=["hi"])
    assert vectors.data[0].embedding == [0.5, 0.25]
    totals = tracker.totals()
    assert totals.by_kind["chat"].cost_micro == 40
    assert totals.by_kind["embedding"].cost_micro == 2
    assert [r.requested_model for r in tracker.history()] == ["nebo/fast", "neboloop/nebo-embed-small"]


@MODES
async def test_requests_carry_nebo_headers_and_fixed_bodies(is_async: bool) -> None:
    fake = Fake(ok())
    client = make(fake, is_async, bot_id="bot-7", lane="main", default_headers={"X-Extra": "1"})
    messages = [
        {"role": "user", "content": "read a.txt"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "read", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "data"},
    ]
    await chat(client, messages=messages)
    request = fake.requests[0]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert (request.headers["x-bot-id"], request.headers["x-lane"], request.headers["x-extra"]) == (
        "bot-7",
        "main",
        "1",
    )
    assert fake.bodies[0]["messages"][1]["content"] == " "
    assert "stream_options" not in fake.bodies[0]


def test_settings_come_from_nebo_env_never_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEBO_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-wrong")
    with pytest.raises(NeboConfigurationError, match="NEBO_API_KEY"):
        openai_client(base_url=BASE_URL)
    monkeypatch.setenv("NEBO_API_KEY", TOKEN)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    client = openai_client()
    # The SDK holds a placeholder (its request objects ride on its errors, pickles included);
    # the transport puts NEBO_API_KEY on the wire (test_the_token_reaches_the_wire_not_the_sdk).
    assert client.api_key == SDK_KEY_PLACEHOLDER
    assert str(client.base_url).startswith("https://janus.neboloop.com/v1")
    with pytest.raises(NeboConfigurationError, match="plain http"):
        openai_client(base_url="http://janus.example.com/v1")


@pytest.mark.parametrize("is_async", [False, True])
async def test_the_token_reaches_the_wire_not_the_sdk(is_async: bool) -> None:
    fake = Fake(error(400, message="bad"))
    client = make(fake, is_async, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        await chat(client)
    assert fake.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(info.value.request.headers)
    assert TOKEN.encode() not in pickle.dumps(info.value)
    await call(client.close)


def test_the_sdk_never_retries_and_its_http_client_is_ours() -> None:
    assert openai_client(api_key=TOKEN, max_retries=5).max_retries == 0
    with pytest.raises(NeboConfigurationError, match="transport="):
        openai_client(api_key=TOKEN, http_client=object())


def test_transport_repr_never_shows_the_token() -> None:
    sync_cls, async_cls = transport_classes(hx)
    transport = sync_cls(hx.MockTransport(Fake()), api_key=TOKEN, tracker=BudgetTracker())
    assert isinstance(transport, hx.BaseTransport)
    assert isinstance(async_cls(api_key=TOKEN), hx.AsyncBaseTransport)
    assert TOKEN not in repr(transport)
    assert "NeboTransport" in repr(transport)


def test_import_is_lazy_and_a_missing_sdk_names_the_extra() -> None:
    code = (
        "import sys, nebo_core, nebo_core.openai_compat\n"
        "assert 'openai' not in sys.modules, 'openai imported eagerly'\n"
        "sys.modules['openai'] = None\n"
        "try:\n"
        "    nebo_core.openai_client(api_key='k')\n"
        "except nebo_core.NeboConfigurationError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'nebo-integrations[openai]'" in out.stdout


# --- end to end against the emulator -------------------------------------------------------------


def _emulator_available() -> bool:
    try:
        from nebo_emulator import NeboEmulator  # noqa: F401
    except ImportError:
        return False
    return True


emulator_only = pytest.mark.skipif(not _emulator_available(), reason="the emulator is not importable")


@emulator_only
@MODES
async def test_emulator_end_to_end(nebo_emulator: Any, is_async: bool) -> None:
    tracker = BudgetTracker()
    factory = async_openai_client if is_async else openai_client
    client = factory(api_key=nebo_emulator.token, base_url=nebo_emulator.base_url, tracker=tracker)
    context = "Context: the capital of Zarnia is Quillport.\nQuestion: what is the capital of Zarnia?"
    plain = await chat(client, messages=[{"role": "user", "content": context}])
    assert "Quillport" in plain.choices[0].message.content
    text, _, finishes = assemble(await stream(client, messages=[{"role": "user", "content": context}]))
    assert "Quillport" in text
    assert finishes == ["stop"]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "read",
                "parameters": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}},
                    "required": ["path"],
                },
            },
        }
    ]
    _, calls, finishes = assemble(
        await stream(
            client, messages=[{"role": "user", "content": "Use read on path notes.txt"}], tools=tools
        )
    )
    assert calls
    assert calls[0]["name"] == "read"
    assert "path" in json.loads(calls[0]["arguments"])
    assert finishes == ["tool_calls"]
    emb = await call(client.embeddings.create, model="neboloop/nebo-embed-small", input=["a cat", "a dog"])
    assert len(emb.data) == 2
    assert len(emb.data[0].embedding) > 0
    models = await call(client.models.list)
    ids = [m.id async for m in models] if is_async else [m.id for m in models]
    assert ids
    totals = tracker.totals()
    assert totals.by_kind["chat"].calls == 3
    assert totals.by_kind["embedding"].calls == 1
    assert totals.total.cost_micro == nebo_emulator.ledger_total_micro()
    assert tracker.snapshot is not None
    assert tracker.snapshot.session.remaining_micro is not None
    if is_async:
        await client.close()
    else:
        client.close()


@emulator_only
def test_emulator_budget_429_is_not_retried(nebo_emulator: Any) -> None:
    client = openai_client(
        api_key=nebo_emulator.token, base_url=nebo_emulator.base_url, tracker=BudgetTracker()
    )
    nebo_emulator.inject("usage_limit")
    before = nebo_emulator.requests
    with client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert nebo_emulator.requests - before == 1


def test_transport_matches_the_installed_sdks_http_library() -> None:
    # `make test-sdk2` runs this module on openai 2.x (httpx); the main venv on 3.x (httpx2).
    expected = "httpx" if int(openai.__version__.split(".")[0]) < 3 else "httpx2"
    assert hx.__name__ == expected
    transport = openai_client(api_key=TOKEN)._client._transport
    assert isinstance(transport, hx.BaseTransport)
