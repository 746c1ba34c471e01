"""Server-sent events and the stream state that turns Nebo's streams into standard OpenAI ones.

Nebo's streams differ from OpenAI's (nebo-api.md section 11): the tool name comes in
every chunk (quirk 1), whole JSON arguments come per chunk and may repeat (2), every
call may say ``index: 0`` (3), ``[DONE]`` may never come (4), ``usage`` is cumulative
on every chunk (6), and an error can arrive inside a 200 stream (7). :class:`StreamState`
folds raw chunks into *standard* chunks (name once, arguments once, distinct indices,
one usage chunk at the end) and says when the stream is complete. It does no I/O, so the
sync client, the async client and the OpenAI SDK transport share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nebo_core.budget import BudgetSnapshot
from nebo_core.errors import NeboStreamTruncated
from nebo_core.wire import error_from_stream_event

DONE = "[DONE]"


class SSEDecoder:
    """Incremental ``text/event-stream`` decoder: feed lines, get each event's data string.

    :attr:`event` names the event just returned (``None`` for a plain ``data:`` event), so a
    reader can tell an ``event: error`` apart whatever its data looks like."""

    __slots__ = ("_data", "_name", "event")

    def __init__(self) -> None:
        self._data: list[str] = []
        self._name: str | None = None
        self.event: str | None = None

    def feed_line(self, line: str) -> str | None:
        """One line (without its newline); returns an event's data when the event is complete."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        elif name == "event":
            self._name = value.strip() or None
        return None

    def flush(self) -> str | None:
        """The pending event at end of stream (Nebo may end without a blank line)."""
        self.event, self._name = self._name, None
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data


@dataclass
class _Call:
    id: str | None
    out_index: int
    name: str = ""
    arguments: str = ""
    whole: bool = False
    announced: bool = False


