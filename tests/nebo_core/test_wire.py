"""Tests for nebo_core.wire: header, Retry-After, usage and model parsers; request builders."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nebo_core import wire
from nebo_core.settings import NeboSettings

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


# --- scalars -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("500000", 500000),
        (" 42 ", 42),
        ("0", 0),
        ("1e3", 1000),
        ("12.0", 12),
        (7, 7),
        ("12.5", None),
        ("-1", None),
        (-1, None),
        ("", None),
        ("   ", None),
        ("inf", None),
        ("-inf", None),
        ("nan", None),
        ("NaN", None),
        ("abc", None),
        ("1e400", None),
        ("99999999999999999999999", None),
        (2**70, None),
        (None, None),
        (True, None),
        ("0x10", None),
    ],
)
def test_parse_int(raw: Any, expected: int | None) -> None:
    assert wire.parse_int(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5s", 5.0),
        ("1.2s", 1.2),
        ("250ms", 0.25),
        ("2m30s", 150.0),
        ("5h0m0s", 18000.0),
        ("1h1m1.5s", 3661.5),
        ("100us", 0.0001),
        ("", None),
        ("5", None),
        ("s", None),
        ("5x", None),
        ("5s garbage", None),
        ("-5s", None),
    ],
)
def test_parse_go_duration(raw: str, expected: float | None) -> None:
    got = wire.parse_go_duration(raw)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", 1.0),
        ("120", 120.0),
        ("0.5", 0.5),
        (3, 3.0),
        (2.5, 2.5),
        ("5s", 5.0),
        ("1.2s", 1.2),
        ("250ms", 0.25),
        ("2m30s", 150.0),
        ("5h0m0s", 18000.0),
        ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),  # in the past: no wait
        ("-1", None),
        ("nan", None),
        ("inf", None),
        (float("inf"), None),
        (-3, None),
        ("", None),
        ("soon", None),
        ("Thu, 99 Foo 2026", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_retry_after(raw: Any, expected: float | None) -> None:
    got = wire.parse_retry_after(raw, now=NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


# --- budget headers ------------------------------------------------------------------------


def test_credit_headers_parsed() -> None:
    snap = wire.parse_budget_headers(
        {
            "X-RateLimit-Session-Limit-Credits": "10000000",
            "X-RateLimit-Session-Remaining-Credits": "7500000",
            "X-RateLimit-Session-Reset": "2026-01-01T14:00:00Z",
            "X-RateLimit-Weekly-Limit-Credits": "50000000",
            "X-RateLimit-Weekly-Remaining-Credits": "45000000",
            "X-RateLimit-Weekly-Reset": "2026-01-05T12:00:00+02:00",
            "X-Budget-Free-Available": "0",
            "X-Budget-Gift-Available": "750000",
            "X-Budget-Credits-Cents": "1200",
            "X-Budget-Active-Pool": "Plan",
        },
        observed_at=NOW,
    )
    assert (snap.session.limit_micro, snap.session.remaining_micro) == (10_000_000, 7_500_000)
    assert snap.session.reset_at == datetime(2026, 1, 1, 14, tzinfo=timezone.utc)
    assert (snap.weekly.limit_micro, snap.weekly.remaining_micro) == (50_000_000, 45_000_000)
    assert snap.weekly.reset_at == datetime(2026, 1, 5, 10, tzinfo=timezone.utc)
    assert (snap.free_available_micro, snap.gift_available_micro, snap.credits_cents) == (0, 750_000, 1200)
    assert snap.active_pool == "plan"
    assert snap.observed_at == NOW
    assert snap.known


def test_tokens_suffix_is_the_fallback() -> None:
    snap = wire.parse_budget_headers(
        {"X-RateLimit-Session-Limit-Tokens": "500000", "X-RateLimit-Session-Remaining-Tokens": "350000"}
    )
    assert (snap.session.limit_micro, snap.session.remaining_micro) == (500_000, 350_000)


def test_credits_suffix_is_preferred_over_tokens() -> None:
    snap = wire.parse_budget_headers(
        {
            "X-RateLimit-Weekly-Remaining-Tokens": "1",
            "X-RateLimit-Weekly-Remaining-Credits": "2",
        }
    )
    assert snap.weekly.remaining_micro == 2


def test_garbled_credits_fall_back_to_tokens() -> None:
    snap = wire.parse_budget_headers(
        {"x-ratelimit-session-remaining-credits": "nan", "x-ratelimit-session-remaining-tokens": "5"}
    )
    assert snap.session.remaining_micro == 5


@pytest.mark.parametrize(
    "name",
    [
        "x-ratelimit-session-remaining-credits",
        "X-RATELIMIT-SESSION-REMAINING-CREDITS",
        "X-Ratelimit-Session-Remaining-Credits",
        "x-RateLimit-session-REMAINING-credits",
    ],
)
def test_header_names_are_case_insensitive(name: str) -> None:
    assert wire.parse_budget_headers({name: "123"}).session.remaining_micro == 123


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-01T14:00:00Z", datetime(2026, 1, 1, 14, tzinfo=timezone.utc)),
        ("2026-01-01T14:00:00z", datetime(2026, 1, 1, 14, tzinfo=timezone.utc)),
        ("2026-01-01T14:00:00.123456Z", datetime(2026, 1, 1, 14, 0, 0, 123456, tzinfo=timezone.utc)),
        ("2026-01-01T16:00:00+02:00", datetime(2026, 1, 1, 14, tzinfo=timezone.utc)),
        ("2026-01-01T09:00:00-05:00", datetime(2026, 1, 1, 14, tzinfo=timezone.utc)),
        ("7200", NOW + timedelta(hours=2)),
        ("0", NOW),
        ("", None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("tomorrow", None),
        ("2026-13-45T99:00:00Z", None),
        ("99999999999999", None),
    ],
)
def test_reset_formats(raw: str, expected: datetime | None) -> None:
    snap = wire.parse_budget_headers({"X-RateLimit-Session-Reset": raw}, observed_at=NOW)
    assert snap.session.reset_at == expected


def test_integer_reset_counts_from_server_date_when_present() -> None:
    snap = wire.parse_budget_headers(
        {"Date": "Thu, 01 Jan 2026 12:00:10 GMT", "X-RateLimit-Session-Reset": "60"}, observed_at=NOW
    )
    assert snap.session.reset_at == NOW + timedelta(seconds=70)
    assert snap.clock_skew() == pytest.approx(10.0)


@pytest.mark.parametrize(
    "garbage", ["inf", "nan", "-1", "", " ", "1e999", "12abc", "99999999999999999999999"]
)
def test_garbled_values_become_none(garbage: str) -> None:
    headers = {
        name: garbage
        for name in (
            "X-RateLimit-Session-Limit-Credits",
            "X-RateLimit-Session-Remaining-Credits",
            "X-RateLimit-Session-Reset",
            "X-RateLimit-Weekly-Limit-Tokens",
            "X-RateLimit-Weekly-Remaining-Tokens",
            "X-Budget-Free-Available",
            "X-Budget-Gift-Available",
            "X-Budget-Credits-Cents",
            "X-Budget-Active-Pool",
            "Date",
        )
    }
    snap = wire.parse_budget_headers(headers, observed_at=NOW)
    assert snap.session.limit_micro is None
    assert snap.session.remaining_micro is None
    assert snap.session.reset_at is None
    assert snap.weekly.remaining_micro is None
    assert snap.free_available_micro is None
    assert snap.credits_cents is None
    assert snap.server_date is None
    assert snap.active_pool in (None, garbage.strip().lower() or None)


def test_missing_headers_leave_everything_unknown() -> None:
    snap = wire.parse_budget_headers({"content-type": "application/json"})
    assert not snap.known
    assert snap.remaining_micro is None
    assert snap.binding_window is None
    assert not snap.exhausted


_header_names = st.sampled_from(
    [
        "X-RateLimit-Session-Limit-Credits",
        "x-ratelimit-session-remaining-credits",
        "X-RATELIMIT-SESSION-RESET",
        "X-RateLimit-Weekly-Limit-Tokens",
        "X-RateLimit-Weekly-Remaining-Credits",
        "X-RateLimit-Weekly-Reset",
        "X-Budget-Free-Available",
        "X-Budget-Gift-Available",
        "X-Budget-Credits-Cents",
        "X-Budget-Active-Pool",
        "Date",
        "Retry-After",
    ]
)
_header_values = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: d.isoformat()),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.one_of(_header_names, st.text(max_size=20)), _header_values, max_size=12))
def test_parse_budget_headers_never_raises(headers: dict[str, str]) -> None:
    snap = wire.parse_budget_headers(headers)
    # Derived fields must be safe on whatever was parsed.
    snap.to_dict()
    _ = (snap.binding_window, snap.exhausted, snap.remaining_dollars)
    for window in snap.windows:
        fraction = window.used_fraction
        assert fraction is None or 0.0 <= fraction <= 1.0
        window.seconds_to_reset()
    wire.parse_retry_after(headers.get("Retry-After"))


def test_request_id() -> None:
    assert wire.request_id_from({"X-Request-ID": "req-1"}) == "req-1"
    assert wire.request_id_from({"request-id": "req-2"}) == "req-2"
    assert wire.request_id_from({}) is None


# --- /v1/usage -----------------------------------------------------------------------------

DOCUMENTED = {
    "plan": "plus",
    "all_models": {
        "session_used": 1250000,
        "session_limit": 10000000,
        "session_reset_seconds": 14400,
        "weekly_used": 8400000,
        "weekly_limit": 50000000,
        "weekly_reset_seconds": 518400,
    },
    "grants": {"free_available": 0, "gift_available": 750000},
    "credits": {"balance_cents": 1200},
}


def test_usage_documented_shape() -> None:
    report = wire.parse_usage_body(DOCUMENTED, observed_at=NOW)
    assert report.plan == "plus"
    assert report.session.limit_micro == 10_000_000
    assert report.session.remaining_micro == 8_750_000
    assert report.session.used_micro == 1_250_000
    assert report.session.used_fraction == pytest.approx(0.125)
    assert report.session.reset_at == NOW + timedelta(seconds=14400)
    assert report.weekly.remaining_micro == 41_600_000
    assert report.weekly.reset_at == NOW + timedelta(seconds=518400)
    assert report.snapshot.gift_available_micro == 750_000
    assert report.snapshot.credits_cents == 1200
    assert report.used_percent is None
    # Draw order, not `plan` (nebo-api.md 7.2): free is empty, so the gift pool funds calls.
    assert report.snapshot.active_pool == "gift"
    assert report.to_dict()["plan"] == "plus"


def test_usage_newer_monthly_shape() -> None:
    body = {
        "plan": "free",
        "all_models": {"included": True, "used_percent": 140, "reset_seconds": 86400},
        "grants": {"free_available": 5000},
    }
    report = wire.parse_usage_body(body, observed_at=NOW)
    assert report.included is True
    assert report.used_percent == 100  # clamped
    assert report.snapshot.active_pool == "free"
    assert report.session.limit_micro is None
    assert report.plan == "free"


@pytest.mark.parametrize(
    ("free", "gift", "cents", "session_remaining", "expected"),
    [
        (10, 10, 10, 5, "free"),
        (0, 10, 10, 5, "gift"),
        (0, 0, 10, 5, "plan"),
        (0, 0, 10, 0, "credits"),
        (0, 0, 0, 0, None),
    ],
)
def test_usage_active_pool_follows_draw_order(
    free: int, gift: int, cents: int, session_remaining: int, expected: str | None
) -> None:
    body = {
        "plan": "free",
        "all_models": {"session_used": 100 - session_remaining, "session_limit": 100},
        "grants": {"free_available": free, "gift_available": gift},
        "credits": {"balance_cents": cents},
    }
    assert wire.parse_usage_body(body).snapshot.active_pool == expected


@pytest.mark.parametrize(
    "body", [None, [], "oops", {"all_models": "x", "grants": 3}, {"all_models": {"session_limit": "nan"}}]
)
def test_usage_garbage_is_tolerated(body: Any) -> None:
    report = wire.parse_usage_body(body)
    assert report.plan is None
    assert report.session.limit_micro is None


# --- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [None, "", "MISSING"])
def test_assistant_tool_call_message_gets_a_space(content: Any) -> None:
    message: dict[str, Any] = {
        "role": "assistant",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    if content != "MISSING":
        message["content"] = content
    body = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}, message]}
    out = wire.prepare_chat_body(body, stream=False)
    assert out["messages"][1]["content"] == " "
    assert out["messages"][0] == {"role": "user", "content": "hi"}
    assert body["messages"][1].get("content") == (None if content == "MISSING" else content)  # caller's copy


def test_assistant_text_and_plain_messages_untouched() -> None:
    msgs = [
        {"role": "assistant", "content": "done", "tool_calls": [{"id": "c"}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": ""},
    ]
    out = wire.prepare_chat_body({"messages": msgs}, stream=False)
    assert out["messages"] == msgs
    assert out["model"] == "auto"


def test_stream_flags() -> None:
    out = wire.prepare_chat_body({"messages": [], "stream_options": {"include_usage": False}}, stream=True)
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": False}
    assert wire.prepare_chat_body({"messages": []}, stream=True)["stream_options"] == {"include_usage": True}
    plain = wire.prepare_chat_body({"messages": [], "stream": True, "stream_options": {}}, stream=False)
    assert "stream" not in plain
    assert "stream_options" not in plain


def test_request_headers() -> None:
    s = NeboSettings.resolve(
        api_key="tok",
        provider_api_key="sk-ant-x",
        bot_id="bot",
        lane="main",
        purpose="chat",
        default_headers={"X-Extra": "1", "Authorization": "Bearer evil"},
        environ={},
    )
    h = wire.request_headers(s)
    assert h["Authorization"] == "Bearer tok"
    assert h["X-Provider-API-Key"] == "sk-ant-x"
    assert (h["X-Bot-ID"], h["X-Lane"], h["X-Purpose"], h["X-Extra"]) == ("bot", "main", "chat", "1")
    bare = wire.request_headers(NeboSettings.resolve(api_key="tok", environ={}))
    assert not {"X-Provider-API-Key", "X-Bot-ID", "X-Lane", "X-Purpose"} & set(bare)


def test_models_body() -> None:
    body = {
        "object": "list",
        "data": [
            {"id": "nebo-1-pro", "name": "Nebo 1 Pro", "owned_by": "neboai", "created": 1712100000},
            {"id": "gpt-5.2", "owned_by": "openai", "created": "garbage"},
            {"name": "no id"},
            "junk",
        ],
    }
    models = wire.parse_models_body(body)
    assert [(m.id, m.owned_by, m.name, m.created) for m in models] == [
        ("nebo-1-pro", "neboai", "Nebo 1 Pro", 1712100000),
        ("gpt-5.2", "openai", None, None),
    ]
    assert wire.parse_models_body({"data": "x"}) == []
    assert wire.parse_models_body(None) == []


@pytest.mark.parametrize(
    "date",
    ["Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"],
)
def test_dates_at_the_edge_of_time_never_raise(date: str) -> None:
    # A far-off Date must not overflow a seconds-from-now reset; it is ignored as implausible.
    snap = wire.parse_budget_headers({"Date": date, "X-RateLimit-Session-Reset": "3600"})
    assert snap.session.reset_at is not None
    assert abs((snap.session.reset_at - snap.observed_at).total_seconds() - 3600) < 5
    assert snap.clock_skew() == 0.0
