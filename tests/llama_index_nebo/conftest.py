"""Fixtures for llama_index_nebo: a fresh emulator per test, a raw loopback server that serves
scripted bytes and records requests, loopback-only sockets, isolated trackers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nebo_test_raw_server as rs  # registered by tests/conftest.py
import pytest
from pytest_socket import socket_allow_hosts

from nebo_core import BudgetPolicy, BudgetTracker

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # llama-index's workflow package (agents) walks pydantic models with inspect.getmembers, which
    # touches deprecated pydantic attributes: a framework warning, attributed to ``inspect``.
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.path)).resolve().parents:
            item.add_marker(
                pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning:inspect")
            )


@pytest.fixture(autouse=True)
def _loopback_only() -> None:
    # Nothing may reach the network: not tiktoken tables, not NLTK data, not a real Nebo.
    socket_allow_hosts(["127.0.0.1", "localhost", "::1"], allow_unix_socket=True)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NEBO_API_KEY", "NEBO_BASE_URL", "NEBO_PROVIDER_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def corpus_dir() -> Path:
    return CORPUS


# -- a raw loopback server: scripted replies, every request recorded ----------------------------


Seen = rs.Seen
Reply = rs.Reply


class RawServer(rs.RawServer):
    """The shared raw loopback server (``tests/_raw_server.py``), not the emulator: it serves
    exactly the replies a test scripts (``answer``), else a small valid reply, and records every
    request (``seen``)."""

    def __init__(self) -> None:
        super().__init__("llama_index", default=default_reply)

    @property
    def seen(self) -> list[Seen]:
        return self.requests


def completion(message: dict[str, Any], **choice: Any) -> dict[str, Any]:
    """A ``chat.completion`` body whose first choice carries ``message``."""
    return {
        "id": "chatcmpl-raw",
        "object": "chat.completion",
        "created": 0,
        "model": "raw-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", **choice}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def chunk(delta: dict[str, Any], finish: str | None = None, **choice: Any) -> dict[str, Any]:
    """One standard ``chat.completion.chunk``."""
    return {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "raw-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **choice}],
    }


def sse(chunks: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> Reply:
    """An event stream of ``chunks``, then a stop, a usage chunk and ``[DONE]``."""
    usage = usage or {"prompt_tokens": 3, "completion_tokens": len(chunks), "total_tokens": 3 + len(chunks)}
    events = [*chunks, chunk({}, "stop"), {**chunk({}), "choices": [], "usage": usage}]
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return Reply(text, content_type="text/event-stream")


def default_reply(seen: Seen) -> Reply:
    """A small valid answer to whatever was asked."""
    body = seen.json if seen.body else {}
    if seen.path.endswith("/embeddings"):
        texts = body.get("input") or []
        data = [
            {"object": "embedding", "index": i, "embedding": [0.5, 0.25, 0.0, 1.0]} for i in range(len(texts))
        ]
        return Reply(
            {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": 1}}
        )
    if body.get("stream"):
        return sse([chunk({"role": "assistant", "content": "o"}), chunk({"content": "k"})])
    return Reply(completion({"role": "assistant", "content": "ok"}))


@dataclass(frozen=True)
class Raw:
    """The ``raw`` fixture: the server, plus the reply builders (conftest helpers cannot be imported
    under ``--import-mode=importlib``)."""

    server: RawServer
    conn: dict[str, Any]
    Reply = Reply
    completion = staticmethod(completion)
    chunk = staticmethod(chunk)
    sse = staticmethod(sse)


@pytest.fixture
def raw(tracker: BudgetTracker, policy: BudgetPolicy) -> Iterator[Raw]:
    """A raw loopback server and the keywords that point a Nebo model at it."""
    server = RawServer()
    try:
        yield Raw(
            server,
            {"api_key": "raw-token", "base_url": server.base_url, "tracker": tracker, "policy": policy},
        )
    finally:
        server.close()
