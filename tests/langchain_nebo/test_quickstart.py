"""The README's LangChain quickstart runs as written (against the emulator, via NEBO_* variables)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest

QUICKSTART = """
from langchain_nebo import ChatNebo, NeboEmbeddings, get_nebo_callback

llm = ChatNebo()  # model="auto"; the key comes from NEBO_API_KEY
with get_nebo_callback() as usage:
    reply = llm.invoke("Context: Nebo bills in microdollars. Question: what does Nebo bill in?")
    for chunk in llm.stream("Say hello"):
        print(chunk.content, end="")
    vectors = NeboEmbeddings().embed_documents(["budget", "limits"])

print(reply.content)
print(reply.response_metadata["nebo"]["cost_micro"], "microdollars for that answer")
print(usage.total_cost_micro, "microdollars in total;", usage.by_model.keys())
"""


def test_quickstart_runs_as_written(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBO_API_KEY", emu.token)
    monkeypatch.setenv("NEBO_BASE_URL", emu.base_url)
    start = len(emu.ledger)
    out = io.StringIO()
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(QUICKSTART, "quickstart", "exec"), namespace)
    assert "microdollars" in namespace["reply"].content
    assert namespace["usage"].total_cost_micro == sum(e.cost_micro for e in emu.ledger[start:])
    assert f"{namespace['usage'].total_cost_micro} microdollars in total" in out.getvalue()
