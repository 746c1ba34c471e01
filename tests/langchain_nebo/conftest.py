"""Fixtures for the langchain_nebo tests: one emulator per module, isolated trackers, vcr config,
and a raw loopback server (``raw``) that serves any body and records every request.

The emulator runs with Nebo's quirks on (``strict_openai=False``), so every test also proves
that the core's stream repair reaches LangChain intact. Replay tests read cassettes from
``cassettes/langchain`` and never record unless ``--record-mode`` says so (``make record``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nebo_test_raw_server as rs  # registered by tests/conftest.py
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


def _sent(seen: rs.Seen) -> Sent:
    return Sent(seen.method, urlsplit(seen.path).path, seen.query, seen.headers, seen.json)


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


def _default_reply(seen: rs.Seen) -> rs.Reply:
    """A well-formed answer to whatever was asked (``n`` choices, a stream, embeddings, logprobs)."""
    body = seen.json if isinstance(seen.json, dict) else {}
    if urlsplit(seen.path).path.endswith("/embeddings"):
        texts = body.get("input") or []
        data = [{"object": "embedding", "index": i, "embedding": [0.5, float(i)]} for i in range(len(texts))]
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts), "cost_micro": 1}
        return rs.Reply(
            json.dumps({"object": "list", "data": data, "model": body.get("model"), "usage": usage}).encode()
        )
    if body.get("stream"):
        return rs.Reply(stream_events(logprobs=bool(body.get("logprobs"))), content_type="text/event-stream")
    n = body.get("n") if isinstance(body.get("n"), int) else 1
    return rs.Reply(json.dumps(completion(n, logprobs=bool(body.get("logprobs")))).encode())


class RawServer:
    """The shared raw loopback server (``tests/_raw_server.py``), for bodies no real server would
    send and for reading exactly what reached the wire.

    Replies come from the queue (:meth:`reply`); when it is empty, a well-formed answer is made
    for the request (``n`` choices, a stream, embeddings, logprobs when asked)."""

    def __init__(self) -> None:
        self.server = rs.RawServer("langchain", default=_default_reply)

    @property
    def base_url(self) -> str:
        return self.server.base_url

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
            reply = rs.Reply(stream, status, "text/event-stream", dict(headers or {}), delay)
        else:
            content = raw if raw is not None else json.dumps(body).encode()
            reply = rs.Reply(content, status, "application/json", dict(headers or {}), delay)
        self.server.answer(*[reply] * times)

    # The body builders, for test modules (which cannot import this conftest).
    completion = staticmethod(completion)
    sse = staticmethod(sse)
    stream_events = staticmethod(stream_events)

    @property
    def requests(self) -> list[Sent]:
        """Every request received, in order."""
        return [_sent(seen) for seen in self.server.requests]

    @property
    def last(self) -> Sent:
        """The last request received."""
        return _sent(self.server.requests[-1])

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()


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
