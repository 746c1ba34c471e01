"""Budget accounting (nebo-api.md section 10): rolling windows, pool order, headers, the ledger."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from nebo_core.models import get_model
from nebo_emulator import EmulatorClock, NeboEmulator

TLS = ssl.create_default_context()
Factory = Callable[..., NeboEmulator]
CHAT = {"model": "gpt-5-nano", "messages": [{"role": "user", "content": "Hello"}]}
START = datetime(2026, 4, 3, 5, 0, 0, tzinfo=timezone.utc)


def client(emu: NeboEmulator) -> httpx.Client:
    return httpx.Client(base_url=emu.base_url, headers={"Authorization": f"Bearer {emu.token}"}, verify=TLS)


def chat(emu: NeboEmulator, body: dict[str, object] | None = None) -> httpx.Response:
    with client(emu) as c:
        return c.post("/chat/completions", json=body or CHAT)


def remaining(response: httpx.Response) -> tuple[int, int]:
    h = response.headers
    return int(h["x-ratelimit-session-remaining-credits"]), int(h["x-ratelimit-weekly-remaining-credits"])


@pytest.fixture
def emu(nebo_emulator_factory: Factory) -> NeboEmulator:
    return nebo_emulator_factory(clock=EmulatorClock(START))


def test_cost_is_priced_from_the_model_table(emu: NeboEmulator) -> None:
    response = chat(emu)
    usage = response.json()["usage"]
    spec = get_model("gpt-5-nano")
    assert spec is not None
    assert usage["cost_micro"] == spec.cost_micro(usage["prompt_tokens"], usage["completion_tokens"])
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    entry = emu.ledger[0]
    assert (entry.cost_micro, entry.pool, entry.endpoint, entry.streamed) == (
        usage["cost_micro"],
        "plan",
        "chat",
        False,
    )
    assert (entry.prompt_tokens, entry.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert entry.at == START
    assert emu.ledger_total_micro() == usage["cost_micro"]


def test_a_premium_model_costs_tens_of_times_a_nano_one(emu: NeboEmulator) -> None:
    nano = chat(emu).json()["usage"]["cost_micro"]
    premium = chat(emu, {**CHAT, "model": "gpt-5.2"}).json()["usage"]["cost_micro"]
    assert premium >= 20 * nano


def test_plain_response_headers_show_the_state_after_the_charge(emu: NeboEmulator) -> None:
    response = chat(emu)
    cost = response.json()["usage"]["cost_micro"]
    assert remaining(response) == (10_000_000 - cost, 50_000_000 - cost)
    assert response.headers["x-ratelimit-session-limit-credits"] == "10000000"
    assert response.headers["x-ratelimit-weekly-limit-credits"] == "50000000"
    assert response.headers["x-ratelimit-session-reset"] == "2026-04-03T10:00:00Z"
    assert response.headers["x-ratelimit-weekly-reset"] == "2026-04-10T05:00:00Z"


def test_reset_is_when_the_oldest_charge_drops_out(emu: NeboEmulator) -> None:
    chat(emu)
    emu.clock.advance(3600)
    response = chat(emu)
    assert response.headers["x-ratelimit-session-reset"] == "2026-04-03T10:00:00Z"
    emu.clock.advance(4 * 3600 + 1)  # the first charge has left the session window
    with client(emu) as c:
        usage = c.get("/usage").json()["all_models"]
    assert usage["session_used"] == emu.ledger[1].cost_micro
    assert usage["session_reset_seconds"] == 3600 - 1
    assert usage["weekly_used"] == emu.ledger_total_micro()


def test_session_window_exhausts_then_recovers_with_the_clock(emu: NeboEmulator) -> None:
    emu.set_budget(session_remaining_micro=3)
    funded = chat(emu)  # something left: served, charged in full, the window clamps at 0
    assert funded.status_code == 200
    assert remaining(funded)[0] == 0
    refused = chat(emu)
    assert refused.status_code == 429
    assert refused.json() == {
        "error": {
            "message": refused.json()["error"]["message"],
            "type": "insufficient_quota",
            "param": None,
            "code": "USAGE_LIMIT_EXCEEDED",
        }
    }
    assert refused.headers["x-ratelimit-session-remaining-credits"] == "0"
    assert len(emu.ledger) == 1
    emu.clock.advance(5 * 3600 - 1)
    assert chat(emu).status_code == 429
    emu.clock.advance(1)
    recovered = chat(emu)
    assert recovered.status_code == 200
    assert remaining(recovered)[0] == 10_000_000 - recovered.json()["usage"]["cost_micro"]


def test_weekly_window_blocks_even_when_the_session_recovers(emu: NeboEmulator) -> None:
    emu.set_budget(weekly_remaining_micro=0)
    assert chat(emu).status_code == 429
    emu.clock.advance(5 * 3600)
    blocked = chat(emu)
    assert blocked.status_code == 429
    assert remaining(blocked) == (10_000_000, 0)
    emu.clock.advance(7 * 86400 - 5 * 3600)
    assert chat(emu).status_code == 200


def test_pools_are_drawn_free_gift_plan_credits(nebo_emulator_factory: Factory) -> None:
    emu = nebo_emulator_factory(free_micro=5, gift_micro=5, credits_cents=1)
    pools = []
    for _ in range(2):
        response = chat(emu)
        pools.append(response.headers["x-budget-active-pool"])
    assert pools == ["free", "gift"]
    third = chat(emu)
    assert third.headers["x-budget-active-pool"] == "plan"
    assert third.headers["x-budget-free-available"] == "0"
    assert third.headers["x-budget-gift-available"] == "0"
    emu.set_budget(session_remaining_micro=0)
    credits = chat(emu)
    assert credits.headers["x-budget-active-pool"] == "credits"
    assert [e.pool for e in emu.ledger] == ["free", "gift", "plan", "credits"]
    # 1 cent = 10,000 micro; what is left shows in whole cents.
    assert credits.headers["x-budget-credits-cents"] == "0"
    with client(emu) as c:
        assert c.get("/usage").json()["credits"]["balance_cents"] == 0
    emu.set_budget(credits_cents=0)
    assert chat(emu).status_code == 429


def test_the_free_pool_is_charged_in_full_and_clamped(nebo_emulator_factory: Factory) -> None:
    emu = nebo_emulator_factory(free_micro=1)
    response = chat(emu, {**CHAT, "model": "gpt-5.2"})
    assert response.headers["x-budget-active-pool"] == "free"
    assert response.headers["x-budget-free-available"] == "0"
    assert emu.ledger[0].cost_micro > 1
    assert remaining(response) == (10_000_000, 50_000_000)


def test_stream_headers_show_the_budget_before_the_charge(emu: NeboEmulator) -> None:
    with client(emu) as c, c.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as s:
        assert remaining(s) == (10_000_000, 50_000_000)
        s.read()
    assert emu.ledger[0].streamed
    with client(emu) as c:
        after = c.get("/models")
    assert remaining(after)[0] == 10_000_000 - emu.ledger[0].cost_micro


def test_usage_endpoint_has_the_documented_shape(nebo_emulator_factory: Factory) -> None:
    emu = nebo_emulator_factory(gift_micro=750_000, credits_cents=1200, clock=EmulatorClock(START))
    emu.set_budget(session_remaining_micro=8_750_000, weekly_remaining_micro=41_600_000)
    with client(emu) as c:
        body = c.get("/usage").json()
    assert body == {
        "plan": "plus",
        "all_models": {
            "session_used": 1_250_000,
            "session_limit": 10_000_000,
            "session_reset_seconds": 18_000,
            "weekly_used": 8_400_000,
            "weekly_limit": 50_000_000,
            "weekly_reset_seconds": 604_800,
        },
        "grants": {"free_available": 0, "gift_available": 750_000},
        "credits": {"balance_cents": 1200},
    }


def test_usage_and_models_are_free(emu: NeboEmulator) -> None:
    with client(emu) as c:
        c.get("/usage")
        c.get("/models")
    assert emu.ledger == []


def test_exhausted_budget_refuses_embeddings_too(emu: NeboEmulator) -> None:
    emu.set_budget(session_remaining_micro=0)
    with client(emu) as c:
        response = c.post("/embeddings", json={"model": "neboloop/nebo-embed-small", "input": "x"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "USAGE_LIMIT_EXCEEDED"


def test_set_budget_leaves_the_ledger_alone_and_recovers_like_a_charge(emu: NeboEmulator) -> None:
    chat(emu)
    emu.set_budget(session_remaining_micro=100, weekly_remaining_micro=200)
    with client(emu) as c:
        usage = c.get("/usage").json()["all_models"]
    assert (usage["session_used"], usage["weekly_used"]) == (9_999_900, 49_999_800)
    assert len(emu.ledger) == 1
    emu.clock.advance(timedelta(hours=5).total_seconds())
    with client(emu) as c:
        assert c.get("/usage").json()["all_models"]["session_used"] == 0


def test_every_request_shares_one_account_whatever_the_token(emu: NeboEmulator) -> None:
    other = emu.make_token(plan="pro", sub="someone-else")
    with httpx.Client(base_url=emu.base_url, headers={"Authorization": f"Bearer {other}"}, verify=TLS) as c:
        c.post("/chat/completions", json=CHAT)
    response = chat(emu)
    assert remaining(response)[0] == 10_000_000 - emu.ledger_total_micro()
