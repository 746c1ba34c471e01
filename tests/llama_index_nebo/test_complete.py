"""``complete`` and its twins on the emulator: one LLM event, one rate-limiter acquire and one usage
record per call (issue 13: they wrapped the decorated ``chat``), and ``completion_to_prompt`` applied."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.rate_limiter import BaseRateLimiter

from llama_index_nebo import Nebo
from nebo_emulator import NeboEmulator

QUESTION = "Context: The Larkspur refund window is 30 days.\nQuestion: How long is the refund window?"
MODES = ["complete", "acomplete", "stream_complete", "astream_complete"]


class CountingLimiter(BaseRateLimiter):
    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self, num_tokens: int = 0) -> None:
        self.acquired += 1

    async def async_acquire(self, num_tokens: int = 0) -> None:
        self.acquired += 1


class EventNames(BaseEventHandler):
    names: list[str] = []

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.names.append(event.class_name())


async def run(llm: Nebo, mode: str, prompt: str = QUESTION, **kwargs: Any) -> str:
    if mode == "complete":
        return str(llm.complete(prompt, **kwargs).text)
    if mode == "acomplete":
        return str((await llm.acomplete(prompt, **kwargs)).text)
    if mode == "stream_complete":
        return str([r for r in llm.stream_complete(prompt, **kwargs)][-1].text)
    return str([r async for r in await llm.astream_complete(prompt, **kwargs)][-1].text)


@pytest.mark.parametrize("mode", MODES)
async def test_a_completion_counts_once(emu: NeboEmulator, conn: dict[str, Any], mode: str) -> None:
    counter = TokenCountingHandler(tokenizer=str.split)
    limiter = CountingLimiter()
    events = EventNames(names=[])
    dispatcher = get_dispatcher("root")
    dispatcher.add_event_handler(events)
    try:
        llm = Nebo(callback_manager=CallbackManager([counter]), rate_limiter=limiter, **conn)
        assert "30 days" in await run(llm, mode)
    finally:
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not events]
    (entry,) = emu.ledger
    (record,) = counter.llm_token_counts
    assert record.prompt_token_count == llm.tracker.history()[0].prompt_tokens  # the server's count
    assert counter.prompt_llm_token_count == record.prompt_token_count  # not twice
    assert limiter.acquired == 1
    assert llm.tracker.totals().total.calls == 1
    started = [n for n in events.names if n.endswith("StartEvent") and n.startswith("LLM")]
    assert started == ["LLMCompletionStartEvent"]  # no nested LLMChatStartEvent


@pytest.mark.parametrize("mode", MODES)
async def test_completion_to_prompt_is_applied(emu: NeboEmulator, conn: dict[str, Any], mode: str) -> None:
    seen: list[str] = []

    def to_prompt(prompt: str) -> str:
        seen.append(prompt)
        return f"Context: The Larkspur refund window is 30 days.\nQuestion: {prompt}"

    llm = Nebo(completion_to_prompt=to_prompt, **conn)
    assert "30 days" in await run(llm, mode, "How long is the refund window?")
    assert seen == ["How long is the refund window?"]
    assert "30 days" in await run(llm, mode, QUESTION, formatted=True)  # formatted: used as given
    assert seen == ["How long is the refund window?"]
