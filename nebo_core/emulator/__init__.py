"""A local, protocol-faithful Nebo server: the project's default backend for demos, tests and CI.

``NeboEmulator`` serves ``/v1/chat/completions`` (plain and SSE), ``/v1/embeddings``,
``/v1/models`` and ``/v1/usage`` on loopback, with Nebo's budget accounting, headers and
stream quirks (or plain OpenAI behaviour with ``strict_openai=True``), deterministic
answers and scripted faults. Standard library only.
"""

from nebo_core.emulator._accounting import BudgetView, LedgerEntry
from nebo_core.emulator._clock import Clock, EmulatorClock
from nebo_core.emulator._emulator import NeboEmulator, serve
from nebo_core.emulator._faults import FAULT_DEFAULTS, Fault

FAULT_KINDS = tuple(FAULT_DEFAULTS)
"""Every kind ``NeboEmulator.inject`` accepts."""

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
