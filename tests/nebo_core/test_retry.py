"""Tests for nebo_core.retry: the one retry policy's decisions."""

from __future__ import annotations

import pytest

from nebo_core.errors import (
    NeboAuthenticationError,
    NeboBadRequestError,
    NeboBudgetExhausted,
    NeboConnectionError,
    NeboError,
    NeboRateLimited,
    NeboStreamError,
    NeboStreamTruncated,
    NeboUpstreamError,
)
from nebo_core.retry import RetryPolicy

NO_JITTER = RetryPolicy(max_retries=3, base_delay=0.5, max_delay=8.0, jitter=lambda: 0.5)


@pytest.mark.parametrize(
    "error",
    [
        NeboBudgetExhausted("gone", window="session"),
        NeboAuthenticationError("bad token", status=401),
        NeboBadRequestError("bad", status=400),
        NeboStreamError("weird"),
        NeboError("unknown"),
        ValueError("not ours"),
    ],
)
def test_never_retried(error: BaseException) -> None:
    assert NO_JITTER.delay(error, 0) is None


@pytest.mark.parametrize(
    "error",
    [
        NeboRateLimited("slow down", status=429),
        NeboUpstreamError("502", status=502),
        NeboConnectionError("reset"),
        NeboStreamTruncated("cut"),
    ],
)
def test_transient_errors_back_off_exponentially(error: NeboError) -> None:
    delays = [NO_JITTER.delay(error, n) for n in range(4)]
    # jitter 0.5 makes the factor exactly 1.0
    assert delays == [0.5, 1.0, 2.0, None]


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(max_retries=20, base_delay=1.0, max_delay=8.0, jitter=lambda: 1.0)
    assert policy.delay(NeboUpstreamError("x"), 10) == pytest.approx(8.0 * 1.25)


@pytest.mark.parametrize("jitter", [0.0, 0.3, 0.99])
def test_jitter_stays_within_bounds(jitter: float) -> None:
    policy = RetryPolicy(base_delay=1.0, jitter=lambda: jitter)
    delay = policy.delay(NeboConnectionError("x"), 0)
    assert delay is not None
    assert 0.75 <= delay <= 1.25


def test_retry_after_is_honoured() -> None:
    policy = RetryPolicy(jitter=lambda: 0.0)
    assert policy.delay(NeboRateLimited("x", retry_after=1.0), 0) == 1.0
    assert policy.delay(NeboRateLimited("x", retry_after=0.0), 1) == 0.0


def test_retry_after_beyond_cap_raises_instead_of_sleeping() -> None:
    policy = RetryPolicy(max_retry_after=60.0, jitter=lambda: 0.0)
    assert policy.delay(NeboRateLimited("x", retry_after=3600.0), 0) is None
    assert policy.delay(NeboRateLimited("x", retry_after=60.0), 0) == 60.0


def test_zero_retries() -> None:
    assert RetryPolicy(max_retries=0).delay(NeboUpstreamError("x"), 0) is None
