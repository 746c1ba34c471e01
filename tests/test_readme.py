"""The README's remaining examples run as written against the emulator (the framework and
budget examples are run, with stronger assertions, next to the code they show)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nebo_emulator import NeboEmulator

README = Path(__file__).resolve().parents[1] / "README.md"


Run = Callable[..., tuple[dict[str, Any], str]]


def test_every_python_example_is_tagged_and_tagged_once() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count("```python") == text.count("<!-- example: ")
    tags = [line for line in text.splitlines() if line.startswith("<!-- example: ")]
    assert len(tags) == len(set(tags))


def test_core_example(nebo_emulator: NeboEmulator, run_example: Run) -> None:
    env = nebo_emulator
    namespace, out = run_example("core", env)
    first = out.splitlines()[0].split()
    assert first[-3] == env.ledger[0].model
    assert int(first[-2]) == env.ledger[0].cost_micro
    assert namespace["stream"].usage.cost_micro == env.ledger[1].cost_micro
    assert out.splitlines()[-1] == f"2 {namespace['client'].tracker.totals().total.cost_micro}"


def test_openai_sdk_example(nebo_emulator: NeboEmulator, run_example: Run) -> None:
    from nebo_core import default_tracker

    env = nebo_emulator
    _, out = run_example("openai-sdk", env)
    snapshot = default_tracker().snapshot
    assert snapshot is not None
    assert out.strip().endswith(str(snapshot.session.remaining_micro))
    assert len(env.ledger) == 1


def test_emulator_examples(nebo_emulator: NeboEmulator, run_example: Run) -> None:
    # These examples start emulators of their own; the fixture's only sets NEBO_* around them.
    _, out = run_example("emulator", nebo_emulator)
    assert "Paris" in out
    assert int(out.strip().splitlines()[-1]) > 0
    fixture_ns, _ = run_example("emulator-fixture", nebo_emulator)
    with NeboEmulator() as emu:
        fixture_ns["test_my_chain"](emu)
        assert len(emu.ledger) == 1
