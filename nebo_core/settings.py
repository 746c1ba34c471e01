"""Connection settings, read once at construction from arguments or ``NEBO_*`` variables.

The token is a secret: it lives in a :class:`Secret` whose repr, str and pickle never
show it, and settings refuse to send it over plain ``http://`` anywhere but loopback
(that is how the emulator runs). Nebo tokens are JWTs; their claims are decoded,
unverified, only to report the plan tier and to fail fast on an expired token.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from nebo_core.errors import NeboAuthenticationError, NeboConfigurationError

DEFAULT_BASE_URL = "https://janus.neboloop.com/v1"
DEFAULT_TIMEOUT = 300.0
"""Seconds. Upstreams can go silent for minutes while they buffer tool arguments (nebo-api.md 11.9)."""
DEFAULT_MAX_RETRIES = 2

ENV_API_KEY = "NEBO_API_KEY"
ENV_BASE_URL = "NEBO_BASE_URL"
ENV_TIMEOUT = "NEBO_TIMEOUT"
ENV_MAX_RETRIES = "NEBO_MAX_RETRIES"
ENV_PROVIDER_API_KEY = "NEBO_PROVIDER_API_KEY"
ENV_BOT_ID = "NEBO_BOT_ID"
ENV_LANE = "NEBO_LANE"
ENV_PURPOSE = "NEBO_PURPOSE"

LANES = frozenset({"main", "events", "subagent", "heartbeat", "comm"})


class Secret:
    """A string that never shows itself: not in repr, str, f-strings, logs or pickles."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The real value, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a Nebo secret cannot be pickled; pass the key by environment instead")


@dataclass(frozen=True)
class TokenClaims:
    """What an (unverified) Nebo JWT says about its holder."""

    subject: str | None = None
    email: str | None = None
    plan: str | None = None
    expires_at: datetime | None = None

    def expired(self, now: float | None = None) -> bool:
        """Whether the token's ``exp`` lies in the past."""
        if self.expires_at is None:
            return False
        return self.expires_at.timestamp() <= (time.time() if now is None else now)


def decode_token_claims(token: str) -> TokenClaims | None:
    """The claims of a JWT-shaped token, or ``None`` for any other token (used as is)."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    if not isinstance(claims, dict):
        return None
    exp = claims.get("exp")
    expires_at = None
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        try:
            expires_at = datetime.fromtimestamp(float(exp), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            expires_at = None
    plan = claims.get("plan_tier", claims.get("plan", claims.get("tier")))

    def _str(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    return TokenClaims(_str(claims.get("sub")), _str(claims.get("email")), _str(plan), expires_at)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (where a token may travel over plain http)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NeboConfigurationError(
            f"base URL {url!r} is not an http(s) URL; "
            f"set base_url= or {ENV_BASE_URL} to e.g. {DEFAULT_BASE_URL}"
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise NeboConfigurationError(
            f"refusing to send the Nebo token over plain http to {parts.hostname}; use https:// "
            "(plain http is allowed only on loopback, e.g. the emulator)"
        )
    return url.rstrip("/")


def _number(raw: Any, name: str, kind: type[float] | type[int]) -> Any:
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise NeboConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if value < 0 or value != value:
        raise NeboConfigurationError(f"{name} must be >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class NeboSettings:
    """Everything needed to reach Nebo, validated once. Build it with :meth:`resolve`."""

    api_key: Secret = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    provider_api_key: Secret | None = field(default=None, repr=False)
    bot_id: str | None = None
    lane: str | None = None
    purpose: str | None = None
    default_headers: Mapping[str, str] = field(default_factory=dict)
    claims: TokenClaims | None = None

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        provider_api_key: str | Secret | None = None,
        bot_id: str | None = None,
        lane: str | None = None,
        purpose: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        check_expiry: bool = True,
    ) -> NeboSettings:
        """Settings from the arguments, falling back to ``NEBO_*`` variables in ``environ``."""
        env = os.environ if environ is None else environ
        key = api_key.get_secret_value() if isinstance(api_key, Secret) else api_key
        key = (key if key is not None else env.get(ENV_API_KEY, "")).strip()
        if not key:
            raise NeboConfigurationError(
                f"no Nebo API key: pass api_key= or set {ENV_API_KEY} (your NeboLoop subscription token)"
            )
        if key.lower().startswith("bearer "):
            key = key[7:].strip()
        claims = decode_token_claims(key)
        if check_expiry and claims is not None and claims.expired():
            assert claims.expires_at is not None
            raise NeboAuthenticationError(
                f"the Nebo token expired at {claims.expires_at.isoformat()}; get a fresh one from the "
                f"NeboLoop dashboard and set {ENV_API_KEY}"
            )
        url = _validate_base_url(base_url or env.get(ENV_BASE_URL) or DEFAULT_BASE_URL)
        raw_timeout = timeout if timeout is not None else env.get(ENV_TIMEOUT, DEFAULT_TIMEOUT)
        raw_retries = (
            max_retries if max_retries is not None else env.get(ENV_MAX_RETRIES, DEFAULT_MAX_RETRIES)
        )
        provider = provider_api_key if provider_api_key is not None else env.get(ENV_PROVIDER_API_KEY)
        if isinstance(provider, str):
            provider = Secret(provider) if provider.strip() else None
        lane = lane if lane is not None else env.get(ENV_LANE)
        if lane is not None and lane not in LANES:
            raise NeboConfigurationError(f"lane must be one of {sorted(LANES)}, got {lane!r}")
        return cls(
            api_key=Secret(key),
            base_url=url,
            timeout=float(_number(raw_timeout, "timeout", float)),
            max_retries=int(_number(raw_retries, "max_retries", int)),
            provider_api_key=provider,
            bot_id=bot_id if bot_id is not None else env.get(ENV_BOT_ID),
            lane=lane,
            purpose=purpose if purpose is not None else env.get(ENV_PURPOSE),
            default_headers=dict(default_headers or {}),
            claims=claims,
        )

    @property
    def plan(self) -> str | None:
        """The plan tier named in the token's claims, when it is a JWT that names one."""
        return self.claims.plan if self.claims else None

    @property
    def is_local(self) -> bool:
        """Whether the base URL points at this machine (the emulator)."""
        return is_loopback(urlsplit(self.base_url).hostname or "")
