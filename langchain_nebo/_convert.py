"""Pure translation between LangChain types and the OpenAI dicts ``nebo_core`` speaks.

LangChain messages and tools become an OpenAI chat-completions request body; the standard
``chat.completion`` bodies and ``chat.completion.chunk`` dicts that the core returns (already
repaired of Nebo's stream quirks) become ``AIMessage`` / ``AIMessageChunk``. Nothing here does
I/O, parses headers or computes costs: usage and budget come from the core's ``UsageRecord``
and ``BudgetSnapshot``. The common case (string content) takes a fast path with no copies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.messages.utils import convert_to_openai_messages

from nebo_core.budget import BudgetSnapshot, UsageRecord, call_metadata

_ROLES: dict[type[BaseMessage], str] = {
    HumanMessage: "user",
    SystemMessage: "system",
    AIMessage: "assistant",
    ToolMessage: "tool",
    FunctionMessage: "function",
}


# --- requests ------------------------------------------------------------------------------


def _tool_calls_out(message: AIMessage) -> list[dict[str, Any]]:
    out = [
        {
            "id": tc.get("id") or f"call_{i}",
            "type": "function",
            "function": {"name": tc["name"], "arguments": json.dumps(tc.get("args") or {})},
        }
        for i, tc in enumerate(message.tool_calls)
    ]
    out.extend(
        {
            "id": tc.get("id") or f"call_invalid_{i}",
            "type": "function",
            "function": {"name": tc.get("name") or "", "arguments": tc.get("args") or ""},
        }
        for i, tc in enumerate(message.invalid_tool_calls)
    )
    return out


def message_to_dict(message: BaseMessage) -> dict[str, Any]:
    """One LangChain message as an OpenAI message dict."""
    role = _ROLES.get(type(message))
    if role is None:
        role = message.role if isinstance(message, ChatMessage) else None
        if role is None and isinstance(message, BaseMessage):
            role = {"human": "user", "ai": "assistant"}.get(message.type, message.type)
    if not isinstance(message.content, str) or (
        isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls)
    ):
        # Content blocks (images, Anthropic/standard v1 blocks, tool_use): langchain-core's own
        # converter knows every format; it is slower, so only lists take this path.
        out = convert_to_openai_messages(message)
        if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
            out["tool_calls"] = _tool_calls_out(message)
            if isinstance(out.get("content"), list):
                texts = [b.get("text", "") for b in out["content"] if isinstance(b, dict)]
                out["content"] = "".join(t for t in texts if isinstance(t, str))
        if role == "tool" and isinstance(out.get("content"), list):
            # The tool role is text-only on Nebo (nebo-api.md 4.1).
            out["content"] = _text_of(out["content"])
        return out
    out = {"role": role, "content": message.content}
    if isinstance(message, ToolMessage):
        out["tool_call_id"] = message.tool_call_id
    elif message.name:
        out["name"] = message.name
    if isinstance(message, AIMessage):
        reasoning = message.additional_kwargs.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            out["reasoning_content"] = reasoning
    return out


def _text_of(blocks: list[Any]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
        else:
            parts.append(json.dumps(block, default=str))
    return "\n".join(parts)


def messages_to_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI message dicts."""
    return [message_to_dict(m) for m in messages]


# --- responses -----------------------------------------------------------------------------


def usage_metadata(usage: Mapping[str, Any] | None) -> UsageMetadata | None:
    """OpenAI ``usage`` as LangChain ``UsageMetadata`` (``None`` when the server sent none)."""
    if not isinstance(usage, Mapping):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    total = int(usage.get("total_tokens") or prompt + completion)
    meta: dict[str, Any] = {"input_tokens": prompt, "output_tokens": completion, "total_tokens": total}
    prompt_details = usage.get("prompt_tokens_details")
    if isinstance(prompt_details, Mapping) and prompt_details.get("cached_tokens") is not None:
        meta["input_token_details"] = {"cache_read": int(prompt_details["cached_tokens"])}
    completion_details = usage.get("completion_tokens_details")
    if isinstance(completion_details, Mapping) and completion_details.get("reasoning_tokens") is not None:
        meta["output_token_details"] = {"reasoning": int(completion_details["reasoning_tokens"])}
    return cast("UsageMetadata", meta)


