"""``StreamAccumulator``: a stream's cumulative LlamaIndex message, built in constant work per chunk.

LlamaIndex's stream contract gives every ``ChatResponse`` its ``delta`` and the whole message
so far. Rebuilding that message from the stream state on every chunk costs the length of the
answer each time, so a long stream slows down as it goes (issue 12 §8: 200k chunks took 82 s).
Here a chunk appends its text to one string and rebuilds only the tool calls it touched; every
other block is reused from the previous message. Mid-stream a call's ``tool_kwargs`` is its
argument text so far, as LlamaIndex's ``OpenAI`` streams it (parsing it on every chunk would
cost its length each time); the final response parses each call's arguments once.

The chunks come from ``nebo_core``, already standard (one name per call, distinct indices,
string deltas; nebo-api.md 11), so this only folds, it never repairs. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    LogProb,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)

from llama_index_nebo._convert import assistant_message, logprobs, parse_arguments, response_kwargs
from nebo_core import BudgetSnapshot, UsageRecord
from nebo_core.forecast import BudgetForecast


@dataclass
class _Call:
    index: int
    id: str | None = None
    name: str = ""
    arguments: str = ""


class StreamAccumulator:
    """Folds a stream's standard chunks (first choice) into the ``ChatResponse``s LlamaIndex yields."""

    def __init__(self) -> None:
        self.text = ""
        self.reasoning = ""
        self._visible = False
        """Some non-whitespace text arrived (whitespace beside tool calls is Nebo's placeholder)."""
        self._text_block: TextBlock | None = None
        self._thinking: ThinkingBlock | None = None
        self._calls: list[_Call] = []
        self._position: dict[int, int] = {}
        self._call_dicts: list[dict[str, Any]] = []
        self._call_blocks: list[ToolCallBlock] = []
        self._logprobs: list[list[LogProb]] = []

    def feed(self, chunk: dict[str, Any]) -> ChatResponse | None:
        """The response for one chunk, or ``None`` if it carried no text, reasoning or tool call."""
        text, reasoning, chunk_logprobs = "", "", None
        touched: set[int] = set()
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) and choice.get("index", 0) == 0 else None
            if not isinstance(delta, dict):
                continue
            if isinstance(delta.get("content"), str):
                text += delta["content"]
            if isinstance(delta.get("reasoning_content"), str):
                reasoning += delta["reasoning_content"]
            calls = delta.get("tool_calls")
            touched.update(
                self._fold_call(c) for c in (calls if isinstance(calls, list) else ()) if isinstance(c, dict)
            )
            chunk_logprobs = logprobs(choice.get("logprobs"))
        if chunk_logprobs:
            self._logprobs.extend(chunk_logprobs)
        if not (text or reasoning or touched):
            return None
        if text:
            self.text += text  # one copy of the text so far: the least a cumulative message can cost
            self._visible = self._visible or not text.isspace()
            self._text_block = TextBlock(text=self.text)
        if reasoning:
            self.reasoning += reasoning
            self._thinking = ThinkingBlock(content=self.reasoning)
        for position in touched:
            self._rebuild(position)
        return ChatResponse(
            message=self._message(),
            delta=text,
            raw=chunk,
            logprobs=chunk_logprobs or None,
            additional_kwargs={"thinking_delta": reasoning} if reasoning else {},
        )

    def final(
        self,
        completion: dict[str, Any],
        usage: UsageRecord | None,
        snapshot: BudgetSnapshot | None,
        forecast: BudgetForecast | None = None,
    ) -> ChatResponse:
        """The last response: the whole message (tool arguments parsed), usage and budget, delta ``""``."""
        kwargs = [parse_arguments(c.arguments) for c in self._calls]
        message = assistant_message(self.text, self.reasoning, self._call_dicts, kwargs)
        return ChatResponse(
            message=message,
            delta="",
            raw=completion,
            logprobs=self._logprobs or None,
            additional_kwargs=response_kwargs(usage, snapshot, forecast),
        )

    def _fold_call(self, raw: dict[str, Any]) -> int:
        index = raw.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else 0
        position = self._position.get(index)
        if position is None:
            position = self._position[index] = len(self._calls)
            self._calls.append(_Call(index))
            self._call_dicts.append({})
            self._call_blocks.append(ToolCallBlock(tool_name=""))
        call = self._calls[position]
        if isinstance(raw.get("id"), str) and raw["id"] and call.id is None:
            call.id = raw["id"]
        function = raw.get("function")
        if isinstance(function, dict):
            name, fragment = function.get("name"), function.get("arguments")
            if isinstance(name, str) and name and not call.name:
                call.name = name
            if isinstance(fragment, str):
                call.arguments += fragment
        return position

    def _rebuild(self, position: int) -> None:
        call = self._calls[position]
        call_id = call.id or f"call_{call.index}"
        self._call_dicts[position] = {
            "id": call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        self._call_blocks[position] = ToolCallBlock(
            tool_call_id=call_id, tool_name=call.name, tool_kwargs=call.arguments
        )

    def _message(self) -> ChatMessage:
        blocks: list[Any] = [self._thinking] if self._thinking is not None else []
        if self._text_block is not None and (self._visible or not self._calls):
            blocks.append(self._text_block)
        blocks.extend(self._call_blocks)
        extra: dict[str, Any] = {"tool_calls": list(self._call_dicts)} if self._calls else {}
        return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra)
