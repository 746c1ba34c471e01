"""Tests for the error tree and the status/body/event -> error mapping in nebo_core.wire."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone
from typing import Any

import pytest

from nebo_core import wire
from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.errors import (
    NeboAuthenticationError,
    NeboBadRequestError,
    NeboBudgetExhausted,
    NeboConfigurationError,
    NeboConnectionError,
    NeboContextLengthError,
    NeboError,
    NeboRateLimited,
    NeboStreamError,
    NeboStreamTruncated,
    NeboUpstreamError,
)

RESET = datetime(2099, 1, 1, tzinfo=timezone.utc)


def body(
    code: str | None = None, message: str = "server says no", etype: str | None = None
) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message}
    if code is not None:
        err["code"] = code
    if etype is not None:
        err["type"] = etype
    return {"error": err}


EXHAUSTED = BudgetSnapshot(
    session=WindowState("session", 100, 0, RESET), weekly=WindowState("weekly", 1000, 500)
)


@pytest.mark.parametrize(
    ("status", "payload", "headers", "cls", "retryable", "retry_after"),
    [
        (401, body("invalid_api_key"), {}, NeboAuthenticationError, False, None),
        (403, body(), {}, NeboAuthenticationError, False, None),
        (400, body("authentication_error"), {}, NeboAuthenticationError, False, None),
        (429, body("USAGE_LIMIT_EXCEEDED"), {}, NeboBudgetExhausted, False, None),
        (429, body("USAGE_LIMIT_EXCEEDED"), {"Retry-After": "5"}, NeboBudgetExhausted, False, None),
        (429, body("credits_exhausted", etype="insufficient_quota"), {}, NeboBudgetExhausted, False, None),
        (429, body("rate_limit_exceeded"), {"Retry-After": "1"}, NeboRateLimited, True, 1.0),
        (
            429,
            body("rate_limit_exceeded"),
            {"retry-after": "Thu, 01 Jan 2099 00:00:00 GMT"},
            NeboRateLimited,
            True,
            "big",
        ),
        (429, body(), {}, NeboRateLimited, True, None),
        (429, "too many", {"Retry-After": "garbage"}, NeboRateLimited, True, None),
        (400, body("invalid_request_error"), {}, NeboBadRequestError, False, None),
        (404, body(), {}, NeboBadRequestError, False, None),
        (422, "bad question", {}, NeboBadRequestError, False, None),
        (400, body("context_length_exceeded"), {}, NeboContextLengthError, False, None),
        (
            400,
            body(message="This model's maximum context length is 8192 tokens"),
            {},
            NeboContextLengthError,
            False,
            None,
        ),
        (502, body(), {}, NeboUpstreamError, True, None),
        (500, None, {}, NeboUpstreamError, True, None),
        (503, "<html>down</html>", {"Retry-After": "2"}, NeboUpstreamError, True, 2.0),
        (418, body(), {}, NeboError, False, None),
    ],
)
def test_error_from_response(
    status: int, payload: Any, headers: dict[str, str], cls: type, retryable: bool, retry_after: Any
) -> None:
    err = wire.error_from_response(status, payload, {"X-Request-ID": "req-9", **headers})
    assert type(err) is cls
    assert err.status == status
    assert err.request_id == "req-9"
    assert err.is_retryable is retryable
    if retry_after == "big":
        assert err.retry_after is not None
        assert err.retry_after > 1e6
    else:
        assert err.retry_after == retry_after
    assert str(err)  # never empty


def test_usage_limit_error_fields() -> None:
    err = wire.error_from_response(429, body("USAGE_LIMIT_EXCEEDED", "all pools empty"), {})
    assert isinstance(err, NeboBudgetExhausted)
    assert err.code == "USAGE_LIMIT_EXCEEDED"
    assert err.window == "pools"
    assert err.message.startswith("all pools empty")
    assert "code=USAGE_LIMIT_EXCEEDED" in str(err)


def test_429_with_exhausted_window_and_no_retry_after_is_budget() -> None:
    err = wire.error_from_response(429, body(), {}, snapshot=EXHAUSTED)
    assert isinstance(err, NeboBudgetExhausted)
    assert err.window == "session"
    assert err.reset_at == RESET
    assert err.snapshot is EXHAUSTED
    assert "2099-01-01" in err.message


def test_429_with_exhausted_window_but_retry_after_is_rate_limit() -> None:
    err = wire.error_from_response(429, body("rate_limit_exceeded"), {"Retry-After": "3"}, snapshot=EXHAUSTED)
    assert isinstance(err, NeboRateLimited)
    assert err.retry_after == 3.0


def test_401_message_says_what_to_fix() -> None:
    err = wire.error_from_response(401, None, {})
    assert isinstance(err, NeboAuthenticationError)
    assert "NEBO_API_KEY" in str(err)


@pytest.mark.parametrize(
    ("event", "cls", "retry_after"),
    [
        (
            {
                "message": "Rate limit exceeded for user",
                "type": "rate_limit_error",
                "code": "rate_limit_exceeded",
                "retryable": True,
                "retry_after": "5s",
            },
            NeboRateLimited,
            5.0,
        ),
        ({"type": "rate_limit_error", "retry_after": "1.2s"}, NeboRateLimited, 1.2),
        ({"type": "rate_limit_error", "retry_after": "250ms"}, NeboRateLimited, 0.25),
        ({"type": "rate_limit_error", "retry_after": "2m30s"}, NeboRateLimited, 150.0),
        ({"code": "rate_limit_exceeded", "retry_after": 3}, NeboRateLimited, 3.0),
        ({"type": "rate_limit_error", "retry_after": "whenever"}, NeboRateLimited, None),
        ({"code": "USAGE_LIMIT_EXCEEDED", "message": "empty"}, NeboBudgetExhausted, None),
        ({"code": "context_length_exceeded", "message": "too long"}, NeboContextLengthError, None),
        ({"message": "upstream exploded", "type": "server_error"}, NeboStreamError, None),
        ("a bare string", NeboStreamError, None),
    ],
)
def test_error_from_stream_event(event: Any, cls: type, retry_after: float | None) -> None:
    err = wire.error_from_stream_event(event, request_id="req-s")
    assert type(err) is cls
    assert err.status == 200
    assert err.request_id == "req-s"
    assert err.retry_after == (pytest.approx(retry_after) if retry_after is not None else None)


SNAP = BudgetSnapshot(session=WindowState("session", 10, 0, RESET), observed_at=RESET)


@pytest.mark.parametrize(
    "err",
    [
        NeboError(
            "base", status=418, code="teapot", request_id="r1", body={"a": 1}, snapshot=SNAP, retry_after=1.5
        ),
        NeboConfigurationError("no key"),
        NeboAuthenticationError("denied", status=401, request_id="r2"),
        NeboBudgetExhausted(
            "gone",
            window="weekly",
            reset_at=RESET,
            scope="team-a",
            status=429,
            snapshot=SNAP,
            code="USAGE_LIMIT_EXCEEDED",
        ),
        NeboRateLimited("slow", status=429, retry_after=5.0),
        NeboUpstreamError("502", status=502),
        NeboConnectionError("reset"),
        NeboBadRequestError("bad", status=400),
        NeboContextLengthError("long", status=400, code="context_length_exceeded"),
        NeboStreamError("in-stream", status=200),
        NeboStreamTruncated("cut", partial={"role": "assistant", "content": "Hel"}, request_id="r3"),
    ],
)
def test_errors_pickle_with_their_fields(err: NeboError) -> None:
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is type(err)
    assert str(clone) == str(err)
    assert clone.__dict__ == err.__dict__
    assert clone.is_retryable is err.is_retryable


def test_hierarchy() -> None:
    assert issubclass(NeboContextLengthError, NeboBadRequestError)
    assert issubclass(NeboStreamTruncated, NeboStreamError)
    assert issubclass(NeboConfigurationError, ValueError)
    assert all(
        issubclass(c, NeboError)
        for c in (
            NeboAuthenticationError,
            NeboBudgetExhausted,
            NeboRateLimited,
            NeboUpstreamError,
            NeboConnectionError,
        )
    )
    assert not NeboBudgetExhausted.is_retryable
    assert not NeboAuthenticationError.is_retryable


def test_truncated_partial_defaults_to_empty() -> None:
    assert NeboStreamTruncated("cut").partial == {}
