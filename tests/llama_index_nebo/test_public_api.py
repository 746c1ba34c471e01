"""The public surface and the README quickstart, run exactly as written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from llama_index.core import Settings

import llama_index_nebo
from nebo_core.emulator import NeboEmulator


def test_all_is_pinned() -> None:
    assert llama_index_nebo.__all__ == [
        "Nebo",
        "NeboAuthenticationError",
        "NeboBudgetCallbackHandler",
        "NeboBudgetEventHandler",
        "NeboBudgetExhausted",
        "NeboEmbedding",
        "NeboError",
        "NeboRateLimited",
        "NeboUsageEvent",
    ]
    for name in llama_index_nebo.__all__:
        assert getattr(llama_index_nebo, name) is not None


def test_readme_quickstart_runs_as_written(
    emu: NeboEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    readme_block: Callable[[str], str],
) -> None:
    monkeypatch.setenv("NEBO_API_KEY", emu.token)
    monkeypatch.setenv("NEBO_BASE_URL", emu.base_url)
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    saved = (Settings._llm, Settings._embed_model)
    namespace: dict[str, object] = {}
    try:
        exec(compile(readme_block("llamaindex-quickstart"), "README-quickstart", "exec"), namespace)
    finally:
        Settings._llm, Settings._embed_model = saved
        budget = namespace.get("budget")
        if isinstance(budget, llama_index_nebo.NeboBudgetEventHandler):
            budget.detach()
    out = capsys.readouterr().out
    assert "30 days" in out
    assert f"spent ${emu.ledger_total_micro() / 1_000_000:.6f} in {len(emu.ledger)} calls" in out
