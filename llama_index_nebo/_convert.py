"""Pure translation between LlamaIndex types and OpenAI request/response dicts.

The adapter's whole protocol knowledge is here and it is only type mapping: LlamaIndex
``ChatMessage``/tools in, the OpenAI chat request body out; the standard OpenAI
``chat.completion`` body (already repaired by ``nebo_core``) in, ``ChatResponse`` out.
Costs and budgets are copied from ``nebo_core``'s ``UsageRecord``/``BudgetSnapshot``,
never computed or parsed here. No I/O, so the sync and async paths share every line.

A 200 answer is read tolerantly (nebo-api.md 1): odd content becomes text where it can,
and what cannot be read (no usable choice, garbled tool calls) is a ``NeboUpstreamError``
carrying the body, never an ``AttributeError`` or a pydantic ``ValidationError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ImageBlock,
    LogProb,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms.llm import ToolSelection
from pydantic import BaseModel

from nebo_core import (
    BudgetSnapshot,
    ChatCompletion,
    NeboConfigurationError,
    NeboUpstreamError,
    UsageRecord,
    wire,
)
from nebo_core.budget import call_metadata
from nebo_core.forecast import BudgetForecast

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

_ROLES = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
}
M = TypeVar("M", bound=BaseModel)


def _text_of(message: ChatMessage) -> str:
    return "".join(b.text for b in message.blocks if isinstance(b, TextBlock))


def _user_content(message: ChatMessage) -> str | list[dict[str, Any]]:
    if all(isinstance(b, TextBlock) for b in message.blocks):
        return _text_of(message)
    parts: list[dict[str, Any]] = []
    for block in message.blocks:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            url = str(block.url) if block.url is not None and block.image is None else block.inline_url()
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif not isinstance(block, ThinkingBlock):
            raise ValueError(
                f"Nebo chat accepts text and image blocks only, got a {type(block).__name__}; "
                "convert it to text (or an ImageBlock) before sending"
            )
    return parts


def _tool_call_dicts(message: ChatMessage) -> list[dict[str, Any]]:
    blocks = [b for b in message.blocks if isinstance(b, ToolCallBlock)]
    if blocks:
        return [
            {
                "id": b.tool_call_id or f"call_{i}",
                "type": "function",
                "function": {
                    "name": b.tool_name,
                    "arguments": b.tool_kwargs
                    if isinstance(b.tool_kwargs, str)
                    else json.dumps(b.tool_kwargs),
                },
            }
            for i, b in enumerate(blocks)
        ]
    legacy = message.additional_kwargs.get("tool_calls") or []
    calls = []
    for call in legacy:
        data = call if isinstance(call, dict) else call.model_dump()  # openai SDK objects
        calls.append(data)
    return calls


def to_openai_message(message: ChatMessage) -> dict[str, Any]:
    """One LlamaIndex message as an OpenAI chat message dict."""
    role = _ROLES.get(message.role)
    if role is None:
        raise ValueError(f"unsupported message role {message.role!r}; use system, user, assistant or tool")
    if role == "tool":
        call_id = message.additional_kwargs.get("tool_call_id")
        if not call_id:
            raise ValueError(
                "a tool message needs additional_kwargs['tool_call_id'] (the id of the call it answers)"
            )
        return {"role": "tool", "tool_call_id": call_id, "content": _text_of(message)}
    if role == "user":
        return {"role": "user", "content": _user_content(message)}
    out: dict[str, Any] = {"role": role, "content": _text_of(message)}
    if role == "assistant":
        calls = _tool_call_dicts(message)
        if calls:
            out["tool_calls"] = calls
            out["content"] = out["content"] or None  # nebo_core turns this into " " for Nebo
    return out


def to_openai_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex messages as OpenAI chat message dicts."""
    if isinstance(messages, (str, ChatMessage)) or not isinstance(messages, Sequence):
        raise NeboConfigurationError(
            f"messages must be a list of ChatMessage, got {type(messages).__name__}; "
            "e.g. [ChatMessage(role='user', content='hi')]"
        )
    bad = next((i for i, m in enumerate(messages) if not isinstance(m, ChatMessage)), None)
    if bad is not None:
        raise NeboConfigurationError(
            f"messages must be ChatMessage objects; item {bad} is {type(messages[bad]).__name__} "
            "(build it with ChatMessage(role=..., content=...))"
        )
    return [to_openai_message(m) for m in messages]


def to_openai_tools(tools: Sequence[BaseTool], strict: bool = False) -> list[dict[str, Any]]:
    """LlamaIndex tools as OpenAI function tools (``strict``: OpenAI's strict schema mode)."""
    specs = [tool.metadata.to_openai_tool(skip_length_check=True) for tool in tools]
    return strict_tools(specs) if strict else specs


