"""Fixtures for the langchain_nebo tests: one emulator per module, isolated trackers, vcr config.

The emulator runs with Nebo's quirks on (``strict_openai=False``), so every test also proves
that the core's stream repair reaches LangChain intact. Replay tests read cassettes from
``cassettes/langchain`` and never record unless ``--record-mode`` says so (``make record``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def tracker() -> BudgetTracker:
    """A fresh tracker per test, so totals never leak between tests."""
    return BudgetTracker()


@pytest.fixture
def policy() -> BudgetPolicy:
    return BudgetPolicy()


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
