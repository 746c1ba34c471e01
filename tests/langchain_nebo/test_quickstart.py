"""The README's LangChain quickstart runs as written (against the emulator, via NEBO_* variables)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any


def test_quickstart_runs_as_written(emu: Any, run_example: Callable[..., tuple[dict[str, Any], str]]) -> None:
    start = len(emu.ledger)
    namespace, out = run_example("langchain-quickstart", emu)
    assert "microdollars" in namespace["reply"].content
    assert namespace["usage"].total_cost_micro == sum(e.cost_micro for e in emu.ledger[start:])
    assert f"{namespace['usage'].total_cost_micro} microdollars in total" in out


def test_chatopenai_migration_runs_as_written(
    raw: Any, run_example: Callable[..., tuple[dict[str, Any], str]]
) -> None:
    # Against the raw server, which keeps what reached the wire.
    _, out = run_example("langchain-migration", SimpleNamespace(token="migration-key", base_url=raw.base_url))
    assert out.strip() == "ok"
    body = raw.last.body
    assert (body["model"], body["max_completion_tokens"], body["logprobs"]) == ("gpt-5-mini", 200, True)
    assert body["metadata"] == {"team": "search"}
    assert raw.last.headers["authorization"] == "Bearer migration-key"
