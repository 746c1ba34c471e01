"""The README's LangChain quickstart runs as written (against the emulator, via NEBO_* variables)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def test_quickstart_runs_as_written(emu: Any, run_example: Callable[..., tuple[dict[str, Any], str]]) -> None:
    start = len(emu.ledger)
    namespace, out = run_example("langchain-quickstart", emu)
    assert "microdollars" in namespace["reply"].content
    assert namespace["usage"].total_cost_micro == sum(e.cost_micro for e in emu.ledger[start:])
    assert f"{namespace['usage'].total_cost_micro} microdollars in total" in out
