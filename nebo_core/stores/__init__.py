"""Budget stores: where a :class:`~nebo_core.policy.BudgetPolicy` keeps spend and reservations.

``InMemoryBudgetStore`` (the default) serves one process; ``RedisBudgetStore`` serves many
processes sharing one Nebo token (the ``redis`` extra; ``redis`` is imported only when a
store is built from a URL).
"""

from __future__ import annotations

from nebo_core.stores._base import (
    BudgetStore,
    LineUsage,
    Reservation,
    ReserveResult,
    decode_snapshot,
    encode_snapshot,
)
from nebo_core.stores._memory import InMemoryBudgetStore
from nebo_core.stores._redis import RedisBudgetStore

__all__ = [
    "BudgetStore",
    "InMemoryBudgetStore",
    "LineUsage",
    "RedisBudgetStore",
    "Reservation",
    "ReserveResult",
    "decode_snapshot",
    "encode_snapshot",
]
