"""Fixtures for the fault matrix: raw loopback servers (``tests/_raw_server.py``), loopback-only sockets.

Tests import nothing from here (``--import-mode=importlib``): they take the ``raw`` fixture (the
server module: ``RawServer``, the reply steps and builders) and ``servers`` (start servers that
are stopped after the test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import nebo_test_raw_server  # registered by tests/conftest.py
import pytest
from pytest_socket import socket_allow_hosts


@pytest.fixture(autouse=True)
def _loopback_only() -> None:
    socket_allow_hosts(["127.0.0.1", "localhost", "::1"], allow_unix_socket=True)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every path gets its settings from its arguments, never from the machine's NEBO_* variables.
    for name in (
        "NEBO_API_KEY",
        "NEBO_BASE_URL",
        "NEBO_PROVIDER_API_KEY",
        "NEBO_TIMEOUT",
        "NEBO_MAX_RETRIES",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def raw() -> ModuleType:
    """The raw server module (``RawServer``, ``Write``/``Pause``/``Cut``/``Hang``, ``respond``...)."""
    return nebo_test_raw_server


@pytest.fixture
def servers(raw: ModuleType) -> Iterator[Callable[..., Any]]:
    """``servers(name="nebo")``: a started ``RawServer``, stopped after the test."""
    started: list[Any] = []

    def start(name: str = "nebo") -> Any:
        server = raw.RawServer(name)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
