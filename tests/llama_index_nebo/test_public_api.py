"""The public surface and the README quickstart, run exactly as written."""

from __future__ import annotations

from collections.abc import Callable

from llama_index.core import Settings

import llama_index_nebo
from nebo_emulator import NeboEmulator


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
    run_example: Callable[..., tuple[dict[str, object], str]],
) -> None:
    saved = (Settings._llm, Settings._embed_model)
    try:
        _, out = run_example("llamaindex-quickstart", emu)
    finally:
        Settings._llm, Settings._embed_model = saved
        budget = run_example.namespace.get("budget")  # type: ignore[attr-defined]
        if isinstance(budget, llama_index_nebo.NeboBudgetEventHandler):
            budget.detach()
    assert "30 days" in out
    assert f"spent ${emu.ledger_total_micro() / 1_000_000:.6f} in {len(emu.ledger)} calls" in out