def _parse_tool_calls(raw_calls: Any) -> tuple[list[Any], list[Any]]:
    calls, invalid = [], []
    for raw in raw_calls or []:
        fn = raw.get("function") or {}
        name, args, call_id = fn.get("name") or "", fn.get("arguments") or "", raw.get("id")
        try:
            parsed = json.loads(args) if args.strip() else {}
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            calls.append(tool_call(name=name, args=parsed, id=call_id))
        else:
            invalid.append(
                invalid_tool_call(name=name, args=args, id=call_id, error="arguments are not JSON")
            )
    return calls, invalid


def message_from_completion(
    data: Mapping[str, Any], record: UsageRecord | None, snapshot: BudgetSnapshot | None
) -> AIMessage:
    """A standard ``chat.completion`` body (first choice) as an ``AIMessage``."""
    choices = data.get("choices") or [{}]
    choice = choices[0]
    msg = choice.get("message") or {}
    additional: dict[str, Any] = {}
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        additional["reasoning_content"] = reasoning
    if msg.get("refusal"):
        additional["refusal"] = msg["refusal"]
    calls, invalid = _parse_tool_calls(msg.get("tool_calls"))
    metadata: dict[str, Any] = {
        "model_name": data.get("model") or (record.model if record else None),
        "finish_reason": choice.get("finish_reason"),
        "id": data.get("id"),
        "model_provider": "nebo",
        "nebo": call_metadata(record, snapshot),
    }
    if data.get("system_fingerprint"):
        metadata["system_fingerprint"] = data["system_fingerprint"]
    if data.get("provider_metadata"):
        metadata["provider_metadata"] = data["provider_metadata"]
    content = msg.get("content")
    return AIMessage(
        content=content if isinstance(content, str) else "",
        additional_kwargs=additional,
        tool_calls=calls,
        invalid_tool_calls=invalid,
        usage_metadata=usage_metadata(data.get("usage")),
        response_metadata=metadata,
    )


def chunk_from_delta(chunk: Mapping[str, Any]) -> AIMessageChunk | None:
    """One repaired ``chat.completion.chunk`` as an ``AIMessageChunk`` (``None`` if it says nothing).

    Usage, finish reason and budget are deliberately not put here: they go on the one final
    chunk (:func:`final_chunk`), so that merging chunks never adds or concatenates them.
    """
    choices = chunk.get("choices")
    if not choices:
        return None
    delta = choices[0].get("delta") or {}
    content = delta.get("content") or ""
    additional: dict[str, Any] = {}
    if delta.get("reasoning_content"):
        additional["reasoning_content"] = delta["reasoning_content"]
    if delta.get("refusal"):
        additional["refusal"] = delta["refusal"]
    raw_calls = delta.get("tool_calls")
    calls = (
        [
            tool_call_chunk(
                name=(c.get("function") or {}).get("name"),
                args=(c.get("function") or {}).get("arguments"),
                id=c.get("id"),
                index=c.get("index"),
            )
            for c in raw_calls
        ]
        if raw_calls
        else []
    )
    if not content and not additional and not calls:
        return None
    return AIMessageChunk(content=content, additional_kwargs=additional, tool_call_chunks=calls)


def final_chunk(
    completion: Mapping[str, Any],
    record: UsageRecord | None,
    snapshot: BudgetSnapshot | None,
    stream_usage: bool,
) -> AIMessageChunk:
    """The last chunk of a stream: the only one with usage, finish reason, model and budget."""
    choices = completion.get("choices") or [{}]
    metadata: dict[str, Any] = {
        "model_name": completion.get("model") or (record.model if record else None),
        "finish_reason": choices[0].get("finish_reason"),
        "id": completion.get("id"),
        "model_provider": "nebo",
        "nebo": call_metadata(record, snapshot),
    }
    if completion.get("provider_metadata"):
        metadata["provider_metadata"] = completion["provider_metadata"]
    return AIMessageChunk(
        content="",
        usage_metadata=usage_metadata(completion.get("usage")) if stream_usage else None,
        response_metadata=metadata,
        chunk_position="last",
    )
