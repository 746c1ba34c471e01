"""Budget stores: the in-memory store and the Redis store honour one contract, atomically."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.errors import NeboConfigurationError
from nebo_core.stores import (
    BudgetStore,
    InMemoryBudgetStore,
    RedisBudgetStore,
    Reservation,
    decode_snapshot,
    encode_snapshot,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[BudgetStore]:
    if request.param == "memory":
        yield InMemoryBudgetStore()
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisBudgetStore.from_url(url, namespace="t-stores")
        yield s
        s.close()


def snap(remaining: int, at: datetime) -> BudgetSnapshot:
    return BudgetSnapshot(
        session=WindowState("session", 1000, remaining, at + timedelta(hours=5)),
        weekly=WindowState("weekly", 5000, 4000, None),
        active_pool="plan",
        observed_at=at,
        server_date=at + timedelta(seconds=3),
    )


def test_reserve_within_cap_then_refuse_over_it(store: BudgetStore) -> None:
    first = store.reserve("job", "gpt-5-nano", 60, 100, 60)
    assert first.reservation is not None
    assert first.reservation.amount_micro == 60
    second = store.reserve("job", "gpt-5-nano", 60, 100, 60)
    assert second.reservation is None
    assert (second.spent_micro, second.reserved_micro) == (0, 60)
    assert store.reserved("job") == 60


def test_commit_replaces_the_reservation_by_the_real_cost(store: BudgetStore) -> None:
    res = store.reserve("job", "m", 60, 100, 60).reservation
    assert res is not None
    assert store.commit(res, 75, True) == 75
    assert (store.spent("job"), store.reserved("job")) == (75, 0)
    assert store.reserve("job", "m", 30, 100, 60).reservation is None  # 75 + 30 > 100
    assert store.reserve("job", "m", 25, 100, 60).reservation is not None


def test_release_frees_without_spending(store: BudgetStore) -> None:
    res = store.reserve("job", "m", 100, 100, 60).reservation
    assert res is not None
    store.release(res)
    assert (store.spent("job"), store.reserved("job")) == (0, 0)


def test_scopes_are_independent_and_no_cap_always_reserves(store: BudgetStore) -> None:
    a = store.reserve("a", "m", 100, 100, 60).reservation
    assert a is not None
    assert store.reserve("b", "m", 100, 100, 60).reservation is not None
    assert store.reserve("a", "m", 10**9, None, 60).reservation is not None
    store.commit(a, 7, True)
    assert (store.spent("a"), store.spent("b")) == (7, 0)


def test_mean_cost_only_from_observed_costs(store: BudgetStore) -> None:
    assert store.mean_cost("m") is None
    for cost, observed in ((10, True), (20, True), (999, False)):
        res = store.reserve("s", "m", 1, None, 60).reservation
        assert res is not None
        store.commit(res, cost, observed)
    assert store.mean_cost("m") == 15
    assert store.spent("s") == 1029


def test_freshest_snapshot_wins(store: BudgetStore) -> None:
    assert store.snapshot() is None
    newer, older = snap(500, T0 + timedelta(seconds=10)), snap(900, T0)
    store.publish(newer)
    store.publish(older)
    got = store.snapshot()
    assert got is not None
    assert got.session.remaining_micro == 500
    assert got == newer


def test_reset_forgets_everything(store: BudgetStore) -> None:
    res = store.reserve("s", "m", 5, None, 60).reservation
    assert res is not None
    store.commit(res, 5, True)
    store.publish(snap(1, T0))
    store.reset()
    assert (store.spent("s"), store.mean_cost("m"), store.snapshot()) == (0, None, None)


def test_concurrent_reservations_never_exceed_the_cap(store: BudgetStore) -> None:
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            if store.reserve("race", "m", 7, 100, 60).reservation is not None:
                with lock:
                    granted.append(7)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 98  # 14 reservations of 7 fit in 100, no more
    assert store.reserved("race") == 98


def test_memory_reservations_expire_after_their_ttl_and_are_charged() -> None:
    clock = FakeMonotonic()
    store = InMemoryBudgetStore(clock=clock)
    assert store.reserve("s", "m", 100, 200, 30).reservation is not None
    assert store.reserve("s", "m", 101, 200, 30).reservation is None
    clock.now += 31
    # Expired unsettled: its call may have been billed, so the hold turns into spend.
    assert (store.reserved("s"), store.spent("s"), store.uncertain("s")) == (0, 100, 100)
    assert store.reserve("s", "m", 100, 200, 30).reservation is not None
    assert store.reserve("s", "m", 1, 200, 30).reservation is None


def _expired(store: BudgetStore, amount: int) -> Reservation:
    """A reservation whose TTL has passed (0 s: expired at once on either store's clock)."""
    held = store.reserve("job", "m", amount, None, 0).reservation
    assert held is not None
    assert store.reserved("job") == 0  # the next store call charges it
    return held


def test_an_expired_reservation_is_charged_then_corrected_by_a_late_settlement(store: BudgetStore) -> None:
    late_commit = _expired(store, 100)
    assert (store.spent("job"), store.uncertain("job")) == (100, 100)
    assert store.commit(late_commit, 40, True) == 40  # the charge becomes the real cost
    assert (store.spent("job"), store.uncertain("job")) == (40, 0)
    late_release = _expired(store, 70)
    assert (store.spent("job"), store.uncertain("job")) == (110, 70)
    store.release(late_release)  # the call failed unbilled after all: refunded
    assert (store.spent("job"), store.uncertain("job")) == (40, 0)
    store.release(late_release)  # twice is harmless
    assert store.spent("job") == 40


def test_a_commit_at_an_estimate_counts_as_uncertain(store: BudgetStore) -> None:
    held = store.reserve("job", "m", 90, None, 60).reservation
    assert held is not None
    assert store.commit(held, 90, False, True) == 90
    assert (store.spent("job"), store.uncertain("job"), store.mean_cost("m")) == (90, 90, None)


@pytest.mark.redis
def test_redis_namespaces_do_not_share(redis_url: str) -> None:
    a = RedisBudgetStore.from_url(redis_url, namespace="ns-a")
    b = RedisBudgetStore.from_url(redis_url, namespace="ns-b")
    res = a.reserve("s", "m", 5, None, 60).reservation
    assert res is not None
    a.commit(res, 5, True)
    assert (a.spent("s"), b.spent("s")) == (5, 0)


def test_redis_store_config_errors_are_clear() -> None:
    with pytest.raises(NeboConfigurationError, match="redis://"):
        RedisBudgetStore.from_url("http://127.0.0.1:6379")
    with pytest.raises(NeboConfigurationError, match="namespace"):
        RedisBudgetStore.from_url("redis://127.0.0.1:1/0", namespace="bad name")


def test_redis_store_repr_hides_the_url_password() -> None:
    store = RedisBudgetStore.from_url("redis://:hunter2-SECRET@127.0.0.1:1/0", namespace="x")
    assert "SECRET" not in repr(store)
    assert "x" in repr(store)


def test_snapshot_codec_round_trips() -> None:
    s = snap(123, T0)
    assert decode_snapshot(encode_snapshot(s)) == s
    empty = BudgetSnapshot(observed_at=T0)
    assert decode_snapshot(encode_snapshot(empty)) == empty


def test_an_unreachable_cluster_is_a_typed_store_error_not_a_redis_exception() -> None:
    pytest.importorskip("redis")
    from nebo_core.errors import NeboStoreError
    from nebo_core.stores import RedisBudgetStore

    with pytest.raises(NeboStoreError, match="Redis Cluster cannot be connected"):
        RedisBudgetStore.from_url("redis://127.0.0.1:1/0", cluster=True, socket_connect_timeout=0.5)
