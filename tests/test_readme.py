"""The README's remaining examples run as written against the emulator (the framework and
budget examples are run, with stronger assertions, next to the code they show)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nebo_core.emulator import NeboEmulator

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def env(nebo_emulator: NeboEmulator, monkeypatch: pytest.MonkeyPatch) -> NeboEmulator:
    monkeypatch.setenv("NEBO_API_KEY", nebo_emulator.token)
    monkeypatch.setenv("NEBO_BASE_URL", nebo_emulator.base_url)
    return nebo_emulator


def _run(code: str) -> tuple[dict[str, Any], str]:
    namespace: dict[str, Any] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README", "exec"), namespace)
    return namespace, out.getvalue()


def test_every_python_example_is_tagged_and_tagged_once() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count("```python") == text.count("<!-- example: ")
    tags = [line for line in text.splitlines() if line.startswith("<!-- example: ")]
    assert len(tags) == len(set(tags))


def test_core_example(env: NeboEmulator, readme_block: Callable[[str], str]) -> None:
    namespace, out = _run(readme_block("core"))
    first = out.splitlines()[0].split()
    assert first[-3] == env.ledger[0].model
    assert int(first[-2]) == env.ledger[0].cost_micro
    assert namespace["stream"].usage.cost_micro == env.ledger[1].cost_micro
    assert out.splitlines()[-1] == f"2 {namespace['client'].tracker.totals().total.cost_micro}"


def test_openai_sdk_example(env: NeboEmulator, readme_block: Callable[[str], str]) -> None:
    from nebo_core import default_tracker

    _, out = _run(readme_block("openai-sdk"))
    snapshot = default_tracker().snapshot
    assert snapshot is not None
    assert out.strip().endswith(str(snapshot.session.remaining_micro))
    assert len(env.ledger) == 1


def test_emulator_examples(readme_block: Callable[[str], str]) -> None:
    namespace, out = _run(readme_block("emulator"))
    assert "Paris" in out
    assert int(out.strip().splitlines()[-1]) > 0
    fixture_ns, _ = _run(readme_block("emulator-fixture"))
    with NeboEmulator() as emu:
        fixture_ns["test_my_chain"](emu)
        assert len(emu.ledger) == 1
