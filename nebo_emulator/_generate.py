"""Deterministic chat answers that real pipelines can use: extractive text, tool calls, JSON.

The same request always gives the same choices (tool-call ids included, as they are
derived from a digest of the request). What comes out, in order of precedence:
tool calls when tools are offered and the prompt asks for one (or ``tool_choice``
demands it); a final answer built from tool results; JSON for ``response_format``;
otherwise the context sentences that best answer the question. ``stop`` and the token
limit are applied last, as OpenAI does.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nebo_emulator._requests import ChatRequest, image_count, message_text
from nebo_emulator._schema import Source, build
from nebo_emulator._text import (
    STOPWORDS,
    apply_stop,
    best_sentences,
    content_stems,
    count_tokens,
    extractive_answer,
    question_of,
    stem,
    truncate_to_tokens,
    words,
)

_ASKS_FOR_TOOL = re.compile(
    r"\b(use|call|using|invoke|run)\s+(?:the|a|an|your|one)?\s*(?:\w+\s+)?(tool|function)s?\b", re.IGNORECASE
)
_GENERIC_NAME_PARTS = frozenset(
    [
        "get",
        "set",
        "fetch",
        "run",
        "do",
        "make",
        "call",
        "tool",
        "current",
        "info",
        "data",
        "api",
        "by",
        "to",
        "for",
        "of",
        "the",
        "a",
        "an",
    ]
)
_COORDINATED = re.compile(r"\b[A-Z][\w'-]*(?:(?:\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+)[A-Z][\w'-]*)+")
_KEYS_BEFORE = re.compile(
    r"((?:[\"'`][A-Za-z_][\w-]*[\"'`](?:\s*,\s*|\s+and\s+|\s*,\s*and\s+|\s+or\s+)?)+)\s+(?:keys|fields|properties)\b"
)
_KEYS = re.compile(r"\b(?:keys?|fields?|properties)\b\s*(?:named|called)?\s*:?\s*([^.!?\n]+)", re.IGNORECASE)
IMAGE_TOKENS = 85


@dataclass(frozen=True)
class ToolCall:
    """One function call the model makes: id, tool name, and its JSON arguments as a string."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Choice:
    """One generated choice: content or tool calls, and why generation stopped."""

    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str


@dataclass(frozen=True)
class Generation:
    """Everything a response needs: the choices and the token counts that price them."""

    choices: tuple[Choice, ...]
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class _Conversation:
    question: str
    user_text: str
    context: tuple[str, ...]
    tool_results: tuple[tuple[str, str], ...]
    """(tool name, result) of the tool messages that end the conversation, if it ends with them."""


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """All message text joined: what routing looks at."""
    return "\n".join(message_text(m) for m in messages)


def count_prompt_tokens(req: ChatRequest) -> int:
    """Approximate prompt tokens: message text, per-message overhead, images, tools and schema."""
    total = 3
    for message in req.messages:
        total += 4 + count_tokens(message_text(message)) + IMAGE_TOKENS * image_count(message)
        if message.get("tool_calls"):
            total += count_tokens(json.dumps(message["tool_calls"]))
    if req.tools:
        total += count_tokens(json.dumps(req.tools))
    if req.response_format:
        total += count_tokens(json.dumps(req.response_format))
    return total


def choice_tokens(choice: Choice) -> int:
    """Completion tokens of one choice (the stream's running totals add up to exactly this)."""
    calls = sum(count_tokens(c.name) + count_tokens(c.arguments) for c in choice.tool_calls)
    return count_tokens(choice.content or "") + calls


def generate(req: ChatRequest) -> Generation:
    """The deterministic answer to ``req``."""
    digest = _digest(req)
    convo = _conversation(req.messages)
    choices = []
    for index in range(req.n):
        calls = _tool_calls(req, convo, f"{digest}:{index}")
        if calls:
            choices.append(Choice(None, calls, "tool_calls"))
        else:
            choices.append(_limit(_content(req, convo), req))
    return Generation(tuple(choices), count_prompt_tokens(req), sum(choice_tokens(c) for c in choices))


def _digest(req: ChatRequest) -> str:
    material = [req.messages, req.tools, req.tool_choice, req.response_format, req.parallel_tool_calls]
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _conversation(messages: Sequence[Mapping[str, Any]]) -> _Conversation:
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    user_text = message_text(messages[last_user]) if last_user >= 0 else ""
    question = question_of(user_text)
    context = [message_text(m) for i, m in enumerate(messages) if i != last_user]
    if question != user_text.strip():
        context.append(user_text)
    names = {
        c.get("id"): c.get("function", {}).get("name", "tool")
        for m in messages
        for c in (m.get("tool_calls") or [])
        if isinstance(c, dict)
    }
    results: list[tuple[str, str]] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.insert(0, (str(names.get(message.get("tool_call_id"), "tool")), message_text(message)))
    return _Conversation(question, user_text, tuple(c for c in context if c), tuple(results))


