"""One conformance suite for every budget store: in-memory, Redis standalone, a real 3-node Redis
Cluster. A Hypothesis state machine drives each store with random reserve / commit / release /
expire / double-settle / period-roll sequences and checks it against a plain model after every
step: spend, holds and uncertain charges per line, which reservations are granted, and the
listing of every line (``lines()``, sync and async)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from nebo_core.caps import CapLine
from nebo_core.stores import BudgetStore, InMemoryBudgetStore, LineUsage, RedisBudgetStore, Reservation

ORGS = ("org=a", "org=b")
CAPS = {"org=a": 300, "org=b": None}
"""Two parent lines (one capped, one not); each call also holds a child line per period."""


@dataclass
class Held:
    reservation: Reservation
    keys: tuple[str, ...]
    amount: int
    expired: bool = False


@dataclass
class Model:
    spent: dict[str, int] = field(default_factory=dict)
    uncertain: dict[str, int] = field(default_factory=dict)
    live: dict[str, Held] = field(default_factory=dict)
    gone: dict[str, Held] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    caps: dict[str, int | None] = field(default_factory=dict)
    """Every line reserved against -> the cap of the last attempt."""

    def reserved(self, key: str) -> int:
        return sum(h.amount for h in self.live.values() if key in h.keys)

    def in_flight(self, key: str) -> int:
        return sum(1 for h in self.live.values() if key in h.keys)

    def lines(self) -> list[LineUsage]:
        return [
            LineUsage(
                key,
                self.spent.get(key, 0),
                self.reserved(key),
                self.in_flight(key),
                self.uncertain.get(key, 0),
                cap,
            )
            for key, cap in sorted(self.caps.items())
        ]

    def add(self, keys: tuple[str, ...], amount: int, *, uncertain: bool) -> None:
        for key in keys:
            self.spent[key] = self.spent.get(key, 0) + amount
            if uncertain:
                self.uncertain[key] = self.uncertain.get(key, 0) + amount


def machine(make_store: Callable[[], BudgetStore], *, close: bool = True) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        held = Bundle("held")

        def __init__(self) -> None:
            super().__init__()
            self.store = make_store()
            self.model = Model()
            self.period = 0
            self.keys: set[str] = set(ORGS)

        def teardown(self) -> None:
            if close:
                getattr(self.store, "close", lambda: None)()

        def lines(self, org: str, child_cap: int | None) -> list[CapLine]:
            child = f"{org}/user=u@day:{self.period}"
            self.keys.add(child)
            return [CapLine(org, CAPS[org]), CapLine(child, child_cap)]

        @rule(
            target=held,
            org=st.sampled_from(ORGS),
            amount=st.integers(0, 120),
            child_cap=st.one_of(st.none(), st.integers(0, 200)),
            expires=st.booleans(),
        )
        def reserve(self, org: str, amount: int, child_cap: int | None, expires: bool) -> Any:
            lines = self.lines(org, child_cap)
            self.expire_model()
            fits = all(
                line.cap_micro is None
                or self.model.spent.get(line.key, 0) + self.model.reserved(line.key) + amount
                <= line.cap_micro
                for line in lines
            )
            result = self.store.reserve_lines(lines, "m", amount, 0.0 if expires else 600.0)
            self.model.caps.update((line.key, line.cap_micro) for line in lines)
            assert (result.reservation is not None) == fits, (lines, amount, self.model)
            if result.reservation is None:
                return None
            held = Held(result.reservation, tuple(line.key for line in lines), amount, expired=expires)
            self.model.live[result.reservation.id] = held
            return held

        def expire_model(self) -> None:
            """Zero-TTL holds are charged at the store's next step: the model charges them now."""
            for rid, held in list(self.model.live.items()):
                if held.expired:
                    del self.model.live[rid]
                    self.model.add(held.keys, held.amount, uncertain=True)
                    self.model.gone[rid] = held

        @rule(held=consumes(held), cost=st.integers(0, 150), estimated=st.booleans())
        def commit(self, held: Held | None, cost: int, estimated: bool) -> None:
            if held is None:
                return
            self.expire_model()
            self.store.commit(held.reservation, cost, True, estimated)
            self.settle(held, cost, estimated)
            self.store.commit(held.reservation, cost, True, estimated)  # settled twice: counts once

        @rule(held=consumes(held))
        def release(self, held: Held | None) -> None:
            if held is None:
                return
            self.expire_model()
            self.store.release(held.reservation)
            self.settle(held, None, False)

        def settle(self, held: Held, cost: int | None, estimated: bool) -> None:
            rid = held.reservation.id
            if rid in self.model.done:
                return
            self.model.done.add(rid)
            self.model.live.pop(rid, None)
            if rid in self.model.gone:  # its expiry was charged: take that back
                del self.model.gone[rid]
                self.model.add(held.keys, -held.amount, uncertain=True)
            if cost is not None:
                self.model.add(held.keys, cost, uncertain=estimated)

        @rule()
        def roll_period(self) -> None:
            self.period += 1  # a new calendar period: new child keys, from zero

        @invariant()
        def matches_the_model(self) -> None:
            self.expire_model()
            for key in sorted(self.keys):
                got = (self.store.spent(key), self.store.reserved(key), self.store.uncertain(key))
                want = (
                    self.model.spent.get(key, 0),
                    self.model.reserved(key),
                    self.model.uncertain.get(key, 0),
                )
                assert got == want, (key, got, want)

        @invariant()
        def lists_every_line(self) -> None:
            self.expire_model()
            assert self.store.lines() == self.model.lines()

        @rule()
        def lists_every_line_async(self) -> None:
            self.expire_model()
            assert asyncio.run(self.store.alines()) == self.model.lines()

    return StoreMachine


