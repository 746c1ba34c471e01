"""100 concurrent requests (plain, streamed, embeddings): every charge recorded once, nothing lost."""

from __future__ import annotations

import json
import ssl
from concurrent.futures import ThreadPoolExecutor

import httpx

from nebo_emulator import NeboEmulator

TLS = ssl.create_default_context()


def one(c: httpx.Client, i: int) -> tuple[str, int]:
    """Send request ``i``; return its request id and the cost the client saw."""
    content = f"Question number {i}: what is {i} plus {i}?"
    if i % 3 == 0:
        response = c.post(
            "/embeddings", json={"model": "neboloop/nebo-embed-small", "input": [content] * (i % 4 + 1)}
        )
        return response.headers["x-request-id"], int(response.json()["usage"]["cost_micro"])
    body = {"model": "auto", "messages": [{"role": "user", "content": content}]}
    if i % 3 == 1:
        response = c.post("/chat/completions", json=body)
        return response.headers["x-request-id"], int(response.json()["usage"]["cost_micro"])
    with c.stream("POST", "/chat/completions", json={**body, "stream": True}) as s:
        last = [line for line in s.iter_lines() if line][-1]
        return s.headers["x-request-id"], int(json.loads(last[len("data: ") :])["usage"]["cost_micro"])


def test_a_hundred_concurrent_requests_keep_the_ledger_consistent(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.set_budget(free_micro=200, gift_micro=100)  # pools switch over mid-burst
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    headers = {"Authorization": f"Bearer {nebo_emulator.token}"}
    with httpx.Client(base_url=nebo_emulator.base_url, headers=headers, limits=limits, verify=TLS) as c:
        with ThreadPoolExecutor(max_workers=32) as pool:
            seen = list(pool.map(lambda i: one(c, i), range(100)))
        usage = c.get("/usage").json()
    ledger = nebo_emulator.ledger
    assert len(ledger) == 100
    assert sorted(rid for rid, _ in seen) == sorted(e.request_id for e in ledger)
    assert sum(cost for _, cost in seen) == nebo_emulator.ledger_total_micro()
    by_id = {e.request_id: e.cost_micro for e in ledger}
    assert all(by_id[rid] == cost for rid, cost in seen)
    plan_spent = sum(e.cost_micro for e in ledger if e.pool == "plan")
    assert usage["all_models"]["session_used"] == plan_spent
    assert usage["grants"] == {"free_available": 0, "gift_available": 0}
    pools = [e.pool for e in ledger]  # drawn strictly in order, never back to an emptied pool
    assert pools == sorted(pools, key=["free", "gift", "plan", "credits"].index)
    assert nebo_emulator.requests == 101
