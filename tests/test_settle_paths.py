"""Settlements sent behind hold on every path: each governed call (chat and embeddings, sync and
async, native, the openai SDK and a ``with_retry`` wrapper) settles through the Redis store's
queue, its call still holding its estimate in Redis until the batch goes, and a read through
the policy then finds the store's spend equal to the emulator's ledger, nothing held.

The paths are the pacing suite's (``tests/test_pacing_paths.py``): two calls each.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from nebo_core import BudgetPolicy, Cap
from nebo_core.stores import RedisBudgetStore
from tests.test_pacing_paths import PATHS

ESTIMATE = 10**6


@pytest.mark.redis
@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_settles_behind_and_loses_nothing(
    path: str, emu: Any, tracker: Any, redis_url: str
) -> None:
    namespace = f"paths-{uuid.uuid4().hex[:8]}"
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace, settle_within_s=60.0)
    policy = BudgetPolicy(
        caps=[Cap("org", 10**12)], scope={"org": "acme"}, store=store, estimate_micro=ESTIMATE
    )
    conn = {"api_key": emu.token, "base_url": emu.base_url, "tracker": tracker, "policy": policy}
    try:
        PATHS[path](conn)
        assert len(emu.ledger) == 2
        admin = redis.Redis.from_url(redis_url)
        spent, reserved = (
            int(v or 0) for v in admin.hmget(f"{{{namespace}}}:lines", "s:org=acme", "r:org=acme")
        )
        queued = len(store._settles)
        # Each call is settled, or queued with its estimate still held (a client's close sends them).
        assert reserved == queued * ESTIMATE
        assert spent <= emu.ledger_total_micro()
        assert policy.spent_micro({"org": "acme"}) == emu.ledger_total_micro()  # a read sends them first
        assert admin.hmget(f"{{{namespace}}}:lines", "r:org=acme") == [b"0"]
        admin.close()
    finally:
        store.close()
