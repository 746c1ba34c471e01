"""Issue 16 section 4: LlamaIndex's ``NeboUsageEvent`` and the OpenTelemetry span of the same Nebo
call agree (one event per span; the same request id, cost and tokens), for chat, streams read
fully and closed early, async chat, tool calls and embedding batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events import BaseEvent  # noqa: E402
from llama_index.core.llms import ChatMessage  # noqa: E402
from llama_index.core.tools import FunctionTool  # noqa: E402

from llama_index_nebo import Nebo, NeboEmbedding, NeboUsageEvent  # noqa: E402
from nebo_emulator import NeboEmulator  # noqa: E402


class Collect(BaseEventHandler):
    """Keeps every ``NeboUsageEvent``."""

    events: list[Any] = []

    @classmethod
    def class_name(cls) -> str:
        return "Collect"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, NeboUsageEvent):
            self.events.append(event)


@pytest.fixture
def events() -> Iterator[list[NeboUsageEvent]]:
    handler = Collect(events=[])
    root = get_dispatcher("root")
    root.add_event_handler(handler)
    try:
        yield handler.events
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not handler]


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


async def test_events_and_spans_agree(
    otel: Any, emu: NeboEmulator, conn: dict[str, Any], events: list[NeboUsageEvent]
) -> None:
    llm = Nebo(**conn)
    llm.chat(user("Say hello. Context: the sky is blue."))
    list(llm.stream_chat(user("Tell me a long story about the sea.")))
    early = llm.stream_chat(user("Tell me another long story about the sea."))
    next(early)
    early.close()
    await llm.achat(user("Say hello again."))
    llm.chat_with_tools([FunctionTool.from_defaults(add)], user_msg="Use the add tool to add 3 and 4.")
    NeboEmbedding("neboloop/nebo-embed-small", embed_batch_size=2, **conn).get_text_embedding_batch(
        ["one", "two", "three"]
    )

    spans = {s.attributes["nebo.request_id"]: s.attributes for s in otel.spans()}
    assert len(spans) == len(events) == len(emu.ledger) == 7
    for event in events:
        span = spans[event.record.request_id]
        assert span["gen_ai.operation.name"] == ("chat" if event.kind == "chat" else "embeddings")
        assert span["nebo.cost_micro"] == event.cost_micro
        assert span["gen_ai.usage.input_tokens"] == event.prompt_tokens
        assert span.get("gen_ai.usage.output_tokens") == (
            event.completion_tokens if event.kind == "chat" else None
        )
        assert span["gen_ai.response.model"] == event.model
        assert span.get("nebo.stream.complete", True) is event.record.complete
    assert sum(s["nebo.cost_micro"] for s in spans.values()) == sum(e.cost_micro or 0 for e in events)


def test_a_retried_call_agrees_with_its_events(
    otel: Any, emu: NeboEmulator, conn: dict[str, Any], events: list[NeboUsageEvent]
) -> None:
    emu.inject("drop_midstream")  # billed, then cut before the body: retried, charged an estimate
    Nebo(**conn).chat(user("Say hello. Context: the sky is blue."))
    (span,) = otel.spans()
    assert len(conn["tracker"].history()) == 2
    assert span.attributes["nebo.cost_micro"] == sum(r.cost_micro for r in conn["tracker"].history())
    assert sum(e.cost_micro or 0 for e in events) == span.attributes["nebo.cost_micro"]
