"""Sync and async paths give the same results: plain, stream, tools, budget 429, in-stream error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.exceptions import ModelRateLimitError
from langchain_core.tools import tool

from langchain_nebo import ChatNebo, NeboBudgetExhaustedError, NeboEmbeddings


@tool
def lookup_city(city: str) -> str:
    """Look up facts about a city."""
    return city


def _shape(msg: Any) -> tuple[Any, ...]:
    meta = msg.response_metadata
    return (
        msg.content,
        [(t["name"], t["args"]) for t in msg.tool_calls],
        meta["model_name"],
        meta["finish_reason"],
        meta["nebo"]["cost_micro"],
        (msg.usage_metadata or {}).get("total_tokens"),
    )


def _collect(chunks: list[Any]) -> Any:
    whole = chunks[0]
    for c in chunks[1:]:
        whole += c
    return whole


@pytest.mark.parametrize(
    ("kind", "prompt"),
    [("plain", "Context: grass is green. What color is grass?"), ("tools", "Tell me about Lyon")],
)
def test_invoke_and_stream_parity(connect: dict[str, Any], kind: str, prompt: str) -> None:
    model: Any = ChatNebo(**connect)
    if kind == "tools":
        model = model.bind_tools([lookup_city], tool_choice="lookup_city")

    async def run_async() -> tuple[Any, Any]:
        return await model.ainvoke(prompt), _collect([c async for c in model.astream(prompt)])

    sync = (model.invoke(prompt), _collect(list(model.stream(prompt))))
    async_ = asyncio.run(run_async())
    assert _shape(sync[0]) == _shape(async_[0])
    assert _shape(sync[1]) == _shape(async_[1])
    assert _shape(sync[0])[:2] == _shape(sync[1])[:2]


def test_budget_429_parity(connect: dict[str, Any], emu: Any) -> None:
    model = ChatNebo(**connect)
    emu.inject("usage_limit")
    with pytest.raises(NeboBudgetExhaustedError) as sync_err:
        model.invoke("hi")
    connect["tracker"].reset()  # forget the exhausted snapshot so the async call reaches the server
    emu.inject("usage_limit")
    with pytest.raises(NeboBudgetExhaustedError) as async_err:
        asyncio.run(model.ainvoke("hi"))
    assert (sync_err.value.code, sync_err.value.is_retryable) == (async_err.value.code, False)


def test_in_stream_error_parity(connect: dict[str, Any], emu: Any) -> None:
    model = ChatNebo(max_retries=0, **connect)

    async def run_async() -> None:
        async for _ in model.astream("hi"):
            pass

    emu.inject("stream_rate_limit")
    with pytest.raises(ModelRateLimitError) as sync_err:
        list(model.stream("hi"))
    emu.inject("stream_rate_limit")
    with pytest.raises(ModelRateLimitError) as async_err:
        asyncio.run(run_async())
    assert type(sync_err.value) is type(async_err.value)
    emu.clear_faults()


def test_embeddings_parity_order_empty_and_whitespace(connect: dict[str, Any]) -> None:
    emb = NeboEmbeddings(chunk_size=2, max_concurrency=2, **connect)
    texts = ["river bank", "", "   ", "money bank", "river water"]
    sync = emb.embed_documents(texts)
    async_ = asyncio.run(emb.aembed_documents(texts))
    assert len(sync) == 5
    assert sync == async_
    assert emb.embed_documents([]) == []
    assert asyncio.run(emb.aembed_documents([])) == []
    assert emb.embed_query("river bank") == sync[0]
    assert len(connect["tracker"].history()) >= 6  # three batches per pass were recorded
