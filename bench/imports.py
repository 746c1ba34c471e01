"""Benchmark 4, import time: each module imported in a fresh interpreter, the median of several runs.

The clock starts after the interpreter is up, so the numbers are the import alone. Pairs run
interleaved (ours, anchor, ours, anchor...) so machine load hits both alike; one warm-up run
per module fills the bytecode cache first.
"""

from __future__ import annotations

import subprocess
import sys

from bench._common import ROOT, Table, fmt, median, ratio

PAIRS = [
    ("import langchain_nebo", "import langchain_openai"),
    ("from langchain_nebo import ChatNebo", "from langchain_openai import ChatOpenAI"),
    ("import llama_index_nebo", "import llama_index.llms.openai_like"),
    ("import nebo_core", "import openai"),
]
FLOORS = ["from langchain_core.language_models import BaseChatModel"]
"""What every LangChain chat model pays: the floor under both sides of the first pairs."""
SNIPPET = "import time; t = time.perf_counter(); {0}; print(time.perf_counter() - t)"


def import_ms(module: str) -> float | str:
    """Milliseconds to run the import statement ``module`` in a fresh interpreter, or the error."""
    proc = subprocess.run(
        [sys.executable, "-c", SNIPPET.format(module)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]
    return float(proc.stdout.strip()) * 1000


def run(quick: bool = False) -> tuple[list[Table], dict[str, float | str]]:
    """The import-time table, and module -> median ms (or an error) for the targets."""
    runs = 3 if quick else 5
    modules = [m for pair in PAIRS for m in pair] + FLOORS
    samples: dict[str, list[float]] = {m: [] for m in modules}
    errors: dict[str, str] = {}
    for module in modules:
        import_ms(module)  # warm-up: bytecode cache
    for _ in range(runs):
        for module in modules:
            if module in errors:
                continue
            value = import_ms(module)
            if isinstance(value, str):
                errors[module] = value
            else:
                samples[module].append(value)
    results: dict[str, float | str] = {m: errors.get(m) or median(samples[m]) for m in modules}
    table = Table(
        "Import time (fresh interpreter, import statement only)", ["statement", "ms (median)", "vs anchor"]
    )
    anchor_of = {mine: anchor for mine, anchor in PAIRS}
    for module in modules:
        value = results[module]
        if isinstance(value, str):
            table.add(f"`{module}`", "n/a", value)
            continue
        anchor = results.get(anchor_of.get(module, ""))
        table.add(f"`{module}`", fmt(value), ratio(value, anchor) if isinstance(anchor, float) else "-")
    table.notes.append(f"Median of {runs} runs per statement after one warm-up, interleaved.")
    return [table], results


def target_row(results: dict[str, float | str]) -> tuple[str, str, str]:
    """(target, measured, verdict) for ``import langchain_nebo`` <= 0.6x ``import langchain_openai``."""
    target = "import langchain_nebo <= 0.6x import langchain_openai"
    mine, anchor = results.get("import langchain_nebo"), results.get("import langchain_openai")
    if not (isinstance(mine, float) and isinstance(anchor, float)):
        return target, "not measured", "-"
    value = mine / anchor
    return target, f"{value:.2f}x", "met" if value <= 0.6 else "MISSED"
