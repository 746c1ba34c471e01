"""``NeboUsageEvent``: the instrumentation event every finished Nebo call emits.

LlamaIndex's own ``EmbeddingEndEvent`` carries no usage, and its LLM events carry only
what a response shows; this event carries ``nebo_core``'s ``UsageRecord`` (tokens,
microdollars, routed model, budget snapshot) for LLM and embedding calls alike, so one
handler can total a whole pipeline.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.instrumentation.events import BaseEvent

from nebo_core import UsageRecord


class NeboUsageEvent(BaseEvent):
    """One finished Nebo request (chat or embedding batch) and what it cost."""

    kind: str
    requested_model: str
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_micro: int | None = None
    record: Any = None
    """The ``nebo_core.UsageRecord`` itself."""

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "NeboUsageEvent"

    @classmethod
    def from_record(cls, record: UsageRecord) -> NeboUsageEvent:
        """The event for one usage record."""
        return cls(
            kind=record.kind,
            requested_model=record.requested_model,
            model=record.model,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            cost_micro=record.cost_micro,
            record=record,
        )

    @property
    def usage(self) -> UsageRecord:
        """The usage record."""
        assert isinstance(self.record, UsageRecord)
        return self.record
