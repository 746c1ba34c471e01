"""Malformed 200 answers (issue 12 §3), served byte for byte by a raw loopback server: every
path of ``Nebo`` and ``NeboEmbedding`` gives a typed ``NeboUpstreamError`` or a best-effort
result, never an ``AttributeError``, ``ValueError``, ``TypeError`` or pydantic ``ValidationError``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole

from llama_index_nebo import Nebo, NeboEmbedding, NeboUpstreamError

HELLO = [ChatMessage(role=MessageRole.USER, content="hello")]
MODES = ["chat", "achat", "complete", "acomplete"]


async def answer(llm: Nebo, mode: str) -> ChatResponse:
    """One non-streaming call through ``mode``; a completion is mapped back to a ChatResponse."""
    if mode in ("chat", "achat"):
        response: ChatResponse = llm.chat(HELLO) if mode == "chat" else await llm.achat(HELLO)
        return response
    done = llm.complete("hello") if mode == "complete" else await llm.acomplete("hello")
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=done.text), raw=done.raw)


def with_message(raw: Any, message: Any, **extra: Any) -> Any:
    body = raw.completion({"role": "assistant", "content": None})
    body["choices"][0]["message"] = message
    body.update(extra)
    return raw.Reply(body)


UNREADABLE: dict[str, Callable[[Any], Any]] = {
    "choices [null]": lambda raw: raw.Reply({**raw.completion({}), "choices": [None]}),
    "choices []": lambda raw: raw.Reply({**raw.completion({}), "choices": []}),
    "message is a string": lambda raw: with_message(raw, "garbage"),
    "tool_calls a string": lambda raw: with_message(raw, {"role": "assistant", "tool_calls": "garbage"}),
    "tool_calls an int": lambda raw: with_message(raw, {"role": "assistant", "tool_calls": 7}),
    "tool call not an object": lambda raw: with_message(raw, {"role": "assistant", "tool_calls": [1, "x"]}),
    "tool call without a name": lambda raw: with_message(
        raw, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}
    ),
    "arguments a list": lambda raw: with_message(
        raw, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": [1]}}]}
    ),
    "content a dict without text": lambda raw: with_message(raw, {"role": "assistant", "content": {"a": 1}}),
    "content a bool": lambda raw: with_message(raw, {"role": "assistant", "content": True}),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(UNREADABLE))
async def test_unreadable_answer_is_a_typed_upstream_error(raw: Any, case: str, mode: str) -> None:
    raw.server.answer(UNREADABLE[case](raw))
    llm = Nebo(max_retries=0, **raw.conn)
    # nebo_core rejects some of these itself, the adapter the rest: the same error either way.
    with pytest.raises(NeboUpstreamError, match="Nebo returned") as info:
        await answer(llm, mode)
    assert info.value.status == 200
    assert isinstance(info.value.body, dict)  # the body rides along for the bug report
    assert len(raw.server.seen) == 1  # not retried: the server answered, and billed


BEST_EFFORT: dict[str, tuple[Any, str]] = {
    "content a number": (42, "42"),
    "content a float": (2.5, "2.5"),
    "content one part": ({"type": "text", "text": "hi"}, "hi"),
    "content a list of parts": ([{"type": "text", "text": "a"}, "b", {"type": "image_url"}, 3], "ab"),
    "content an empty list": ([], ""),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(BEST_EFFORT))
async def test_odd_content_becomes_text(raw: Any, case: str, mode: str) -> None:
    content, text = BEST_EFFORT[case]
    raw.server.answer(with_message(raw, {"role": "assistant", "content": content}))
    response = await answer(Nebo(**raw.conn), mode)
    assert (response.message.content or "") == text


async def test_odd_fields_around_a_good_answer_are_tolerated(raw: Any) -> None:
    message = {
        "role": "assistant",
        "content": " ",
        "reasoning_content": 5,
        "tool_calls": [
            {"id": 9, "function": {"name": "add", "arguments": {"a": 1}}},
            {"function": {"name": "mul", "arguments": None}},
        ],
    }
    garbage_usage = {"prompt_tokens": "x", "completion_tokens": -3, "total_tokens": "x"}
    raw.server.answer(with_message(raw, message, usage=garbage_usage))
    llm = Nebo(**raw.conn)
    response = llm.chat(HELLO)
    calls = llm.get_tool_calls_from_response(response)
    assert [(c.tool_id, c.tool_name, c.tool_kwargs) for c in calls] == [
        ("call_0", "add", {"a": 1}),
        ("call_1", "mul", {}),
    ]
    # Stored as standard call dicts, so the message can be sent back as history.
    assert response.message.additional_kwargs["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    assert response.message.content is None  # Nebo's " " beside tool calls is a placeholder
    kw = response.additional_kwargs
    assert (kw["prompt_tokens"], kw["completion_tokens"], kw["total_tokens"]) == (None, None, None)
    assert llm.tracker.totals().total.calls == 1


@pytest.mark.parametrize(
    ("logprobs", "expected"),
    [
        ("garbage", None),
        ({"content": "x"}, None),
        ({"content": [None, {"token": 1}, {"token": "a", "logprob": "nan"}]}, []),
        (
            {"content": [{"token": "a", "logprob": -0.5, "bytes": [97, 999], "top_logprobs": [7]}]},
            [[("a", -0.5, [])]],
        ),
    ],
)
def test_garbled_logprobs_are_skipped(raw: Any, logprobs: Any, expected: Any) -> None:
    body = raw.completion({"role": "assistant", "content": "a"}, logprobs=logprobs)
    raw.server.answer(raw.Reply(body))
    response = Nebo(**raw.conn).chat(HELLO)
    got = response.logprobs
    assert (None if got is None else [[(p.token, p.logprob, p.bytes) for p in t] for t in got]) == expected


@pytest.mark.parametrize("is_async", [False, True])
async def test_garbled_stream_chunks_are_skipped(raw: Any, is_async: bool) -> None:
    chunks = [
        raw.chunk({"role": "assistant", "content": "a"}),
        {**raw.chunk({}), "choices": [None]},
        raw.chunk({"content": 42}),
        raw.chunk({"tool_calls": "garbage"}),
        raw.chunk({"tool_calls": [1, {"index": "x"}]}),
        {**raw.chunk({}), "choices": "garbage"},
        raw.chunk({"content": "b"}),
    ]
    raw.server.answer(raw.sse(chunks, usage={"prompt_tokens": "x", "total_tokens": "x"}))
    llm = Nebo(**raw.conn)
    if is_async:
        responses = [r async for r in await llm.astream_chat(HELLO)]
    else:
        responses = list(llm.stream_chat(HELLO))
    assert "".join(r.delta or "" for r in responses) == "ab"
    assert responses[-1].message.content == "ab"
    assert responses[-1].additional_kwargs["total_tokens"] is None
    assert llm.tracker.totals().total.calls == 1


def embedding_reply(raw: Any, data: Any) -> Any:
    return raw.Reply({"object": "list", "data": data, "model": "m", "usage": {"total_tokens": "x"}})


EMBEDDINGS: dict[str, Any] = {
    "data [null]": [None],
    "a null inside the floats": [{"index": 0, "embedding": [1.0, None]}],
    "data a string": "garbage",
    "too few vectors": [],
    "embedding not base64": [{"index": 0, "embedding": "%%% not base64 %%%"}],
    "embedding base64 of 3 bytes": [{"index": 0, "embedding": "YWJj"}],
    "embedding of strings": [{"index": 0, "embedding": ["x", "y"]}],
    "embedding of nulls": [{"index": 0, "embedding": [None]}],
    "embedding a dict": [{"index": 0, "embedding": {"a": 1}}],
}


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("case", sorted(EMBEDDINGS))
async def test_unreadable_embeddings_are_a_typed_upstream_error(raw: Any, case: str, is_async: bool) -> None:
    raw.server.answer(embedding_reply(raw, EMBEDDINGS[case]))
    embed = NeboEmbedding(max_retries=0, **raw.conn)

    async def call() -> list[float]:
        if is_async:
            return await embed.aget_text_embedding("refund window")
        return embed.get_text_embedding("refund window")

    with pytest.raises(NeboUpstreamError) as info:
        await call()
    assert info.value.status == 200
    assert len(raw.server.seen) == 1


def test_garbled_embedding_usage_is_tolerated(raw: Any) -> None:
    raw.server.answer(embedding_reply(raw, [{"index": 0, "embedding": [1, 2.5]}]))
    embed = NeboEmbedding(**raw.conn)
    assert embed.get_text_embedding("x") == [1.0, 2.5]
    (record,) = embed.tracker.history()
    assert record.total_tokens is None
