"""Key scenarios of ``nebo_core.openai_client()`` on whichever ``openai`` major is installed.

CI runs this module in a second venv with ``openai>=2,<3`` (built on ``httpx``); the main venv
runs it with openai 3.x (on ``httpx2``). Self-contained on purpose: it needs only the SDK,
pytest and pytest-asyncio. The full suite is ``tests/nebo_core/test_openai_compat.py``.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

openai = pytest.importorskip("openai")

from nebo_core import BudgetTracker, RetryPolicy, async_openai_client, openai_client  # noqa: E402
from nebo_core._sdk_transport import http_module  # noqa: E402

hx = http_module(openai)
TOKEN = "nebo-sdk2-token-SECRET-0a1b"
MODES = pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])


class Fake:
    def __init__(self, *items: Any) -> None:
        self.items, self.requests, self.sleeps = list(items), [], []

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class NeverEnds(hx.SyncByteStream, hx.AsyncByteStream):  # type: ignore[misc,name-defined]
    def __init__(self, *parts: bytes) -> None:
        self.parts = parts

    def __iter__(self) -> Any:
        yield from self.parts
        raise AssertionError("the stream was read past the finish chunk")

    async def __aiter__(self) -> Any:
        for part in self.parts:
            yield part
        raise AssertionError("the stream was read past the finish chunk")


def event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "nebo/fast",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return event(body)


def sse(*parts: bytes) -> Any:
    return hx.Response(200, headers={"content-type": "text/event-stream"}, stream=NeverEnds(*parts))


def make(fake: Fake, is_async: bool, tracker: BudgetTracker) -> Any:
    factory = async_openai_client if is_async else openai_client
    return factory(
        api_key=TOKEN,
        base_url="https://janus.test/v1",
        transport=hx.MockTransport(fake),
        tracker=tracker,
        retry=RetryPolicy(max_retries=2, jitter=lambda: 0.0),
        sleep=fake.asleep if is_async else fake.sleep,
    )


async def create(client: Any, **kw: Any) -> Any:
    result = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}], **kw)
    return await result if inspect.isawaitable(result) else result


async def chunks_of(result: Any) -> list[Any]:
    if hasattr(result, "__aiter__"):
        return [c async for c in result]
    return list(result)


def test_transport_matches_the_sdks_http_library() -> None:
    expected = "httpx" if int(openai.__version__.split(".")[0]) < 3 else "httpx2"
    assert hx.__name__ == expected
    transport = openai_client(api_key=TOKEN)._client._transport
    assert isinstance(transport, hx.BaseTransport)


@MODES
async def test_nebo_tool_stream_is_clean_and_ends_without_done(is_async: bool) -> None:
    def read(call_id: str, path: str) -> dict[str, Any]:
        fn = {"name": "read", "arguments": json.dumps({"path": path})}
        return {"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": fn}]}

    cumulative = {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10, "cost_micro": 99}
    fake, tracker = (
        Fake(
            sse(
                chunk(read("call_a", "a.txt"), usage=cumulative),
                chunk(read("call_a", "a.txt"), usage=cumulative),
                chunk(read("call_b", "b.txt"), usage=cumulative),
                chunk({}, "tool_calls", usage=cumulative),
            )
        ),
        BudgetTracker(),
    )
    calls: dict[int, dict[str, str]] = {}
    for c in await chunks_of(await create(make(fake, is_async, tracker), stream=True)):
        for tc in c.choices[0].delta.tool_calls or [] if c.choices else []:
            slot = calls.setdefault(tc.index, {"name": "", "arguments": ""})
            slot["name"] += tc.function.name or ""
            slot["arguments"] += tc.function.arguments or ""
    assert [v["name"] for v in calls.values()] == ["read", "read"]
    assert [json.loads(v["arguments"])["path"] for v in calls.values()] == ["a.txt", "b.txt"]
    assert tracker.totals().total.cost_micro == 99


@MODES
async def test_budget_429_is_one_request_and_transient_429_is_retried(is_async: bool) -> None:
    budget = {"error": {"message": "limit", "type": "rate_limit_error", "code": "USAGE_LIMIT_EXCEEDED"}}
    fake = Fake(hx.Response(429, json=budget))
    with pytest.raises(openai.RateLimitError):
        await create(make(fake, is_async, BudgetTracker()))
    assert len(fake.requests) == 1
    assert fake.sleeps == []
    done = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "nebo/fast",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    }
    transient = {"error": {"message": "slow down", "type": "rate_limit_error"}}
    fake = Fake(hx.Response(429, json=transient, headers={"Retry-After": "1"}), hx.Response(200, json=done))
    result = await create(make(fake, is_async, BudgetTracker()))
    assert result.choices[0].message.content == "hi"
    assert len(fake.requests) == 2
    assert fake.sleeps == [1.0]


@MODES
async def test_in_stream_error_surfaces_as_sdk_api_error(is_async: bool) -> None:
    error = {"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}
    fake = Fake(sse(chunk({"content": "par"}), event(error)))
    result = await create(make(fake, is_async, BudgetTracker()), stream=True)
    with pytest.raises(openai.APIError, match="slow down") as info:
        await chunks_of(result)
    assert not isinstance(info.value, openai.APIStatusError)
    assert len(fake.requests) == 1
