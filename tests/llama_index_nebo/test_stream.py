"""``Nebo.stream_chat``/``astream_chat``: each response carries its delta and the whole message so
far, built in constant work per chunk (issue 12 §8), tool calls included; on a raw loopback server.

Linearity is shown without a clock: a profiler counts the Python calls the adapter makes (and
the C calls it makes from its own frames) per chunk, which must be the same at the end of a long
stream as at its start, and the whole-message conversions, which must not happen per chunk.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole, TextBlock, ToolCallBlock

import llama_index_nebo
from llama_index_nebo import Nebo
from llama_index_nebo import _convert as conv

HELLO = [ChatMessage(role=MessageRole.USER, content="hello")]
ADAPTER = str(Path(llama_index_nebo.__file__).parent)
# Whole-message conversions: the core's assembled message, and the adapter's full conversion.
WHOLE = {("sse.py", "message"), ("_convert.py", "from_openai_message")}


def fragments(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def tool_stream(raw: Any) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Text, then two calls whose arguments stream in interleaved fragments (OpenAI style)."""
    args: dict[str, dict[str, Any]] = {
        "call_a": {"a": 3, "b": 4, "note": "x" * 40},
        "call_b": {"city": "Paris"},
    }
    a, b = (fragments(json.dumps(v), 7) for v in args.values())
    chunks = [raw.chunk({"role": "assistant", "content": "Let me "}), raw.chunk({"content": "check."})]
    chunks.append(
        raw.chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "add", "arguments": a[0]},
                    }
                ]
            }
        )
    )
    chunks.append(
        raw.chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            }
        )
    )
    for i in range(max(len(a), len(b))):
        if i + 1 < len(a):
            chunks.append(raw.chunk({"tool_calls": [{"index": 0, "function": {"arguments": a[i + 1]}}]}))
        if i < len(b):
            chunks.append(raw.chunk({"tool_calls": [{"index": 1, "function": {"arguments": b[i]}}]}))
    return chunks, args


async def collect(llm: Nebo, is_async: bool) -> list[ChatResponse]:
    if is_async:
        return [r async for r in await llm.astream_chat(HELLO)]
    return list(llm.stream_chat(HELLO))


@pytest.mark.parametrize("is_async", [False, True])
async def test_every_response_is_the_message_so_far_with_tool_call_deltas(raw: Any, is_async: bool) -> None:
    chunks, args = tool_stream(raw)
    raw.server.answer(raw.sse(chunks))
    llm = Nebo(**raw.conn)
    responses = await collect(llm, is_async)
    *steps, final = responses

    # Replay the wire's deltas by hand: each response must show exactly the message up to it,
    # and must not have changed when later chunks arrived.
    text, so_far = "", {"call_a": "", "call_b": ""}
    assert len(steps) == len(chunks)
    for response, sent in zip(steps, chunks, strict=True):
        delta = sent["choices"][0]["delta"]
        text += delta.get("content") or ""
        for call in delta.get("tool_calls") or []:
            so_far[["call_a", "call_b"][call["index"]]] += call["function"]["arguments"]
        assert response.delta == (delta.get("content") or "")
        assert response.message.content == text
        blocks = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
        assert [(b.tool_call_id, b.tool_kwargs) for b in blocks] == [
            (i, so_far[i]) for i in so_far if i in {b.tool_call_id for b in blocks}
        ]
        calls = response.message.additional_kwargs.get("tool_calls", [])
        assert [c["function"]["arguments"] for c in calls] == [b.tool_kwargs for b in blocks]
        assert response.raw is not None
        assert response.raw["object"] == "chat.completion.chunk"

    assert final.delta == ""
    assert final.message.content == "Let me check."
    selections = llm.get_tool_calls_from_response(final)
    assert [(s.tool_id, s.tool_name, s.tool_kwargs) for s in selections] == [
        ("call_a", "add", args["call_a"]),
        ("call_b", "weather", args["call_b"]),
    ]
    # The same message as the one nebo_core assembled, converted in one go.
    assert final.raw is not None
    assert final.message == conv.from_openai_message(final.raw["choices"][0]["message"])
    assert final.additional_kwargs["completion_tokens"] == len(chunks)
    # Mid-stream, an agent reading tool calls sees the arguments parsed as far as they are complete.
    assert llm.get_tool_calls_from_response(steps[-1])[1].tool_kwargs == args["call_b"]


async def test_sync_and_async_streams_agree(raw: Any) -> None:
    chunks, _ = tool_stream(raw)
    raw.server.answer(raw.sse(chunks), raw.sse(chunks))
    llm = Nebo(**raw.conn)
    sync, asynced = await collect(llm, False), await collect(llm, True)
    assert [(r.delta, r.message) for r in sync] == [(r.delta, r.message) for r in asynced]


