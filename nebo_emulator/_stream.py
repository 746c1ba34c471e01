"""SSE chunk sequences for a streamed chat completion, Nebo-style or OpenAI-style.

With quirks on (the default) the stream has the real server's shape (nebo-api.md
section 11): the role chunk is sent twice; each tool call arrives whole, at index 0,
with its name, and is repeated; every chunk carries the running cumulative ``usage``
with ``cost_micro``; the stream ends right after the ``finish_reason`` chunk, with no
``data: [DONE]``. In strict mode it is OpenAI's: name once, arguments in fragments,
distinct indices, usage only in a final ``choices: []`` chunk when asked, then ``[DONE]``.
Each event carries the completion tokens emitted so far, so a stream cut short can be
priced at exactly what the client saw.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nebo_emulator._generate import Choice, Generation
from nebo_emulator._responses import usage
from nebo_emulator._text import count_tokens, split_pieces

DONE = "[DONE]"


@dataclass(frozen=True)
class StreamEvent:
    """One ``data:`` payload and the completion tokens emitted up to and including it."""

    data: str
    completion_tokens: int
    finishes: bool = False
    """Whether this chunk carries a ``finish_reason``."""


@dataclass(frozen=True)
class _Ctx:
    id: str
    created: int
    model: str
    prompt_tokens: int
    cost: Callable[[int, int], int]
    quirks: bool
    include_usage: bool


def stream_events(
    gen: Generation,
    *,
    id: str,
    created: int,
    model: str,
    cost: Callable[[int, int], int],
    quirks: bool,
    include_usage: bool,
) -> list[StreamEvent]:
    """Every SSE payload of the stream for ``gen``, in order."""
    ctx = _Ctx(id, created, model, gen.prompt_tokens, cost, quirks, include_usage)
    events: list[StreamEvent] = []
    done = 0
    for index, choice in enumerate(gen.choices):
        done = _choice_events(ctx, events, index, choice, done)
    if quirks:
        return events
    if include_usage:
        final = _chunk(ctx, [], None)
        final["usage"] = usage(gen.prompt_tokens, done, cost(gen.prompt_tokens, done))
        events.append(StreamEvent(json.dumps(final, ensure_ascii=False), done))
    events.append(StreamEvent(DONE, done))
    return events


def _chunk(ctx: _Ctx, choices: list[dict[str, Any]], tokens: int | None) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": ctx.id,
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": ctx.model,
        "choices": choices,
    }
    if ctx.quirks and tokens is not None:
        # Quirk 6: running cumulative totals on every chunk; clients must keep the latest.
        chunk["usage"] = usage(ctx.prompt_tokens, tokens, ctx.cost(ctx.prompt_tokens, tokens))
    elif ctx.include_usage:
        chunk["usage"] = None
    return chunk


def _emit(
    ctx: _Ctx,
    events: list[StreamEvent],
    index: int,
    delta: dict[str, Any],
    tokens: int,
    finish: str | None = None,
) -> None:
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    chunk = _chunk(ctx, [choice], tokens)
    if ctx.quirks and finish is not None:
        chunk["provider_metadata"] = {"upstream_model": ctx.model}  # Quirk 10: routing state to echo back.
    events.append(StreamEvent(json.dumps(chunk, ensure_ascii=False), tokens, finish is not None))


def _choice_events(ctx: _Ctx, events: list[StreamEvent], index: int, choice: Choice, done: int) -> int:
    role: dict[str, Any] = {
        "role": "assistant",
        "content": "" if choice.content is not None else None,
        "refusal": None,
    }
    for _ in range(2 if ctx.quirks else 1):  # Quirk 3: a content-free chunk resent verbatim.
        _emit(ctx, events, index, role, done)
    text = ""
    for piece in split_pieces(choice.content) if choice.content else []:
        text += piece
        _emit(ctx, events, index, {"content": piece}, done + count_tokens(text))
    done += count_tokens(choice.content or "")
    for k, call in enumerate(choice.tool_calls):
        done += count_tokens(call.name) + count_tokens(call.arguments)
        if ctx.quirks:
            # Quirks 1-3: whole call per chunk, name repeated, every call at index 0, chunk repeated.
            whole = {
                "index": 0,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for _ in range(2):
                _emit(ctx, events, index, {"tool_calls": [whole]}, done)
            continue
        named = {"name": call.name, "arguments": ""}
        head = {"index": k, "id": call.id, "type": "function", "function": named}
        _emit(ctx, events, index, {"tool_calls": [head]}, done)
        for fragment in _fragments(call.arguments):
            more = {"index": k, "function": {"arguments": fragment}}
            _emit(ctx, events, index, {"tool_calls": [more]}, done)
    _emit(ctx, events, index, {}, done, choice.finish_reason)
    return done


def _fragments(arguments: str, parts: int = 3) -> list[str]:
    size = max(-(-len(arguments) // parts), 1)
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]
