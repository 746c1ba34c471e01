"""The tour behind ``nebo demo`` / ``make demo``: RAG with LlamaIndex, a LangChain agent, the budget.

It lives apart from ``nebo_core`` because it uses both frameworks, which ``nebo_core`` never
imports; it needs the ``langchain`` and ``llama-index`` extras. ``run_demo`` is loaded on
first use, so ``import nebo_demo.render`` (the plain-text rendering the ``nebo`` command
shares) imports no framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nebo_demo._demo import run_demo

__all__ = ["run_demo"]


def __getattr__(name: str) -> Any:
    if name == "run_demo":
        from nebo_demo._demo import run_demo

        globals()[name] = run_demo
        return run_demo
    raise AttributeError(f"module 'nebo_demo' has no attribute {name!r}")
