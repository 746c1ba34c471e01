"""NeboBudgetCallbackHandler and get_nebo_callback: exact totals, caps, early-closed streams, no leaks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from langchain_nebo import (
    ChatNebo,
    NeboBudgetCallbackHandler,
    NeboBudgetExhaustedError,
    NeboEmbeddings,
    _callbacks,
    get_nebo_callback,
)


def _spent(emu: Any, since: int) -> int:
    return sum(e.cost_micro for e in emu.ledger[since:])


def test_handler_records_invoke_and_stream_exactly(connect: dict[str, Any], emu: Any) -> None:
    start = len(emu.ledger)
    handler = NeboBudgetCallbackHandler()
    model = ChatNebo(callbacks=[handler], **connect)
    model.invoke("first question about rivers")
    list(model.stream("second question about lakes"))
    assert handler.successful_requests == 2
    assert handler.total_cost_micro == _spent(emu, start) > 0
    assert handler.total_tokens > 0
    assert handler.snapshot is not None
    assert sum(t.cost_micro for t in handler.by_model.values()) == handler.total_cost_micro


def test_handler_records_a_stream_closed_early(connect: dict[str, Any], emu: Any) -> None:
    start = len(emu.ledger)
    handler = NeboBudgetCallbackHandler()
    stream = ChatNebo(callbacks=[handler], **connect).stream("tell me a long story about the sea")
    next(stream)
    stream.close()
    assert handler.errors == 1
    assert handler.partial_calls == 1
    assert handler.successful_requests == 1
    # What was seen before closing (cumulative usage so far), exactly as the core recorded it;
    # the server bills the whole answer, so this is a lower bound of the ledger.
    record = connect["tracker"].history()[-1]
    assert record.complete is False
    assert 0 < handler.total_cost_micro == record.cost_micro <= _spent(emu, start)


def test_handler_records_a_broken_stream(connect: dict[str, Any], emu: Any) -> None:
    start = len(emu.ledger)
    emu.inject("drop_midstream")
    handler = NeboBudgetCallbackHandler()
    with pytest.raises(Exception, match="stream"):
        list(ChatNebo(callbacks=[handler], max_retries=0, **connect).stream("tell me a long story"))
    emu.clear_faults()
    assert handler.errors == 1
    assert handler.partial_calls == 1
    assert handler.total_cost_micro == _spent(emu, start)


def test_cap_stops_the_call_before_any_request(connect: dict[str, Any], emu: Any) -> None:
    handler = NeboBudgetCallbackHandler(max_cost_micro=1)
    model = ChatNebo(callbacks=[handler], **connect)
    model.invoke("spend something")
    before = emu.requests
    with pytest.raises(NeboBudgetExhaustedError) as info:
        model.invoke("this one is refused")
    assert emu.requests == before
    assert info.value.is_retryable is False
    assert info.value.window == "cap"


def test_get_nebo_callback_counts_chat_and_embeddings(connect: dict[str, Any], emu: Any) -> None:
    start = len(emu.ledger)
    with get_nebo_callback() as cb:
        ChatNebo(**connect).invoke("hello")
        NeboEmbeddings(**connect).embed_documents(["a", "b"])
    assert cb.successful_requests == 2
    assert set(cb.by_kind) == {"chat", "embedding"}
    assert cb.total_cost_micro == _spent(emu, start)
    ChatNebo(**connect).invoke("outside the block")
    assert cb.successful_requests == 2


def test_get_nebo_callback_isolates_threads_and_tasks(connect: dict[str, Any], emu: Any) -> None:
    results: dict[str, int] = {}

    def worker(name: str, n: int) -> None:
        with get_nebo_callback() as cb:
            for _ in range(n):
                ChatNebo(**connect).invoke(f"call from {name}")
        results[name] = cb.successful_requests

    threads = [threading.Thread(target=worker, args=(f"t{n}", n)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"t1": 1, "t2": 2, "t3": 3}

    async def task(n: int) -> int:
        with get_nebo_callback() as cb:
            for _ in range(n):
                await ChatNebo(**connect).ainvoke("async call")
        return cb.successful_requests

    async def main() -> list[int]:
        return list(await asyncio.gather(task(1), task(2)))

    assert asyncio.run(main()) == [1, 2]


def test_get_nebo_callback_resets_when_the_block_raises_and_never_grows(connect: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError), get_nebo_callback():
        raise RuntimeError("boom")
    assert _callbacks._COLLECTORS.get() == ()
    tracker = connect["tracker"]
    listeners = len(tracker._record_listeners)
    for _ in range(1000):
        with get_nebo_callback(tracker):
            pass
    assert len(tracker._record_listeners) == max(listeners, 1)
    assert _callbacks._COLLECTORS.get() == ()


def test_negative_cap_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_cost_micro must be >= 0"):
        NeboBudgetCallbackHandler(max_cost_micro=-1)


def test_get_nebo_callback_counts_concurrent_embedding_batches(connect: dict[str, Any], emu: Any) -> None:
    start = len(emu.ledger)
    with get_nebo_callback() as cb:
        NeboEmbeddings(chunk_size=1, max_concurrency=3, **connect).embed_documents(["a", "b", "c", "d"])
    assert cb.by_kind["embedding"].calls == 4
    assert cb.total_cost_micro == _spent(emu, start)
