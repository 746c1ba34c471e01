"""The soft-landing rule shared by the adapters: ``WindDown.build`` checks each keyword, and
``WindDown.reason`` says when a threshold is crossed, on snapshots and forecasts built by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import nebo_core
from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.errors import NeboConfigurationError
from nebo_core.forecast import BudgetForecast, WindowForecast
from nebo_core.landing import WIND_DOWN_MESSAGE, WindDown

pytestmark = pytest.mark.disable_socket

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def snap(
    session_remaining: int | None = 1_000_000,
    *,
    limit: int | None = 1_000_000,
    reset_in: float | None = 3600.0,
    weekly_remaining: int | None = None,
    weekly_limit: int = 10_000_000,
    skew: float | None = None,
) -> BudgetSnapshot:
    """A snapshot observed at ``NOW``; ``skew``: the server's ``Date`` is this many seconds ahead."""
    return BudgetSnapshot(
        session=WindowState(
            "session",
            limit,
            session_remaining,
            None if reset_in is None else NOW + timedelta(seconds=reset_in),
        ),
        weekly=WindowState(
            "weekly",
            weekly_limit if weekly_remaining is not None else None,
            weekly_remaining,
            NOW + timedelta(days=6) if weekly_remaining is not None else None,
        ),
        observed_at=NOW,
        server_date=None if skew is None else NOW + timedelta(seconds=skew),
    )


def window(
    name: Any = "session",
    remaining: int | None = 500_000,
    rate: float | None = 1_000.0,
    reset_in: float | None = 3600.0,
) -> WindowForecast:
    return WindowForecast(name, 1_000_000, remaining, reset_in, rate, rate, 10)


def outlook(session: WindowForecast, weekly: WindowForecast | None = None) -> BudgetForecast:
    quiet = weekly if weekly is not None else window("weekly", None, None, None)
    return BudgetForecast(None, session, quiet, NOW)


def wind_down(**kwargs: Any) -> WindDown:
    settings = {"at": None, "within_s": None, "below_micro": None, "message": None, **kwargs}
    built = WindDown.build(**settings)
    assert built is not None
    return built


# -- build ----------------------------------------------------------------------------------


def test_no_threshold_is_off() -> None:
    assert WindDown.build(None, None, None, None) is None


def test_build_normalises_and_defaults_the_message() -> None:
    built = WindDown.build(1, 30, 5_000, None)
    assert built == WindDown(at=1.0, within_s=30.0, below_micro=5_000, message=WIND_DOWN_MESSAGE)
    assert isinstance(built.at, float)
    assert isinstance(built.within_s, float)
    assert wind_down(at=0.9, message="Wrap up.").message == "Wrap up."


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"at": 0}, "wind_down_at"),
        ({"at": 0.0}, "wind_down_at"),
        ({"at": -0.5}, "wind_down_at"),
        ({"at": 1.5}, "wind_down_at"),
        ({"at": float("nan")}, "wind_down_at"),
        ({"at": float("inf")}, "wind_down_at"),
        ({"at": True}, "wind_down_at"),
        ({"at": "0.9"}, "wind_down_at"),
        ({"within_s": 0}, "wind_down_within_s"),
        ({"within_s": -1.0}, "wind_down_within_s"),
        ({"within_s": float("nan")}, "wind_down_within_s"),
        ({"within_s": float("inf")}, "wind_down_within_s"),
        ({"within_s": False}, "wind_down_within_s"),
        ({"below_micro": 0}, "wind_down_below_micro"),
        ({"below_micro": -5}, "wind_down_below_micro"),
        ({"below_micro": 1.5}, "wind_down_below_micro"),
        ({"below_micro": True}, "wind_down_below_micro"),
        ({"at": 0.9, "message": ""}, "wind_down_message"),
        ({"at": 0.9, "message": "   "}, "wind_down_message"),
        ({"at": 0.9, "message": 3}, "wind_down_message"),
        ({"message": "Wrap up."}, "wind_down_message needs a threshold"),
    ],
)
def test_each_bad_value_raises_naming_its_keyword(kwargs: dict[str, Any], named: str) -> None:
    settings = {"at": None, "within_s": None, "below_micro": None, "message": None, **kwargs}
    with pytest.raises(NeboConfigurationError, match=named):
        WindDown.build(**settings)


def test_the_first_bad_keyword_is_named() -> None:
    with pytest.raises(NeboConfigurationError, match="wind_down_at"):
        WindDown.build(2.0, -1.0, 0, "")


def test_lazy_export() -> None:
    assert nebo_core.WindDown is WindDown


# -- reason: used fraction ------------------------------------------------------------------


def test_used_fraction_crossing() -> None:
    rule = wind_down(at=0.9)
    assert rule.reason(snap(150_000), None, NOW) is None  # 85% used
    assert rule.reason(snap(100_000), None, NOW) == "the session window is 90% used (wind_down_at=0.9)"
    assert rule.reason(None, None, NOW) is None


