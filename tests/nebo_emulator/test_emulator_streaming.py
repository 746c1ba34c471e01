"""SSE streams: Nebo's quirks by default (nebo-api.md section 11), plain OpenAI with strict_openai."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest

from nebo_emulator import NeboEmulator

TLS = ssl.create_default_context()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TWO_CITIES = [{"role": "user", "content": "What is the weather in Paris and London?"}]
STORY = [
    {"role": "system", "content": "Dragons guard gold. Dragons breathe fire over the mountains at dawn."},
    {"role": "user", "content": "What do dragons breathe over the mountains?"},
]


def stream(emu: NeboEmulator, **body: Any) -> tuple[httpx.Headers, list[str]]:
    body = {"model": "gpt-5-mini", "stream": True, **body}
    with httpx.Client(
        base_url=emu.base_url, headers={"Authorization": f"Bearer {emu.token}"}, verify=TLS
    ) as c:
        with c.stream("POST", "/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    return response.headers, [line[len("data: ") :] for line in lines]


def chunks(data: list[str]) -> list[dict[str, Any]]:
    return [json.loads(d) for d in data if d != "[DONE]"]


def plain(emu: NeboEmulator, **body: Any) -> dict[str, Any]:
    with httpx.Client(
        base_url=emu.base_url, headers={"Authorization": f"Bearer {emu.token}"}, verify=TLS
    ) as c:
        return dict(c.post("/chat/completions", json={"model": "gpt-5-mini", **body}).json())


def text_of(parsed: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed if c["choices"])


# Quirks (default) ----------------------------------------------------------------------------------


def test_quirky_tool_calls_whole_repeated_at_index_zero(nebo_emulator: NeboEmulator) -> None:
    _, data = stream(nebo_emulator, messages=TWO_CITIES, tools=[WEATHER])
    parsed = chunks(data)
    calls = [tc for c in parsed for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert len(calls) == 4  # two calls, each sent twice
    assert all(tc["index"] == 0 for tc in calls)
    assert all(tc["function"]["name"] == "get_weather" for tc in calls)
    assert all(json.loads(tc["function"]["arguments"])["city"] in {"Paris", "London"} for tc in calls)
    ids = [tc["id"] for tc in calls]
    assert ids[0] == ids[1] != ids[2] == ids[3]
    assert parsed[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_quirky_stream_repeats_a_content_free_chunk(nebo_emulator: NeboEmulator) -> None:
    _, data = stream(nebo_emulator, messages=STORY)
    assert data[0] == data[1]
    assert (
        "content" not in json.loads(data[0])["choices"][0]["delta"]
        or json.loads(data[0])["choices"][0]["delta"]["content"] == ""
    )


def test_quirky_usage_is_cumulative_on_every_chunk_and_ends_on_the_charge(
    nebo_emulator: NeboEmulator,
) -> None:
    _, data = stream(nebo_emulator, messages=STORY)
    parsed = chunks(data)
    usages = [c["usage"] for c in parsed]
    assert all(u is not None and "cost_micro" in u for u in usages)
    completion = [u["completion_tokens"] for u in usages]
    costs = [u["cost_micro"] for u in usages]
    assert completion == sorted(completion)
    assert costs == sorted(costs)
    assert len({u["prompt_tokens"] for u in usages}) == 1
    entry = nebo_emulator.ledger[0]
    assert (usages[-1]["cost_micro"], usages[-1]["completion_tokens"]) == (
        entry.cost_micro,
        entry.completion_tokens,
    )
    assert entry.streamed


def test_quirky_stream_ends_after_finish_reason_without_done(nebo_emulator: NeboEmulator) -> None:
    _, data = stream(nebo_emulator, messages=STORY, stream_options={"include_usage": True})
    assert "[DONE]" not in data
    last = json.loads(data[-1])
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["cost_micro"] > 0
    assert "provider_metadata" in last


def test_streamed_text_equals_the_plain_answer(nebo_emulator: NeboEmulator) -> None:
    _, data = stream(nebo_emulator, messages=STORY)
    assert text_of(chunks(data)) == plain(nebo_emulator, messages=STORY)["choices"][0]["message"]["content"]
    assert "fire" in text_of(chunks(data))


# Strict OpenAI mode --------------------------------------------------------------------------------


@pytest.mark.nebo_emulator(strict_openai=True)
def test_strict_tool_calls_stream_as_openai_does(nebo_emulator: NeboEmulator) -> None:
    _, data = stream(nebo_emulator, messages=TWO_CITIES, tools=[WEATHER])
    assert data[-1] == "[DONE]"
    parsed = chunks(data)
    calls = [tc for c in parsed for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    by_index: dict[int, dict[str, str]] = {}
    for tc in calls:
        slot = by_index.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
        slot["id"] += tc.get("id") or ""
        slot["name"] += tc.get("function", {}).get("name") or ""
        slot["arguments"] += tc.get("function", {}).get("arguments") or ""
    assert sorted(by_index) == [0, 1]
    assert [s["name"] for s in by_index.values()] == ["get_weather", "get_weather"]  # name sent once
    assert [json.loads(s["arguments"]) for s in by_index.values()] == [{"city": "Paris"}, {"city": "London"}]
    assert sum(1 for tc in calls if tc.get("function", {}).get("arguments")) > 2  # arguments in fragments
    assert all("usage" not in c for c in parsed)


@pytest.mark.nebo_emulator(strict_openai=True)
def test_strict_usage_only_in_a_final_chunk_when_asked(nebo_emulator: NeboEmulator) -> None:
    _, data = stream(nebo_emulator, messages=STORY, stream_options={"include_usage": True})
    parsed = chunks(data)
    assert data[-1] == "[DONE]"
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["cost_micro"] == nebo_emulator.ledger[0].cost_micro
    assert all(c["usage"] is None for c in parsed[:-1])
    assert data[0] != data[1]  # nothing repeated


@pytest.mark.nebo_emulator(strict_openai=True)
def test_strict_stream_text_equals_the_plain_answer(nebo_emulator: NeboEmulator) -> None:
    _, data = stream(nebo_emulator, messages=STORY)
    assert text_of(chunks(data)) == plain(nebo_emulator, messages=STORY)["choices"][0]["message"]["content"]
    assert nebo_emulator.ledger[0].cost_micro == nebo_emulator.ledger[1].cost_micro


def test_n_choices_stream_each_index(nebo_emulator: NeboEmulator) -> None:
    _, data = stream(nebo_emulator, messages=STORY, n=2)
    finished = [c["choices"][0]["index"] for c in chunks(data) if c["choices"][0]["finish_reason"]]
    assert finished == [0, 1]


def test_stream_finish_reason_length(nebo_emulator: NeboEmulator) -> None:
    _, data = stream(nebo_emulator, messages=STORY, max_completion_tokens=2)
    assert chunks(data)[-1]["choices"][0]["finish_reason"] == "length"
