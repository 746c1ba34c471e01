"""``with_retry`` never re-sends what Nebo marks final: a budget 429, a 401 (issue 12 section 1).

langchain-core's own ``Runnable.with_retry`` retries every exception by type and ignores
``is_retryable``; ``ChatNebo.with_retry`` honours it, and chains get ``RETRYABLE_ERRORS``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from langchain_core.prompts import ChatPromptTemplate

from langchain_nebo import RETRYABLE_ERRORS, ChatNebo, NeboBudgetExhaustedError, NeboModelAuthenticationError

FAST: dict[str, Any] = {"exponential_jitter_params": {"max": 0.02, "jitter": 0.0}}


def test_a_budget_429_is_sent_once_through_with_retry(connect: dict[str, Any], emu: Any) -> None:
    model = ChatNebo(max_retries=0, **connect).with_retry(stop_after_attempt=5)
    emu.inject("usage_limit")
    before, started = emu.requests, time.monotonic()
    with pytest.raises(NeboBudgetExhaustedError):
        model.invoke("hi")
    assert emu.requests - before == 1
    assert time.monotonic() - started < 0.5  # no backoff sleep (the first would be >= 1 s)


async def test_a_budget_429_is_sent_once_through_with_retry_async(connect: dict[str, Any], emu: Any) -> None:
    model = ChatNebo(max_retries=0, **connect).with_retry(stop_after_attempt=5)
    emu.inject("usage_limit")
    before = emu.requests
    with pytest.raises(NeboBudgetExhaustedError):
        await model.ainvoke("hi")
    assert emu.requests - before == 1


def test_a_401_is_not_retried_by_with_retry(emu: Any, connect: dict[str, Any]) -> None:
    model = ChatNebo(**{**connect, "api_key": "not-a-nebo-token", "max_retries": 0}).with_retry()
    before = emu.requests
    with pytest.raises(NeboModelAuthenticationError):
        model.invoke("hi")
    assert emu.requests - before == 1


def test_a_transient_error_is_still_retried_by_with_retry(connect: dict[str, Any], emu: Any) -> None:
    model = ChatNebo(max_retries=0, **connect).with_retry(stop_after_attempt=3, **FAST)
    emu.inject("429", count=2, retry_after=0)
    before = emu.requests
    assert model.invoke("Context: it is 7.\nQuestion: what is it?").content
    assert emu.requests - before == 3


def test_a_callable_filter_is_honoured_and_still_never_retries_a_budget_error(
    connect: dict[str, Any], emu: Any
) -> None:
    seen: list[str] = []

    def only_rate_limits(error: BaseException) -> bool:
        seen.append(type(error).__name__)
        return True

    model = ChatNebo(max_retries=0, **connect).with_retry(retry_if_exception_type=only_rate_limits, **FAST)
    emu.inject("usage_limit")
    before = emu.requests
    with pytest.raises(NeboBudgetExhaustedError):
        model.invoke("hi")
    assert emu.requests - before == 1
    assert seen == []  # a final error never even reaches the user's filter


def test_a_chain_retries_only_the_transient_nebo_errors(connect: dict[str, Any], emu: Any) -> None:
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | ChatNebo(max_retries=0, **connect)
    retrying = chain.with_retry(retry_if_exception_type=RETRYABLE_ERRORS, stop_after_attempt=4, **FAST)
    emu.inject("usage_limit")
    before = emu.requests
    with pytest.raises(NeboBudgetExhaustedError):
        retrying.invoke({"q": "hi"})
    assert emu.requests - before == 1
    emu.inject("502", count=1)
    before = emu.requests
    assert retrying.invoke({"q": "Context: it is 7.\nQuestion: what is it?"}).content
    assert emu.requests - before == 2
