"""NeboBudgetMiddleware when the policy keeps saying "wait": it gives up with the typed error.

A regression test: the old hook counted its own waits and, once out of steps, fell through
to "go", calling the model on an exhausted budget. Now the policy refuses past ``max_steps``
and the hook raises (``exit_behavior="raise"``) or ends the run. No model or agent is needed:
the hooks are called directly with the tracker fed by hand and sleeps recorded.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from langchain_nebo.middleware import NeboBudgetMiddleware
from nebo_core import BudgetTracker, NeboBudgetExhausted
from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.policy import BudgetPolicy

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


class StillExhausted:
    """A tracker whose session stays empty: each sleep ends with a report of a reset 1 s further on.

    With one fixed snapshot the policy would rightly go after its first wait (it slept past
    that reset); a server that keeps pushing the reset is what runs a call out of steps.
    """

    def __init__(self) -> None:
        self.tracker = BudgetTracker()
        self.sleeps: list[float] = []
        self._report()

    def _report(self) -> None:
        reset = NOW + timedelta(seconds=len(self.sleeps) + 1)
        # observed_at is ours: a report older than a minute with a known reset is still trusted.
        self.tracker.observe(BudgetSnapshot(session=WindowState("session", 1_000, 0, reset)))

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._report()

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def middleware(budget: StillExhausted, exit_behavior: str = "raise") -> NeboBudgetMiddleware:
    policy = BudgetPolicy(on_exhausted="wait", max_steps=2, wait_margin=1.0, wait_jitter=0, clock=lambda: NOW)
    return NeboBudgetMiddleware(
        policy,
        tracker=budget.tracker,
        exit_behavior=exit_behavior,  # type: ignore[arg-type]
        sleep=budget.sleep,
        asleep=budget.asleep,
    )


def test_before_model_raises_once_out_of_steps() -> None:
    budget = StillExhausted()
    with pytest.raises(NeboBudgetExhausted, match="after 3 budget decisions") as info:
        middleware(budget).before_model({"messages": []}, runtime=None)  # type: ignore[arg-type]
    assert not info.value.is_retryable
    # Decisions at steps 0, 1 and 2 each wait for the next reset (1 s away, plus the margin);
    # step 3 is past max_steps=2, a refusal.
    assert budget.sleeps == [2.0, 3.0, 4.0]


async def test_abefore_model_raises_once_out_of_steps() -> None:
    budget = StillExhausted()
    with pytest.raises(NeboBudgetExhausted, match="after 3 budget decisions"):
        await middleware(budget).abefore_model({"messages": []}, runtime=None)  # type: ignore[arg-type]
    assert budget.sleeps == [2.0, 3.0, 4.0]


def test_before_model_ends_the_run_once_out_of_steps() -> None:
    budget = StillExhausted()
    outcome = middleware(budget, "end").before_model({"messages": []}, runtime=None)  # type: ignore[arg-type]
    assert outcome is not None
    assert outcome["jump_to"] == "end"
    assert "after 3 budget decisions" in outcome["messages"][0].content
    assert len(budget.sleeps) == 3
