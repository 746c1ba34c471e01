"""Degrade before exhaustion, restore after the reset: the pure step, the policy, and the issue's
figure on the emulator with a short session window (``NEBO_PACE_WINDOW_S``: 15 s in ``make test``,
60 s in ``make soak``)."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from nebo_core import BudgetPolicy, BudgetTracker, Degrade, NeboClient
from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.decisions import CallPlan, Go
from nebo_core.degrade import DegradeState, mid_tool_loop, step
from nebo_core.errors import NeboConfigurationError
from nebo_core.forecast import forecast
from nebo_emulator import NeboEmulator

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
WINDOW_S = float(os.environ.get("NEBO_PACE_WINDOW_S", "15"))


def burning(
    tracker: BudgetTracker,
    per_s: int,
    seconds: int,
    *,
    limit: int = 1_000_000,
    reset_in: float = 60.0,
    start: datetime = T0,
    used: int = 0,
) -> datetime:
    """Feed ``tracker`` a reading a second of a window burning ``per_s``; returns the last reading time."""
    reset = start + timedelta(seconds=reset_in)
    at = start
    for i in range(seconds):
        at = start + timedelta(seconds=i)
        tracker.observe(
            BudgetSnapshot(
                session=WindowState("session", limit, limit - used - per_s * i, reset), observed_at=at
            )
        )
    return at


def test_step_down_when_the_forecast_runs_out_before_the_reset_and_back_after_it() -> None:
    tracker = BudgetTracker()
    now = burning(tracker, 20_000, 5)  # 920,000 left at 20,000/s: gone in 46 s, the reset is in 56 s
    d = Degrade(settle_calls=2)
    f = tracker.forecast(now=now)
    s1 = step(DegradeState(), f, d, now, frozen=False)
    assert s1.depth == 1
    assert s1.until == T0 + timedelta(seconds=60)
    s2 = step(s1, f, d, now, frozen=False)
    assert s2.depth == 1  # a second step waits for settle_calls calls at this one
    s3 = step(s2, f, d, now, frozen=False)
    assert s3.depth == 2
    assert s3.until == s1.until  # the first step's reset still ends it
    back = step(s3, f, d, T0 + timedelta(seconds=60), frozen=False)
    assert back.depth == 0
    # Fresh readings first: the requested model for settle_calls calls even if the old forecast says run.
    assert step(back, f, d, T0 + timedelta(seconds=61), frozen=False).depth == 0


def test_no_step_without_pressure_or_without_enough_readings() -> None:
    tracker = BudgetTracker()
    now = burning(tracker, 1_000, 5)  # 996,000 left at 1,000/s: lasts past the reset
    assert step(DegradeState(), tracker.forecast(now=now), Degrade(), now, frozen=False).depth == 0
    few = BudgetTracker()
    now = burning(few, 200_000, 2)  # would run out, but two readings are not enough
    assert step(DegradeState(), few.forecast(now=now), Degrade(), now, frozen=False).depth == 0
    assert step(DegradeState(), forecast(None, {}, now), Degrade(), now, frozen=False).depth == 0


def test_at_fraction_steps_down_on_use_alone() -> None:
    tracker = BudgetTracker()
    now = burning(tracker, 0, 4, used=850_000)
    f = tracker.forecast(now=now)
    assert step(DegradeState(), f, Degrade(), now, frozen=False).depth == 0
    assert step(DegradeState(), f, Degrade(at_fraction=0.8), now, frozen=False).depth == 1


def test_a_tool_loop_keeps_its_model() -> None:
    tracker = BudgetTracker()
    now = burning(tracker, 20_000, 5)
    f = tracker.forecast(now=now)
    assert step(DegradeState(), f, Degrade(), now, frozen=True) == DegradeState()
    down = DegradeState(1, T0, 1)
    assert step(down, f, Degrade(), T0 + timedelta(hours=1), frozen=True) == down  # not restored mid-loop
    loop = {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": []},
            {"role": "tool", "content": "42", "tool_call_id": "a"},
        ]
    }
    assert mid_tool_loop(loop)
    assert not mid_tool_loop({"messages": [{"role": "user", "content": "x"}]})
    assert not mid_tool_loop(None)
    assert not mid_tool_loop({"messages": "nonsense"})


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"chain": "cheap"}, "chain"),
        ({"at_fraction": 0.0}, "at_fraction"),
        ({"at_fraction": 1.5}, "at_fraction"),
        ({"min_samples": 1}, "min_samples"),
        ({"settle_calls": 0}, "settle_calls"),
        ({"chain": [1]}, "chain"),
        ({"chain": []}, "chain"),
        ({"at_fraction": "0.9"}, "at_fraction"),
        ({"min_samples": 2.5}, "min_samples"),
        ({"settle_calls": True}, "settle_calls"),
    ],
)
def test_bad_degrade_options_fail_loudly_naming_the_option(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(NeboConfigurationError, match=name):
        Degrade(**kwargs)
    with pytest.raises(NeboConfigurationError, match="degrade must be"):
        BudgetPolicy(degrade="auto")  # type: ignore[arg-type]


def test_policy_moves_chat_down_the_chain_and_never_embeddings() -> None:
    now = datetime.now(timezone.utc)
    tracker = BudgetTracker()
    burning(tracker, 20_000, 5, start=now - timedelta(seconds=5))
    policy = BudgetPolicy(degrade=Degrade(chain=("gpt-5-mini", "gpt-5-nano")), estimate_micro=10)
    chat = policy.decide(CallPlan("chat", "gpt-5.2"), tracker)
    assert isinstance(chat, Go)
    assert chat.model == "gpt-5-mini"
    assert policy.degraded_depth() == 1
    embed = policy.decide(CallPlan("embedding", "neboloop/nebo-embed-large"), tracker)
    assert isinstance(embed, Go)
    assert embed.model == "neboloop/nebo-embed-large"
    auto = BudgetPolicy(degrade=Degrade(), estimate_micro=10)
    routed = auto.decide(CallPlan("chat", "gpt-5.2"), tracker)
    assert isinstance(routed, Go)
    assert routed.model != "gpt-5.2"
    assert routed.model in ("gpt-5-mini", "deepseek.v3.2", "qwen.qwen3-32b", "gpt-5-nano")


BODY = {"model": "gpt-5.2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


def test_done_when_degrading_ends_the_window_without_a_429_and_the_model_comes_back_after_the_reset() -> None:
    """Issue #15: a workload that would exhaust the session window at 0.6 of its length ends the
    window with zero budget 429s; the requested model resumes within one call after the reset."""
    interval = WINDOW_S / 80
    with (
        NeboEmulator() as probe,
        NeboClient(api_key=probe.token, base_url=probe.base_url, tracker=BudgetTracker()) as c,
    ):
        cost = c.chat(BODY).usage.cost_micro
    assert cost
    limit = int(cost / interval * WINDOW_S * 0.6)
    policy = BudgetPolicy(degrade=Degrade(chain=("gpt-5-nano",)))  # on_exhausted="raise": a 429 raises
    with (
        NeboEmulator(
            session_window_s=WINDOW_S, weekly_window_s=WINDOW_S * 10, session_limit_micro=limit
        ) as emu,
        NeboClient(
            api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker(), policy=policy
        ) as client,
    ):
        first = client.chat(BODY)
        assert first.snapshot is not None
        reset = first.snapshot.session.reset_at
        assert reset is not None
        after: list[str] = []
        next_at = time.monotonic() + interval
        while len(after) < 2:
            time.sleep(max(next_at - time.monotonic(), 0.0))
            next_at += interval
            sent = datetime.now(timezone.utc)
            result = client.chat(BODY)  # raises NeboBudgetExhausted on a budget 429
            if sent >= reset:
                after.append(result.usage.model or "")
        ledger = emu.ledger
    before = [e.model for e in ledger if e.at < reset]
    print(
        f"degrade, {WINDOW_S:.0f} s window: {before.count('gpt-5.2')} gpt-5.2 calls then "
        f"{before.count('gpt-5-nano')} gpt-5-nano before the reset; after it: {after}"
    )
    assert "gpt-5-nano" in before  # it stepped down ...
    assert before.count("gpt-5.2") <= 1 + 3 + 1  # ... after a few readings of the expensive model
    assert "gpt-5.2" in after[:2]  # and came back within one call after the reset
    assert sum(e.cost_micro for e in ledger if e.at < reset) <= limit
    assert math.isfinite(limit)
