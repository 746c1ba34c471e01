"""Unit tests of the pure message/tool/response conversion (no network)."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_nebo._convert import (
    chunk_from_delta,
    message_from_completion,
    message_to_dict,
    usage_metadata,
)
from nebo_core import wire

pytestmark = pytest.mark.disable_socket


def test_plain_messages_take_the_fast_path() -> None:
    assert message_to_dict(SystemMessage("be brief")) == {"role": "system", "content": "be brief"}
    assert message_to_dict(HumanMessage("hi", name="ann")) == {"role": "user", "content": "hi", "name": "ann"}
    assert message_to_dict(ToolMessage("42", tool_call_id="c1")) == {
        "role": "tool",
        "content": "42",
        "tool_call_id": "c1",
    }


def test_assistant_tool_calls_become_openai_tool_calls() -> None:
    msg = AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c1", "type": "tool_call"}])
    out = message_to_dict(msg)
    assert out["role"] == "assistant"
    assert out["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    ]


def test_image_blocks_become_image_url_parts() -> None:
    msg = HumanMessage(
        content=[
            {"type": "text", "text": "what is this?"},
            {"type": "image", "base64": "aGVsbG8=", "mime_type": "image/png"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        ]
    )
    parts = message_to_dict(msg)["content"]
    assert parts[0] == {"type": "text", "text": "what is this?"}
    assert parts[1]["image_url"]["url"] == "data:image/png;base64,aGVsbG8="
    assert parts[2]["image_url"]["url"] == "https://example.com/cat.png"


def test_tool_message_with_blocks_is_flattened_to_text() -> None:
    out = message_to_dict(ToolMessage(content=[{"type": "text", "text": "a"}, "b"], tool_call_id="c"))
    assert out["role"] == "tool"
    assert out["content"] == "a\nb"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", None),
        ("none", "none"),
        ("any", "required"),
        ("required", "required"),
        (True, "required"),
        ("add", {"type": "function", "function": {"name": "add"}}),
    ],
)
def test_tool_choice_mapping(choice: object, expected: object) -> None:
    assert wire.tool_choice(choice, ["add"]) == expected


def test_unknown_tool_choice_names_the_fix() -> None:
    with pytest.raises(ValueError, match="names no bound tool; use one of \\['add'\\]"):
        wire.tool_choice("multiply", ["add"])


def test_completion_becomes_ai_message_with_reasoning_and_bad_arguments() -> None:
    data = {
        "id": "chatcmpl-1",
        "model": "gpt-5-mini",
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "content": None,
                    "reasoning_content": "thinking",
                    "tool_calls": [
                        {"id": "a", "function": {"name": "f", "arguments": '{"x": 1}'}},
                        {"id": "b", "function": {"name": "g", "arguments": "{not json"}},
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost_micro": 9},
    }
    msg = message_from_completion(data, None, None)
    assert msg.tool_calls[0]["args"] == {"x": 1}
    assert msg.invalid_tool_calls[0]["name"] == "g"
    assert msg.additional_kwargs["reasoning_content"] == "thinking"
    assert msg.response_metadata["model_name"] == "gpt-5-mini"
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    assert msg.usage_metadata == {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}


def test_usage_metadata_handles_missing_usage_and_details() -> None:
    assert usage_metadata(None) is None
    meta = usage_metadata(
        {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 6},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
    )
    assert meta is not None
    assert meta["total_tokens"] == 14
    assert meta["input_token_details"] == {"cache_read": 6}
    assert meta["output_token_details"] == {"reasoning": 2}


def test_chunk_conversion_keeps_tool_call_chunks_and_drops_empty_deltas() -> None:
    assert chunk_from_delta({"choices": []}) is None
    assert chunk_from_delta({"choices": [{"delta": {"role": "assistant"}}]}) is None
    chunk = chunk_from_delta(
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}]
                    }
                }
            ]
        }
    )
    assert chunk is not None
    assert chunk.tool_call_chunks == [
        {"name": "f", "args": "{", "id": "c", "index": 0, "type": "tool_call_chunk"}
    ]
