"""A local, protocol-faithful Nebo server: the project's default backend for demos, tests and CI.

``NeboEmulator`` serves ``/v1/chat/completions`` (plain and SSE), ``/v1/embeddings``,
``/v1/models`` and ``/v1/usage`` on loopback, with Nebo's budget accounting, headers and
stream quirks (or plain OpenAI behaviour with ``strict_openai=True``), deterministic
answers and scripted faults. Standard library only, plus the public ``nebo_core.models``.

Names are loaded on first use: the pytest plugin (``nebo_emulator.pytest_plugin``, loaded in
every pytest run of everyone who installs the package) imports this package, and must not
pay for the server until a test asks for one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nebo_emulator._accounting import BudgetView, LedgerEntry
    from nebo_emulator._clock import Clock, EmulatorClock
    from nebo_emulator._emulator import NeboEmulator, serve
    from nebo_emulator._faults import Fault

    FAULT_KINDS: tuple[str, ...]
    """Every kind ``NeboEmulator.inject`` accepts."""

_EXPORTS = {
    "BudgetView": "nebo_emulator._accounting",
    "LedgerEntry": "nebo_emulator._accounting",
    "Clock": "nebo_emulator._clock",
    "EmulatorClock": "nebo_emulator._clock",
    "NeboEmulator": "nebo_emulator._emulator",
    "serve": "nebo_emulator._emulator",
    "Fault": "nebo_emulator._faults",
}

__all__ = [
    "FAULT_KINDS",
    "BudgetView",
    "Clock",
    "EmulatorClock",
    "Fault",
    "LedgerEntry",
    "NeboEmulator",
    "serve",
]


def __getattr__(name: str) -> Any:
    value: Any
    if name == "FAULT_KINDS":
        from nebo_emulator._faults import FAULT_DEFAULTS

        value = tuple(FAULT_DEFAULTS)
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'nebo_emulator' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
