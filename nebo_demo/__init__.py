"""The tour behind ``nebo demo`` / ``make demo``: RAG with LlamaIndex, a LangChain agent, the budget.

It lives apart from ``nebo_core`` because it uses both frameworks, which ``nebo_core`` never
imports; it needs the ``langchain`` and ``llama-index`` extras.
"""

from nebo_demo._demo import run_demo

__all__ = ["run_demo"]
