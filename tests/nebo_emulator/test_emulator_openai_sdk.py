"""The official openai SDK against the emulator: every endpoint in strict mode, plain ones with quirks."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Iterator

import openai
import pytest

from nebo_emulator import NeboEmulator

Factory = Callable[..., NeboEmulator]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def strict(nebo_emulator_factory: Factory) -> Iterator[openai.OpenAI]:
    emu = nebo_emulator_factory(strict_openai=True)
    with openai.OpenAI(base_url=emu.base_url, api_key=emu.token, max_retries=0) as client:
        yield client


@pytest.fixture
def quirky(nebo_emulator: NeboEmulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=nebo_emulator.base_url, api_key=nebo_emulator.token, max_retries=0) as client:
        yield client


def test_chat(strict: openai.OpenAI) -> None:
    response = strict.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hello"}])
    assert response.model == "gpt-5-nano"
    assert response.choices[0].message.content
    assert response.usage is not None
    assert response.usage.total_tokens > 0
    assert (response.usage.model_extra or {})["cost_micro"] > 0


def test_chat_stream_with_usage(strict: openai.OpenAI) -> None:
    stream = strict.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_tools_streamed_and_accumulated_by_the_sdk_helper(strict: openai.OpenAI) -> None:
    with strict.chat.completions.stream(
        model="gpt-5-mini",
        messages=[{"role": "user", "content": "What is the weather in Paris and Lima?"}],
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Lima"}]
    assert final.choices[0].finish_reason == "tool_calls"


def test_tool_round_trip(strict: openai.OpenAI) -> None:
    messages: list[dict[str, object]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = strict.chat.completions.create(model="gpt-5-mini", messages=messages, tools=[WEATHER])  # type: ignore[arg-type, list-item]
    call = (first.choices[0].message.tool_calls or [])[0]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and cloudy"},
    ]
    final = strict.chat.completions.create(model="gpt-5-mini", messages=messages, tools=[WEATHER])  # type: ignore[arg-type, list-item]
    assert "18 degrees" in (final.choices[0].message.content or "")


@pytest.mark.parametrize("encoding", ["float", "base64", None])
def test_embeddings(strict: openai.OpenAI, encoding: str | None) -> None:
    kwargs = {"encoding_format": encoding} if encoding else {}
    response = strict.embeddings.create(model="neboloop/nebo-embed-small", input=["a", "b c"], **kwargs)  # type: ignore[arg-type]
    assert response.model == "text-embedding-3-small"
    vectors = [_decode(d.embedding) for d in response.data]
    assert [len(v) for v in vectors] == [1536, 1536]
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-5


def _decode(embedding: list[float] | str) -> list[float]:
    # Asked for explicitly, base64 comes back raw; the SDK decodes only when it chose base64 itself.
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return embedding


def test_models(strict: openai.OpenAI) -> None:
    ids = [m.id for m in strict.models.list()]
    assert {"gpt-5.2", "gpt-5-nano", "nebo-1-pro", "neboloop/nebo-embed-large"} <= set(ids)
    assert strict.models.retrieve("neboloop/nebo-embed-small").owned_by == "openai"


def test_errors_map_to_sdk_exceptions(strict: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        strict.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert not_found.value.code == "model_not_found"
    bad = openai.OpenAI(base_url=str(strict.base_url), api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    bad.close()


def test_budget_429_reaches_the_sdk_as_rate_limit_with_its_code(
    nebo_emulator: NeboEmulator, quirky: openai.OpenAI
) -> None:
    nebo_emulator.set_budget(session_remaining_micro=0)
    with pytest.raises(openai.RateLimitError) as refused:
        quirky.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    assert refused.value.code == "USAGE_LIMIT_EXCEEDED"
    assert nebo_emulator.requests == 1  # max_retries=0: exactly one request


def test_quirky_plain_endpoints_work_with_the_sdk(quirky: openai.OpenAI) -> None:
    raw = quirky.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert raw.headers["x-budget-active-pool"] == "plan"
    completion = raw.parse()
    assert (completion.choices[0].message.tool_calls or [])[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert len(quirky.embeddings.create(model="text-embedding-3-large", input="x").data[0].embedding) == 3072
    assert len(list(quirky.models.list())) >= 10
