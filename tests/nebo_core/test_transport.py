"""``NeboTransport`` mounted in a plain httpx client: the same engine as ``NeboClient``."""

from __future__ import annotations

from typing import Any

import httpx

from nebo_core import AsyncNeboTransport, BudgetPolicy, BudgetTracker, NeboTransport

BODY = {
    "model": "gpt-5-mini",
    "messages": [{"role": "user", "content": "Context: it is 7.\nQuestion: what is it?"}],
}


def test_a_plain_httpx_client_gets_auth_records_and_caps(nebo_emulator: Any) -> None:
    tracker = BudgetTracker()
    policy = BudgetPolicy(max_spend_micro=1, estimate_micro=1)
    transport = NeboTransport(
        api_key=nebo_emulator.token, base_url=nebo_emulator.base_url, tracker=tracker, policy=policy
    )
    with httpx.Client(transport=transport, base_url=nebo_emulator.base_url) as http:
        first = http.post("/chat/completions", json=BODY, headers={"X-Nebo-Scope": "job"})
        assert first.status_code == 200
        assert first.json()["choices"][0]["message"]["content"]
        before = nebo_emulator.requests
        refused = http.post("/chat/completions", json=BODY, headers={"X-Nebo-Scope": "job"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "BUDGET_CAP_REACHED"
    assert nebo_emulator.requests == before  # refused before sending
    [record] = tracker.history()
    assert record.cost_micro == nebo_emulator.ledger_total_micro()
    assert record.scope == "job"
    assert policy.spent_micro("job") == record.cost_micro


async def test_the_async_transport_streams_repaired_sse(nebo_emulator: Any) -> None:
    tracker = BudgetTracker()
    transport = AsyncNeboTransport(
        api_key=nebo_emulator.token, base_url=nebo_emulator.base_url, tracker=tracker, policy=BudgetPolicy()
    )
    async with httpx.AsyncClient(transport=transport, base_url=nebo_emulator.base_url) as http:
        async with http.stream("POST", "/chat/completions", json={**BODY, "stream": True}) as response:
            lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    [record] = tracker.history()
    assert record.streamed
    assert record.cost_micro == nebo_emulator.ledger_total_micro()
