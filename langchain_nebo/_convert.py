"""Pure translation between LangChain types and the OpenAI dicts ``nebo_core`` speaks.

LangChain messages and tools become an OpenAI chat-completions request body; the standard
``chat.completion`` bodies and ``chat.completion.chunk`` dicts that the core returns (already
repaired of Nebo's stream quirks) become ``AIMessage`` / ``AIMessageChunk``. Nothing here does
I/O, parses headers or computes costs: usage and budget come from the core's ``UsageRecord``
and ``BudgetSnapshot``. The common case (string content) takes a fast path with no copies.

Responses are read tolerantly: the core rejects a 2xx chat body that is not an object with a
``choices`` list; past that, a field of the wrong type is read as absent (a usage count of
``"x"``), kept visibly (``tool_calls: "garbage"`` becomes an invalid tool call), or, where no
answer is left (``choices: [null]``, ``choices: []``), raises the typed ``NeboUpstreamError``.
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

from nebo_core import wire
from nebo_core.budget import BudgetSnapshot, UsageRecord, call_metadata
from nebo_core.errors import NeboUpstreamError
from nebo_core.forecast import BudgetForecast

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


def _count(value: Any) -> int | None:
    return wire.parse_int(value)


def usage_metadata(usage: Any) -> UsageMetadata | None:
    """OpenAI ``usage`` as LangChain ``UsageMetadata`` (``None`` when the server sent none, or
    nothing readable: counts that are not whole numbers are unknown, never a crash)."""
    if not isinstance(usage, Mapping):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    total = _count(usage.get("total_tokens"))
    if prompt is None and completion is None and total is None:
        return None
    prompt, completion = prompt or 0, completion or 0
    meta: dict[str, Any] = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": total if total is not None else prompt + completion,
    }
    prompt_details = usage.get("prompt_tokens_details")
    cached = _count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, Mapping) else None
    if cached is not None:
        meta["input_token_details"] = {"cache_read": cached}
    completion_details = usage.get("completion_tokens_details")
    reasoning = (
        _count(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, Mapping)
        else None
    )
    if reasoning is not None:
        meta["output_token_details"] = {"reasoning": reasoning}
    return cast("UsageMetadata", meta)


def _preview(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:200] + "..."


def _parse_tool_calls(raw_calls: Any) -> tuple[list[Any], list[Any]]:
    if raw_calls is None:
        return [], []
    if not isinstance(raw_calls, list):
        return [], [invalid_tool_call(args=_preview(raw_calls), error="tool_calls is not a list")]
    calls, invalid = [], []
    for raw in raw_calls:
        if not isinstance(raw, Mapping):
            invalid.append(invalid_tool_call(args=_preview(raw), error="a tool call that is not an object"))
            continue
        call_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        fn = raw.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(name, str) or not name:
            invalid.append(
                invalid_tool_call(args=_preview(raw), id=call_id, error="a tool call without a name")
            )
            continue
        args: Any = fn.get("arguments")
        parsed: Any
        if isinstance(args, Mapping):  # some servers send the object itself
            parsed, args = dict(args), json.dumps(args)
        elif isinstance(args, str) or args is None:
            args = args or ""
            try:
                parsed = json.loads(args) if args.strip() else {}
            except ValueError:
                parsed = None
        else:
            parsed, args = None, _preview(args)
        if isinstance(parsed, dict):
            calls.append(tool_call(name=name, args=parsed, id=call_id))
        else:
            invalid.append(
                invalid_tool_call(name=name, args=args, id=call_id, error="arguments are not JSON")
            )
    return calls, invalid


def _text(content: Any) -> str:
    """Message content as text: a string as is, text parts joined, anything else as its JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p if isinstance(p, str) else p["text"]
            for p in content
            if isinstance(p, str) or (isinstance(p, Mapping) and isinstance(p.get("text"), str))
        )
    return json.dumps(content, default=str)


def _choices(
    data: Mapping[str, Any], request_id: str | None, snapshot: BudgetSnapshot | None
) -> list[Mapping[str, Any]]:
    raw = data.get("choices")
    if isinstance(raw, list) and raw and all(isinstance(c, Mapping) for c in raw):
        indexed = all(isinstance(c.get("index"), int) for c in raw)
        return sorted(raw, key=lambda c: c["index"]) if indexed else list(raw)
    raise NeboUpstreamError(
        f"Nebo returned a chat response with no readable answer (choices: {_preview(raw)})",
        status=200,
        body=dict(data),
        request_id=request_id,
        snapshot=snapshot,
    )


def _metadata(
    data: Mapping[str, Any],
    record: UsageRecord | None,
    snapshot: BudgetSnapshot | None,
    forecast: BudgetForecast | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "model_name": data.get("model") or (record.model if record else None),
        "id": data.get("id"),
        "model_provider": "nebo",
        "nebo": call_metadata(record, snapshot, forecast),
    }
    for key in ("system_fingerprint", "service_tier", "provider_metadata"):
        if data.get(key):
            metadata[key] = data[key]
    return metadata


