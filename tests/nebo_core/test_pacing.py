"""Pacing: a window's budget spread until its reset, fleet-wide, with lane priorities.

Pure parts (the schedule, the pace from a snapshot, the options) on their own; the shared book on
every store; and the "done when" figures of the foresight issue with real processes, real Redis
and the emulator on a short session window (``NEBO_PACE_WINDOW_S``: 20 s in ``make test``, the
issue's 60 s in ``make soak``).
"""

from __future__ import annotations

import math
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from nebo_core import BudgetPolicy, BudgetTracker, LaneRule, Pace
from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.decisions import CallPlan, Go, Refuse, Wait
from nebo_core.errors import NeboConfigurationError
from nebo_core.pacing import PaceBook, book, held_until_reset, target
from nebo_core.policy import PACE_CODE
from nebo_core.stores import BudgetStore, InMemoryBudgetStore
from nebo_emulator import NeboEmulator
from nebo_emulator._workloads import BODY, emulator_for, probe_cost, run_batches, spread

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
WINDOW_S = float(os.environ.get("NEBO_PACE_WINDOW_S", "20"))


def snap(
    remaining: int, limit: int = 1_000_000, reset_in: float = 100.0, at: datetime = T0
) -> BudgetSnapshot:
    return BudgetSnapshot(
        session=WindowState("session", limit, remaining, at + timedelta(seconds=reset_in)),
        weekly=WindowState("weekly", 50_000_000, 40_000_000, at + timedelta(hours=1)),
        observed_at=at,
    )


# -- the schedule (pure) ----------------------------------------------------------------------


def test_book_takes_slots_in_turn_and_lets_a_burst_through() -> None:
    answer, tat = book(None, 100.0, 0.5, 1.0, None)
    assert answer.booked
    assert answer.wait_s == 0.0
    assert tat == 100.5
    answer, tat = book(tat, 100.0, 0.5, 1.0, None)  # within the burst: now
    assert answer.booked
    assert answer.wait_s == 0.0
    assert tat == 101.0
    answer, tat = book(tat, 100.0, 0.5, 1.0, None)  # past it: waits for its slot
    assert answer.booked
    assert answer.wait_s == pytest.approx(0.0)
    assert tat == 101.5
    answer, tat = book(tat, 100.0, 0.5, 1.0, None)
    assert answer.booked
    assert answer.wait_s == pytest.approx(0.5)
    assert tat == 102.0
    answer, same = book(200.0, 300.0, 0.5, 1.0, None)  # idle for long: the schedule restarts now
    assert answer.wait_s == 0.0
    assert same == 300.5


def test_a_lane_with_a_tolerance_is_held_while_the_schedule_is_behind_and_books_nothing() -> None:
    answer, tat = book(105.0, 100.0, 0.5, 1.0, 0.0)  # 5 s booked ahead, 1 s burst, no tolerance
    assert not answer.booked
    assert tat is None
    assert answer.wait_s == pytest.approx(4.0)
    answer, tat = book(105.0, 100.0, 0.5, 1.0, None)  # main books anyway and waits its turn
    assert answer.booked
    assert answer.wait_s == pytest.approx(4.0)
    assert tat == 105.5


def test_pace_book_counts_per_lane() -> None:
    pb = PaceBook()
    assert pb.book("k", 10.0, 0.0, None, "main").booked
    assert not pb.book("k", 10.0, 0.0, 0.0, "heartbeat").booked
    assert pb.lanes() == {"main": {"booked": 1, "held": 0}, "heartbeat": {"booked": 0, "held": 1}}
    pb.reset()
    assert pb.lanes() == {}


def test_target_is_the_tighter_window_less_the_reserve() -> None:
    pace = Pace(reserve_fraction=0.1)
    goal = target(snap(600_000, reset_in=100.0), pace, T0)
    assert goal is not None
    assert goal.window == "session"
    assert goal.rate == pytest.approx((600_000 - 100_000) / 100.0)
    assert goal.used_fraction == pytest.approx(0.4)
    assert target(None, pace, T0) is None
    assert target(BudgetSnapshot(observed_at=T0), pace, T0) is None  # nothing reported: nothing to pace by
    empty = target(snap(50_000), pace, T0)  # under the reserve
    assert empty is not None
    assert empty.rate == 0.0
    assert held_until_reset(pace, "main", empty)