RUNS = settings(
    max_examples=20,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("kind", ["memory", "redis", "cluster"])
def test_every_store_behaves_like_the_model(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "memory":
        run_state_machine_as_test(machine(InMemoryBudgetStore), settings=RUNS)
        return
    url = request.getfixturevalue("redis_url" if kind == "redis" else "redis_cluster")
    # One client for the whole run (each example gets a fresh namespace on it), closed at the end.
    import redis
    import redis.cluster

    client = redis.cluster.RedisCluster.from_url(url) if kind == "cluster" else redis.Redis.from_url(url)

    def make() -> BudgetStore:
        return RedisBudgetStore(client, namespace=f"conf-{uuid.uuid4().hex[:8]}")

    try:
        run_state_machine_as_test(machine(make, close=False), settings=RUNS)
    finally:
        RedisBudgetStore(client, namespace="conformance").close()  # closes the client, cluster nodes too


@pytest.mark.parametrize("kind", ["memory", "redis", "cluster"])
def test_rolling_and_held_lines_are_listed_alike(kind: str, request: pytest.FixtureRequest) -> None:
    """``lines()`` after the same steps, on a rolling line too (its buckets are a key of their own,
    in the namespace's slot on a Cluster)."""
    if kind == "memory":
        store: BudgetStore = InMemoryBudgetStore()
    else:
        url = request.getfixturevalue("redis_url" if kind == "redis" else "redis_cluster")
        store = RedisBudgetStore.from_url(
            url, namespace=f"lines-{uuid.uuid4().hex[:8]}", cluster=kind == "cluster"
        )
    try:
        rolling = [CapLine("org=a", 1000), CapLine("org=a/user=u@last:3600", 100, 3600.0)]
        first = store.reserve_lines(rolling, "m", 30, 600.0).reservation
        second = store.reserve_lines(rolling, "m", 20, 600.0).reservation
        assert first is not None
        assert second is not None
        assert store.reserve_lines(rolling, "m", 60, 600.0).reservation is None  # 50 held + 60 > 100
        store.commit(first, 25, True, estimated=True)
        assert store.lines() == [
            LineUsage("org=a", 25, 20, 1, 25, 1000),
            LineUsage("org=a/user=u@last:3600", 25, 20, 1, 25, 100),
        ]
        store.release(second)
        assert asyncio.run(store.alines())[1] == LineUsage("org=a/user=u@last:3600", 25, 0, 0, 25, 100)
        store.reset()
        assert store.lines() == []
    finally:
        getattr(store, "close", lambda: None)()