_ROUTED_KEY: str | None
try:  # langchain-core >= 1.8: the tracer promotes this generation_info key to run metadata
    from langchain_core.utils._gateway import GATEWAY_METADATA_RESPONSE_KEY as _ROUTED_KEY
except ImportError:  # pragma: no cover - older langchain-core: no promotion, nothing sent
    _ROUTED_KEY = None


def routed_model_info(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """``generation_info`` naming the model Nebo routed to, for tracers (``None`` if unknown).

    LangChain's tracer promotes ``{"model": ...}`` under this key to the run's ``ls_model_name``
    (and ``ls_gateway_info``), so a LangSmith run of ``model="auto"`` shows the routed model;
    the key never reaches ``response_metadata``. Older langchain-core has no such key: nothing."""
    model = data.get("model")
    if _ROUTED_KEY is None or not isinstance(model, str) or not model:
        return None
    return {_ROUTED_KEY: {"model": model, "provider": "nebo"}}


def _finish_reason(choice: Mapping[str, Any]) -> str | None:
    reason = choice.get("finish_reason")
    return reason if isinstance(reason, str) else None


def messages_from_completion(
    data: Mapping[str, Any],
    record: UsageRecord | None,
    snapshot: BudgetSnapshot | None,
    *,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    forecast: BudgetForecast | None = None,
) -> list[AIMessage]:
    """A ``chat.completion`` body as one ``AIMessage`` per choice (``n`` of them).

    The call's usage and cost go on the first message only, so that summing the generations
    (callbacks, ``get_usage_metadata_callback``) counts the call once; every message says which
    choice it is (``response_metadata["choice_index"]``) when there are several."""
    choices = _choices(data, request_id, snapshot)
    usage = usage_metadata(data.get("usage"))
    out = []
    for position, choice in enumerate(choices):
        raw_message = choice.get("message")
        msg: Mapping[str, Any] = raw_message if isinstance(raw_message, Mapping) else {}
        additional: dict[str, Any] = {}
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            additional["reasoning_content"] = reasoning
        if msg.get("refusal"):
            additional["refusal"] = msg["refusal"]
        calls, invalid = _parse_tool_calls(msg.get("tool_calls"))
        metadata = _metadata(data, record, snapshot, forecast)
        metadata["finish_reason"] = _finish_reason(choice)
        if position:
            del metadata["nebo"]  # the call's cost is on the first choice only
        if len(choices) > 1:
            metadata["choice_index"] = choice.get("index", position)
        if "logprobs" in choice:
            metadata["logprobs"] = choice["logprobs"]
        if headers is not None:
            metadata["headers"] = dict(headers)
        out.append(
            AIMessage(
                content=_text(msg.get("content")),
                additional_kwargs=additional,
                tool_calls=calls,
                invalid_tool_calls=invalid,
                usage_metadata=usage if position == 0 else None,
                response_metadata=metadata,
            )
        )
    return out


def message_from_completion(
    data: Mapping[str, Any], record: UsageRecord | None, snapshot: BudgetSnapshot | None
) -> AIMessage:
    """A ``chat.completion`` body's first choice as an ``AIMessage``."""
    return messages_from_completion(data, record, snapshot)[0]


def _logprobs(value: Any) -> dict[str, Any] | None:
    # Only OpenAI's shape is kept on stream chunks: merging chunks concatenates the lists, and
    # a value of another type on one chunk would break that merge.
    if isinstance(value, Mapping) and isinstance(value.get("content"), list):
        return {"content": list(value["content"])}
    return None


def chunk_from_delta(chunk: Mapping[str, Any]) -> AIMessageChunk | None:
    """One repaired ``chat.completion.chunk`` as an ``AIMessageChunk`` (``None`` if it says nothing).

    Usage, finish reason and budget are deliberately not put here: they go on the one final
    chunk (:func:`final_chunk`), so that merging chunks never adds or concatenates them.
    Logprobs stay with the tokens they describe; merged, they concatenate in order.
    """
    choices = chunk.get("choices")
    if not choices:
        return None
    choice = choices[0]
    delta = choice.get("delta") or {}
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
    logprobs = _logprobs(choice.get("logprobs"))
    if not content and not additional and not calls and logprobs is None:
        return None
    metadata = {"logprobs": logprobs} if logprobs is not None else {}
    return AIMessageChunk(
        content=content, additional_kwargs=additional, tool_call_chunks=calls, response_metadata=metadata
    )


def final_chunk(
    completion: Mapping[str, Any],
    record: UsageRecord | None,
    snapshot: BudgetSnapshot | None,
    stream_usage: bool,
    headers: Mapping[str, str] | None = None,
    forecast: BudgetForecast | None = None,
) -> AIMessageChunk:
    """The last chunk of a stream: the only one with usage, finish reason, model and budget."""
    choices = completion.get("choices") or [{}]
    metadata = _metadata(completion, record, snapshot, forecast)
    metadata["finish_reason"] = _finish_reason(choices[0])
    if headers is not None:
        metadata["headers"] = dict(headers)
    return AIMessageChunk(
        content="",
        usage_metadata=usage_metadata(completion.get("usage")) if stream_usage else None,
        response_metadata=metadata,
        chunk_position="last",
    )
