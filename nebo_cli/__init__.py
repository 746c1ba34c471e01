"""The ``nebo`` command line: budget, models, a streamed chat, a local emulator and the demo.

It sits at the top of the package graph (it may import ``nebo_core``, ``nebo_emulator`` and
``nebo_demo``; nothing imports it), and it stays framework-free: LangChain and LlamaIndex are
imported only when ``nebo demo`` runs.
"""

from nebo_cli._main import main

__all__ = ["main"]
