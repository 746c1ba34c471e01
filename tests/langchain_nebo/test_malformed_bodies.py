"""Malformed 200 bodies never crash langchain_nebo untyped (#12 section 3).

Each body is served by a raw loopback server (``raw`` in conftest) through all four chat paths
(invoke, ainvoke, stream, astream) and both embeddings paths. Each gives a typed error (exact
class) or a best-effort result that shows what was wrong; the server sees exactly one request.
The core rejects some bodies itself (no ``choices`` list, not JSON, a wrong number of
vectors); the rest is handled in ``langchain_nebo._convert`` and at the embeddings boundary.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

from langchain_nebo import ChatNebo, NeboAPIError, NeboEmbeddings, NeboStreamTruncatedError

CHAT_PATHS = ("invoke", "ainvoke", "stream", "astream")


def _run(model: ChatNebo, path: str) -> AIMessage | AIMessageChunk:
    if path == "invoke":
        return model.invoke("hi")
    if path == "ainvoke":
        return asyncio.run(model.ainvoke("hi"))
    if path == "stream":
        chunks = list(model.stream("hi"))
    else:

        async def collect() -> list[AIMessageChunk]:
            return [c async for c in model.astream("hi")]

        chunks = asyncio.run(collect())
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    return whole


def _chunk(choice: Any = None, **extra: Any) -> dict[str, Any]:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-5-mini", **extra}
    body["choices"] = [choice] if choice is not None else []
    return body


def _serve(raw: Any, path: str, body: dict[str, Any], events: list[Any]) -> None:
    if path in ("stream", "astream"):
        raw.reply(stream=raw.sse(*events, "[DONE]"))
    else:
        raw.reply(body)


def _with(raw: Any, **message: Any) -> dict[str, Any]:
    body = raw.completion()
    body["choices"][0]["message"].update(message)
    return body


# --- answers that are gone: a typed error -------------------------------------------------------


@pytest.mark.parametrize("path", CHAT_PATHS)
@pytest.mark.parametrize("choices", [[None], [], ["text"], None, "garbage"], ids=repr)
def test_no_readable_choice_is_a_typed_error(
    raw: Any, raw_connect: dict[str, Any], path: str, choices: Any
) -> None:
    body = {**raw.completion(), "choices": choices}
    # A stream whose choices are unreadable never finishes: the core calls it truncated.
    _serve(raw, path, body, [_chunk(**{"choices": choices}) if choices is not None else _chunk()])
    expected = NeboStreamTruncatedError if path in ("stream", "astream") else NeboAPIError
    with pytest.raises(expected) as err:
        _run(ChatNebo(**raw_connect), path)
    assert type(err.value) is expected
    assert len(raw.requests) == 1


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
@pytest.mark.parametrize(
    "content", [b"not json", b"[1, 2]", b'"a string"', b"\xff\xfe"], ids=["text", "array", "string", "bytes"]
)
def test_what_the_core_rejects_arrives_typed(
    raw: Any, raw_connect: dict[str, Any], path: str, content: bytes
) -> None:
    raw.reply(raw=content)
    with pytest.raises(NeboAPIError) as err:
        _run(ChatNebo(**raw_connect), path)
    assert type(err.value) is NeboAPIError


# --- best effort: the answer, with what was wrong kept visible ---------------------------------


@pytest.mark.parametrize("path", CHAT_PATHS)
def test_tool_calls_that_are_not_a_list_become_an_invalid_tool_call(
    raw: Any, raw_connect: dict[str, Any], path: str
) -> None:
    delta = {"index": 0, "delta": {"content": "ok", "tool_calls": "garbage"}, "finish_reason": "stop"}
    _serve(raw, path, _with(raw, tool_calls="garbage"), [_chunk(delta)])
    msg = _run(ChatNebo(**raw_connect), path)
    assert msg.content == "ok"
    assert msg.tool_calls == []
    if path in ("invoke", "ainvoke"):
        assert [c["error"] for c in msg.invalid_tool_calls] == ["tool_calls is not a list"]
        assert msg.invalid_tool_calls[0]["args"] == '"garbage"'
    else:  # the core's stream repair drops tool-call fragments that are not objects
        assert msg.invalid_tool_calls == []


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
def test_each_garbled_tool_call_is_kept_as_invalid_and_good_ones_survive(
    raw: Any, raw_connect: dict[str, Any], path: str
) -> None:
    calls = [
        None,
        {"id": "a", "function": "lookup"},
        {"id": "b", "function": {"name": "f", "arguments": 5}},
        {"id": "c", "function": {"name": "g", "arguments": {"city": "Lyon"}}},
        {"id": "d", "function": {"name": "h", "arguments": "{not json"}},
        {"id": 7, "function": {"name": 8, "arguments": None}},
    ]
    raw.reply(_with(raw, tool_calls=calls))
    msg = _run(ChatNebo(**raw_connect), path)
    assert [(c["name"], c["args"], c["id"]) for c in msg.tool_calls] == [("g", {"city": "Lyon"}, "c")]
    assert [(c["id"], c["error"]) for c in msg.invalid_tool_calls] == [
        (None, "a tool call that is not an object"),
        ("a", "a tool call without a name"),
        ("b", "arguments are not JSON"),
        ("d", "arguments are not JSON"),
        (None, "a tool call without a name"),
    ]


GARBLED_USAGE = [
    ({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": "x"}, (5, 2, 7)),
    ({"prompt_tokens": "5", "completion_tokens": 2.0, "total_tokens": None}, (5, 2, 7)),
    ({"prompt_tokens": -1, "completion_tokens": "nan", "total_tokens": 9}, (0, 0, 9)),
    ({"prompt_tokens": "x", "completion_tokens": [], "total_tokens": {}}, None),
    ("garbage", None),
    (
        {
            "prompt_tokens": 5,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": "x"},
            "completion_tokens_details": "y",
        },
        (5, 2, 7),
    ),
]


@pytest.mark.parametrize("path", CHAT_PATHS)
@pytest.mark.parametrize(("usage", "expected"), GARBLED_USAGE, ids=lambda v: repr(v)[:40])
def test_garbled_usage_is_read_as_far_as_it_goes(
    raw: Any, raw_connect: dict[str, Any], path: str, usage: Any, expected: Any
) -> None:
    body = {**raw.completion(), "usage": usage}
    finish = {"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}
    _serve(raw, path, body, [_chunk(finish), _chunk(usage=usage)])
    msg = _run(ChatNebo(**raw_connect), path)
    assert msg.content == "ok"
    got = msg.usage_metadata
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert (got["input_tokens"], got["output_tokens"], got["total_tokens"]) == expected
        assert "input_token_details" not in got
        assert "output_token_details" not in got


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
@pytest.mark.parametrize(
    ("message", "content"),
    [
        ({"content": 123}, "123"),
        ({"content": [{"type": "text", "text": "a"}, "b", {"type": "image"}]}, "ab"),
        ({"content": {"text": "x"}}, '{"text": "x"}'),
        ({"content": None}, ""),
    ],
    ids=["number", "parts", "object", "null"],
)
def test_content_of_another_type_becomes_text(
    raw: Any, raw_connect: dict[str, Any], path: str, message: dict[str, Any], content: str
) -> None:
    raw.reply(_with(raw, **message))
    assert _run(ChatNebo(**raw_connect), path).content == content


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
def test_a_choice_without_a_message_or_reason_is_an_empty_answer_with_its_metadata(
    raw: Any, raw_connect: dict[str, Any], path: str
) -> None:
    body = raw.completion()
    body["choices"][0] = {"index": 0, "message": "text", "finish_reason": 5, "logprobs": "x"}
    raw.reply(body)
    msg = _run(ChatNebo(**raw_connect), path)
    assert (msg.content, msg.response_metadata["finish_reason"]) == ("", None)
    assert msg.response_metadata["logprobs"] == "x"  # what the server sent, as sent


@pytest.mark.parametrize("path", ["stream", "astream"])
def test_garbled_stream_logprobs_are_left_out_and_chunks_still_merge(
    raw: Any, raw_connect: dict[str, Any], path: str
) -> None:
    good = {"content": [{"token": "a", "logprob": -1.0}]}
    events = [
        _chunk({"index": 0, "delta": {"content": "a"}, "logprobs": good}),
        _chunk({"index": 0, "delta": {"content": "b"}, "logprobs": "garbage"}),
        _chunk({"index": 0, "delta": {"content": "c"}, "logprobs": {"content": "x"}}),
        _chunk({"index": 0, "delta": {}, "finish_reason": "stop"}),
    ]
    raw.reply(stream=raw.sse(*events, "[DONE]"))
    msg = _run(ChatNebo(**raw_connect), path)
    assert msg.content == "abc"
    assert msg.response_metadata["logprobs"] == good


# --- embeddings ---------------------------------------------------------------------------------


def _embed(model: NeboEmbeddings, path: str, texts: list[str]) -> list[list[float]]:
    if path == "sync":
        return model.embed_documents(texts)
    return asyncio.run(model.aembed_documents(texts))


def _vectors(*entries: Any) -> dict[str, Any]:
    return {
        "object": "list",
        "data": list(entries),
        "model": "x",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }


@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize(
    "body",
    [
        _vectors({"index": 0, "embedding": "!!!not base64"}, {"index": 1, "embedding": [1.0]}),
        _vectors({"index": 0, "embedding": "AAAA="}, {"index": 1, "embedding": [1.0]}),
        _vectors({"index": 0, "embedding": ["x"]}, {"index": 1, "embedding": [1.0]}),
        _vectors({"index": 0, "embedding": [None]}, {"index": 1, "embedding": [1.0]}),
        _vectors(None, {"index": 1, "embedding": [1.0]}),
        _vectors({"index": 0, "embedding": [1.0]}),
        {"object": "list", "data": "garbage"},
        {"object": "list"},
    ],
    ids=["base64", "short-base64", "text", "null-number", "null-entry", "count", "data", "no-data"],
)
def test_undecodable_embeddings_are_a_typed_error(
    raw: Any, raw_connect: dict[str, Any], path: str, body: dict[str, Any]
) -> None:
    raw.reply(copy.deepcopy(body))
    with pytest.raises(NeboAPIError) as err:
        _embed(NeboEmbeddings(**raw_connect), path, ["a", "b"])
    assert type(err.value) is NeboAPIError
    assert len(raw.requests) == 1


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_garbled_index_is_a_typed_error_or_the_vectors_as_sent(
    raw: Any, raw_connect: dict[str, Any], path: str
) -> None:
    raw.reply(_vectors({"index": "a", "embedding": [1.0]}, {"index": 1, "embedding": [2.0]}))
    outcome: Any
    try:
        outcome = _embed(NeboEmbeddings(**raw_connect), path, ["a", "b"])
    except NeboAPIError as err:  # today: nebo_core's sort raises, the adapter types it
        outcome = err
    if isinstance(outcome, NeboAPIError):
        assert "cannot be decoded" in str(outcome)
    else:  # with the proposed nebo_core fix: an unreadable index sorts first
        assert outcome == [[1.0], [2.0]]


@pytest.mark.parametrize("path", ["sync", "async"])
def test_embeddings_with_garbled_usage_still_return_vectors(
    raw: Any, raw_connect: dict[str, Any], path: str
) -> None:
    body = _vectors({"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]})
    body["usage"] = {"prompt_tokens": "x", "total_tokens": [1]}
    raw.reply(body)
    assert _embed(NeboEmbeddings(**raw_connect), path, ["a", "b"]) == [[1.0], [2.0]]
