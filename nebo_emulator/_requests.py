"""Request bodies parsed into typed values, with the 400s OpenAI gives for bad ones.

Every check names the offending field (``messages[2].content``) so a client's error
shows what to fix. Quirk 5 of nebo-api.md section 11 lives here: with quirks on, an
assistant message that carries ``tool_calls`` must not have null or empty content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nebo_emulator._errors import ApiError, bad_request, missing

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True)
class ChatRequest:
    """A validated ``POST /v1/chat/completions`` body."""

    model: str
    messages: tuple[Mapping[str, Any], ...]
    stream: bool
    include_usage: bool
    tools: tuple[Mapping[str, Any], ...]
    tool_choice: str
    """``auto``, ``none``, ``required``, or the name of the one tool to call."""
    parallel_tool_calls: bool
    response_format: Mapping[str, Any] | None
    stop: tuple[str, ...]
    max_tokens: int | None
    n: int


@dataclass(frozen=True)
class EmbeddingRequest:
    """A validated ``POST /v1/embeddings`` body."""

    model: str
    inputs: tuple[str | tuple[int, ...], ...]
    encoding_format: str
    dimensions: int | None


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message: its string content, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def image_count(message: Mapping[str, Any]) -> int:
    """How many image parts a message carries."""
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")


def _int(body: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad_request(
            f"Invalid '{key}': expected an integer between {low} and {high}, got {value!r}.", key
        )
    return value


def _model(body: Mapping[str, Any]) -> str:
    if "model" not in body:
        raise missing("model")
    if not isinstance(body["model"], str):
        raise bad_request("Invalid 'model': expected a string.", "model", "invalid_type")
    return str(body["model"])


def _messages(raw: Any, *, quirks: bool) -> tuple[Mapping[str, Any], ...]:
    if raw is None:
        raise missing("messages")
    if not isinstance(raw, list):
        raise bad_request("Invalid 'messages': expected an array.", "messages", "invalid_type")
    if not raw:
        raise bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
            "empty_array",
        )
    pending: set[str] = set()
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"Invalid '{where}': expected an object.", where, "invalid_type")
        role = message.get("role")
        if role is None:
            raise missing(f"{where}.role")
        if role not in ROLES:
            raise bad_request(f"Invalid value for '{where}.role': {role!r}.", f"{where}.role")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise bad_request(
                f"Invalid '{where}.content': expected a string or an array.",
                f"{where}.content",
                "invalid_type",
            )
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise missing(f"{where}.tool_call_id")
            if call_id not in pending:
                raise bad_request(
                    f"Invalid parameter: messages with role 'tool' must be a response to a preceding message "
                    f"with 'tool_calls' ({where}.tool_call_id={call_id!r}).",
                    f"{where}.tool_call_id",
                )
            pending.discard(call_id)
            continue
        if pending:
            raise bad_request(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. Missing responses for: {sorted(pending)} (before {where}).",
                where,
            )
        if role == "assistant" and message.get("tool_calls"):
            pending = _tool_call_ids(message["tool_calls"], where)
            if quirks and not content:
                # nebo-api.md section 11, quirk 5: Janus->Gemini rejects null content beside tool calls.
                raise bad_request(
                    f"Invalid '{where}.content': an assistant message with tool_calls must have non-empty "
                    'content (upstream rejects null; send " ").',
                    f"{where}.content",
                )
        elif content is None and role != "assistant":
            raise missing(f"{where}.content")
    return tuple(raw)


def _tool_call_ids(calls: Any, where: str) -> set[str]:
    if not isinstance(calls, list):
        raise bad_request(
            f"Invalid '{where}.tool_calls': expected an array.", f"{where}.tool_calls", "invalid_type"
        )
    ids: set[str] = set()
    for j, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            raise missing(f"{where}.tool_calls[{j}].id")
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise missing(f"{where}.tool_calls[{j}].function.name")
        ids.add(call["id"])
    return ids


def _tools(raw: Any) -> tuple[Mapping[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise bad_request("Invalid 'tools': expected an array.", "tools", "invalid_type")
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise bad_request(f"Invalid 'tools[{i}]': expected a function tool.", f"tools[{i}]")
        function = tool.get("function")
        if (
            not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise missing(f"tools[{i}].function.name")
        params = function.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise bad_request(
                f"Invalid 'tools[{i}].function.parameters': expected an object.",
                f"tools[{i}].function.parameters",
                "invalid_type",
            )
    return tuple(raw)


def _tool_choice(raw: Any, tools: tuple[Mapping[str, Any], ...]) -> str:
    if raw is None:
        return "auto" if tools else "none"
    if raw in ("auto", "none", "required"):
        if raw != "none" and not tools:
            raise bad_request(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                "tool_choice",
            )
        return str(raw)
    name = raw.get("function", {}).get("name") if isinstance(raw, dict) else None
    if not isinstance(name, str):
        raise bad_request(
            "Invalid 'tool_choice': expected 'auto', 'none', 'required' or "
            '{"type": "function", "function": {"name": ...}}.',
            "tool_choice",
        )
    if name not in {t["function"]["name"] for t in tools}:
        raise bad_request(f"Invalid 'tool_choice': no tool named {name!r} in 'tools'.", "tool_choice")
    return name


def _response_format(raw: Any) -> Mapping[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") not in ("text", "json_object", "json_schema"):
        raise bad_request(
            "Invalid 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
            "response_format.type",
        )
    if raw["type"] == "json_schema":
        spec = raw.get("json_schema")
        if not isinstance(spec, dict):
            raise missing("response_format.json_schema")
        if not isinstance(spec.get("name"), str):
            raise missing("response_format.json_schema.name")
        if spec.get("schema") is not None and not isinstance(spec["schema"], dict):
            raise bad_request(
                "Invalid 'response_format.json_schema.schema': expected an object.",
                "response_format.json_schema.schema",
                "invalid_type",
            )
    return None if raw["type"] == "text" else raw


def _stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and len(raw) <= 4 and all(isinstance(s, str) for s in raw):
        return tuple(raw)
    raise bad_request("Invalid 'stop': expected a string or an array of up to 4 strings.", "stop")


def parse_chat(body: Mapping[str, Any], *, quirks: bool) -> ChatRequest:
    """Validate a chat body; raises ``ApiError`` (400) naming the bad field."""
    model = _model(body)
    messages = _messages(body.get("messages"), quirks=quirks)
    tools = _tools(body.get("tools"))
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise bad_request("Invalid 'stream': expected a boolean.", "stream", "invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad_request("Invalid 'stream_options': expected an object.", "stream_options", "invalid_type")
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0
        ):
            raise bad_request(f"Invalid '{key}': expected a non-negative number.", key, "invalid_type")
    limit = _int(body, "max_completion_tokens", 1, 10_000_000)
    limit = limit if limit is not None else _int(body, "max_tokens", 1, 10_000_000)
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), tools),
        parallel_tool_calls=body.get("parallel_tool_calls", True) is not False,
        response_format=_response_format(body.get("response_format")),
        stop=_stop(body.get("stop")),
        max_tokens=limit,
        n=_int(body, "n", 1, 128) or 1,
    )


def parse_embedding(body: Mapping[str, Any]) -> EmbeddingRequest:
    """Validate an embeddings body; raises ``ApiError`` (400) naming the bad field."""
    model = _model(body)
    raw = body.get("input")
    if raw is None:
        raise missing("input")
    if raw == [] or raw == "":
        raise bad_request("Invalid 'input': expected a non-empty string or array.", "input")
    items: list[Any] = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    inputs: list[str | tuple[int, ...]] = []
    for i, item in enumerate(items):
        if isinstance(item, str) and item:
            inputs.append(item)
        elif (
            isinstance(item, list)
            and item
            and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
        ):
            inputs.append(tuple(item))
        else:
            param = "input" if len(items) == 1 and not isinstance(raw, list) else f"input[{i}]"
            raise bad_request(f"Invalid '{param}': expected a non-empty string or array of token ids.", param)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad_request("Invalid 'encoding_format': expected 'float' or 'base64'.", "encoding_format")
    dims = _int(body, "dimensions", 1, 1_000_000)
    return EmbeddingRequest(model=model, inputs=tuple(inputs), encoding_format=str(fmt), dimensions=dims)


__all__ = [
    "ApiError",
    "ChatRequest",
    "EmbeddingRequest",
    "image_count",
    "message_text",
    "parse_chat",
    "parse_embedding",
]
