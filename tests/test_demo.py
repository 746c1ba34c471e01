"""``nebo demo`` end to end on the emulator it starts itself, in-process, plus its live-mode switch."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from nebo_cli._main import EXIT_AUTH, main
from nebo_demo import _demo
from nebo_emulator import NeboEmulator


@pytest.fixture(autouse=True)
def _no_live_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NEBO_API_KEY", "NEBO_BASE_URL", "NEBO_MAX_RETRIES"):
        monkeypatch.delenv(name, raising=False)


def test_demo_runs_end_to_end_on_the_emulator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "NEBO_API_KEY is not set, so this demo runs against a local Nebo emulator" in out
    positions = [out.index(title) for title in _demo.iter_sections()]
    assert positions == sorted(positions), "the four sections appear, in order"
    rag, agent, budget, guard = (
        out[start:end] for start, end in zip(positions, [*positions[1:], len(out)], strict=True)
    )
    # 1. RAG: each question is answered from the right file, with its sources listed.
    q1, q2 = rag.split("Q: ")[1:]
    assert "14 days" in q1
    assert q1.index("source: refunds.md") < q1.index("source: plans.md")
    assert "120 requests per minute" in q2
    assert "source: rate-limits.md" in q2.splitlines()[2]
    # 2. The agent called both tools with values from the task, and the answer uses their results.
    assert "model calls order_status(order_id='A-1042')" in agent
    assert "model calls shipping_days(country='Portugal')" in agent
    final = next(line for line in agent.splitlines() if line.startswith("Final answer:"))
    assert "packed" in final
    assert "2 business days" in final
    # 3. Budget: bars for both windows, spend per model, cost per step, and the ledger agrees.
    assert "session (5 h)" in budget
    assert "weekly (7 d)" in budget
    assert "pools (drawn in order)" in budget
    assert "Spend per model:" in budget
    assert "text-embedding-3-small" in budget
    steps = budget[budget.index("Cost per step:") :]
    assert "rag    embedding" in steps
    assert "agent  chat" in steps
    assert "the tracker total" in budget
    assert ") matches it." in budget
    # 4. The guard refused the second call before sending it.
    assert "Stopped cleanly after 1 model call(s)" in guard
    assert "window='cap', retryable=False" in guard
    assert "requests sent: 1; the refused call never reached the server." in guard
    assert out.rstrip().splitlines()[-1].startswith("Done in ")


def test_demo_uses_the_live_api_when_a_key_is_set() -> None:
    env = {"NEBO_API_KEY": "live-token", "NEBO_BASE_URL": "https://nebo.example/v1"}
    with ExitStack() as stack:
        conn, emulator, note = _demo._connection(stack, None, None, env)
    assert emulator is None
    assert conn == {"api_key": "live-token", "base_url": "https://nebo.example/v1"}
    assert "Running against the Nebo API at https://nebo.example/v1" in note


def test_demo_with_a_bad_key_fails_cleanly(monkeypatch, capsys) -> None:
    with NeboEmulator() as emu:
        url = emu.base_url
        monkeypatch.setenv("NEBO_API_KEY", "not-a-valid-nebo-token")
        monkeypatch.setenv("NEBO_BASE_URL", url)
        assert main(["demo"]) == EXIT_AUTH
        assert emu.ledger_total_micro() == 0
    captured = capsys.readouterr()
    assert "Running against the Nebo API at " + url in captured.out
    lines = [line for line in captured.err.splitlines() if line.startswith(("error:", "hint:"))]
    assert lines[0].startswith("error: Nebo refused the API key (HTTP 401)")
    assert "Traceback" not in captured.err
    assert "not-a-valid-nebo-token" not in captured.out + captured.err


def test_bundled_corpus_is_small_and_distinct() -> None:
    docs = _demo.corpus_documents()
    assert [name for name, _ in docs] == sorted(name for name, _ in docs)
    assert 5 <= len(docs) <= 10
    assert all(0 < len(text) < 2000 for _, text in docs)


def test_demo_without_the_frameworks_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('langchain', 'langchain_core', 'llama_index'):\n"
        "            raise ImportError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from nebo_cli import main\n"
        "sys.exit(main(['demo']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install 'nebo-integrations[langchain,llama-index]'" in done.stderr
    assert "Traceback" not in done.stderr
