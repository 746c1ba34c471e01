"""Fixtures for the tracing tests: a fake LangSmith endpoint on loopback, LangChain's tracer
posting to it synchronously, and a ``ChatNebo`` on the emulator with fresh budget state (the
emulator's ledger is the truth every captured cost is compared with)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import nebo_test_raw_server as rs  # registered by tests/conftest.py
import pytest
from langchain_core.tracers.langchain import LangChainTracer
from langsmith import Client
from pydantic import SecretStr

from langchain_nebo import ChatNebo
from nebo_core import BudgetPolicy, BudgetTracker
from nebo_emulator import NeboEmulator


class FakeLangSmith:
    """A loopback LangSmith endpoint that answers ``{}`` and keeps every run it was sent."""

    METHODS = ("GET", "POST", "PATCH")

    def __init__(self) -> None:
        self._server = rs.RawServer("langsmith", default=rs.empty_json(*self.METHODS))

    @property
    def url(self) -> str:
        return self._server.origin

    @property
    def received(self) -> list[tuple[str, str, Any]]:
        """Every request answered, in order: its method, path and JSON body (``None`` if not JSON)."""
        return [
            (seen.method, seen.path, json.loads(seen.body) if seen.body.startswith(b"{") else None)
            for seen in self._server.requests
            if seen.method in self.METHODS
        ]

    def posted_runs(self) -> list[dict[str, Any]]:
        """The first state of every run (its POST), in order."""
        return [body for method, path, body in self.received if method == "POST" and path == "/runs"]

    def ended_runs(self) -> list[dict[str, Any]]:
        """The final state of every run (its PATCH), in order."""
        return [
            body for method, path, body in self.received if method == "PATCH" and path.startswith("/runs/")
        ]

    def close(self) -> None:
        self._server.close()


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