def strict_tools(specs: Sequence[Any]) -> list[Any]:
    """Copies of OpenAI function tools in strict mode, as ``OpenAI(strict=True)`` sends them."""
    out = []
    for spec in specs:
        function = spec.get("function") if isinstance(spec, dict) else None
        if isinstance(function, dict):
            parameters = function.get("parameters")
            function = {**function, "strict": True}
            if isinstance(parameters, dict):
                function["parameters"] = {**parameters, "additionalProperties": False}
            spec = {**spec, "function": function}
        out.append(spec)
    return out


def tool_choice_param(tool_choice: Any, tool_required: bool) -> Any:
    """The OpenAI ``tool_choice`` for a LlamaIndex choice (``None``: omit it, which means auto)."""
    if tool_choice is None:
        return "required" if tool_required else None
    return wire.tool_choice(tool_choice)


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON argument string as a dict (``{}`` when it is not a JSON object)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class MalformedResponse(ValueError):
    """A 200 answer the adapter cannot read; :func:`chat_response` raises it as ``NeboUpstreamError``."""


def text_content(content: Any) -> str | None:
    """A response message's ``content`` as text, best effort (tolerant on input, nebo-api.md 1).

    A string as is; a number as its JSON text; a list of parts (or one part) as the text of its
    text parts. Anything else (a bool, a dict without text) is :class:`MalformedResponse`.
    """
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, (int, float)) and not isinstance(content, bool):
        return json.dumps(content)
    parts = [content] if isinstance(content, dict) else content
    if isinstance(parts, list):
        texts = [p if isinstance(p, str) else p.get("text") for p in parts if isinstance(p, (str, dict))]
        if any(isinstance(t, str) for t in texts) or (isinstance(content, list) and not texts):
            return "".join(t for t in texts if isinstance(t, str))
    raise MalformedResponse(f"message content is a {type(content).__name__} without text")


