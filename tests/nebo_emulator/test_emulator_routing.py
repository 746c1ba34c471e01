"""Model resolution: direct ids, nebo-1 aliases, ``auto`` routing by content and plan, unknown models."""

from __future__ import annotations

import ssl

import httpx
import pytest

from nebo_emulator import NeboEmulator
from nebo_emulator._routing import complexity, route

TLS = ssl.create_default_context()
LONG = "The quarterly report covers revenue, churn and hiring in every region. " * 40
MEDIUM = (
    "Please write a friendly note to my neighbour thanking them for watering the plants while we were "
    "away on holiday, and mention that we brought them a small gift from the coast. Keep it warm and short, "
    "and sign it from all of us."
)


def chat(emu: NeboEmulator, model: str, content: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or emu.token}"}
    with httpx.Client(base_url=emu.base_url, headers=headers, verify=TLS) as c:
        return c.post(
            "/chat/completions", json={"model": model, "messages": [{"role": "user", "content": content}]}
        )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("Hi there!", "gpt-5-nano"),
        (MEDIUM, "gpt-5-mini"),
        (LONG, "gpt-5.2"),
        ("Debug this function for me", "gpt-5.2"),
        ("Prove that there are infinitely many primes.", "gpt-5.2"),
        ("Explain step by step how tides work.", "gpt-5.2"),
        ("```print(1)```", "gpt-5.2"),
        ("Analyze the trend.", "gpt-5.2"),
    ],
)
@pytest.mark.parametrize("model", ["auto", "", "nebo-1"])
def test_auto_routes_by_content(nebo_emulator: NeboEmulator, model: str, content: str, expected: str) -> None:
    response = chat(nebo_emulator, model, content)
    assert response.status_code == 200
    assert response.json()["model"] == expected
    entry = nebo_emulator.ledger[-1]
    assert (entry.requested_model, entry.model) == (model, expected)


def test_flash_routes_cheap_and_pro_routes_premium(nebo_emulator: NeboEmulator) -> None:
    assert chat(nebo_emulator, "nebo-1-flash", "Hi").json()["model"] == "gpt-5-nano"
    assert chat(nebo_emulator, "nebo-1-flash", LONG).json()["model"] == "gpt-5-mini"
    assert chat(nebo_emulator, "nebo-1-pro", "Hi").json()["model"] == "gpt-5.2"


@pytest.mark.parametrize("model", ["gpt-5.2", "gpt-5-nano", "gpt-5-mini", "deepseek.v3.2", "qwen.qwen3-32b"])
def test_a_direct_model_is_served_as_asked(nebo_emulator: NeboEmulator, model: str) -> None:
    response = chat(nebo_emulator, model, LONG)
    assert response.json()["model"] == model


def test_a_free_plan_never_routes_to_premium(nebo_emulator: NeboEmulator) -> None:
    free = nebo_emulator.make_token(plan="free")
    assert chat(nebo_emulator, "auto", LONG, token=free).json()["model"] == "gpt-5-mini"
    # Direct selection bypasses tier gating (nebo-api.md section 12).
    assert chat(nebo_emulator, "gpt-5.2", LONG, token=free).json()["model"] == "gpt-5.2"


def test_an_unknown_model_gets_openais_404(nebo_emulator: NeboEmulator) -> None:
    response = chat(nebo_emulator, "gpt-9", "Hi")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `gpt-9` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert nebo_emulator.ledger == []


def test_an_embedding_model_cannot_chat(nebo_emulator: NeboEmulator) -> None:
    response = chat(nebo_emulator, "neboloop/nebo-embed-small", "Hi")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


def test_route_is_pure_and_table_driven() -> None:
    assert complexity("hi") == "nano"
    assert complexity("x" * 2001) == "premium"
    spec = route("auto", "hi", "plus")
    assert spec is not None
    assert spec.tier == "nano"
    assert route("nope", "hi", "plus") is None
    assert route("text-embedding-3-small", "hi", "plus") is None
