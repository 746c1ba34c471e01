"""The README's LangChain quickstart runs as written (against the emulator, via NEBO_* variables)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import pytest


def test_quickstart_runs_as_written(
    emu: Any, monkeypatch: pytest.MonkeyPatch, readme_block: Callable[[str], str]
) -> None:
    monkeypatch.setenv("NEBO_API_KEY", emu.token)
    monkeypatch.setenv("NEBO_BASE_URL", emu.base_url)
    start = len(emu.ledger)
    out = io.StringIO()
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(readme_block("langchain-quickstart"), "quickstart", "exec"), namespace)
    assert "microdollars" in namespace["reply"].content
    assert namespace["usage"].total_cost_micro == sum(e.cost_micro for e in emu.ledger[start:])
    assert f"{namespace['usage'].total_cost_micro} microdollars in total" in out.getvalue()
