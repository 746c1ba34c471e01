"""What a finished call gives back: the public result types of the clients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nebo_core.budget import BudgetSnapshot, UsageRecord
from nebo_core.forecast import BudgetForecast


@dataclass(frozen=True)
class ChatCompletion:
    """A finished chat call: the standard OpenAI body plus what it cost."""

    data: dict[str, Any]
    usage: UsageRecord
    snapshot: BudgetSnapshot | None
    request_id: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    """The response's headers, names lower-cased (``include_response_headers`` in the adapters)."""
    records: tuple[UsageRecord, ...] = ()
    """Every usage record of the call: attempts that may have been billed (charged at an estimate,
    then retried), then :attr:`usage`. Their costs sum to what the call cost."""
    forecast: BudgetForecast | None = None
    """Where the account's windows are heading, as of this response (:mod:`nebo_core.forecast`)."""

    @property
    def message(self) -> dict[str, Any]:
        """The first choice's message."""
        choices = self.data.get("choices") or [{}]
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        return message if isinstance(message, dict) else {"role": "assistant", "content": None}


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors in input order, plus what they cost (one record per request sent, and one per attempt
    that may have been billed before it)."""

    vectors: list[list[float]]
    model: str | None
    usage: list[UsageRecord]

    @property
    def cost_micro(self) -> int | None:
        """Total cost, or ``None`` if any request's cost is unknown."""
        costs = [u.cost_micro for u in self.usage]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
