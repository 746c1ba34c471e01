"""The forecast reaches the user on every path: the core results, ``ChatNebo``'s
``response_metadata["nebo"]["forecast"]`` (invoke and stream, sync and async), ``Nebo``'s
``additional_kwargs["nebo"]["forecast"]`` (chat and stream) and both frameworks' handlers.

Each path makes three calls on a fresh emulator and tracker; the third call's forecast must rest on
three readings, show the server's remaining amount and a positive burn rate, and equal what the
tracker itself forecasts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from nebo_core import AsyncNeboClient, BudgetTracker, NeboClient

BODY = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def _core_sync(conn: dict[str, Any]) -> dict[str, Any]:
    with NeboClient(**conn) as client:
        results = [client.chat(BODY) for _ in range(3)]
    forecast = results[-1].forecast
    assert forecast is not None
    return forecast.to_dict()


def _core_async(conn: dict[str, Any]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with AsyncNeboClient(**conn) as client:
            results = [await client.chat(BODY) for _ in range(3)]
        forecast = results[-1].forecast
        assert forecast is not None
        return forecast.to_dict()

    return asyncio.run(go())


def _core_stream(conn: dict[str, Any]) -> dict[str, Any]:
    with NeboClient(**conn) as client:
        for _ in range(3):
            with client.stream_chat(BODY) as stream:
                for _chunk in stream:
                    pass
        return stream.forecast.to_dict()


def _chat_nebo_invoke(conn: dict[str, Any]) -> dict[str, Any]:
    from langchain_nebo import ChatNebo

    llm = ChatNebo(model="gpt-5-mini", max_tokens=16, **conn)
    return [llm.invoke("hi") for _ in range(3)][-1].response_metadata["nebo"]["forecast"]


def _chat_nebo_ainvoke(conn: dict[str, Any]) -> dict[str, Any]:
    from langchain_nebo import ChatNebo

    llm = ChatNebo(model="gpt-5-mini", max_tokens=16, **conn)

    async def go() -> Any:
        return [await llm.ainvoke("hi") for _ in range(3)][-1]

    return asyncio.run(go()).response_metadata["nebo"]["forecast"]


def _chat_nebo_stream(conn: dict[str, Any]) -> dict[str, Any]:
    from langchain_nebo import ChatNebo

    llm = ChatNebo(model="gpt-5-mini", max_tokens=16, **conn)
    for _ in range(3):
        merged = None
        for chunk in llm.stream("hi"):
            merged = chunk if merged is None else merged + chunk
    assert merged is not None
    return merged.response_metadata["nebo"]["forecast"]


def _nebo_chat(conn: dict[str, Any]) -> dict[str, Any]:
    from llama_index.core.llms import ChatMessage

    from llama_index_nebo import Nebo

    llm = Nebo(model="gpt-5-mini", max_tokens=16, **conn)
    responses = [llm.chat([ChatMessage(role="user", content="hi")]) for _ in range(3)]
    return responses[-1].additional_kwargs["nebo"]["forecast"]


def _nebo_stream(conn: dict[str, Any]) -> dict[str, Any]:
    from llama_index.core.llms import ChatMessage

    from llama_index_nebo import Nebo

    llm = Nebo(model="gpt-5-mini", max_tokens=16, **conn)
    for _ in range(3):
        *_, last = llm.stream_chat([ChatMessage(role="user", content="hi")])
    return last.additional_kwargs["nebo"]["forecast"]


PATHS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "core-sync": _core_sync,
    "core-async": _core_async,
    "core-stream": _core_stream,
    "ChatNebo.invoke": _chat_nebo_invoke,
    "ChatNebo.ainvoke": _chat_nebo_ainvoke,
    "ChatNebo.stream": _chat_nebo_stream,
    "Nebo.chat": _nebo_chat,
    "Nebo.stream_chat": _nebo_stream,
}


@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_carries_the_forecast(path: str, conn: dict[str, Any], tracker: BudgetTracker) -> None:
    shown = PATHS[path](conn)
    expected = tracker.forecast().to_dict()
    session = shown["session"]
    assert session["samples"] == 3
    assert session["remaining_micro"] == expected["session"]["remaining_micro"]
    assert session["remaining_micro"] == tracker.snapshot.session.remaining_micro
    assert session["burn_rate_micro_per_s"] > 0
    assert session["seconds_to_exhaustion"] > 0
    assert session["calls_left"]["chat"] > 0
    assert shown["binding"] in ("session", "weekly")
    assert shown["account"] == expected["account"]


def test_handlers_expose_the_forecast(conn: dict[str, Any]) -> None:
    from llama_index.core.llms import ChatMessage

    from langchain_nebo import ChatNebo, NeboBudgetCallbackHandler
    from llama_index_nebo import Nebo, NeboBudgetEventHandler

    handler = NeboBudgetCallbackHandler()
    llm = ChatNebo(model="gpt-5-mini", max_tokens=16, **conn)
    for _ in range(2):
        llm.invoke("hi", config={"callbacks": [handler]})
    assert handler.forecast is not None
    assert handler.forecast["session"]["samples"] == 2

    events = NeboBudgetEventHandler().attach()
    try:
        li = Nebo(model="gpt-5-mini", max_tokens=16, **conn)
        for _ in range(2):
            li.chat([ChatMessage(role="user", content="hi")])
    finally:
        events.detach()
    forecast = events.forecast()
    assert forecast.session.samples == 2
    assert forecast.session.burn_rate is not None
