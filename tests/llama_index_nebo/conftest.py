"""Fixtures for llama_index_nebo: a fresh emulator per test, loopback-only sockets, isolated trackers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_socket import socket_allow_hosts

from nebo_core import BudgetPolicy, BudgetTracker
from nebo_emulator import NeboEmulator

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
def emu() -> Iterator[NeboEmulator]:
    with NeboEmulator(latency=0.0) as emulator:
        yield emulator


@pytest.fixture
def tracker() -> BudgetTracker:
    return BudgetTracker()


@pytest.fixture
def policy() -> BudgetPolicy:
    return BudgetPolicy()


@pytest.fixture
def conn(emu: NeboEmulator, tracker: BudgetTracker, policy: BudgetPolicy) -> dict[str, object]:
    """Keyword arguments that point a Nebo model at the emulator with a private tracker."""
    return {"api_key": emu.token, "base_url": emu.base_url, "tracker": tracker, "policy": policy}


@pytest.fixture
def corpus_dir() -> Path:
    return CORPUS
