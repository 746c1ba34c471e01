"""Pure translation between LlamaIndex types and OpenAI request/response dicts.

The adapter's whole protocol knowledge is here and it is only type mapping: LlamaIndex
``ChatMessage``/tools in, the OpenAI chat request body out; the standard OpenAI
``chat.completion`` body (already repaired by ``nebo_core``) in, ``ChatResponse`` out.
Costs and budgets are copied from ``nebo_core``'s ``UsageRecord``/``BudgetSnapshot``,
never computed or parsed here. No I/O, so the sync and async paths share every line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms.llm import ToolSelection
from pydantic import BaseModel

from nebo_core import BudgetSnapshot, NeboConfigurationError, UsageRecord, wire
from nebo_core.budget import call_metadata

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


def to_openai_tools(tools: Sequence[BaseTool]) -> list[dict[str, Any]]:
    """LlamaIndex tools as OpenAI function tools."""
    return [tool.metadata.to_openai_tool(skip_length_check=True) for tool in tools]


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


def from_openai_message(data: dict[str, Any]) -> ChatMessage:
    """An OpenAI assistant message dict as a LlamaIndex message (tool calls as ``ToolCallBlock``)."""
    blocks: list[Any] = []
    if data.get("reasoning_content"):
        blocks.append(ThinkingBlock(content=data["reasoning_content"]))
    content = data.get("content")
    calls = [c for c in data.get("tool_calls") or [] if isinstance(c, dict)]
    if content and not (calls and not content.strip()):
        blocks.append(TextBlock(text=content))
    for call in calls:
        function = call.get("function") or {}
        blocks.append(
            ToolCallBlock(
                tool_call_id=call.get("id"),
                tool_name=str(function.get("name") or ""),
                tool_kwargs=parse_arguments(function.get("arguments")),
            )
        )
    extra: dict[str, Any] = {"tool_calls": calls} if calls else {}
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra)


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


def response_kwargs(usage: UsageRecord | None, snapshot: BudgetSnapshot | None) -> dict[str, Any]:
    """``additional_kwargs`` for a response: token counts (LlamaIndex's names) and ``nebo``."""
    return {
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "total_tokens": usage.total_tokens if usage else None,
        "nebo": call_metadata(usage, snapshot),
    }


def chat_response(
    body: dict[str, Any], usage: UsageRecord | None, snapshot: BudgetSnapshot | None
) -> ChatResponse:
    """A finished ``chat.completion`` body as a ``ChatResponse``."""
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    return ChatResponse(
        message=from_openai_message(message if isinstance(message, dict) else {}),
        raw=body,
        additional_kwargs=response_kwargs(usage, snapshot),
    )


def chunk_delta(chunk: dict[str, Any]) -> tuple[str, bool]:
    """The text delta of a standard chunk, and whether it carried tool-call data."""
    text, calls = "", False
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and choice.get("index", 0) == 0:
            text += delta.get("content") or ""
            calls = calls or bool(delta.get("tool_calls"))
    return text, calls


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