def test_lanes_are_held_by_used_fraction_lowest_priority_first() -> None:
    pace = Pace()
    at = {f: target(snap(int(1_000_000 * (1 - f))), pace, T0) for f in (0.5, 0.75, 0.85, 0.92)}
    held = {
        f: sorted(
            lane
            for lane in ("main", "subagent", "comm", "events", "heartbeat")
            if held_until_reset(pace, lane, g)
        )
        for f, g in at.items()
        if g is not None
    }
    assert held == {
        0.5: [],
        0.75: ["heartbeat"],
        0.85: ["events", "heartbeat"],
        0.92: ["comm", "events", "heartbeat"],
    }


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"reserve_fraction": 1.0}, "reserve_fraction"),
        ({"reserve_fraction": -0.1}, "reserve_fraction"),
        ({"burst_s": -1.0}, "burst_s"),
        ({"burst_s": math.inf}, "burst_s"),
        ({"windows": ("monthly",)}, "windows"),
        ({"windows": ()}, "windows"),
        ({"lanes": {"vip": LaneRule()}}, "vip"),
        ({"lanes": {"main": 3}}, "LaneRule"),
        ({"lanes": {"events": LaneRule(hold_at=1.5)}}, "hold_at"),
        ({"lanes": {"events": LaneRule(tolerance_s=-1.0)}}, "tolerance_s"),
        # wrong types: a clear error naming the option, never a TypeError from a comparison
        ({"reserve_fraction": "0.05"}, "reserve_fraction"),
        ({"burst_s": None}, "burst_s"),
        ({"min_rate_window_s": 0.0}, "min_rate_window_s"),
        ({"lanes": ["main"]}, "lanes"),
        ({"lanes": {"events": LaneRule(tolerance_s="1")}}, "tolerance_s"),  # type: ignore[arg-type]
        ({"lanes": {"events": LaneRule(hold_at=True)}}, "hold_at"),  # type: ignore[arg-type]
    ],
)
def test_bad_pace_options_fail_loudly_naming_the_option(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(NeboConfigurationError, match=name):
        Pace(**kwargs)


def test_a_single_window_name_is_that_window() -> None:
    assert Pace(windows="session").windows == ("session",)  # type: ignore[arg-type]


def test_policy_rejects_a_pace_that_is_not_a_pace() -> None:
    with pytest.raises(NeboConfigurationError, match="pace must be"):
        BudgetPolicy(pace=0.05)  # type: ignore[arg-type]


# -- decisions ---------------------------------------------------------------------------------


def _tracker_with(snapshot: BudgetSnapshot) -> BudgetTracker:
    tracker = BudgetTracker()
    tracker.observe(snapshot)
    return tracker


def test_policy_paces_booked_calls_and_a_wait_books_no_second_slot() -> None:
    now = datetime.now(timezone.utc)
    # 100,000 spendable over 100 s = 1,000/s; each call is estimated at 500: one slot every 0.5 s.
    tracker = _tracker_with(snap(200_000, limit=1_000_000, reset_in=100.0, at=now))
    policy = BudgetPolicy(pace=Pace(reserve_fraction=0.1, burst_s=0.0), estimate_micro=500)
    plan = CallPlan("chat", "gpt-5-mini")
    first = policy.decide(plan, tracker)
    assert isinstance(first, Go)
    policy.settle(first, None)
    second = policy.decide(plan, tracker)
    assert isinstance(second, Wait)
    assert second.reason == "pace"
    assert second.seconds == pytest.approx(0.5, abs=0.05)
    # After the sleep the exchange asks again with paced=True: it goes at once, no new slot.
    again = policy.decide(CallPlan("chat", "gpt-5-mini", paced=True, held_s=second.seconds), tracker)
    assert isinstance(again, Go)
    policy.settle(again, None)
    third = policy.decide(plan, tracker)
    assert isinstance(third, Wait)
    assert third.seconds == pytest.approx(1.0, abs=0.05)
    assert policy.store.lanes() == {"main": {"booked": 3, "held": 0}}


def test_a_check_books_nothing() -> None:
    now = datetime.now(timezone.utc)
    tracker = _tracker_with(snap(200_000, reset_in=100.0, at=now))
    policy = BudgetPolicy(pace=Pace(burst_s=0.0), estimate_micro=500)
    for _ in range(3):
        assert isinstance(policy.check(CallPlan("chat", "gpt-5-mini"), tracker), Go)
    assert policy.store.lanes() == {}


def test_a_held_lane_waits_for_the_reset_and_a_wait_past_max_wait_is_refused() -> None:
    now = datetime.now(timezone.utc)
    tracker = _tracker_with(snap(200_000, reset_in=30.0, at=now))  # 80% used: heartbeat and events held
    policy = BudgetPolicy(pace=Pace(), estimate_micro=500, wait_jitter=0)
    held = policy.decide(CallPlan("chat", "gpt-5-mini", lane="heartbeat"), tracker)
    assert isinstance(held, Wait)
    assert held.reason == "held"
    assert held.seconds == pytest.approx(30.0 + policy.wait_margin, abs=0.1)
    assert isinstance(policy.decide(CallPlan("chat", "gpt-5-mini", lane="main"), tracker), Go)
    strict = BudgetPolicy(pace=Pace(), estimate_micro=500, wait_jitter=0, max_wait=5.0)
    refused = strict.decide(CallPlan("chat", "gpt-5-mini", lane="heartbeat"), tracker)
    assert isinstance(refused, Refuse)
    assert refused.error.code == PACE_CODE
    assert "heartbeat" in refused.error.message
    assert "max_wait" in refused.error.message


# -- the shared book on every store --------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        yield InMemoryBudgetStore()
        return
    from nebo_core.stores import RedisBudgetStore

    s = RedisBudgetStore.from_url(
        request.getfixturevalue("redis_url"), namespace=f"pace-{uuid.uuid4().hex[:8]}"
    )
    yield s
    s.close()


def test_every_store_books_one_schedule_for_all_its_users(store: BudgetStore) -> None:
    waits = [store.pace("pace:a", 0.2, 0.0, None, "main").wait_s for _ in range(5)]
    assert waits[0] == pytest.approx(0.0, abs=0.02)
    assert waits[4] == pytest.approx(0.8, abs=0.05)
    assert not store.pace("pace:a", 0.2, 0.0, 0.0, "heartbeat").booked
    assert store.pace("pace:b", 0.2, 0.0, 0.0, "heartbeat").booked  # another account's schedule
    assert store.lanes() == {"main": {"booked": 5, "held": 0}, "heartbeat": {"booked": 1, "held": 1}}


async def test_async_twins_share_the_same_schedule(store: BudgetStore) -> None:
    first = await store.apace("pace:x", 1.0, 0.0, None, "main")
    second = store.pace("pace:x", 1.0, 0.0, None, "main")
    assert first.wait_s == pytest.approx(0.0, abs=0.02)
    assert second.wait_s == pytest.approx(1.0, abs=0.05)


# -- the figures: real processes, real Redis, the emulator on a short window --------------

WORKERS = 4
LATENCY_S = 0.05


def _emulator_for(window: float, exhaust_at: float) -> tuple[NeboEmulator, int]:
    """An emulator whose session window a full-speed batch would exhaust at ``exhaust_at`` of it."""
    full_speed = WORKERS * probe_cost(BODY, LATENCY_S) / LATENCY_S
    return emulator_for(window, exhaust_at, full_speed, LATENCY_S)


def test_done_when_pacing_spends_the_window_evenly_with_no_429_and_the_control_hits_the_wall(
    redis_url: str,
) -> None:
    """Issue #15: 4 processes whose batch would exhaust the session window at 0.6 of it. Paced: zero
    budget 429s, at least (1 - reserve - 2%) of the window spent by the reset, spend per bucket
    (a twelfth of the window: 5 s on a 60 s window) with a coefficient of variation at most 0.15.
    Unpaced (the control): the 429s happen."""
    emu, limit = _emulator_for(WINDOW_S, 0.6)
    with emu:
        (results,) = run_batches([(emu, True, ["main"] * WORKERS, WINDOW_S + 1.0)], redis_url)
        ledger = emu.ledger
    assert sum(r["refused"] for r in results) == 0
    paced = spread(ledger, WINDOW_S, limit)  # spent before the reset the server announced
    spent, cv, buckets = paced["spent_micro"], paced["cv"], paced["buckets"]
    assert spent >= (1 - 0.05 - 0.02) * limit
    assert spent <= limit
    print(f"paced, {WINDOW_S:.0f} s window: spent {spent / limit:.1%} by the reset, CV {cv:.3f}, {buckets}")
    assert cv <= 0.15, buckets

    control, _ = _emulator_for(WINDOW_S, 0.6)
    with control:
        (unpaced,) = run_batches([(control, False, ["main"] * WORKERS, WINDOW_S * 0.75)], redis_url)
    print(f"unpaced: {sum(r['refused'] for r in unpaced)} budget 429s")
    assert sum(r["refused"] for r in unpaced) > 0


def test_done_when_heartbeat_beside_main_is_held_first(redis_url: str) -> None:
    """Issue #15: with a heartbeat lane running beside main under one pace, heartbeat is held first:
    main books every call it makes and is never held; heartbeat is held and gets a small share."""
    window = min(WINDOW_S, 20.0)
    emu, _ = _emulator_for(window, 0.6)
    with emu:
        (results,) = run_batches(
            [(emu, True, ["main", "main", "main", "heartbeat"], window * 0.5)], redis_url
        )
    # The fleet's counts, read from the shared store by each worker as it ended: the last is complete.
    lanes = max((r["lanes"] for r in results), key=lambda c: sum(v["booked"] + v["held"] for v in c.values()))
    print(f"lanes: {lanes}")
    assert sum(r["refused"] for r in results) == 0
    assert lanes["main"]["held"] == 0
    assert lanes["heartbeat"]["held"] > 0
    assert lanes["heartbeat"]["booked"] < lanes["main"]["booked"] / 3 / 2


async def test_an_async_pace_wait_is_a_cancellable_sleep_that_sends_nothing(emu: NeboEmulator) -> None:
    """A paced call on an event loop awaits its slot (other tasks run meanwhile) and can be
    cancelled while it waits: nothing is sent, nothing is billed, nothing is held."""
    import asyncio

    from nebo_core import AsyncNeboClient

    # 9.1 dollars spendable over 5 h is ~505 microdollars/s; each call is estimated at 5,000: ~10 s apart.
    emu.set_budget(session_remaining_micro=9_600_000)
    policy = BudgetPolicy(pace=Pace(windows=("session",)), estimate_micro=5_000, mean_cache_s=0)
    async with AsyncNeboClient(
        api_key=emu.token, base_url=emu.base_url, policy=policy, tracker=BudgetTracker()
    ) as client:
        await client.chat(BODY)  # the first response tells the pace
        await client.chat(BODY)  # the first slot: now
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        call = asyncio.create_task(client.chat(BODY))
        await asyncio.sleep(0.5)
        assert not call.done()  # waiting for its slot, about 10 s away
        started = time.monotonic()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert time.monotonic() - started < 0.5
        ticker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ticker
    assert ticks >= 20  # the loop kept running while the call waited
    assert len(emu.ledger) == 2  # the cancelled call never reached the server
    assert policy.store.reserved("*") == 0
    # The first call had no snapshot to pace by; the second and the cancelled one booked slots.
    assert policy.store.lanes() == {"main": {"booked": 2, "held": 0}}


def test_a_process_first_call_paces_by_the_budget_another_process_published() -> None:
    now = datetime.now(timezone.utc)
    store = InMemoryBudgetStore()
    store.publish(snap(200_000, reset_in=100.0, at=now))  # another worker's last response
    policy = BudgetPolicy(pace=Pace(burst_s=0.0), store=store, estimate_micro=500)
    fresh = BudgetTracker()  # this process has seen no response yet
    assert isinstance(policy.decide(CallPlan("chat", "gpt-5-mini"), fresh), Go)
    assert store.lanes() == {"main": {"booked": 1, "held": 0}}
