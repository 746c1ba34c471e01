"""The class docstrings follow LangChain's integration template, and every example in them runs.

Each ``python`` block of a class docstring runs in order, in one namespace, against the
emulator (``NEBO_API_KEY`` and ``NEBO_BASE_URL`` set as a reader would), top-level ``await``
included; output blocks (``txt``) are illustrations and are not compared.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import re
import textwrap
from typing import Any

import pytest

from langchain_nebo import ChatNebo, NeboEmbeddings

SECTIONS = {
    ChatNebo: [
        "Setup",
        "Key init args — completion params",
        "Key init args — client params",
        "Instantiate",
        "Invoke",
        "Stream",
        "Async",
        "Tool calling",
        "Structured output",
        "Token usage",
        "Response metadata",
    ],
    NeboEmbeddings: ["Setup", "Key init args", "Instantiate", "Embed", "Async"],
}


def _blocks(cls: type[Any]) -> list[str]:
    doc = inspect.getdoc(cls) or ""
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", doc, re.S)]


@pytest.mark.parametrize("cls", list(SECTIONS), ids=lambda c: c.__name__)
def test_docstring_has_the_template_sections(cls: type[Any]) -> None:
    doc = inspect.getdoc(cls) or ""
    titles = re.findall(r'^\?\?\?\+? info "(.*?)"', doc, re.M)
    assert [t for t in titles if t in SECTIONS[cls]] == SECTIONS[cls]


@pytest.mark.parametrize("cls", list(SECTIONS), ids=lambda c: c.__name__)
def test_docstring_examples_run(cls: type[Any], emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBO_API_KEY", emu.token)
    monkeypatch.setenv("NEBO_BASE_URL", emu.base_url)
    blocks = _blocks(cls)
    assert len(blocks) >= 3
    namespace: dict[str, Any] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(blocks):
            code = compile(block, f"{cls.__name__} example {i}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, namespace)
            if inspect.iscoroutine(result):
                asyncio.run(result)
    printed = out.getvalue()
    assert printed.strip()
    if cls is ChatNebo:
        assert "Seine" in printed  # the emulator answers from the context, as the example shows
        assert namespace["ai_msg"].response_metadata["nebo"]["cost_micro"] > 0
        assert namespace["person"].name
        assert namespace["model_with_tools"] is not None
    else:
        assert printed.split() == ["256", "3"]
