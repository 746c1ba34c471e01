"""Tests for nebo_core.settings: env reading, the loopback rule, JWT claims, validation."""

from __future__ import annotations

import base64
import json
import pickle
import re
import time
from typing import Any

import pytest

from nebo_core.errors import NeboAuthenticationError, NeboConfigurationError
from nebo_core.settings import DEFAULT_BASE_URL, NeboSettings, Secret, decode_token_claims, is_loopback

KEY = "tok-SECRET-123"


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_key_and_url_come_from_injected_environ() -> None:
    s = NeboSettings.resolve(environ={"NEBO_API_KEY": KEY, "NEBO_BASE_URL": "https://example.test/v1/"})
    assert s.api_key.get_secret_value() == KEY
    assert s.base_url == "https://example.test/v1"


def test_defaults() -> None:
    s = NeboSettings.resolve(environ={"NEBO_API_KEY": KEY})
    assert s.base_url == DEFAULT_BASE_URL == "https://janus.neboloop.com/v1"
    assert s.max_retries == 2
    assert s.timeout == 300.0


def test_argument_beats_environment() -> None:
    s = NeboSettings.resolve(api_key="arg-key", environ={"NEBO_API_KEY": KEY})
    assert s.api_key.get_secret_value() == "arg-key"


def test_openai_api_key_is_never_used() -> None:
    with pytest.raises(NeboConfigurationError, match="NEBO_API_KEY"):
        NeboSettings.resolve(environ={"OPENAI_API_KEY": "sk-openai"})


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_key_is_missing(value: str) -> None:
    with pytest.raises(NeboConfigurationError, match="NEBO_API_KEY"):
        NeboSettings.resolve(environ={"NEBO_API_KEY": value})


def test_bearer_prefix_is_stripped() -> None:
    assert NeboSettings.resolve(api_key="Bearer abc", environ={}).api_key.get_secret_value() == "abc"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/v1", "http://localhost:1/v1", "http://[::1]:9/v1", "http://a.localhost/v1"],
)
def test_plain_http_allowed_on_loopback(url: str) -> None:
    s = NeboSettings.resolve(api_key=KEY, base_url=url, environ={})
    assert s.is_local


@pytest.mark.parametrize(
    "url", ["http://janus.neboloop.com/v1", "http://10.0.0.1/v1", "http://127.example.com"]
)
def test_plain_http_to_remote_host_refused(url: str) -> None:
    with pytest.raises(NeboConfigurationError, match="https://"):
        NeboSettings.resolve(api_key=KEY, base_url=url, environ={})


@pytest.mark.parametrize("url", ["ftp://x/v1", "janus.neboloop.com", "https://"])
def test_non_http_urls_refused(url: str) -> None:
    with pytest.raises(NeboConfigurationError, match="NEBO_BASE_URL"):
        NeboSettings.resolve(api_key=KEY, base_url=url, environ={})


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_jwt_claims_decoded() -> None:
    exp = int(time.time()) + 3600
    s = NeboSettings.resolve(
        api_key=jwt({"sub": "u1", "email": "a@b.c", "plan_tier": "plus", "exp": exp}), environ={}
    )
    assert s.plan == "plus"
    assert s.claims is not None
    assert s.claims.subject == "u1"
    assert s.claims.email == "a@b.c"
    assert s.claims.expires_at is not None
    assert int(s.claims.expires_at.timestamp()) == exp


def test_jwt_plan_claim_alternative_name() -> None:
    assert NeboSettings.resolve(api_key=jwt({"plan": "free"}), environ={}).plan == "free"


def test_expired_jwt_fails_fast() -> None:
    token = jwt({"exp": int(time.time()) - 10})
    with pytest.raises(NeboAuthenticationError, match="expired") as info:
        NeboSettings.resolve(api_key=token, environ={})
    assert token not in str(info.value)
    assert "NEBO_API_KEY" in str(info.value)


def test_expiry_check_can_be_skipped() -> None:
    s = NeboSettings.resolve(api_key=jwt({"exp": 1}), environ={}, check_expiry=False)
    assert s.claims is not None
    assert s.claims.expired()


@pytest.mark.parametrize(
    "token", ["plain-opaque-token", "a.b.c", "x..y", "a.!!!.c", f"a.{base64.b64encode(b'[1]').decode()}.c"]
)
def test_non_jwt_token_used_as_is(token: str) -> None:
    s = NeboSettings.resolve(api_key=token, environ={})
    assert s.api_key.get_secret_value() == token
    assert s.claims is None
    assert s.plan is None


