"""Generation: extractive answers, tool calls from schemas, final answers, JSON modes, limits, n."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from nebo_emulator import NeboEmulator
from nebo_emulator._generate import generate
from nebo_emulator._requests import parse_chat

TLS = ssl.create_default_context()
Factory = Callable[..., NeboEmulator]
CONTEXT = (
    "Nebo is a gateway run by NeboLoop. The session window lasts five hours. The weekly window lasts "
    "seven days. Credits are counted in cents."
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city"],
        },
    },
}
EMAIL = {
    "type": "function",
    "function": {
        "name": "send_email",
        "description": "Send an email message.",
        "parameters": {
            "type": "object",
            "properties": {"to": {"type": "string", "format": "email"}, "subject": {"type": "string"}},
            "required": ["to", "subject"],
        },
    },
}


def complete(emu: NeboEmulator, **body: Any) -> dict[str, Any]:
    body.setdefault("model", "gpt-5-mini")
    with httpx.Client(
        base_url=emu.base_url, headers={"Authorization": f"Bearer {emu.token}"}, verify=TLS
    ) as c:
        response = c.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def message(body: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return dict(body["choices"][index]["message"])


def test_extractive_answer_from_a_system_context(nebo_emulator: NeboEmulator) -> None:
    messages = [{"role": "system", "content": CONTEXT}, *user("How long does the weekly window last?")]
    body = complete(nebo_emulator, messages=messages)
    assert message(body)["content"] == "The weekly window lasts seven days."
    assert body["choices"][0]["finish_reason"] == "stop"


def test_extractive_answer_from_context_inside_the_user_message(nebo_emulator: NeboEmulator) -> None:
    body = complete(nebo_emulator, messages=user(f"Context: {CONTEXT}\n\nQuestion: Who runs Nebo?"))
    assert "NeboLoop" in message(body)["content"]


def test_content_parts_are_read(nebo_emulator: NeboEmulator) -> None:
    parts = [
        {"type": "text", "text": CONTEXT},
        {"type": "text", "text": "How are credits counted?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    body = complete(nebo_emulator, messages=[{"role": "user", "content": parts}])
    assert "cents" in message(body)["content"]


def test_same_request_same_response(nebo_emulator: NeboEmulator) -> None:
    request = {"messages": user("What is the weather in Oslo?"), "tools": [WEATHER]}
    first, second = complete(nebo_emulator, **request), complete(nebo_emulator, **request)
    assert first["id"] != second["id"]
    assert first["choices"] == second["choices"]
    assert first["usage"] == second["usage"]
    assert first["model"] == second["model"]


def test_a_tool_call_built_from_the_schema_and_the_prompt(nebo_emulator: NeboEmulator) -> None:
    body = complete(
        nebo_emulator,
        messages=user("What's the weather in Paris for 3 days, in fahrenheit?"),
        tools=[WEATHER, EMAIL],
    )
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "unit": "fahrenheit", "days": 3}


def test_formats_and_quoted_values_fill_string_arguments(nebo_emulator: NeboEmulator) -> None:
    body = complete(
        nebo_emulator,
        messages=user('Send an email to ana@example.org with subject "Lunch?"'),
        tools=[WEATHER, EMAIL],
    )
    (call,) = message(body)["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"to": "ana@example.org", "subject": "Lunch?"}


def test_no_tool_call_when_the_prompt_does_not_ask_for_one(nebo_emulator: NeboEmulator) -> None:
    body = complete(nebo_emulator, messages=user("Tell me a story about a dragon."), tools=[WEATHER])
    assert "tool_calls" not in message(body)
    assert body["choices"][0]["finish_reason"] == "stop"


def test_tool_choice_required_none_and_named(nebo_emulator: NeboEmulator) -> None:
    prompt = user("Tell me a story about a dragon.")
    required = complete(nebo_emulator, messages=prompt, tools=[WEATHER, EMAIL], tool_choice="required")
    assert len(message(required)["tool_calls"]) == 1
    named = complete(
        nebo_emulator,
        messages=prompt,
        tools=[WEATHER, EMAIL],
        tool_choice={"type": "function", "function": {"name": "send_email"}},
    )
    assert [c["function"]["name"] for c in message(named)["tool_calls"]] == ["send_email"]
    none = complete(
        nebo_emulator, messages=user("What is the weather in Rome?"), tools=[WEATHER], tool_choice="none"
    )
    assert "tool_calls" not in message(none)


def test_parallel_tool_calls(nebo_emulator: NeboEmulator) -> None:
    prompt = user("What is the weather in Paris and London? Then email bob@example.com the results.")
    body = complete(nebo_emulator, messages=prompt, tools=[WEATHER, EMAIL])
    calls = message(body)["tool_calls"]
    assert {c["function"]["name"] for c in calls} == {"get_weather", "send_email"}
    assert len({c["id"] for c in calls}) == len(calls)
    cities = complete(
        nebo_emulator, messages=user("Compare the weather in Paris and London."), tools=[WEATHER]
    )
    args = [json.loads(c["function"]["arguments"])["city"] for c in message(cities)["tool_calls"]]
    assert args == ["Paris", "London"]
    single = complete(nebo_emulator, messages=prompt, tools=[WEATHER, EMAIL], parallel_tool_calls=False)
    assert len(message(single)["tool_calls"]) == 1


def test_a_tool_round_trip_ends_in_an_answer_using_the_results(nebo_emulator: NeboEmulator) -> None:
    first = complete(nebo_emulator, messages=user("What is the weather in Paris?"), tools=[WEATHER])
    call = message(first)["tool_calls"][0]
    history = [
        *user("What is the weather in Paris?"),
        {"role": "assistant", "content": " ", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temperature": 21, "sky": "sunny"}'},
    ]
    final = complete(nebo_emulator, messages=history, tools=[WEATHER])
    content = message(final)["content"]
    for needle in ("get_weather", "21", "sunny"):
        assert needle in content
    assert final["choices"][0]["finish_reason"] == "stop"


def test_null_content_beside_tool_calls_is_rejected_with_quirks_only(nebo_emulator_factory: Factory) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    history = [
        *user("Weather?"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    quirky, strict = nebo_emulator_factory(), nebo_emulator_factory(strict_openai=True)
    with httpx.Client(
        base_url=quirky.base_url, headers={"Authorization": f"Bearer {quirky.token}"}, verify=TLS
    ) as c:
        response = c.post(
            "/chat/completions", json={"model": "auto", "messages": history, "tools": [WEATHER]}
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[1].content"
    assert complete(strict, messages=history, tools=[WEATHER])["choices"][0]["finish_reason"] == "stop"


def test_orphan_tool_messages_are_400(nebo_emulator: NeboEmulator) -> None:
    history = [*user("Hi"), {"role": "tool", "tool_call_id": "call_x", "content": "?"}]
    with httpx.Client(
        base_url=nebo_emulator.base_url,
        verify=TLS,
        headers={"Authorization": f"Bearer {nebo_emulator.token}"},
    ) as c:
        response = c.post("/chat/completions", json={"model": "auto", "messages": history})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[1].tool_call_id"


def test_json_schema_output_validates(nebo_emulator: NeboEmulator) -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "age", "tags", "role", "address"],
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "role": {"enum": ["admin", "user"]},
            "address": {"$ref": "#/$defs/Address"},
            "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "$defs": {
            "Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        },
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "Person", "schema": schema, "strict": True}}
    body = complete(
        nebo_emulator,
        messages=user("Extract: Maria Lopez is 34, an admin, lives in Madrid."),
        response_format=fmt,
    )
    value = json.loads(message(body)["content"])
    assert set(value) >= {"name", "age", "tags", "role", "address"}
    assert value["name"] == "Maria Lopez"
    assert value["age"] == 34
    assert value["role"] == "admin"
    assert isinstance(value["tags"], list)
    assert len(value["tags"]) >= 2
    assert isinstance(value["address"]["city"], str)


def test_json_object_mode_is_valid_json_with_the_asked_keys(nebo_emulator: NeboEmulator) -> None:
    body = complete(
        nebo_emulator,
        messages=user("Tell me a joke. Return JSON with keys setup and punchline."),
        response_format={"type": "json_object"},
    )
    assert set(json.loads(message(body)["content"])) == {"setup", "punchline"}
    plain = complete(nebo_emulator, messages=user("Say hi as JSON."), response_format={"type": "json_object"})
    assert isinstance(json.loads(message(plain)["content"]), dict)


def test_stop_sequences_cut_the_answer(nebo_emulator: NeboEmulator) -> None:
    messages = [{"role": "system", "content": CONTEXT}, *user("How long does the weekly window last?")]
    body = complete(nebo_emulator, messages=messages, stop=["seven"])
    assert message(body)["content"] == "The weekly window lasts "
    assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_token_limits_end_with_finish_reason_length(nebo_emulator: NeboEmulator, field: str) -> None:
    body = complete(nebo_emulator, messages=user("Tell me a story about a dragon."), **{field: 3})
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] <= 3
    assert len(message(body)["content"]) <= 12


def test_n_choices(nebo_emulator: NeboEmulator) -> None:
    body = complete(nebo_emulator, messages=user("Hello"), n=3)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    single = complete(nebo_emulator, messages=user("Hello"))
    assert body["usage"]["completion_tokens"] == 3 * single["usage"]["completion_tokens"]


def test_the_generator_is_pure() -> None:
    request = parse_chat(
        {"model": "auto", "messages": user("What is the weather in Lima?"), "tools": [WEATHER]}, quirks=True
    )
    assert generate(request) == generate(request)
    assert generate(request).choices[0].tool_calls[0].name == "get_weather"
