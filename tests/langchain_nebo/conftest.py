"""Fixtures for the langchain_nebo tests: one emulator per module, isolated trackers, vcr config,
and a raw loopback server (``raw``) that serves any body and records every request.

The emulator runs with Nebo's quirks on (``strict_openai=False``), so every test also proves
that the core's stream repair reaches LangChain intact. Replay tests read cassettes from
``cassettes/langchain`` and never record unless ``--record-mode`` says so (``make record``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from nebo_core import BudgetPolicy, BudgetTracker

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes" / "langchain"
SECRET_HEADERS = ("authorization", "x-provider-api-key", "x-bot-id")


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    """A started emulator shared by one test module (quirks on)."""
    from nebo_emulator import NeboEmulator

    with NeboEmulator(quirks=True, strict_openai=False, latency=0.0) as emulator:
        yield emulator


@pytest.fixture
def connect(emu: Any, tracker: BudgetTracker, policy: BudgetPolicy) -> dict[str, Any]:
    """Constructor arguments pointing a model at the module's emulator, with fresh budget state."""
    return {"api_key": emu.token, "base_url": emu.base_url, "tracker": tracker, "policy": policy}


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    """Scrub secrets; match on method, path and body (the emulator's port changes every run).

    No ``record_mode`` here: it would override ``--record-mode``; the CLI default is "none".
    """
    return {
        "filter_headers": [(h, "REDACTED") for h in SECRET_HEADERS],
        "match_on": ["method", "path", "body"],
        "decode_compressed_response": True,
    }


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(CASSETTES)


# --- a raw loopback server: serves any body, records every request ------------------------------


@dataclass(frozen=True)
class Sent:
    """One request the raw server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Lower-cased names."""
    body: Any


@dataclass
class Reply:
    """One scripted answer: a status, headers and raw bytes (SSE text for a stream)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (for timeouts)."""


def completion(n: int = 1, *, logprobs: bool = False, content: str = "ok") -> dict[str, Any]:
    """A well-formed ``chat.completion`` with ``n`` choices (logprobs when asked)."""
    lp = {
        "content": [{"token": content, "logprob": -0.25, "bytes": list(content.encode()), "top_logprobs": []}]
    }
    return {
        "id": "chatcmpl-raw",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-5-mini",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": f"{content} {i}" if n > 1 else content},
                "logprobs": lp if logprobs else None,
                "finish_reason": "stop",
            }
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "cost_micro": 11},
    }


def sse(*events: Any) -> bytes:
    """Server-sent events from JSON-able objects (a string is sent as is, e.g. ``[DONE]``)."""
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def stream_events(*, logprobs: bool = False, words: tuple[str, ...] = ("Hello", " world")) -> bytes:
    """A well-formed stream: one chunk per word, a finish chunk, a usage chunk, ``[DONE]``."""
    base = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "gpt-5-mini"}
    chunks: list[Any] = []
    for word in words:
        lp = {"content": [{"token": word, "logprob": -0.5, "bytes": None, "top_logprobs": []}]}
        choice = {
            "index": 0,
            "delta": {"content": word},
            "logprobs": lp if logprobs else None,
            "finish_reason": None,
        }
        chunks.append({**base, "choices": [choice]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "cost_micro": 11}
    chunks.append({**base, "choices": [], "usage": usage})
    return sse(*chunks, "[DONE]")


class RawServer:
    """A scriptable HTTP server on loopback (``http.server`` in a thread), for bodies no real
    server would send and for reading exactly what reached the wire.

    Replies come from the queue (:meth:`reply`); when it is empty, a well-formed answer is made
    for the request (``n`` choices, a stream, embeddings, logprobs when asked)."""

    def __init__(self) -> None:
        self.requests: list[Sent] = []
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                body = json.loads(raw) if raw else None
                sent = Sent(
                    self.command,
                    url.path,
                    parse_qs(url.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                reply = owner._next(sent)
                if reply.delay:
                    owner._stopped.wait(reply.delay)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("Connection", "close")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)
                self.close_connection = True

            do_GET = do_POST = _handle

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left mid-answer: expected in timeout tests

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def reply(
        self,
        body: Any = None,
        *,
        status: int = 200,
        raw: bytes | None = None,
        stream: bytes | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Queue an answer: ``body`` as JSON, ``raw`` bytes, or ``stream`` bytes as an event stream."""
        if stream is not None:
            reply = Reply(status, stream, "text/event-stream", dict(headers or {}), delay)
        else:
            content = raw if raw is not None else json.dumps(body).encode()
            reply = Reply(status, content, "application/json", dict(headers or {}), delay)
        with self._lock:
            self._queue.extend([reply] * times)

    def _next(self, sent: Sent) -> Reply:
        with self._lock:
            self.requests.append(sent)
            if self._queue:
                return self._queue.pop(0)
        body = sent.body if isinstance(sent.body, dict) else {}
        if sent.path.endswith("/embeddings"):
            texts = body.get("input") or []
            data = [
                {"object": "embedding", "index": i, "embedding": [0.5, float(i)]} for i in range(len(texts))
            ]
            usage = {"prompt_tokens": len(texts), "total_tokens": len(texts), "cost_micro": 1}
            return Reply(
                200,
                json.dumps(
                    {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
                ).encode(),
            )
        if body.get("stream"):
            return Reply(200, stream_events(logprobs=bool(body.get("logprobs"))), "text/event-stream")
        n = body.get("n") if isinstance(body.get("n"), int) else 1
        return Reply(200, json.dumps(completion(n, logprobs=bool(body.get("logprobs")))).encode())

    # The body builders, for test modules (which cannot import this conftest).
    completion = staticmethod(completion)
    sse = staticmethod(sse)
    stream_events = staticmethod(stream_events)

    @property
    def last(self) -> Sent:
        """The last request received."""
        return self.requests[-1]

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def raw() -> Iterator[RawServer]:
    """A fresh raw loopback server for one test."""
    with RawServer() as server:
        yield server


@pytest.fixture
def raw_connect(raw: RawServer, tracker: BudgetTracker) -> dict[str, Any]:
    """Constructor arguments pointing a model at the raw server: no retries, a fresh policy."""
    return {
        "api_key": "raw-test-key",
        "base_url": raw.base_url,
        "tracker": tracker,
        "policy": BudgetPolicy(),
        "max_retries": 0,
    }