def test_whitespace_beside_tool_calls_is_dropped_mid_stream_too(raw: Any) -> None:
    call = {"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    raw.server.answer(
        raw.sse([raw.chunk({"role": "assistant", "content": " "}), raw.chunk({"tool_calls": [call]})])
    )
    first, second, final = list(Nebo(**raw.conn).stream_chat(HELLO))
    assert first.message.blocks == [TextBlock(text=" ")]  # no call yet: the text is all there is
    assert [type(b) for b in second.message.blocks] == [ToolCallBlock]
    assert [type(b) for b in final.message.blocks] == [ToolCallBlock]


def test_reasoning_and_logprobs_stream(raw: Any) -> None:
    lp = {"content": [{"token": "a", "logprob": -0.25, "bytes": [97], "top_logprobs": []}]}
    chunks = [
        raw.chunk({"role": "assistant", "reasoning_content": "think"}),
        raw.chunk({"content": "a"}, logprobs=lp),
    ]
    raw.server.answer(raw.sse(chunks))
    thinking, text, final = list(Nebo(**raw.conn).stream_chat(HELLO))
    assert thinking.additional_kwargs == {"thinking_delta": "think"}
    assert text.logprobs is not None
    assert text.logprobs[0][0].logprob == -0.25
    assert final.logprobs == text.logprobs
    assert getattr(final.message.blocks[0], "content", None) == "think"


# -- linearity, by counting work ----------------------------------------------------------------


class WorkCounter:
    """A profiler hook: Python calls into the adapter, C calls made from its frames, and
    whole-message conversions anywhere (by file and function name)."""

    def __init__(self) -> None:
        self.adapter = 0
        self.whole = 0

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event not in ("call", "c_call"):
            return
        path = frame.f_code.co_filename
        if path.startswith(ADAPTER):
            self.adapter += 1
        if event == "call" and (Path(path).name, frame.f_code.co_name) in WHOLE:
            self.whole += 1


def per_chunk_work(responses: Iterator[ChatResponse]) -> tuple[list[int], int, list[ChatResponse]]:
    """The adapter's cumulative work after each response, the whole-message conversions, the responses."""
    counter, marks, seen = WorkCounter(), [], []
    sys.setprofile(counter)
    try:
        for response in responses:
            marks.append(counter.adapter)
            seen.append(response)
    finally:
        sys.setprofile(None)
    return marks, counter.whole, seen


async def aper_chunk_work(
    responses: AsyncIterator[ChatResponse],
) -> tuple[list[int], int, list[ChatResponse]]:
    counter, marks, seen = WorkCounter(), [], []
    sys.setprofile(counter)
    try:
        async for response in responses:
            marks.append(counter.adapter)
            seen.append(response)
    finally:
        sys.setprofile(None)
    return marks, counter.whole, seen


def window_costs(marks: list[int], chunks: int) -> tuple[int, int]:
    """The adapter's work over the first and the last tenth of the chunks (the first response,
    which opened the request, and the final one, which sums the stream up, left out)."""
    tenth = chunks // 10
    return marks[1 + tenth] - marks[1], marks[chunks - 1] - marks[chunks - 1 - tenth]


@pytest.mark.parametrize("is_async", [False, True])
async def test_long_text_stream_costs_the_same_per_chunk_at_the_end(raw: Any, is_async: bool) -> None:
    n = 4000
    raw.server.answer(raw.sse([raw.chunk({"content": f"w{i} "}) for i in range(n)]))
    llm = Nebo(**raw.conn)
    if is_async:
        marks, whole, responses = await aper_chunk_work(await llm.astream_chat(HELLO))
    else:
        marks, whole, responses = per_chunk_work(llm.stream_chat(HELLO))
    first, last = window_costs(marks, n)
    assert first > 0
    # Constant work per chunk: the 4,000th costs what the 2nd did (within a read's worth of calls:
    # how TCP splits the stream into reads varies with load).
    assert first * 0.98 <= last <= first * 1.02
    assert whole <= 1  # the assembled message is built once, for the final response, not per chunk
    assert responses[-1].message.content == "".join(f"w{i} " for i in range(n))
    assert responses[n // 2].message.content == "".join(f"w{i} " for i in range(n // 2 + 1))


def test_long_tool_arguments_cost_the_same_per_chunk_at_the_end(raw: Any) -> None:
    n = 3000
    text = json.dumps({"items": list(range(n))})
    pieces = fragments(text, max(len(text) // n, 1))[:n]
    head = {"index": 0, "id": "call_x", "type": "function", "function": {"name": "store", "arguments": ""}}
    chunks = [raw.chunk({"role": "assistant", "tool_calls": [head]})]
    chunks += [raw.chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces]
    chunks.append(
        raw.chunk({"tool_calls": [{"index": 0, "function": {"arguments": text[len("".join(pieces)) :]}}]})
    )
    raw.server.answer(raw.sse(chunks))
    llm = Nebo(**raw.conn)
    marks, whole, responses = per_chunk_work(llm.stream_chat(HELLO))
    first, last = window_costs(marks, n)
    assert last == first
    assert whole <= 1
    (call,) = llm.get_tool_calls_from_response(responses[-1])
    assert call.tool_kwargs == {"items": list(range(n))}
