"""Bearer authentication: JWT-shaped tokens, the fixed test token, expiry over the emulator clock."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from nebo_emulator import NeboEmulator

TLS = ssl.create_default_context()
Factory = Callable[..., NeboEmulator]


def get_usage(emu: NeboEmulator, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    with httpx.Client(base_url=emu.base_url, verify=TLS) as c:
        return c.get("/usage", headers=headers)


def claims_of(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_the_fixed_token_is_a_jwt_with_the_documented_claims(nebo_emulator: NeboEmulator) -> None:
    claims = claims_of(nebo_emulator.token)
    assert {"sub", "email", "plan", "exp"} <= set(claims)
    assert claims["plan"] == "plus"
    assert get_usage(nebo_emulator, f"Bearer {nebo_emulator.token}").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt", "Bearer a.b.c", "Token abc.def.ghi"],
)
def test_missing_or_bad_credentials_are_401(nebo_emulator: NeboEmulator, authorization: str | None) -> None:
    response = get_usage(nebo_emulator, authorization)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert error["type"] in {"invalid_request_error", "authentication_error"}
    assert error["message"]
    assert "x-ratelimit-session-remaining-credits" in response.headers


def test_any_jwt_shaped_token_is_accepted_by_default(nebo_emulator: NeboEmulator) -> None:
    other = NeboEmulator().make_token(plan="pro")  # minted elsewhere: unknown to this emulator
    assert get_usage(nebo_emulator, f"Bearer {other}").status_code == 200


def test_bearer_scheme_is_case_insensitive(nebo_emulator: NeboEmulator) -> None:
    assert get_usage(nebo_emulator, f"bearer {nebo_emulator.token}").status_code == 200


def test_accept_any_jwt_off_limits_to_known_tokens(nebo_emulator_factory: Factory) -> None:
    emu = nebo_emulator_factory(accept_any_jwt=False, tokens=["sk-ci-secret"])
    stranger = NeboEmulator().make_token()
    assert get_usage(emu, f"Bearer {stranger}").status_code == 401
    assert get_usage(emu, f"Bearer {emu.token}").status_code == 200
    assert get_usage(emu, "Bearer sk-ci-secret").status_code == 200
    assert get_usage(emu, f"Bearer {emu.make_token(plan='team')}").status_code == 200


def test_an_expired_token_is_401_saying_so(nebo_emulator: NeboEmulator) -> None:
    now = int(nebo_emulator.clock.now().timestamp())
    token = nebo_emulator.make_token(exp=now + 60)
    assert get_usage(nebo_emulator, f"Bearer {token}").status_code == 200
    nebo_emulator.clock.advance(61)
    response = get_usage(nebo_emulator, f"Bearer {token}")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]
    assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("claim", ["plan", "plan_tier"])
def test_plan_comes_from_the_token_claims(nebo_emulator: NeboEmulator, claim: str) -> None:
    claims: dict[str, Any] = {claim: "pro"}
    token = nebo_emulator.make_token(**claims)
    assert get_usage(nebo_emulator, f"Bearer {token}").json()["plan"] == "pro"
    plain = nebo_emulator.make_token()
    assert get_usage(nebo_emulator, f"Bearer {plain}").json()["plan"] == "plus"


def test_auth_failures_are_not_charged(nebo_emulator: NeboEmulator) -> None:
    with httpx.Client(base_url=nebo_emulator.base_url, verify=TLS) as c:
        response = c.post(
            "/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "x"}]}
        )
    assert response.status_code == 401
    assert nebo_emulator.ledger == []
    assert nebo_emulator.requests == 1
