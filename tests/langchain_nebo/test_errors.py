"""nebo_core errors surface as LangChain ModelError subclasses with the right is_retryable."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
)

from langchain_nebo import ChatNebo, NeboBudgetExhaustedError, NeboEmbeddings, to_model_error
from nebo_core.errors import (
    NeboAuthenticationError,
    NeboBadRequestError,
    NeboBudgetExhausted,
    NeboConnectionError,
    NeboContextLengthError,
    NeboError,
    NeboRateLimited,
    NeboStreamError,
    NeboStreamTruncated,
    NeboUpstreamError,
)


@pytest.mark.parametrize(
    ("err", "expected", "retryable"),
    [
        (NeboAuthenticationError("no", status=401), ModelAuthenticationError, False),
        (NeboAuthenticationError("no", status=403), ModelPermissionDeniedError, False),
        (NeboBudgetExhausted("empty", status=429, window="session"), ModelRateLimitError, False),
        (NeboRateLimited("slow down", status=429, retry_after=2.0), ModelRateLimitError, True),
        (NeboUpstreamError("bad gateway", status=502), ModelAPIError, True),
        (NeboConnectionError("the connection to Nebo failed"), ModelError, True),
        (NeboContextLengthError("too long", status=400), ContextOverflowError, False),
        (NeboBadRequestError("bad", status=400), ModelInvalidRequestError, False),
        (NeboBadRequestError("what model", status=404), ModelNotFoundError, False),
        (NeboStreamError("boom"), ModelAPIError, False),
        (NeboStreamTruncated("cut", partial={"content": "hal"}), ModelAPIError, True),
    ],
)
def test_translation_table(err: NeboError, expected: type[Exception], retryable: bool) -> None:
    twin = to_model_error(err)
    assert isinstance(twin, expected)
    assert isinstance(twin, ModelError)
    assert isinstance(twin, type(err))  # `except NeboBudgetExhausted:` keeps working
    assert twin.is_retryable is retryable
    assert (twin.message, twin.status, twin.retry_after) == (err.message, err.status, err.retry_after)
    assert type(pickle.loads(pickle.dumps(twin))) is type(twin)


def test_budget_twin_keeps_window_and_is_not_retryable() -> None:
    twin = to_model_error(NeboBudgetExhausted("empty", window="weekly", code="USAGE_LIMIT_EXCEEDED"))
    assert isinstance(twin, NeboBudgetExhaustedError)
    assert twin.window == "weekly"
    assert twin.code == "USAGE_LIMIT_EXCEEDED"
    assert not twin.is_retryable


def test_auth_error_from_the_server(emu: Any, tracker: Any) -> None:
    model = ChatNebo(api_key="not-a-valid-token", base_url=emu.base_url, tracker=tracker, max_retries=0)
    with pytest.raises(ModelAuthenticationError) as info:
        model.invoke("hi")
    assert isinstance(info.value.__cause__, NeboAuthenticationError)
    assert "not-a-valid-token" not in str(info.value)


def test_budget_429_is_terminal_and_never_retried(connect: dict[str, Any], emu: Any) -> None:
    emu.inject("usage_limit")
    before = emu.requests
    with pytest.raises(NeboBudgetExhaustedError) as info:
        ChatNebo(max_retries=3, **connect).invoke("hi")
    assert emu.requests - before == 1
    assert info.value.is_retryable is False
    assert isinstance(info.value.__cause__, NeboBudgetExhausted)


def test_rate_limit_is_retryable(connect: dict[str, Any], emu: Any) -> None:
    emu.inject("429")
    with pytest.raises(ModelRateLimitError) as info:
        ChatNebo(max_retries=0, **connect).invoke("hi")
    assert info.value.is_retryable is True
    assert isinstance(info.value, NeboRateLimited)
    emu.clear_faults()


def test_in_stream_rate_limit_on_astream(connect: dict[str, Any], emu: Any) -> None:
    emu.inject("stream_rate_limit")

    async def run() -> None:
        async for _ in ChatNebo(max_retries=0, **connect).astream("hi"):
            pass

    import asyncio

    with pytest.raises(ModelRateLimitError):
        asyncio.run(run())
    emu.clear_faults()


def test_embeddings_errors_are_translated_too(connect: dict[str, Any], emu: Any) -> None:
    emu.inject("usage_limit")
    with pytest.raises(NeboBudgetExhaustedError):
        NeboEmbeddings(**connect).embed_query("hi")