def _tool_score(tool: Mapping[str, Any], text: str) -> int:
    function = tool["function"]
    name = str(function["name"])
    asked = content_stems(text) | {stem(w) for w in words(text)}
    score = 5 if name.lower() in text.lower() else 0
    parts = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower().replace("_", " ").replace("-", " ").split()
    named = {stem(p) for p in parts if p not in _GENERIC_NAME_PARTS and len(p) > 2}
    score += 2 * len(named & asked)
    overlap = len((content_stems(str(function.get("description", ""))) - named) & content_stems(text))
    return score + (overlap if overlap >= 2 else 0)


def _select(req: ChatRequest, convo: _Conversation) -> list[Mapping[str, Any]]:
    if not req.tools or req.tool_choice == "none":
        return []
    if req.tool_choice not in ("auto", "required"):
        return [t for t in req.tools if t["function"]["name"] == req.tool_choice][:1]
    if convo.tool_results and req.tool_choice == "auto":
        return []  # Tool results are in: give the final answer rather than loop.
    scored = sorted(
        ((_tool_score(t, convo.user_text), -i, t) for i, t in enumerate(req.tools)),
        key=lambda item: (item[0], item[1]),
        reverse=True,
    )
    chosen = [t for score, _, t in scored if score >= 2]
    if not chosen and (req.tool_choice == "required" or _ASKS_FOR_TOOL.search(convo.user_text)):
        chosen = [scored[0][2]]
    return chosen if req.parallel_tool_calls else chosen[:1]


def _tool_calls(req: ChatRequest, convo: _Conversation, seed: str) -> tuple[ToolCall, ...]:
    tools = _select(req, convo)
    plan: list[tuple[Mapping[str, Any], set[str]]] = [(t, set()) for t in tools]
    coordinated = _coordinated(convo.user_text)
    if len(tools) == 1 and req.parallel_tool_calls and len(coordinated) >= 2:
        # "weather in Paris and London": one call per named thing, as a parallel-calling model does.
        plan = [(tools[0], set(coordinated[:k])) for k in range(min(len(coordinated), 5))]
    calls: list[ToolCall] = []
    for k, (tool, used) in enumerate(plan):
        params = tool["function"].get("parameters") or {"type": "object", "properties": {}}
        args = build(params, Source(convo.user_text, convo.question, used), fill_optional=False)
        call_id = "call_" + hashlib.sha256(f"{seed}:{k}".encode()).hexdigest()[:24]
        args = args if isinstance(args, dict) else {}
        arguments = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
        if any(c.name == tool["function"]["name"] and c.arguments == arguments for c in calls):
            continue  # a model does not make the same call twice in one turn
        calls.append(ToolCall(call_id, str(tool["function"]["name"]), arguments))
    return tuple(calls)


def _coordinated(text: str) -> list[str]:
    best: list[str] = []
    for match in _COORDINATED.finditer(text):
        if not re.search(r"\s(?:and|or)\s", match.group(0)):
            continue  # "San Francisco, CA" is one place, not a list: a list has a conjunction
        names = [n for n in re.split(r"\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+", match.group(0)) if n]
        names = [n for n in names if n.lower() not in STOPWORDS]
        if len(names) > len(best):
            best = names
    return best


def _content(req: ChatRequest, convo: _Conversation) -> str:
    answer = _tool_answer(convo) if convo.tool_results else extractive_answer(convo.question, convo.context)
    fmt = req.response_format
    if fmt is None:
        return answer
    source_text = "\n".join([convo.user_text, *(result for _, result in convo.tool_results)])
    if fmt["type"] == "json_schema":
        schema = fmt["json_schema"].get("schema") or {"type": "object", "properties": {}}
        value = build(schema, Source(source_text, answer), fill_optional=True)
        return json.dumps(value, ensure_ascii=False)
    keys = _json_keys(prompt_text(req.messages))
    return json.dumps({key: answer for key in keys} if keys else {"answer": answer}, ensure_ascii=False)


def _tool_answer(convo: _Conversation) -> str:
    parts = []
    for name, result in convo.tool_results:
        flat = " ".join(result.split())
        if len(flat) > 400:
            flat = " ".join(best_sentences(convo.question, [result])) or flat[:400]
        parts.append(f"{name} returned {flat}")
    return "Based on the tool results: " + "; ".join(parts) + "."


def _json_keys(text: str) -> list[str]:
    before = _KEYS_BEFORE.search(text)  # "with 'setup' and 'punchline' keys"
    match = before or _KEYS.search(text)
    if not match:
        return []
    found = re.findall(r"[\"'`]?([A-Za-z_][\w-]*)[\"'`]?", match.group(1))
    fillers = {"and", "or", "the", "a", "with", "named"}
    return list(dict.fromkeys(k for k in found if k.lower() not in fillers))


def _limit(content: str, req: ChatRequest) -> Choice:
    content, _ = apply_stop(content, req.stop)
    if req.max_tokens is not None and count_tokens(content) > req.max_tokens:
        return Choice(truncate_to_tokens(content, req.max_tokens), (), "length")
    return Choice(content, (), "stop")
