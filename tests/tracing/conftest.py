"""Fixtures for the tracing tests: a fake LangSmith endpoint on loopback, LangChain's tracer
posting to it synchronously, and a ``ChatNebo`` on the emulator with fresh budget state (the
emulator's ledger is the truth every captured cost is compared with)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from langchain_core.tracers.langchain import LangChainTracer
from langsmith import Client
from pydantic import SecretStr

from langchain_nebo import ChatNebo
from nebo_core import BudgetPolicy, BudgetTracker
from nebo_emulator import NeboEmulator


class FakeLangSmith:
    """A loopback LangSmith endpoint that answers ``{}`` and keeps every run it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw.startswith(b"{") else None
                owner.received.append((self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def posted_runs(self) -> list[dict[str, Any]]:
        """The first state of every run (its POST), in order."""
        return [body for method, path, body in self.received if method == "POST" and path == "/runs"]

    def ended_runs(self) -> list[dict[str, Any]]:
        """The final state of every run (its PATCH), in order."""
        return [
            body for method, path, body in self.received if method == "PATCH" and path.startswith("/runs/")
        ]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def langsmith() -> Iterator[FakeLangSmith]:
    fake = FakeLangSmith()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def tracer(langsmith: FakeLangSmith) -> Iterator[LangChainTracer]:
    """LangChain's LangSmith tracer, posting synchronously to the fake endpoint."""
    client = Client(api_url=langsmith.url, api_key="ls-test-key", auto_batch_tracing=False)
    tracer = LangChainTracer(client=client, project_name="nebo-tests")
    try:
        yield tracer
    finally:
        tracer.wait_for_futures()
        client.session.close()


@pytest.fixture
def model(emu: NeboEmulator) -> ChatNebo:
    return ChatNebo(
        api_key=SecretStr(emu.token), base_url=emu.base_url, tracker=BudgetTracker(), policy=BudgetPolicy()
    )
