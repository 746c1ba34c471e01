"""Budget observers: the instrumentation and legacy callback handlers total what the ledger charged."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.callbacks import CallbackManager

from llama_index_nebo import Nebo, NeboBudgetCallbackHandler, NeboBudgetEventHandler, NeboEmbedding
from nebo_core import UsageRecord
from nebo_emulator import NeboEmulator

QUESTION = [ChatMessage(role=MessageRole.USER, content="Context: Support opens at 08:00.\nQuestion: When?")]


def _by_model_from_ledger(emu: NeboEmulator) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in emu.ledger:
        out[entry.model] = out.get(entry.model, 0) + entry.cost_micro
    return out


async def test_event_handler_totals_equal_the_ledger(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    handler = NeboBudgetEventHandler().attach()
    seen: list[UsageRecord] = []
    try:
        llm, embed = Nebo(**conn), NeboEmbedding(**conn)
        llm.chat(QUESTION)
        await llm.achat(QUESTION)
        list(llm.stream_chat(QUESTION))
        embed.get_text_embedding_batch(["a b c", "d e f"])
        await embed.aget_query_embedding("g h")
        seen = handler.history()
    finally:
        handler.detach()
    assert handler.calls == len(emu.ledger) == 5
    assert handler.cost_micro == emu.ledger_total_micro() > 0
    by_model = {model: t["cost_micro"] for model, t in handler.by_model().items()}
    assert by_model == _by_model_from_ledger(emu)
    assert [r.kind for r in seen] == ["chat", "chat", "chat", "embedding", "embedding"]
    assert seen[2].streamed is True
    handler.reset()
    assert handler.cost_micro == 0


def test_detached_handler_sees_nothing(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    handler = NeboBudgetEventHandler().attach()
    handler.detach()
    Nebo(**conn).chat(QUESTION)
    assert emu.ledger_total_micro() > 0
    assert handler.calls == 0


def test_legacy_callback_handler(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    handler = NeboBudgetCallbackHandler()
    manager = CallbackManager([handler])
    Nebo(callback_manager=manager, **conn).complete("Context: Support opens at 08:00.\nQuestion: When?")
    NeboEmbedding(callback_manager=manager, **conn).get_text_embedding_batch(["x y", "z"])
    assert handler.calls == 2
    assert handler.cost_micro == emu.ledger_total_micro() > 0
    assert handler.cost_dollars == emu.ledger_total_micro() / 1_000_000


def test_stream_closed_early_is_still_counted(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    handler = NeboBudgetEventHandler().attach()
    try:
        gen = Nebo(**conn).stream_complete("Say a long hello world to everyone in the room please")
        next(gen)
        gen.close()
    finally:
        handler.detach()
    (record,) = handler.history()
    assert record.streamed is True
    assert record.complete is False
