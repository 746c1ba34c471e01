"""Tests for nebo_core.stream: the SSE decoder and StreamState on standard and quirky streams."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from nebo_core.errors import NeboBudgetExhausted, NeboRateLimited, NeboStreamError, NeboStreamTruncated
from nebo_core.sse import SSEDecoder, StreamState


def run(chunks: list[dict[str, Any] | str], finish: bool = True) -> tuple[StreamState, list[dict[str, Any]]]:
    """Feed chunks (dicts, or raw data strings) until done; return the state and the emitted chunks."""
    state = StreamState()
    out: list[dict[str, Any]] = []
    for item in chunks:
        if state.done:
            break
        out += state.feed_data(item) if isinstance(item, str) else state.feed(item)
    if finish:
        out += state.finish()
    return state, out


def merged_calls(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a standard OpenAI accumulator (keyed by index, concatenating) builds from emitted chunks."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in out:
        for choice in chunk["choices"]:
            for tc in choice["delta"].get("tool_calls", []):
                slot = calls.setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
                slot["id"] = slot["id"] or tc.get("id")
                fn = tc.get("function", {})
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def text_of(out: list[dict[str, Any]]) -> str:
    return "".join(c["delta"].get("content") or "" for ch in out for c in ch["choices"])


# --- SSE decoder ---------------------------------------------------------------------------


def test_sse_decoder() -> None:
    dec = SSEDecoder()
    got = [
        dec.feed_line(line)
        for line in [": keep-alive", "event: message", 'data: {"a":1}', "", "data:x", "data: y", ""]
    ]
    assert [g for g in got if g is not None] == ['{"a":1}', "x\ny"]
    assert dec.feed_line("data: tail") is None
    assert dec.flush() == "tail"
    assert dec.flush() is None


# --- standard OpenAI streams ---------------------------------------------------------------


def test_standard_text_stream(nb: SimpleNamespace) -> None:
    state, out = run(
        [
            nb.chunk("Hel"),
            nb.chunk("lo"),
            nb.chunk(finish="stop"),
            nb.chunk(choices=False, usage=nb.usage(12, 2, 37)),
            "[DONE]",
        ]
    )
    assert text_of(out) == "Hello"
    assert state.message == {"role": "assistant", "content": "Hello"}
    assert state.finish_reason == "stop"
    assert out[0]["choices"][0]["delta"]["role"] == "assistant"
    assert out[-1]["choices"] == []
    assert out[-1]["usage"]["cost_micro"] == 37
    assert sum(1 for c in out if "usage" in c) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-5-mini" for c in out)
    assert state.completion()["usage"]["total_tokens"] == 14


def test_standard_incremental_tool_call(nb: SimpleNamespace) -> None:
    state, out = run(
        [
            nb.chunk(tool_calls=[nb.call(0, "call_1", "get_weather", "")]),
            nb.chunk(tool_calls=[nb.call(0, None, None, '{"ci')]),
            nb.chunk(tool_calls=[nb.call(0, None, None, 'ty": "Par')]),
            nb.chunk(tool_calls=[nb.call(0, None, None, 'is"}')]),
            nb.chunk(finish="tool_calls"),
            nb.chunk(choices=False, usage=nb.usage()),
        ]
    )
    assert merged_calls(out) == [{"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}]
    assert state.message["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert state.message["content"] is None


def test_standard_parallel_calls_at_distinct_indices(nb: SimpleNamespace) -> None:
    _, out = run(
        [
            nb.chunk(tool_calls=[nb.call(0, "a", "read", ""), nb.call(1, "b", "grep", "")]),
            nb.chunk(tool_calls=[nb.call(1, None, None, '{"q":')]),
            nb.chunk(tool_calls=[nb.call(0, None, None, '{"path":"/a"}')]),
            nb.chunk(tool_calls=[nb.call(1, None, None, '"x"}')]),
            nb.chunk(finish="tool_calls", usage=nb.usage()),
        ]
    )
    assert merged_calls(out) == [
        {"id": "a", "name": "read", "arguments": '{"path":"/a"}'},
        {"id": "b", "name": "grep", "arguments": '{"q":"x"}'},
    ]


def test_standard_stream_waits_for_usage_after_finish(nb: SimpleNamespace) -> None:
    state = StreamState()
    state.feed(nb.chunk("hi"))
    state.feed(nb.chunk(finish="stop"))
    assert not state.done  # usage (include_usage) follows the finish chunk
    state.feed(nb.chunk(choices=False, usage=nb.usage(cost=9)))
    assert state.done
    assert state.usage is not None
    assert state.usage["cost_micro"] == 9


def test_done_marker_ends_stream() -> None:
    state = StreamState()
    assert state.feed_data(" [DONE] ") == []
    assert state.done


@pytest.mark.parametrize("garbage", ["not json", "", "[1,2]", "42", "{"])
def test_garbage_data_lines_are_skipped(garbage: str, nb: SimpleNamespace) -> None:
    state, out = run([nb.chunk("a"), garbage, nb.chunk("b", finish="stop", usage=nb.usage())])
    assert text_of(out) == "ab"


# --- Nebo quirks (nebo-api.md 4.3 and 11) --------------------------------------------------


def test_quirk1_name_repeated_every_chunk(nb: SimpleNamespace) -> None:
    _, out = run(
        [
            nb.chunk(tool_calls=[nb.call(0, "call_1", "agent", "")]),
            nb.chunk(tool_calls=[nb.call(0, "call_1", "agent", '{"task":')]),
            nb.chunk(tool_calls=[nb.call(0, "call_1", "agent", '"x"}')]),
            nb.chunk(finish="tool_calls", usage=nb.usage()),
        ]
    )
    assert merged_calls(out) == [{"id": "call_1", "name": "agent", "arguments": '{"task":"x"}'}]


def test_quirk2_whole_args_repeated(nb: SimpleNamespace) -> None:
    whole = nb.call(0, "call_a", "read", '{"path":"/a"}')
    _, out = run(
        [
            nb.chunk(tool_calls=[whole]),
            nb.chunk(tool_calls=[whole]),
            nb.chunk(tool_calls=[whole]),
            nb.chunk(finish="tool_calls", usage=nb.usage()),
        ]
    )
    assert merged_calls(out) == [{"id": "call_a", "name": "read", "arguments": '{"path":"/a"}'}]
    assert json.loads(merged_calls(out)[0]["arguments"]) == {"path": "/a"}


def test_quirk3_all_calls_at_index_zero_told_apart_by_id(nb: SimpleNamespace) -> None:
    state, out = run(
        [
            nb.chunk(tool_calls=[nb.call(0, "call_a", "read", '{"path":"/a"}')]),
            nb.chunk(tool_calls=[nb.call(0, "call_b", "grep", '{"q":"x"}')]),
            nb.chunk(tool_calls=[nb.call(0, "call_a", "read", '{"path":"/a"}')]),  # whole chunk resent
            nb.chunk(tool_calls=[nb.call(0, "call_c", "read", '{"path":"/c"}')]),
            nb.chunk(finish="tool_calls", usage=nb.usage()),
        ]
    )
    assert merged_calls(out) == [
        {"id": "call_a", "name": "read", "arguments": '{"path":"/a"}'},
        {"id": "call_b", "name": "grep", "arguments": '{"q":"x"}'},
        {"id": "call_c", "name": "read", "arguments": '{"path":"/c"}'},
    ]
    assert [c["id"] for c in state.message["tool_calls"]] == ["call_a", "call_b", "call_c"]


def test_quirk3_idless_continuation_extends_latest_call_at_index(nb: SimpleNamespace) -> None:
    _, out = run(
        [
            nb.chunk(tool_calls=[nb.call(0, "call_a", "read", '{"pa')]),
            nb.chunk(tool_calls=[nb.call(0, None, None, 'th":"/a"}')]),
            nb.chunk(tool_calls=[nb.call(0, "call_b", "grep", '{"q"')]),
            nb.chunk(tool_calls=[nb.call(0, None, None, ':"x"}')]),
            nb.chunk(finish="tool_calls", usage=nb.usage()),
        ]
    )
    assert merged_calls(out) == [
        {"id": "call_a", "name": "read", "arguments": '{"path":"/a"}'},
        {"id": "call_b", "name": "grep", "arguments": '{"q":"x"}'},
    ]


def test_repeated_whole_chunks(nb: SimpleNamespace) -> None:
    first = nb.chunk("Hello")
    _, out = run(
        [first, nb.chunk(finish="stop", usage=nb.usage()), nb.chunk(finish="stop", usage=nb.usage())]
    )
    assert text_of(out) == "Hello"
    assert sum(1 for c in out for ch in c["choices"] if ch["finish_reason"]) == 1


def test_quirk6_cumulative_usage_latest_wins(nb: SimpleNamespace) -> None:
    state, out = run(
        [
            nb.chunk("a", usage=nb.usage(100, 1, 10)),
            nb.chunk("b", usage=nb.usage(100, 2, 20)),
            nb.chunk("c", usage=nb.usage(100, 3, 30)),
            nb.chunk(finish="stop", usage=nb.usage(100, 4, 40)),
        ]
    )
    assert state.usage == nb.usage(100, 4, 40)
    usage_chunks = [c for c in out if "usage" in c]
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["usage"]["completion_tokens"] == 4
    assert state.completion()["usage"]["cost_micro"] == 40  # not 100


def test_quirk4_no_done_completes_at_finish_with_usage(nb: SimpleNamespace) -> None:
    state = StreamState()
    state.feed(nb.chunk("hi"))
    assert not state.done
    state.feed(nb.chunk(finish="stop", usage=nb.usage()))
    assert state.done  # no [DONE] needed
    assert state.finish()[0]["usage"]["cost_micro"] == 37


def test_quirk7_error_event_raises_typed_error(nb: SimpleNamespace) -> None:
    state = StreamState(request_id="req-1")
    event = {
        "error": {
            "message": "Rate limit exceeded for user",
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
            "retryable": True,
            "retry_after": "5s",
        }
    }
    with pytest.raises(NeboRateLimited) as info:
        state.feed_data(json.dumps(event))
    assert info.value.retry_after == 5.0
    assert info.value.request_id == "req-1"
    assert info.value.status == 200


def test_error_event_mid_stream(nb: SimpleNamespace) -> None:
    state = StreamState()
    state.feed(nb.chunk("partial"))
    with pytest.raises(NeboStreamError, match="upstream exploded"):
        state.feed({"error": {"message": "upstream exploded", "type": "server_error"}})
    with pytest.raises(NeboBudgetExhausted):
        StreamState().feed({"error": {"code": "USAGE_LIMIT_EXCEEDED", "message": "empty"}})


@pytest.mark.parametrize("with_content", [True, False])
def test_eof_without_finish_reason_is_truncated(with_content: bool, nb: SimpleNamespace) -> None:
    state = StreamState(request_id="req-t")
    if with_content:
        state.feed(nb.chunk("Hel"))
        state.feed(nb.chunk("lo", tool_calls=[nb.call(0, "c1", "f", '{"a":')]))
    with pytest.raises(NeboStreamTruncated) as info:
        state.finish()
    err = info.value
    assert err.is_retryable
    assert err.request_id == "req-t"
    if with_content:
        assert err.partial["content"] == "Hello"
        assert err.partial["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":'}
    else:
        assert err.partial == {"role": "assistant", "content": None}


def test_finish_without_usage_emits_no_usage_chunk(nb: SimpleNamespace) -> None:
    state = StreamState()
    state.feed(nb.chunk("x", finish="length"))
    assert state.finish() == []
    assert state.finish_reason == "length"


def test_reasoning_and_provider_metadata(nb: SimpleNamespace) -> None:
    raw = nb.chunk()
    raw["choices"][0]["delta"] = {"reasoning_content": "think"}
    meta = nb.chunk("ok", finish="stop", usage=nb.usage())
    meta["provider_metadata"] = {"route": "b"}
    state, out = run([raw, meta])
    assert state.message["reasoning_content"] == "think"
    assert state.completion()["provider_metadata"] == {"route": "b"}
