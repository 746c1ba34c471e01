"""How streams end: final usage after the finish is kept, a server that holds the connection
open after the finish never hangs a reader, and every one of ``n`` choices is read.

The server here is a raw loopback socket, so it can do what the emulator never does: send the
finish, then keep the connection open with nothing more to say.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from nebo_core import AsyncNeboClient, BudgetTracker, NeboClient, _grace
from nebo_core.policy import BudgetPolicy


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-5-nano",
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return _event(body)


def _usage(cost: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": 5,
        "completion_tokens": completion,
        "total_tokens": 5 + completion,
        "cost_micro": cost,
    }


def _text(index: int, text: str) -> dict[str, Any]:
    return {"index": index, "delta": {"content": text}, "finish_reason": None}


def _finish(index: int) -> dict[str, Any]:
    return {"index": index, "delta": {}, "finish_reason": "stop"}


class HoldingServer:
    """Answers one request per connection with ``events`` (chunked), then holds the socket open."""

    def __init__(self, events: list[bytes]) -> None:
        self.events = events
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for event in self.events:
                conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            self.stop.wait(10)  # hold the connection open, never terminating the body

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(_grace, "GRACE_S", 0.3)
    return 0.3


def _serve(events: list[bytes]) -> Iterator[HoldingServer]:
    server = HoldingServer(events)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def finish_without_usage() -> Iterator[HoldingServer]:
    yield from _serve([_chunk([_text(0, "Hi")]), _chunk([_finish(0)])])


@pytest.fixture
def usage_after_finish() -> Iterator[HoldingServer]:
    # Cumulative usage on a content chunk, a finish without usage, then the final usage (no [DONE]).
    yield from _serve(
        [
            _chunk([_text(0, "Hi")], _usage(5, 1)),
            _chunk([_finish(0)]),
            _chunk([], _usage(99, 2)),
        ]
    )


def _client(server: HoldingServer, cls: type = NeboClient) -> Any:
    return cls(
        api_key="tok",
        base_url=server.base_url,
        tracker=BudgetTracker(),
        policy=BudgetPolicy(),
        max_retries=0,
        timeout=30,
    )


def test_sync_reader_stops_after_the_grace_when_the_server_holds_on(
    finish_without_usage: HoldingServer, short_grace: float
) -> None:
    started = time.monotonic()
    with _client(finish_without_usage) as client, client.stream_chat({"messages": []}) as stream:
        chunks = list(stream)
    elapsed = time.monotonic() - started
    assert stream.message["content"] == "Hi"
    assert stream.finish_reason == "stop"
    assert short_grace <= elapsed < 5  # not the 30 s read timeout
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_async_reader_stops_after_the_grace_when_the_server_holds_on(
    finish_without_usage: HoldingServer, short_grace: float
) -> None:
    started = time.monotonic()
    async with _client(finish_without_usage, AsyncNeboClient) as client:
        async with client.stream_chat({"messages": []}) as stream:
            texts = [c["choices"][0]["delta"].get("content") async for c in stream if c["choices"]]
    assert "Hi" in texts
    assert short_grace <= time.monotonic() - started < 5


def test_usage_after_the_finish_is_the_one_recorded(usage_after_finish: HoldingServer) -> None:
    started = time.monotonic()
    with _client(usage_after_finish) as client, client.stream_chat({"messages": []}) as stream:
        chunks = list(stream)
    assert stream.usage is not None
    assert stream.usage.cost_micro == 99  # not the stale cumulative 5
    assert chunks[-1]["usage"]["cost_micro"] == 99
    assert time.monotonic() - started < 1.5  # the usage ended it: no grace wait


async def test_usage_after_the_finish_is_the_one_recorded_async(usage_after_finish: HoldingServer) -> None:
    async with _client(usage_after_finish, AsyncNeboClient) as client:
        async with client.stream_chat({"messages": []}) as stream:
            [c async for c in stream]
    assert stream.usage is not None
    assert stream.usage.cost_micro == 99


def test_every_one_of_n_choices_is_read() -> None:
    body = b"".join(
        [
            _chunk([_text(0, "A")]),
            _chunk([_finish(0)], _usage(3, 1)),  # choice 0 done, with usage, before choice 1 starts
            _chunk([_text(1, "B")]),
            _chunk([_finish(1)], _usage(6, 2)),
        ]
    )
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    )
    client = NeboClient(
        api_key="tok",
        http_client=httpx.Client(transport=transport),
        tracker=BudgetTracker(),
        policy=BudgetPolicy(),
    )
    with client.stream_chat({"messages": [], "n": 2}) as stream:
        list(stream)
    completion = stream.completion()
    assert [c["message"]["content"] for c in completion["choices"]] == ["A", "B"]
    assert stream.usage is not None
    assert stream.usage.cost_micro == 6


def test_openai_client_stops_after_the_grace_when_the_server_holds_on(
    finish_without_usage: HoldingServer, short_grace: float
) -> None:
    pytest.importorskip("openai")
    from nebo_core import openai_client

    client = openai_client(
        api_key="tok", base_url=finish_without_usage.base_url, tracker=BudgetTracker(), timeout=30
    )
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "x"}], stream=True
    )
    texts = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert texts == ["Hi"]
    assert time.monotonic() - started < 5


def test_a_cancelled_grace_never_cuts_the_connection() -> None:
    class Response:
        extensions: dict[str, Any] = {}
        closed = False

        def close(self) -> None:
            self.closed = True

    response = Response()
    grace = _grace.SyncGrace(response, grace=60)
    grace.arm()
    grace.cancel()
    grace._cut()  # a timer thread that was already running when the stream ended
    assert response.closed is False
    assert grace.fired is False
    late = _grace.SyncGrace(response, grace=60)
    late._cut()  # the stream did not end in time: the connection is cut
    assert response.closed is True
    assert late.fired is True