def test_the_tighter_window_counts() -> None:
    rule = wind_down(at=0.5)
    reason = rule.reason(snap(900_000, weekly_remaining=4_000_000), None, NOW)
    assert reason == "the weekly window is 60% used (wind_down_at=0.5)"


# -- reason: floor --------------------------------------------------------------------------


def test_floor_of_microdollars_left() -> None:
    rule = wind_down(below_micro=10_000)
    assert rule.reason(snap(10_000), None, NOW) is None  # "fewer than": equal is not below
    assert rule.reason(snap(9_999), None, NOW) == (
        "the session window has 9999 microdollars left (wind_down_below_micro=10000)"
    )


def test_floor_reads_the_lowest_window() -> None:
    rule = wind_down(below_micro=50_000)
    reason = rule.reason(snap(900_000, weekly_remaining=20_000), None, NOW)
    assert reason is not None
    assert reason.startswith("the weekly window has 20000 microdollars left")


# -- reason: which windows count ------------------------------------------------------------


def test_a_window_whose_reset_has_passed_does_not_count() -> None:
    both = wind_down(at=0.5, below_micro=500_000)
    assert both.reason(snap(10_000, reset_in=-1.0), None, NOW) is None
    assert both.reason(snap(10_000, reset_in=0.0), None, NOW) is None  # resets exactly now
    assert both.reason(snap(10_000, reset_in=1.0), None, NOW) is not None
    assert both.reason(snap(10_000, reset_in=None), None, NOW) is not None  # no reset known
    later = NOW + timedelta(hours=2)  # the snapshot is older than the window
    assert both.reason(snap(10_000), None, later) is None


def test_windows_without_a_limit_do_not_count() -> None:
    both = wind_down(at=0.5, below_micro=500_000)
    assert both.reason(snap(0, limit=0), None, NOW) is None
    assert both.reason(snap(10_000, limit=None), None, NOW) is None
    assert both.reason(snap(None), None, NOW) is None


def test_reset_times_are_corrected_by_the_resolved_clock_skew() -> None:
    rule = wind_down(at=0.5)
    # The server is 30 s ahead: a reset 10 s away by our clock has already happened by its clock.
    assert rule.reason(snap(10_000, reset_in=10.0, skew=30.0), None, NOW) is None
    assert rule.reason(snap(10_000, reset_in=40.0, skew=30.0), None, NOW) is not None
    # Within the Date header's blur (whole seconds, plus the response's transit), skew is noise.
    assert rule.reason(snap(10_000, reset_in=0.5, skew=0.9), None, NOW) is not None
    assert rule.reason(snap(10_000, reset_in=0.5, skew=1.5), None, NOW) is not None
    # An implausible skew (a broken header) is ignored too.
    assert rule.reason(snap(10_000, reset_in=10.0, skew=7200.0), None, NOW) is not None


# -- reason: forecast -----------------------------------------------------------------------


def test_forecast_of_exhaustion_within_the_horizon() -> None:
    rule = wind_down(within_s=600)
    soon = outlook(window(remaining=500_000, rate=1_000.0))  # dry in 500 s, reset in 3600 s
    assert rule.reason(None, soon, NOW) == (
        "the session window runs out in about 500 s at the recent burn rate, "
        "before its reset (wind_down_within_s=600)"
    )
    assert wind_down(within_s=499).reason(None, soon, NOW) is None  # further off than the horizon


def test_forecast_that_resets_first_or_burns_nothing_does_not_count() -> None:
    rule = wind_down(within_s=600)
    assert rule.reason(None, outlook(window(remaining=500_000, rate=1_000.0, reset_in=400.0)), NOW) is None
    assert rule.reason(None, outlook(window(rate=None)), NOW) is None
    assert rule.reason(None, None, NOW) is None


def test_forecast_is_read_only_for_within_s() -> None:
    soon = outlook(window(remaining=500_000, rate=1_000.0))
    assert wind_down(at=0.99).reason(snap(), soon, NOW) is None


def test_forecast_names_the_binding_window() -> None:
    rule = wind_down(within_s=600)
    weekly = window("weekly", remaining=100_000, rate=1_000.0, reset_in=86_400.0)  # dry in 100 s
    reason = rule.reason(None, outlook(window(remaining=500_000, rate=1_000.0), weekly), NOW)
    assert reason is not None
    assert reason.startswith("the weekly window runs out in about 100 s")


def test_thresholds_are_checked_in_order() -> None:
    rule = wind_down(at=0.5, below_micro=500_000, within_s=600)
    soon = outlook(window(remaining=100_000, rate=1_000.0))
    reason = rule.reason(snap(100_000), soon, NOW)
    assert reason is not None
    assert "wind_down_at" in reason
    low = wind_down(at=0.95, below_micro=500_000, within_s=600)
    reason = low.reason(snap(100_000), soon, NOW)
    assert reason is not None
    assert "wind_down_below_micro" in reason
