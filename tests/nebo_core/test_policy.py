"""BudgetPolicy: warnings, caps with reservations, and raise / wait / fallback, against the emulator."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from nebo_core import AsyncNeboClient, BudgetTracker, NeboBudgetExhausted, NeboClient
from nebo_core.budget import BudgetSnapshot, UsageRecord, WindowState
from nebo_core.errors import NeboConfigurationError
from nebo_core.policy import BudgetPolicy, CallPlan, Go, Refuse, Wait, default_estimate_micro
from nebo_core.stores import InMemoryBudgetStore
from nebo_emulator import NeboEmulator

FIVE_HOURS = 5 * 3600
HI = {"model": "gpt-5-nano", "messages": [{"role": "user", "content": "Say hi to Ada"}]}


@pytest.fixture
def emu() -> Iterator[NeboEmulator]:
    with NeboEmulator() as e:
        yield e


def client(emu: NeboEmulator, policy: BudgetPolicy, **kw: Any) -> NeboClient:
    return NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker(), policy=policy, **kw)


def one_call_cost(emu: NeboEmulator, body: dict[str, Any] = HI) -> int:
    """The exact cost of ``body`` (the emulator is deterministic), measured on a throwaway client."""
    with NeboEmulator() as other:
        with client(other, BudgetPolicy()) as c:
            cost = c.chat(body).usage.cost_micro
    assert cost is not None
    assert cost > 0
    return cost


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"warn_at": (0.0,)}, "warn_at"),
        ({"warn_at": (1.5,)}, "warn_at"),
        ({"max_spend_micro": -1}, "max_spend_micro"),
        ({"max_spend_micro": 0.5}, "500_000 is $0.50"),
        ({"max_spend_micro": True}, "max_spend_micro"),
        ({"on_exhausted": "retry"}, "'raise', 'wait' or 'fallback'"),
        ({"max_wait": -1}, "max_wait"),
        ({"max_wait": float("nan")}, "max_wait"),
        ({"fallback": "gpt-5-nano"}, "list of model ids"),
        ({"estimate_micro": -5}, "estimate_micro"),
    ],
)
def test_bad_options_are_refused_with_the_fix(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(NeboConfigurationError, match=needle.replace("$", r"\$").replace("(", r"\(")):
        BudgetPolicy(**kwargs)


def test_repr_names_the_settings() -> None:
    r = repr(BudgetPolicy(max_spend_micro=500_000, scope="job", on_exhausted="wait"))
    assert "500000" in r
    assert "'job'" in r
    assert "'wait'" in r


# -- pure decisions ----------------------------------------------------------------------


def test_fallback_chain_and_auto() -> None:
    p = BudgetPolicy(on_exhausted="fallback", fallback=["gpt-5-mini", "gpt-5-nano"])
    assert p.next_model(CallPlan("chat", "gpt-5.2")) == "gpt-5-mini"
    assert p.next_model(CallPlan("chat", "gpt-5-mini")) == "gpt-5-nano"
    assert p.next_model(CallPlan("chat", "gpt-5-nano")) is None
    assert p.next_model(CallPlan("embedding", "neboloop/nebo-embed-large")) is None
    auto = BudgetPolicy(on_exhausted="fallback", fallback="auto")
    assert auto.next_model(CallPlan("chat", "gpt-5.2")) == "deepseek.v3.2"
    assert auto.next_model(CallPlan("chat", "gpt-5-mini")) == "qwen.qwen3-32b"
    assert auto.next_model(CallPlan("chat", "gpt-5-nano")) is None
    assert auto.next_model(CallPlan("chat", "auto")) == "gpt-5-mini"
    assert auto.next_model(CallPlan("embedding", "text-embedding-3-large")) == "neboloop/nebo-embed-small"


def test_estimate_prefers_explicit_then_observed_mean_then_default() -> None:
    plan = CallPlan("chat", "gpt-5-nano")
    assert BudgetPolicy(estimate_micro=42).estimate(plan) == 42
    assert BudgetPolicy(estimate_micro=lambda p: len(p.model)).estimate(plan) == 10
    p = BudgetPolicy(mean_cache_s=0)  # read the mean afresh for every estimate
    # Cold: 1,000 completion tokens at gpt-5-nano's $0.40/M (no prompt in this plan).
    assert p.estimate(plan) == default_estimate_micro("chat", "gpt-5-nano") == 400
    assert default_estimate_micro("chat", "auto") == 14_000  # at the dearest model's prices
    for cost in (10, 13):
        d = p.before_call(plan, BudgetTracker())
        p.settle(d, UsageRecord("chat", "gpt-5-nano", cost_micro=cost, cost_source="server"))
    assert p.estimate(plan) == 15  # warm: mean 11.5 rounded up, with 25% head-room


def test_estimates_read_the_request() -> None:
    p = BudgetPolicy(mean_cache_s=0)
    # 3,004 bytes of prompt ("user" counts): 1,002 tokens + 4 framing at gpt-5-mini's $0.25/M,
    # plus 1,000 completion tokens at $2/M.
    body = {"messages": [{"role": "user", "content": "x" * 3000}]}
    assert p.estimate(CallPlan("chat", "gpt-5-mini", body=body)) == 252 + 2000
    # The request's own max_completion_tokens bounds the completion part (times n).
    capped = {**body, "max_completion_tokens": 50, "n": 2}
    assert p.estimate(CallPlan("chat", "gpt-5-mini", body=capped)) == 252 + 200
    # Embeddings: the input is the cost (3 bytes a token; token lists count as given).
    small = "neboloop/nebo-embed-small"
    embed = {"input": ["y" * 300, "z" * 300]}
    assert p.estimate(CallPlan("embedding", small, body=embed)) == 4  # 200 tokens at $0.02/M
    assert p.estimate(CallPlan("embedding", small, body={"input": [1] * 10})) == 1
    # Warm: the mean, but never less than the request's own prompt, nor more than its ceiling.
    for _ in range(3):
        d = p.before_call(CallPlan("chat", "gpt-5-mini"), BudgetTracker())
        p.settle(d, UsageRecord("chat", "gpt-5-mini", cost_micro=80, cost_source="server"))
    hi = {"messages": [{"role": "user", "content": "hi"}]}
    assert p.estimate(CallPlan("chat", "gpt-5-mini", body=hi)) == 100
    assert p.estimate(CallPlan("chat", "gpt-5-mini", body=body)) == 252
    tight = {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 10}
    assert p.estimate(CallPlan("chat", "gpt-5-mini", body=tight)) == 2 + 20


def test_unknown_cost_is_charged_at_the_estimate_and_failures_release() -> None:
    p = BudgetPolicy(max_spend_micro=100, estimate_micro=30)
    tracker = BudgetTracker()
    d = p.before_call(CallPlan("chat", "m"), tracker)
    p.settle(d, UsageRecord("chat", "m", cost_micro=None))
    assert p.spent_micro() == 30
    assert p.store.mean_cost("m") is None
    failed = p.before_call(CallPlan("chat", "m"), tracker)
    p.settle(failed, None)
    assert (p.spent_micro(), p.store.reserved("*"), p.remaining_micro()) == (30, 0, 70)


def test_wait_corrects_clock_skew_from_the_date_header() -> None:
    ours = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    server_now = ours + timedelta(seconds=100)  # the server's clock runs 100 s ahead
    snapshot = BudgetSnapshot(
        session=WindowState("session", 1000, 0, server_now + timedelta(seconds=60)),
        observed_at=ours,
        server_date=server_now,
    )
    p = BudgetPolicy(on_exhausted="wait", max_wait=120, clock=lambda: ours, wait_margin=0.5, wait_jitter=0)
    tracker = BudgetTracker()
    tracker.observe(snapshot)
    decision = p.before_call(CallPlan("chat", "gpt-5-nano"), tracker)
    assert isinstance(decision, Wait)
    assert decision.seconds == pytest.approx(60.5)  # not 160.5: the reset is in the server's time
    short = BudgetPolicy(on_exhausted="wait", max_wait=30, clock=lambda: ours, wait_jitter=0)
    refused = short.before_call(CallPlan("chat", "gpt-5-nano"), tracker)
    assert isinstance(refused, Refuse)
    assert refused.error.window == "session"


# -- caps against the emulator -----------------------------------------------------------


def test_cap_raises_a_typed_non_retryable_error_before_sending(emu: NeboEmulator) -> None:
    cost = one_call_cost(emu)
    policy = BudgetPolicy(max_spend_micro=3 * cost, estimate_micro=cost)
    with client(emu, policy) as c:
        for _ in range(3):
            c.chat(HI, scope="job-1")
        sent = emu.requests
        with pytest.raises(NeboBudgetExhausted) as info:
            c.chat(HI, scope="job-1")
        assert emu.requests == sent  # refused locally: no request
        err = info.value
        assert (err.window, err.scope, err.code, err.is_retryable) == (
            "cap",
            "job-1",
            "BUDGET_CAP_REACHED",
            False,
        )
        assert "max_spend_micro" in str(err)
        assert "job-1" in str(err)
        c.chat(HI, scope="job-2")  # another scope has its own cap
        assert policy.spent_micro("job-1") == 3 * cost
        assert policy.spent_micro("job-2") == cost
        assert policy.spent_micro("job-1") + policy.spent_micro("job-2") == emu.ledger_total_micro()
        assert c.tracker.totals().total.cost_micro == emu.ledger_total_micro()


def test_policy_scope_applies_when_the_call_has_none(emu: NeboEmulator) -> None:
    cost = one_call_cost(emu)
    policy = BudgetPolicy(max_spend_micro=cost, estimate_micro=cost, scope="tenant-7")
    with client(emu, policy) as c:
        c.chat(HI)
        with pytest.raises(NeboBudgetExhausted) as info:
            c.chat(HI)
    assert info.value.scope == "tenant-7"
    assert policy.spent_micro("tenant-7") == cost


def test_streams_and_embeddings_settle_their_real_cost(emu: NeboEmulator) -> None:
    policy = BudgetPolicy(max_spend_micro=1_000_000)
    with client(emu, policy) as c:
        with c.stream_chat(HI) as stream:
            chunks = list(stream)
        assert chunks
        assert stream.usage is not None
        assert stream.usage.cost_micro
        emb = c.embed(["alpha beta", "gamma"])
        assert policy.spent_micro() == stream.usage.cost_micro + (emb.cost_micro or 0)
        assert policy.spent_micro() == emu.ledger_total_micro()
        assert policy.store.reserved("*") == 0


# -- wait --------------------------------------------------------------------------------


def test_wait_sleeps_until_the_reset_on_the_emulator_clock(emu: NeboEmulator) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        emu.clock.advance(seconds)

    policy = BudgetPolicy(on_exhausted="wait", max_wait=6 * 3600, wait_jitter=0)
    with client(emu, policy, sleep=sleep) as c:
        emu.set_budget(session_remaining_micro=1)
        first = c.chat(HI)  # funded, and leaves the session window at 0
        assert first.snapshot is not None
        assert first.snapshot.session.remaining_micro == 0
        sent = emu.requests
        second = c.chat(HI)
    assert len(sleeps) == 1
    assert FIVE_HOURS - 2 < sleeps[0] <= FIVE_HOURS + 2
    assert emu.requests == sent + 1  # no doomed request was sent before the wait
    assert second.snapshot is not None
    assert second.snapshot.session.remaining_micro
    assert second.snapshot.session.remaining_micro > 9_000_000


def test_wait_longer_than_max_wait_raises(emu: NeboEmulator) -> None:
    sleeps: list[float] = []
    policy = BudgetPolicy(on_exhausted="wait", max_wait=60)
    with client(emu, policy, sleep=sleeps.append) as c:
        emu.set_budget(session_remaining_micro=1)
        c.chat(HI)
        with pytest.raises(NeboBudgetExhausted) as info:
            c.chat(HI)
    assert sleeps == []
    assert info.value.window == "session"
    assert info.value.reset_at is not None


async def test_async_wait_is_cancellable(emu: NeboEmulator) -> None:
    started = asyncio.Event()

    async def sleep(seconds: float) -> None:
        started.set()
        await asyncio.Event().wait()  # a reset hours away

    policy = BudgetPolicy(on_exhausted="wait", max_wait=6 * 3600)
    async with AsyncNeboClient(
        api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker(), policy=policy, sleep=sleep
    ) as c:
        emu.set_budget(session_remaining_micro=1)
        await c.chat(HI)
        sent = emu.requests
        task = asyncio.create_task(c.chat(HI))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert emu.requests == sent
    assert policy.store.reserved("*") == 0


# -- fallback ----------------------------------------------------------------------------


def test_fallback_after_a_budget_429_routes_to_the_next_model(emu: NeboEmulator) -> None:
    policy = BudgetPolicy(on_exhausted="fallback", fallback=["gpt-5-mini", "gpt-5-nano"])
    with client(emu, policy) as c:
        emu.inject("usage_limit")
        res = c.chat({**HI, "model": "gpt-5.2"})
    assert res.data["model"] == "gpt-5-mini"
    assert res.usage.model == "gpt-5-mini"
    assert [e.model for e in emu.ledger] == ["gpt-5-mini"]
    assert policy.spent_micro() == emu.ledger_total_micro()


def test_fallback_to_a_model_whose_estimate_fits_the_cap(emu: NeboEmulator) -> None:
    # Cold estimates for this short prompt: gpt-5.2 14000, gpt-5-mini 2000, qwen3-32b 600, gpt-5-nano 400.
    policy = BudgetPolicy(max_spend_micro=500, on_exhausted="fallback", fallback="auto")
    with client(emu, policy) as c:
        res = c.chat({**HI, "model": "gpt-5.2"})
    assert res.data["model"] == "gpt-5-nano"
    assert policy.spent_micro() == emu.ledger_total_micro() == res.usage.cost_micro


def test_fallback_chain_exhausted_raises(emu: NeboEmulator) -> None:
    policy = BudgetPolicy(max_spend_micro=10, on_exhausted="fallback", fallback=["gpt-5-mini"])
    with client(emu, policy) as c, pytest.raises(NeboBudgetExhausted) as info:
        c.chat({**HI, "model": "gpt-5.2"})
    assert info.value.window == "cap"
    assert "gpt-5-mini" in str(info.value)
    assert emu.requests == 0


# -- warnings ----------------------------------------------------------------------------


def test_warnings_fire_once_per_threshold_per_window_cycle(
    emu: NeboEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    fired: list[tuple[str, float]] = []
    policy = BudgetPolicy(on_warn=lambda w, f, s: fired.append((w.name, f)))
    limit = 10_000_000
    with client(emu, policy) as c, caplog.at_level(logging.WARNING, logger="nebo_core.budget"):
        emu.set_budget(session_remaining_micro=limit // 4)  # 75% used
        c.chat(HI)
        assert fired == []
        emu.set_budget(session_remaining_micro=limit * 15 // 100)  # 85%
        c.chat(HI)
        c.chat(HI)
        assert fired == [("session", 0.8)]
        emu.set_budget(session_remaining_micro=limit * 4 // 100)  # 96%
        c.chat(HI)
        assert fired == [("session", 0.8), ("session", 0.95)]
        emu.clock.advance(FIVE_HOURS + 1)  # the window rolls: thresholds re-arm
        c.chat(HI)
        emu.set_budget(session_remaining_micro=limit * 15 // 100)
        c.chat(HI)
    assert fired == [("session", 0.8), ("session", 0.95), ("session", 0.8)]
    assert len([r for r in caplog.records if "threshold 80%" in r.getMessage()]) == 2


def test_store_snapshot_from_another_process_refuses_up_front() -> None:
    store = InMemoryBudgetStore()
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    store.publish(
        BudgetSnapshot(session=WindowState("session", 100, 0, later), server_date=datetime.now(timezone.utc))
    )
    tracker = BudgetTracker()
    d = BudgetPolicy(store=store).before_call(CallPlan("chat", "gpt-5-nano"), tracker)
    assert isinstance(d, Refuse)
    assert d.error.window == "session"


# -- README "Budgets" examples, run as written (with NEBO_* pointing at the emulator) ---------


def test_readme_policy_example_runs(
    emu: NeboEmulator,
    run_example: Callable[..., tuple[dict[str, Any], str]],
) -> None:
    lines = run_example("budget-policy", emu)[1].splitlines()
    model, spent, remaining = lines[0].split()
    assert model == "gpt-5.2"
    assert int(spent) == emu.ledger[0].cost_micro == 500_000 - int(remaining)
    assert len(lines) == 1
    assert len(emu.ledger) == 2


@pytest.mark.redis
def test_readme_redis_example_runs(
    emu: NeboEmulator,
    redis_url: str,
    run_example: Callable[..., tuple[dict[str, Any], str]],
) -> None:
    tenant, user = run_example("budget-redis", emu, REDIS_URL=redis_url)[1].split()
    assert int(tenant) == int(user) == emu.ledger_total_micro() > 0


def test_readme_foresight_example_runs(
    emu: NeboEmulator, run_example: Callable[..., tuple[dict[str, Any], str]]
) -> None:
    namespace, out = run_example("budget-foresight", emu)
    samples, burning, seconds = out.split()
    assert (samples, burning) == ("3", "True")
    assert float(seconds) > 0
    assert [e.model for e in emu.ledger] == ["gpt-5.2"] * 3  # plenty left: nothing paced or degraded
    assert namespace["policy"].degraded_depth(namespace["tracker"].snapshot.account) == 0


@pytest.mark.parametrize("skew_s", [-600.0, 0.0, 600.0])
def test_unknown_reset_refusal_lasts_a_minute_whatever_the_server_clock(skew_s: float) -> None:
    from datetime import datetime, timedelta, timezone

    from nebo_core.budget import BudgetSnapshot, WindowState
    from nebo_core.policy import exhausted_error

    seen = datetime.now(timezone.utc)
    snap = BudgetSnapshot(
        session=WindowState("session", 100, 0, None),
        observed_at=seen,
        server_date=seen + timedelta(seconds=skew_s),
    )
    server_now = seen + timedelta(seconds=skew_s)
    assert exhausted_error(snap, server_now + timedelta(seconds=30)) is not None
    assert exhausted_error(snap, server_now + timedelta(seconds=90)) is None


def test_a_reset_near_year_9999_with_a_lagging_date_refuses_instead_of_overflowing() -> None:
    ours = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    snapshot = BudgetSnapshot(
        session=WindowState("session", 1000, 0, datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)),
        observed_at=ours,
        server_date=ours - timedelta(minutes=30),  # the server's clock lags ours
    )
    tracker = BudgetTracker()
    tracker.observe(snapshot)
    decision = BudgetPolicy(on_exhausted="wait", clock=lambda: ours).before_call(
        CallPlan("chat", "gpt-5-nano"), tracker
    )
    assert isinstance(decision, Refuse)
    assert decision.error.window == "session"


def test_a_reported_exhaustion_refuses_up_front_for_a_minute_then_asks_the_server_again() -> None:
    # A top-up is seen: the reset may be hours away, but after a minute the next call goes out.
    seen = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    snapshot = BudgetSnapshot(
        session=WindowState("session", 1000, 0, seen + timedelta(hours=4)), observed_at=seen
    )
    tracker = BudgetTracker()
    tracker.observe(snapshot)
    soon = BudgetPolicy(clock=lambda: seen + timedelta(seconds=59))
    assert isinstance(soon.before_call(CallPlan("chat", "gpt-5-nano"), tracker), Refuse)
    later = BudgetPolicy(clock=lambda: seen + timedelta(seconds=61))
    assert isinstance(later.before_call(CallPlan("chat", "gpt-5-nano"), tracker), Go)