def test_jwt_with_garbage_exp_has_no_expiry() -> None:
    claims = decode_token_claims(jwt({"exp": "tomorrow", "plan_tier": 3}))
    assert claims is not None
    assert claims.expires_at is None
    assert claims.plan is None
    assert not claims.expired()


@pytest.mark.parametrize("lane", ["main", "events", "subagent", "heartbeat", "comm"])
def test_valid_lanes(lane: str) -> None:
    assert NeboSettings.resolve(api_key=KEY, lane=lane, environ={}).lane == lane


def test_lane_from_env_is_validated() -> None:
    with pytest.raises(NeboConfigurationError, match="lane must be one of"):
        NeboSettings.resolve(environ={"NEBO_API_KEY": KEY, "NEBO_LANE": "fast"})


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"NEBO_TIMEOUT": "soon"}, "timeout"),
        ({"NEBO_TIMEOUT": "-1"}, "timeout"),
        ({"NEBO_TIMEOUT": "nan"}, "timeout"),
        ({"NEBO_MAX_RETRIES": "two"}, "max_retries"),
        ({"NEBO_MAX_RETRIES": "-3"}, "max_retries"),
    ],
)
def test_bad_numbers_are_named(env: dict[str, str], match: str) -> None:
    with pytest.raises(NeboConfigurationError, match=match):
        NeboSettings.resolve(environ={"NEBO_API_KEY": KEY, **env})


def test_optional_fields_from_env() -> None:
    s = NeboSettings.resolve(
        environ={
            "NEBO_API_KEY": KEY,
            "NEBO_PROVIDER_API_KEY": "sk-ant-1",
            "NEBO_BOT_ID": "bot-1",
            "NEBO_PURPOSE": "chat",
            "NEBO_TIMEOUT": "12.5",
            "NEBO_MAX_RETRIES": "0",
        }
    )
    assert s.provider_api_key is not None
    assert s.provider_api_key.get_secret_value() == "sk-ant-1"
    assert (s.bot_id, s.purpose, s.timeout, s.max_retries) == ("bot-1", "chat", 12.5, 0)


def test_secret_hides_itself() -> None:
    secret = Secret(KEY)
    assert KEY not in repr(secret)
    assert KEY not in str(secret)
    assert KEY not in f"{secret}"
    assert secret == Secret(KEY)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)


def test_settings_repr_hides_keys() -> None:
    s = NeboSettings.resolve(api_key=KEY, provider_api_key="sk-SECRET-provider", environ={})
    assert KEY not in repr(s)
    assert "sk-SECRET-provider" not in repr(s)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": "eyJsecret\nX-Evil: 1"}, "line break or non-ASCII character at position 9"),
        ({"api_key": "secr\u00e9t-token"}, "non-ASCII character at position 4"),
        ({"api_key": 123}, "api_key must be a string"),
        ({"api_key": "tok", "provider_api_key": "sk-a b"}, "provider_api_key has a space"),
        ({"api_key": "tok", "max_retries": 2.7}, "max_retries must be a whole number"),
        ({"api_key": "tok", "max_retries": True}, "max_retries must be a whole number"),
        ({"api_key": "tok", "max_retries": -1}, "max_retries must be a whole number"),
        ({"api_key": "tok", "timeout": float("inf")}, "timeout must be a finite number"),
        ({"api_key": "tok", "timeout": 0}, "timeout must be a finite number"),
        ({"api_key": "tok", "bot_id": "b\r\nX-Evil: 1"}, "bot_id must be printable ASCII"),
        ({"api_key": "tok", "default_headers": {"X-A": "1\n2"}}, "header X-A must be printable ASCII"),
    ],
)
def test_bad_values_are_configuration_errors_that_never_echo_the_key(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(NeboConfigurationError, match=re.escape(message)) as info:
        NeboSettings.resolve(environ={}, **kwargs)
    key = kwargs["api_key"]
    if isinstance(key, str) and key != "tok":
        assert key not in str(info.value)
        assert "secr" not in str(info.value)


def test_retries_from_the_environment_are_parsed_and_a_bearer_prefix_is_dropped() -> None:
    settings = NeboSettings.resolve(environ={"NEBO_API_KEY": "Bearer tok", "NEBO_MAX_RETRIES": "5"})
    assert settings.max_retries == 5
    assert settings.api_key.get_secret_value() == "tok"


def test_a_base_url_with_credentials_is_refused_without_echoing_the_password() -> None:
    with pytest.raises(NeboConfigurationError) as info:
        NeboSettings.resolve(api_key="k", base_url="https://user:hunter2-SECRET@janus.example.com/v1")
    assert "credentials" in str(info.value)
    assert "hunter2-SECRET" not in str(info.value)
    assert "janus.example.com" in str(info.value)