def tool_call_dicts(raw: Any) -> list[dict[str, Any]]:
    """A response's ``tool_calls``, each as a standard OpenAI call dict with string arguments.

    ``None`` means no calls; arguments given as an object are serialised. A call that cannot be
    read (not a list, an entry that is not an object, no function name, arguments that are
    neither text nor an object) is :class:`MalformedResponse`: silently dropping a tool call
    would make an agent act as if the model had answered.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise MalformedResponse(f"tool_calls is a {type(raw).__name__}, not a list")
    calls = []
    for i, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise MalformedResponse(f"tool call {i} has no function name")
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        elif arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            raise MalformedResponse(f"tool call {i} has {type(arguments).__name__} arguments")
        call_id = call.get("id")
        calls.append(
            {
                "id": call_id if isinstance(call_id, str) and call_id else f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return calls


def assistant_message(
    text: str | None, reasoning: str | None, calls: Sequence[dict[str, Any]], kwargs: Sequence[Any]
) -> ChatMessage:
    """An assistant ``ChatMessage``: thinking, text, then one ``ToolCallBlock`` per call.

    ``kwargs`` are the calls' ``tool_kwargs`` (parsed dicts, or the raw text mid-stream). Text
    that is only whitespace beside tool calls is Nebo's placeholder (nebo-api.md 11.5): dropped.
    """
    blocks: list[Any] = []
    if reasoning:
        blocks.append(ThinkingBlock(content=reasoning))
    if text and not (calls and text.isspace()):
        blocks.append(TextBlock(text=text))
    blocks.extend(
        ToolCallBlock(tool_call_id=c["id"], tool_name=c["function"]["name"], tool_kwargs=k)
        for c, k in zip(calls, kwargs, strict=True)
    )
    extra: dict[str, Any] = {"tool_calls": list(calls)} if calls else {}
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra)


def from_openai_message(data: dict[str, Any]) -> ChatMessage:
    """An OpenAI assistant message dict as a LlamaIndex message (tool calls as ``ToolCallBlock``).

    Raises :class:`MalformedResponse` for content or tool calls it cannot read (see
    :func:`text_content`, :func:`tool_call_dicts`)."""
    reasoning = data.get("reasoning_content")
    calls = tool_call_dicts(data.get("tool_calls"))
    kwargs = [parse_arguments(c["function"]["arguments"]) for c in calls]
    return assistant_message(
        text_content(data.get("content")), reasoning if isinstance(reasoning, str) else None, calls, kwargs
    )


def _finite(value: Any) -> float | None:
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return float(number) if number is not None and math.isfinite(number) else None


def _logprob(entry: Any) -> LogProb | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        return None
    value = _finite(entry.get("logprob"))
    if value is None:
        return None
    raw = entry.get("bytes")
    data = raw if isinstance(raw, list) and all(type(b) is int and 0 <= b < 256 for b in raw) else []
    return LogProb(token=entry["token"], logprob=value, bytes=data)


def logprobs(raw: Any) -> list[list[LogProb]] | None:
    """A choice's ``logprobs`` as LlamaIndex's: per token, its top alternatives (or the token
    itself when none were asked for). ``None`` when absent; unreadable entries are skipped."""
    content = raw.get("content") if isinstance(raw, dict) else None
    if not isinstance(content, list):
        return None
    out = []
    for entry in content:
        top = entry.get("top_logprobs") if isinstance(entry, dict) else None
        alternatives = [p for p in map(_logprob, top if isinstance(top, list) else []) if p is not None]
        if not alternatives:
            token = _logprob(entry)
            alternatives = [token] if token is not None else []
        if alternatives:
            out.append(alternatives)
    return out


def tool_selections(message: ChatMessage) -> list[ToolSelection]:
    """The tool calls in an assistant message, in order."""
    return [
        ToolSelection(
            tool_id=b.tool_call_id or f"call_{i}",
            tool_name=b.tool_name,
            tool_kwargs=parse_arguments(b.tool_kwargs),
        )
        for i, b in enumerate(b for b in message.blocks if isinstance(b, ToolCallBlock))
    ]


def keep_first_tool_call(message: ChatMessage) -> None:
    """Drop every tool call after the first (when parallel calls were not allowed)."""
    seen = False
    kept = []
    for block in message.blocks:
        if isinstance(block, ToolCallBlock):
            if seen:
                continue
            seen = True
        kept.append(block)
    message.blocks = kept
    if message.additional_kwargs.get("tool_calls"):
        message.additional_kwargs["tool_calls"] = message.additional_kwargs["tool_calls"][:1]


def response_kwargs(
    usage: UsageRecord | None, snapshot: BudgetSnapshot | None, forecast: BudgetForecast | None = None
) -> dict[str, Any]:
    """``additional_kwargs`` for a response: token counts (LlamaIndex's names) and ``nebo``."""
    return {
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "total_tokens": usage.total_tokens if usage else None,
        "nebo": call_metadata(usage, snapshot, forecast),
    }


def upstream_error(problem: str, body: Any, result: ChatCompletion | None = None) -> NeboUpstreamError:
    """The typed error for a 200 answer this adapter cannot read (the call itself was recorded)."""
    return NeboUpstreamError(
        f"Nebo returned a chat response this adapter cannot read: {problem}",
        status=200,
        body=body,
        request_id=result.request_id if result is not None else None,
        snapshot=result.snapshot if result is not None else None,
    )


def chat_response(result: ChatCompletion) -> ChatResponse:
    """A finished ``chat.completion`` as a ``ChatResponse``; ``NeboUpstreamError`` if unreadable.

    ``nebo_core`` has checked that ``choices`` is a list; here its first choice must carry a
    message object. Inside it, parsing is best effort (see :func:`from_openai_message`).
    """
    body = result.data
    choices = body.get("choices") or [None]
    choice = choices[0] if isinstance(choices[0], dict) else None
    message = choice.get("message") if choice is not None else None
    if choice is None or not isinstance(message, dict):
        problem = "no choices" if not body.get("choices") else "its first choice has no message object"
        raise upstream_error(problem, body, result)
    try:
        parsed = from_openai_message(message)
    except MalformedResponse as exc:
        raise upstream_error(str(exc), body, result) from None
    return ChatResponse(
        message=parsed,
        raw=body,
        logprobs=logprobs(choice.get("logprobs")),
        additional_kwargs=response_kwargs(result.usage, result.snapshot, result.forecast),
    )


def response_format(output_cls: type[Any]) -> dict[str, Any]:
    """An OpenAI ``json_schema`` response_format for a pydantic model."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": output_cls.__name__,
            "schema": output_cls.model_json_schema(),
            "strict": False,
        },
    }


def parse_structured(output_cls: type[M], content: str | None) -> M:
    """The model's JSON answer as ``output_cls`` (a code fence around it is tolerated)."""
    text = (content or "").strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    try:
        return output_cls.model_validate_json(text)
    except ValueError as exc:
        raise ValueError(
            f"Nebo's answer is not a valid {output_cls.__name__}: {exc}. "
            "Try structured_output_mode='tools' or a model that supports json_schema"
        ) from exc
