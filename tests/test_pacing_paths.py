"""Pacing holds on every path: a call's lane (``lane=`` on any client or model, or a call's own
``X-Lane`` header) reaches the pace book, and every governed call (chat and embeddings, sync and
async, native, the openai SDK and a ``with_retry`` wrapper) books its slot there.

Each path makes two calls under ``Pace()``: the first has no budget report yet and goes unpaced,
the second books one slot on its lane. The pace is fast (an estimate of one microdollar against
the emulator's whole session window), so no call waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from nebo_core import AsyncNeboClient, BudgetPolicy, NeboClient, Pace

BODY = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def _core_sync(conn: dict[str, Any]) -> None:
    with NeboClient(lane="events", **conn) as client:
        for _ in range(2):
            client.chat(BODY)


def _core_async(conn: dict[str, Any]) -> None:
    async def go() -> None:
        async with AsyncNeboClient(lane="events", **conn) as client:
            for _ in range(2):
                await client.chat(BODY)

    asyncio.run(go())


def _core_header(conn: dict[str, Any]) -> None:
    with NeboClient(**conn) as client:  # no lane of its own: the call's header says
        for _ in range(2):
            client.chat(BODY, extra_headers={"X-Lane": "events"})


def _chat_nebo(conn: dict[str, Any]) -> None:
    from langchain_nebo import ChatNebo

    llm = ChatNebo(model="gpt-5-mini", max_tokens=8, lane="events", **conn)
    for _ in range(2):
        llm.invoke("hi")


def _chat_nebo_with_retry(conn: dict[str, Any]) -> None:
    from langchain_nebo import ChatNebo

    llm = ChatNebo(model="gpt-5-mini", max_tokens=8, lane="events", **conn).with_retry(stop_after_attempt=2)
    for _ in range(2):
        llm.invoke("hi")


def _nebo_embeddings(conn: dict[str, Any]) -> None:
    from langchain_nebo import NeboEmbeddings

    emb = NeboEmbeddings(lane="events", **conn)
    for _ in range(2):
        emb.embed_query("hi")


def _nebo(conn: dict[str, Any]) -> None:
    from llama_index_nebo import Nebo

    llm = Nebo(model="gpt-5-mini", max_tokens=8, lane="events", **conn)
    for _ in range(2):
        llm.complete("hi")


def _nebo_embedding(conn: dict[str, Any]) -> None:
    from llama_index_nebo import NeboEmbedding

    emb = NeboEmbedding(lane="events", **conn)
    for _ in range(2):
        emb.get_query_embedding("hi")


def _openai_client(conn: dict[str, Any]) -> None:
    pytest.importorskip("openai")
    from nebo_core import openai_client

    client = openai_client(lane="events", **conn)
    try:
        for _ in range(2):
            client.chat.completions.create(**BODY)
    finally:
        client.close()


PATHS: dict[str, Callable[[dict[str, Any]], None]] = {
    "core-sync": _core_sync,
    "core-async": _core_async,
    "core-extra_headers": _core_header,
    "ChatNebo": _chat_nebo,
    "ChatNebo.with_retry": _chat_nebo_with_retry,
    "NeboEmbeddings": _nebo_embeddings,
    "Nebo": _nebo,
    "NeboEmbedding": _nebo_embedding,
    "openai_client": _openai_client,
}


@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_books_its_calls_on_its_lane(path: str, emu: Any, tracker: Any) -> None:
    policy = BudgetPolicy(pace=Pace(windows=("session",)), estimate_micro=1, mean_cache_s=0)
    conn = {"api_key": emu.token, "base_url": emu.base_url, "tracker": tracker, "policy": policy}
    PATHS[path](conn)
    assert len(emu.ledger) == 2
    assert policy.store.lanes() == {"events": {"booked": 1, "held": 0}}
