"""Typed errors from nebo_core reach LlamaIndex code unchanged: auth, budget, rate limits."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.tools import FunctionTool

from llama_index_nebo import (
    Nebo,
    NeboAuthenticationError,
    NeboBudgetExhausted,
    NeboEmbedding,
    NeboRateLimited,
)
from nebo_core import AsyncNeboClient, NeboClient, NeboConfigurationError
from nebo_emulator import NeboEmulator

HELLO = [ChatMessage(role=MessageRole.USER, content="hello")]


async def test_bad_token_is_an_authentication_error(emu: NeboEmulator) -> None:
    llm = Nebo(api_key="not-a-nebo-token", base_url=emu.base_url)
    with pytest.raises(NeboAuthenticationError) as info:
        llm.chat(HELLO)
    assert info.value.status == 401
    assert "not-a-nebo-token" not in str(info.value)
    with pytest.raises(NeboAuthenticationError):
        await llm.achat(HELLO)
    with pytest.raises(NeboAuthenticationError):
        NeboEmbedding(api_key="not-a-nebo-token", base_url=emu.base_url).get_text_embedding("x")


async def test_exhausted_budget_then_refused_before_sending(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    llm = Nebo(**conn)
    llm.chat(HELLO)
    emu.set_budget(session_remaining_micro=0)
    with pytest.raises(NeboBudgetExhausted) as info:
        llm.chat(HELLO)
    assert info.value.window == "session"
    sent = emu.requests
    with pytest.raises(NeboBudgetExhausted):
        await llm.achat(HELLO)
    with pytest.raises(NeboBudgetExhausted):
        NeboEmbedding(**conn).get_text_embedding("x")
    assert emu.requests == sent  # the policy refused up front: no request that can only fail


@pytest.mark.parametrize("streaming", [False, True])
async def test_usage_limit_429_is_terminal(emu: NeboEmulator, conn: dict[str, Any], streaming: bool) -> None:
    emu.inject("usage_limit")
    llm = Nebo(**conn)

    async def call() -> None:
        if streaming:
            async for _ in await llm.astream_chat(HELLO):
                pass
        else:
            llm.chat(HELLO)

    with pytest.raises(NeboBudgetExhausted) as info:
        await call()
    assert info.value.code == "USAGE_LIMIT_EXCEEDED"
    assert not info.value.is_retryable
    assert emu.requests == 1  # never retried


async def test_rate_limit_waits_with_the_injected_sleep(emu: NeboEmulator) -> None:
    sleeps: list[float] = []

    async def asleep(seconds: float) -> None:
        sleeps.append(seconds)

    aclient = AsyncNeboClient(api_key=emu.token, base_url=emu.base_url, sleep=asleep)
    llm = Nebo(
        client=NeboClient(api_key=emu.token, base_url=emu.base_url, sleep=sleeps.append),
        async_client=aclient,  # yours to close: the model never closes a client you pass in
    )
    emu.inject("429", retry_after=7)
    assert llm.complete("Context: it is 7.\nQuestion: what is it?").text
    emu.inject("429", retry_after=7)
    assert (await llm.acomplete("Context: it is 7.\nQuestion: what is it?")).text
    assert len(sleeps) == 2
    assert all(7.0 <= s <= 7.1 for s in sleeps)
    await aclient.aclose()


def test_rate_limit_surfaces_when_retries_are_off(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    emu.inject("429", retry_after=3)
    with pytest.raises(NeboRateLimited) as info:
        Nebo(max_retries=0, **conn).chat(HELLO)
    assert info.value.retry_after == 3
    assert info.value.is_retryable


def price(plan: str) -> str:
    """Look up the price of a plan."""
    return "29 euros"


async def test_agent_stops_with_a_typed_error_when_the_budget_is_gone(
    emu: NeboEmulator, conn: dict[str, Any]
) -> None:
    llm = Nebo(**conn)
    llm.chat(HELLO)
    emu.set_budget(session_remaining_micro=0, weekly_remaining_micro=0)
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(price)], llm=llm)
    with pytest.raises(NeboBudgetExhausted):
        await agent.run(user_msg="Use price to look up the Team plan")


def test_dict_messages_are_a_configuration_error_before_sending(
    emu: NeboEmulator, conn: dict[str, Any]
) -> None:
    llm = Nebo(**conn)
    with pytest.raises(NeboConfigurationError, match="item 0 is dict"):
        llm.chat([{"role": "user", "content": "hi"}])  # type: ignore[list-item]
    assert emu.requests == 0
