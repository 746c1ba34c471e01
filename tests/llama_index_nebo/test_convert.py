"""Pure type mapping: LlamaIndex messages/tools <-> OpenAI dicts (no network)."""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    ImageBlock,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel

from llama_index_nebo import _convert as conv


def test_roles_and_tool_round_trip() -> None:
    assistant = conv.from_openai_message(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}},
                {"id": "c2", "type": "function", "function": {"name": "mul", "arguments": '{"b": 2}'}},
            ],
        }
    )
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content="be brief"),
        ChatMessage(role=MessageRole.USER, content="hi"),
        assistant,
        ChatMessage(role=MessageRole.TOOL, content="1", additional_kwargs={"tool_call_id": "c1"}),
    ]
    out = conv.to_openai_messages(messages)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "tool"]
    assert out[2]["content"] is None
    assert [c["id"] for c in out[2]["tool_calls"]] == ["c1", "c2"]
    assert out[2]["tool_calls"][1]["function"] == {"name": "mul", "arguments": '{"b": 2}'}
    assert out[3] == {"role": "tool", "tool_call_id": "c1", "content": "1"}
    assert [s.tool_name for s in conv.tool_selections(assistant)] == ["add", "mul"]
    assert assistant.additional_kwargs["tool_calls"][0]["id"] == "c1"


def test_legacy_additional_kwargs_tool_calls_are_sent() -> None:
    call = {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    msg = ChatMessage(role=MessageRole.ASSISTANT, content="", additional_kwargs={"tool_calls": [call]})
    assert conv.to_openai_message(msg)["tool_calls"] == [call]


def test_tool_message_without_id_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="tool_call_id"):
        conv.to_openai_message(ChatMessage(role=MessageRole.TOOL, content="42"))


def test_image_parts_and_unsupported_blocks() -> None:
    msg = ChatMessage(
        role=MessageRole.USER,
        blocks=[TextBlock(text="what is this"), ImageBlock(url="https://example.com/a.png")],
    )
    content = conv.to_openai_message(msg)["content"]
    assert content == [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    audio = ChatMessage(role=MessageRole.USER, blocks=[AudioBlock(audio=b"RIFF", format="wav")])
    with pytest.raises(ValueError, match="text and image blocks only"):
        conv.to_openai_message(audio)


@pytest.mark.parametrize(
    ("choice", "required", "expected"),
    [
        (None, False, None),
        (None, True, "required"),
        ("auto", False, None),
        ("none", False, "none"),
        ("required", False, "required"),
        ("lookup", False, {"type": "function", "function": {"name": "lookup"}}),
        (
            {"type": "function", "function": {"name": "x"}},
            False,
            {"type": "function", "function": {"name": "x"}},
        ),
    ],
)
def test_tool_choice(choice: object, required: bool, expected: object) -> None:
    assert conv.tool_choice_param(choice, required) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("", {}),
        ("   ", {}),
        ("[1, 2]", {}),
        ("nan", {}),
        ('{"a": ', {}),
        (None, {}),
        ({"k": "v"}, {"k": "v"}),
    ],
)
def test_parse_arguments_tolerates_garbage(raw: object, expected: dict[str, object]) -> None:
    assert conv.parse_arguments(raw) == expected


def test_tools_and_keep_first_call() -> None:
    def lookup(city: str) -> str:
        """Look up a city."""
        return city

    (tool,) = conv.to_openai_tools([FunctionTool.from_defaults(lookup)])
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "lookup"
    assert tool["function"]["parameters"]["properties"]["city"]["type"] == "string"
    msg = ChatMessage(
        role=MessageRole.ASSISTANT,
        blocks=[ToolCallBlock(tool_name="a"), ToolCallBlock(tool_name="b")],
        additional_kwargs={"tool_calls": [{"id": 1}, {"id": 2}]},
    )
    conv.keep_first_tool_call(msg)
    assert [b.tool_name for b in msg.blocks] == ["a"]
    assert msg.additional_kwargs["tool_calls"] == [{"id": 1}]


class City(BaseModel):
    name: str
    population: int


@pytest.mark.parametrize(
    "text",
    ['{"name": "Oslo", "population": 700000}', '```json\n{"name": "Oslo", "population": 700000}\n```'],
)
def test_parse_structured(text: str) -> None:
    assert conv.parse_structured(City, text) == City(name="Oslo", population=700000)


def test_parse_structured_error_names_the_fix() -> None:
    with pytest.raises(ValueError, match="structured_output_mode='tools'"):
        conv.parse_structured(City, "Oslo has 700000 people")


def test_response_kwargs_without_usage_are_none_not_zero() -> None:
    kwargs = conv.response_kwargs(None, None)
    assert kwargs["prompt_tokens"] is None
    assert kwargs["nebo"]["cost_micro"] is None
    assert kwargs["nebo"]["snapshot"] is None