@dataclass
class _Choice:
    index: int
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[_Call] = field(default_factory=list)
    by_id: dict[str, _Call] = field(default_factory=dict)
    latest_at_raw: dict[int, _Call] = field(default_factory=dict)
    finish_reason: str | None = None
    role_sent: bool = False

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.reasoning:
            msg["reasoning_content"] = "".join(self.reasoning)
        if self.calls:
            msg["tool_calls"] = [
                {
                    "id": c.id or f"call_{c.out_index}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.calls
            ]
        return msg


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_index(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _is_json_object(text: str) -> bool:
    stripped = text.rstrip()
    if not stripped.endswith("}"):
        return False
    try:
        return isinstance(json.loads(stripped), dict)
    except ValueError:
        return False


class StreamState:
    """Folds raw chunks (parsed JSON) into standard chunks; pure, shared by every stream reader."""

    def __init__(
        self,
        snapshot: BudgetSnapshot | None = None,
        request_id: str | None = None,
        expected_choices: int = 1,
    ) -> None:
        self.snapshot = snapshot
        self.request_id = request_id
        self.expected_choices = max(expected_choices, 1)
        """The request's ``n``: the stream is not over until that many choices have finished."""
        self.id: str | None = None
        self.model: str | None = None
        self.created: int | None = None
        self.usage: dict[str, Any] | None = None
        self.provider_metadata: dict[str, Any] | None = None
        self.system_fingerprint: str | None = None
        self._choices: dict[int, _Choice] = {}
        self.done = False
        """True once the stream is complete: stop reading (Nebo may never send ``[DONE]``)."""
        self.chunks_seen = 0

    # -- folding --------------------------------------------------------------------------

    def feed_data(self, data: str) -> list[dict[str, Any]]:
        """One SSE event's data string; returns the standard chunks to emit."""
        if data.strip() == DONE:
            self.done = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            return []  # a keep-alive or garbage line must not end a good stream
        return self.feed(chunk) if isinstance(chunk, dict) else []

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """One parsed chunk; raises the typed error for an in-stream error event."""
        if "error" in chunk and not chunk.get("choices"):
            raise error_from_stream_event(chunk["error"], self.snapshot, self.request_id)
        self.chunks_seen += 1
        self.id = self.id or chunk.get("id")
        self.model = chunk.get("model") or self.model
        self.created = self.created or chunk.get("created")
        self.system_fingerprint = chunk.get("system_fingerprint") or self.system_fingerprint
        if isinstance(chunk.get("provider_metadata"), dict):
            self.provider_metadata = chunk["provider_metadata"]
        out: list[dict[str, Any]] = []
        for raw in chunk.get("choices") or []:
            if isinstance(raw, dict):
                delta = self._fold_choice(raw)
                if delta is not None:
                    out.append(self._chunk([delta]))
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]  # cumulative on every chunk (quirk 6): the latest wins
            # Usage on the finishing chunk, or after it, is final: stop here, [DONE] or not (quirk 4).
            # Usage seen only before the finish may still grow: readers give it a short grace.
            self.done = self.done or self.all_finished
        return out

    def _fold_choice(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        index = _as_index(raw.get("index"))
        choice = self._choices.get(index)
        if choice is None:  # not setdefault(): that would build a _Choice for every chunk
            choice = self._choices[index] = _Choice(index)
        if choice.finish_reason is not None:
            return None  # a repeat after the end of this choice
        delta_in = _as_dict(raw.get("delta"))
        delta: dict[str, Any] = {}
        if not choice.role_sent:
            delta["role"] = "assistant"
            choice.role_sent = True
        text = delta_in.get("content")
        if isinstance(text, str) and text:
            choice.content.append(text)
            delta["content"] = text
        reasoning = delta_in.get("reasoning_content") or delta_in.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            choice.reasoning.append(reasoning)
            delta["reasoning_content"] = reasoning
        calls = [c for c in (delta_in.get("tool_calls") or []) if isinstance(c, dict)]
        tool_deltas = [d for d in (self._fold_call(choice, c) for c in calls) if d is not None]
        if tool_deltas:
            delta["tool_calls"] = tool_deltas
        if isinstance(delta_in.get("refusal"), str) and delta_in["refusal"]:
            delta["refusal"] = delta_in["refusal"]
        finish = raw.get("finish_reason")
        if isinstance(finish, str) and finish:
            choice.finish_reason = finish
        if not delta and not finish:
            return None
        out: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish or None}
        if raw.get("logprobs") is not None:
            out["logprobs"] = raw["logprobs"]
        return out

    def _fold_call(self, choice: _Choice, raw: dict[str, Any]) -> dict[str, Any] | None:
        raw_index = _as_index(raw.get("index"))
        raw_id = raw.get("id")
        call_id = raw_id if isinstance(raw_id, str) and raw_id else None
        fn = _as_dict(raw.get("function"))
        call = choice.by_id.get(call_id) if call_id else choice.latest_at_raw.get(raw_index)
        if call is None:
            # A new id is a new call even at a used index (quirk 3).
            call = _Call(call_id, len(choice.calls))
            choice.calls.append(call)
            if call_id:
                choice.by_id[call_id] = call
        choice.latest_at_raw[raw_index] = call
        name = fn.get("name")
        if isinstance(name, str) and name and not call.name:
            call.name = name  # the first non-empty name wins (quirk 1)
        args = fn.get("arguments")
        fragment = ""
        if isinstance(args, str) and args and not call.whole:
            # Whole arguments per chunk, maybe repeated (quirk 2): keep them once.
            call.arguments += args
            fragment = args
            call.whole = _is_json_object(call.arguments)
        if call.announced and not fragment:
            return None
        out: dict[str, Any] = {"index": call.out_index}
        if not call.announced and (call.name or call.id):
            out.update({"id": call.id or f"call_{call.out_index}", "type": "function"})
            out["function"] = {"name": call.name, "arguments": fragment}
            call.announced = bool(call.name)
        elif fragment:
            out["function"] = {"arguments": fragment}
        else:
            return None
        return out

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id or "",
            "object": "chat.completion.chunk",
            "created": self.created or 0,
            "model": self.model or "",
            "choices": choices,
        }
        if self.system_fingerprint:
            chunk["system_fingerprint"] = self.system_fingerprint
        if usage is not None:
            chunk["usage"] = usage
        return chunk

    # -- ending ---------------------------------------------------------------------------

    @property
    def all_finished(self) -> bool:
        """Whether every expected choice has a ``finish_reason``: only final usage may follow."""
        return len(self._choices) >= self.expected_choices and all(
            c.finish_reason for c in self._choices.values()
        )

    def finish(self) -> list[dict[str, Any]]:
        """At the end of the stream: the final usage chunk, or the truncation error."""
        if not self.all_finished:
            raise NeboStreamTruncated(
                "the Nebo stream ended before a finish_reason; the partial answer is attached",
                partial=self.message,
                request_id=self.request_id,
                snapshot=self.snapshot,
            )
        return [self._chunk([], self.usage)] if self.usage is not None else []

    @property
    def finish_reason(self) -> str | None:
        """The first choice's ``finish_reason`` (``None`` while streaming)."""
        choice = self._choices.get(0)
        return choice.finish_reason if choice else None

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message assembled so far (first choice)."""
        choice = self._choices.get(0)
        return choice.message() if choice else {"role": "assistant", "content": None}

    def completion(self) -> dict[str, Any]:
        """Everything streamed, as a standard non-stream ``chat.completion`` object."""
        choices = [
            {"index": c.index, "message": c.message(), "finish_reason": c.finish_reason}
            for c in sorted(self._choices.values(), key=lambda c: c.index)
        ]
        body: dict[str, Any] = {
            "id": self.id or "",
            "object": "chat.completion",
            "created": self.created or 0,
            "model": self.model or "",
            "choices": choices,
        }
        if self.usage is not None:
            body["usage"] = self.usage
        if self.provider_metadata is not None:
            body["provider_metadata"] = self.provider_metadata
        return body
