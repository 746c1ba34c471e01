"""Tests for nebo_core.budget: derived window fields, snapshots, usage records and cost sources."""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timedelta, timezone

import pytest

from nebo_core import wire
from nebo_core.budget import BudgetSnapshot, UsageRecord, WindowState, micro_to_dollars

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def snap(session_rem: int | None, weekly_rem: int | None = None, **kw: object) -> BudgetSnapshot:
    return BudgetSnapshot(
        session=WindowState(
            "session", 1_000_000 if session_rem is not None else None, session_rem, kw.pop("reset", None)
        ),  # type: ignore[arg-type]
        weekly=WindowState("weekly", 10_000_000 if weekly_rem is not None else None, weekly_rem),
        observed_at=NOW,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("limit", "remaining", "used", "fraction", "dollars", "exhausted"),
    [
        (1_000_000, 250_000, 750_000, 0.75, 0.25, False),
        (1_000_000, 0, 1_000_000, 1.0, 0.0, True),
        (1_000_000, 1_000_000, 0, 0.0, 1.0, False),
        (1_000_000, 2_000_000, 0, 0.0, 2.0, False),  # over-reported remaining clamps
        (None, 5, None, None, 0.000005, False),
        (0, 0, 0, 1.0, 0.0, False),  # a limit of 0 is no window (e.g. a credits-only account)
        (0, 10, 0, 0.0, 0.00001, False),
        (None, None, None, None, None, False),
    ],
)
def test_window_derived_fields(
    limit: int | None,
    remaining: int | None,
    used: int | None,
    fraction: float | None,
    dollars: float | None,
    exhausted: bool,
) -> None:
    w = WindowState("session", limit, remaining)
    assert w.used_micro == used
    assert w.used_fraction == (pytest.approx(fraction) if fraction is not None else None)
    assert w.remaining_dollars == (pytest.approx(dollars) if dollars is not None else None)
    assert w.exhausted is exhausted


def test_seconds_to_reset() -> None:
    w = WindowState("session", reset_at=NOW + timedelta(minutes=5))
    assert w.seconds_to_reset(NOW) == 300.0
    assert w.seconds_to_reset(NOW + timedelta(hours=1)) == 0.0
    assert WindowState("weekly").seconds_to_reset(NOW) is None


def test_binding_window_is_the_tighter_one() -> None:
    s = snap(100_000, 9_000_000)  # session 90% used, weekly 10% used
    assert s.binding_window is s.session
    assert s.remaining_micro == 100_000
    assert s.remaining_dollars == pytest.approx(0.1)
    s2 = snap(900_000, 500_000)  # session 10% used, weekly 95% used
    assert s2.binding_window is s2.weekly
    assert s2.remaining_micro == 500_000


def test_exhausted_needs_empty_pools() -> None:
    assert snap(0).exhausted
    assert snap(0).exhausted_window is not None
    assert snap(0).exhausted_window.name == "session"
    assert not snap(0, credits_cents=500).exhausted
    assert not snap(0, gift_available_micro=1).exhausted
    assert snap(0, credits_cents=0, free_available_micro=0).exhausted
    assert snap(5, 0).exhausted_window.name == "weekly"  # type: ignore[union-attr]
    assert not snap(5, 5).exhausted


def test_snapshot_to_dict_is_json_ready() -> None:
    s = snap(250_000, 9_000_000, reset=NOW + timedelta(hours=1), active_pool="plan")
    d = s.to_dict()
    json.dumps(d)
    assert d["session"]["used_fraction"] == pytest.approx(0.75)
    assert d["session"]["reset_at"] == "2026-01-01T01:00:00+00:00"
    assert d["binding_window"] == "session"
    assert d["remaining_micro"] == 250_000
    assert d["active_pool"] == "plan"


def test_snapshot_pickles() -> None:
    s = snap(1, 2, active_pool="gift")
    assert pickle.loads(pickle.dumps(s)) == s


def test_micro_to_dollars() -> None:
    assert micro_to_dollars(1_500_000) == 1.5
    assert micro_to_dollars(None) is None
    assert micro_to_dollars(0) == 0.0


# --- usage records -------------------------------------------------------------------------


def record(
    usage: dict[str, object] | None, before: BudgetSnapshot | None, after: BudgetSnapshot | None
) -> UsageRecord:
    return wire.usage_record(
        "chat", "auto", usage, model="gpt-5-mini", before=before, after=after, latency_s=0.1, streamed=False
    )


def test_server_cost_wins() -> None:
    r = record(
        {
            "prompt_tokens": 12,
            "completion_tokens": 2,
            "total_tokens": 14,
            "cost_micro": 37,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
        snap(1000),
        snap(900),
    )
    assert (r.cost_micro, r.cost_source) == (37, "server")
    assert (r.prompt_tokens, r.completion_tokens, r.total_tokens, r.cached_tokens) == (12, 2, 14, 4)
    assert r.cost_dollars == pytest.approx(0.000037)


@pytest.mark.parametrize("cost", [None, 0, -5, "nan", "garbage"])
def test_cost_from_session_drop_when_server_cost_absent(cost: object) -> None:
    r = record({"prompt_tokens": 1, "cost_micro": cost}, snap(1000), snap(900))
    assert (r.cost_micro, r.cost_source) == (100, "headers")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, snap(900)),
        (snap(1000), None),
        (snap(900), snap(1000)),  # went up: the window rolled
        (snap(1000), snap(1000)),
        (snap(None), snap(900)),
        (snap(1000, active_pool="gift"), snap(900, active_pool="gift")),  # another pool paid
    ],
)
def test_cost_unknown_when_ambiguous(before: BudgetSnapshot | None, after: BudgetSnapshot | None) -> None:
    r = record({"prompt_tokens": 1}, before, after)
    assert r.cost_micro is None
    assert r.cost_source == "unknown"


def test_same_snapshot_object_is_not_a_drop() -> None:
    s = snap(1000)
    assert record({}, s, s).cost_source == "unknown"


def test_record_to_dict_and_pool() -> None:
    r = record({"cost_micro": 5}, None, snap(10, active_pool="credits"))
    assert r.pool == "credits"
    d = r.to_dict()
    json.dumps(d)
    assert d["cost_micro"] == 5
    assert d["cost_dollars"] == pytest.approx(0.000005)
    assert d["snapshot"]["active_pool"] == "credits"
    assert d["kind"] == "chat"
    assert pickle.loads(pickle.dumps(r)) == r


def test_garbage_usage_fields_are_none() -> None:
    r = record({"prompt_tokens": "lots", "completion_tokens": -3, "prompt_tokens_details": "x"}, None, None)
    assert (r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.cost_micro) == (None, None, None, None)


@pytest.mark.parametrize(("offset_s", "skew"), [(30.0, 30.0), (-120.0, -120.0), (-10 * 365 * 86400.0, 0.0)])
def test_clock_skew_ignores_an_implausible_date_header(offset_s: float, skew: float) -> None:
    seen = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    snap = BudgetSnapshot(observed_at=seen, server_date=seen + timedelta(seconds=offset_s))
    assert snap.clock_skew() == skew
