"""Adapters used across event loops leave no connection open.

Framework users call ``asyncio.run`` again and again on one model, and LlamaIndex's
``asyncio_run`` runs a coroutine on a worker-thread loop that it closes without shutting
down async generators. Each loop gets its own async client, which must be closed on that
loop when it ends (``nebo_core._loops``). A leak shows as an "unclosed transport"
ResourceWarning at garbage collection, which pytest cannot attribute to a test, so each
scenario runs in a fresh interpreter with ``-X dev -W error::ResourceWarning`` against an
emulator started inside it, and the test reads its exit code and stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import asyncio, gc
from nebo_core import BudgetPolicy, BudgetTracker
from nebo_emulator import NeboEmulator

def kwargs(emu):
    budget = {"tracker": BudgetTracker(), "policy": BudgetPolicy()}
    return {"api_key": emu.token, "base_url": emu.base_url, **budget}
"""


def run(body: str) -> subprocess.CompletedProcess[str]:
    """Run ``PRELUDE + body`` in a fresh interpreter in which a leaked socket is loud."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEBO_", "OPENAI_"))}
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", PRELUDE + textwrap.dedent(body)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def assert_clean(proc: subprocess.CompletedProcess[str], calls: int) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "unclosed" not in proc.stderr.lower(), proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
    assert proc.stdout.split() == ["ledger", str(calls)], proc.stdout


def test_chat_nebo_over_three_asyncio_runs_leaves_nothing_open() -> None:
    proc = run(
        """
        from langchain_nebo import ChatNebo

        with NeboEmulator(latency=0.0) as emu:
            model = ChatNebo(model="gpt-5-nano", **kwargs(emu))
            for _ in range(3):
                assert asyncio.run(model.ainvoke("hi")).content
            print("ledger", len(emu.ledger))
            del model
            gc.collect()
        gc.collect()
        """
    )
    assert_clean(proc, 3)


def test_llama_index_nebo_over_three_asyncio_runs_leaves_nothing_open() -> None:
    proc = run(
        """
        from llama_index.core.llms import ChatMessage
        from llama_index_nebo import Nebo

        with NeboEmulator(latency=0.0) as emu:
            llm = Nebo(model="gpt-5-nano", **kwargs(emu))
            for _ in range(3):
                assert asyncio.run(llm.achat([ChatMessage(role="user", content="hi")])).message.content
            print("ledger", len(emu.ledger))
            del llm
            gc.collect()
        gc.collect()
        """
    )
    assert_clean(proc, 3)


def test_llama_index_asyncio_run_inside_a_running_loop_leaves_nothing_open() -> None:
    # Inside a running loop, asyncio_run uses a worker thread's new loop and closes it without
    # shutdown_asyncgens(): the per-loop client must still be closed on that loop. The stream is
    # left after its first delta, so only the loop's end can release it.
    proc = run(
        """
        from llama_index.core.async_utils import asyncio_run
        from llama_index.core.llms import ChatMessage
        from llama_index_nebo import Nebo

        MESSAGES = [ChatMessage(role="user", content="hi")]

        with NeboEmulator(latency=0.0) as emu:
            llm = Nebo(model="gpt-5-nano", **kwargs(emu))

            async def first_delta():
                async for response in await llm.astream_chat(MESSAGES):
                    return response.delta

            async def main():
                assert asyncio_run(llm.achat(MESSAGES)).message.content
                assert asyncio_run(first_delta())

            asyncio.run(main())
            print("ledger", len(emu.ledger))
            del llm
            gc.collect()
        gc.collect()
        """
    )
    assert_clean(proc, 2)
