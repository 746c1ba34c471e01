"""The public surface and the README quickstart, run exactly as written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llama_index.core import Settings

import llama_index_nebo
import nebo_core.errors
from nebo_emulator import NeboEmulator


def test_all_is_pinned() -> None:
    assert llama_index_nebo.__all__ == [
        "Nebo",
        "NeboAuthenticationError",
        "NeboBadRequestError",
        "NeboBudgetCallbackHandler",
        "NeboBudgetEventHandler",
        "NeboBudgetExhausted",
        "NeboBudgetStoreUnavailable",
        "NeboConfigurationError",
        "NeboConnectionError",
        "NeboContextLengthError",
        "NeboEmbedding",
        "NeboError",
        "NeboFunctionAgent",
        "NeboRateLimited",
        "NeboStoreError",
        "NeboStoreStateLost",
        "NeboStreamError",
        "NeboStreamTruncated",
        "NeboTimeoutError",
        "NeboUpstreamError",
        "NeboUsageEvent",
    ]
    for name in llama_index_nebo.__all__:
        assert getattr(llama_index_nebo, name) is not None


def test_every_core_error_is_re_exported_as_itself() -> None:
    # The README promises one import for every error a LlamaIndex program may catch.
    assert set(nebo_core.errors.__all__) <= set(llama_index_nebo.__all__)
    for name in nebo_core.errors.__all__:
        assert getattr(llama_index_nebo, name) is getattr(nebo_core.errors, name)


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


def test_readme_migration_example_runs_as_written(
    emu: NeboEmulator,
    run_example: Callable[..., tuple[dict[str, Any], str]],
) -> None:
    namespace, out = run_example("llamaindex-migration", emu)
    answer, width = out.strip().splitlines()
    assert "30 days" in answer
    assert width == "1536"
    assert [entry.model for entry in emu.ledger][1] == "text-embedding-3-small"
    assert namespace["llm"].max_tokens == 256
