"""The forecast: burn rate from the server's remaining counter, time to exhaustion, the binding window.

The pure parts are checked on synthetic readings; the "done when" figures of the foresight issue
on the emulator with a 60-second session window, in real time.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from nebo_core import BudgetTracker, NeboClient
from nebo_core.budget import BudgetSnapshot, UsageRecord, WindowState
from nebo_core.forecast import LONG_HORIZON_S, Reading, Series, forecast, slope
from nebo_emulator import NeboEmulator
from nebo_emulator._workloads import Rhythm

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def snap(
    at: float,
    session_remaining: int,
    *,
    limit: int = 1_000_000,
    reset_in: float = 3600.0,
    weekly_remaining: int | None = None,
    weekly_limit: int = 10_000_000,
    account: str | None = None,
) -> BudgetSnapshot:
    when = T0 + timedelta(seconds=at)
    return BudgetSnapshot(
        session=WindowState("session", limit, session_remaining, when + timedelta(seconds=reset_in)),
        weekly=WindowState(
            "weekly",
            weekly_limit if weekly_remaining is not None else None,
            weekly_remaining,
            when + timedelta(days=6) if weekly_remaining is not None else None,
        ),
        observed_at=when,
        account=account,
    )


def test_slope_is_least_squares_and_none_without_two_points() -> None:
    assert slope([]) is None
    assert slope([Reading(0.0, 5, 10, None)]) is None
    assert slope([Reading(1.0, 5, 10, None), Reading(1.0, 9, 10, None)]) is None  # no time between
    pts = [Reading(float(t), 100 * t + (7 if t == 2 else 0), 10_000, None) for t in range(5)]
    assert slope(pts) == pytest.approx(100.0, abs=2.0)


def test_constant_burn_gives_exact_time_to_exhaustion() -> None:
    tracker = BudgetTracker()
    for i in range(10):  # 2,000 micro per second
        tracker.observe(snap(i, 1_000_000 - 2_000 * i))
    now = T0 + timedelta(seconds=9)
    f = tracker.forecast(now=now)
    s = f.session
    assert s.burn_rate_short == pytest.approx(2_000.0)
    assert s.burn_rate_long == pytest.approx(2_000.0)
    assert s.seconds_to_exhaustion == pytest.approx(982_000 / 2_000)
    assert s.seconds_to_reset == pytest.approx(3600.0)
    assert s.exhausts_before_reset is True
    assert s.projected_used_fraction_at_reset == pytest.approx((18_000 + 2_000 * 3600) / 1_000_000)
    assert s.samples == 10
    assert f.binding is not None
    assert f.binding.name == "session"
    assert json.loads(json.dumps(f.to_dict()))["binding"] == "session"


def test_rate_change_shows_in_the_short_horizon_and_the_projection_errs_towards_running_out() -> None:
    series = Series()
    used = 0
    for i in range(10):
        used += 100
        series.add(Reading(float(i), used, 1_000_000, None))
    for i in range(10, 13):  # the rate doubles
        used += 200
        series.add(Reading(float(i), used, 1_000_000, None))
    assert series.short_slope() == pytest.approx(200.0)
    long = series.long_slope()
    assert long is not None
    assert 100.0 < long < 200.0
    f = forecast(snap(12, 1_000_000 - used), {"session": series}, T0 + timedelta(seconds=12))
    assert f.session.burn_rate == pytest.approx(200.0)  # the faster horizon


def test_a_reset_restarts_the_series_so_the_burn_is_never_negative() -> None:
    series = Series()
    for i, used in enumerate([100_000, 300_000, 500_000, 700_000]):
        series.add(Reading(float(i), used, 1_000_000, None))
    series.add(Reading(4.0, 10_000, 1_000_000, None))  # the window reset
    assert len(series.readings) == 1
    series.add(Reading(5.0, 20_000, 1_000_000, None))
    assert series.short_slope() == pytest.approx(10_000.0)
    series.add(Reading(6.0, 30_000, 2_000_000, None))  # a new plan: another limit
    assert len(series.readings) == 1


def test_out_of_order_responses_do_not_inflate_the_burn() -> None:
    series = Series()
    # Concurrent calls: the response of an earlier server state lands later.
    for at, used in [(0.0, 0), (1.0, 1000), (1.05, 900), (2.0, 2000), (3.0, 3000), (3.02, 2900), (4.0, 4000)]:
        series.add(Reading(at, used, 1_000_000, None))
    assert series.long_slope() == pytest.approx(1000.0, rel=0.05)


def test_long_horizon_drops_old_readings() -> None:
    series = Series()
    for i in range(0, int(LONG_HORIZON_S) + 200, 10):
        series.add(Reading(float(i), i * 10, 10_000_000, None))
    assert series.readings[-1].at - series.readings[0].at <= LONG_HORIZON_S
    assert series.long_slope() == pytest.approx(10.0)


def test_binding_is_the_window_that_runs_out_first() -> None:
    tracker = BudgetTracker()
    for i in range(5):  # session burns 1,000/s with 900,000 left and an hour to go: runs out in 900 s
        tracker.observe(snap(i, 900_000 - 1_000 * i, weekly_remaining=500_000 - 1_000 * i))
    f = tracker.forecast(now=T0 + timedelta(seconds=4))
    assert f.weekly.seconds_to_exhaustion is not None
    assert f.session.seconds_to_exhaustion is not None
    assert f.weekly.seconds_to_exhaustion < f.session.seconds_to_exhaustion
    assert f.binding is not None
    assert f.binding.name == "weekly"


def test_no_burn_means_no_exhaustion_and_unknown_is_none() -> None:
    tracker = BudgetTracker()
    f = tracker.forecast()
    assert not f.known
    assert f.binding is None
    assert f.session.seconds_to_exhaustion is None
    tracker.observe(snap(0, 500_000))
    tracker.observe(snap(1, 500_000))
    f = tracker.forecast(now=T0 + timedelta(seconds=1))
    assert f.session.burn_rate == 0.0
    assert f.session.seconds_to_exhaustion is None
    assert f.session.exhausts_before_reset is False
    assert f.session.projected_used_fraction_at_reset == pytest.approx(0.5)


def test_forecast_is_per_account_and_counts_calls_left_at_the_recent_mean() -> None:
    tracker = BudgetTracker()
    for i in range(3):
        tracker.observe(snap(i, 900_000 - 10_000 * i, account="a"))
        tracker.observe(snap(i, 800_000, account="b"))
    for cost in (1_000, 3_000):
        tracker.record(UsageRecord("chat", "gpt-5-mini", cost_micro=cost, cost_source="server"))
    tracker.record(UsageRecord("embedding", "neboloop/nebo-embed-small", cost_micro=10, cost_source="server"))
    a = tracker.forecast("a", now=T0 + timedelta(seconds=2))
    b = tracker.forecast("b", now=T0 + timedelta(seconds=2))
    assert a.session.burn_rate == pytest.approx(10_000.0)
    assert b.session.burn_rate == 0.0
    assert a.session.calls_left == {"chat": 880_000 // 2_000, "embedding": 880_000 // 10}
    tracker.reset()
    assert tracker.forecast("a").session.samples == 0


def test_done_when_forecast_tracks_a_constant_spender_and_a_doubling_on_a_60s_window() -> None:
    """Issue #15: after 10 calls of a constant spender, seconds_to_exhaustion is within 5% of the
    true value; after the rate doubles, the forecast halves (within 10%) within 3 calls."""
    body = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
    with (
        NeboEmulator(session_window_s=60, weekly_window_s=600, session_limit_micro=100_000) as emu,
        NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=(tracker := BudgetTracker())) as client,
    ):
        rhythm = Rhythm(client, body)
        rhythm.spend(10, 0.2)
        ledger = emu.ledger
        true_rate = sum(e.cost_micro for e in ledger[1:]) / (ledger[-1].at - ledger[0].at).total_seconds()
        f = tracker.forecast()
        assert f.session.samples == 10
        assert f.session.remaining_micro is not None
        assert f.session.seconds_to_exhaustion == pytest.approx(
            f.session.remaining_micro / true_rate, rel=0.05
        )
        before = f.session.seconds_to_exhaustion

        rhythm.next_at -= 0.1  # from here on, one call every 0.1 s: twice the rate
        rhythm.spend(3, 0.1)
        g = tracker.forecast()
        assert g.session.burn_rate == pytest.approx(2 * true_rate, rel=0.10)
        assert g.session.seconds_to_exhaustion == pytest.approx(before / 2, rel=0.10)


@pytest.mark.parametrize(
    ("skew", "resolved"), [(0.0, 0.0), (-0.4, 0.0), (-1.3, 0.0), (1.9, 0.0), (-2.5, -2.5), (30.0, 30.0)]
)
def test_the_date_headers_blur_is_not_taken_for_clock_skew(skew: float, resolved: float) -> None:
    """``Date`` is whole seconds, stamped before the response travels: an exact clock reads up to a
    second behind plus the transit time, which must not move forecast, pace or degrade resets."""
    s = BudgetSnapshot(observed_at=T0, server_date=T0 + timedelta(seconds=skew))
    assert s.resolved_skew() == resolved
