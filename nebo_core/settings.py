"""Connection settings, read once at construction from arguments or ``NEBO_*`` variables.

The token is a secret: it lives in a :class:`Secret` whose repr, str and pickle never
show it, and settings refuse to send it over plain ``http://`` anywhere but loopback
(that is how the emulator runs). Nebo tokens are JWTs; their claims are decoded,
unverified, only to report the plan tier and to fail fast on an expired token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import math
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

SETTINGS_FIELDS = (
    "api_key",
    "base_url",
    "timeout",
    "max_retries",
    "provider_api_key",
    "bot_id",
    "lane",
    "purpose",
)
"""The connection fields a user may pass as keywords (``default_headers`` aside): what ``resolve`` takes."""

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
    if parts.username is not None or parts.password is not None:
        # Never echo the URL: its password would land in logs and tracebacks.
        raise NeboConfigurationError(
            f"the base URL carries credentials (user:password@{parts.hostname}); Nebo authenticates with "
            f"the token (api_key= or {ENV_API_KEY}) alone: remove them from the URL"
        )
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


def check_timeout(raw: Any) -> float:
    """A timeout in seconds, validated like the constructor's (a per-call ``timeout=`` too)."""
    return _timeout(raw)


def check_number(name: str, raw: Any) -> float:
    """A finite real number for option ``name`` (not a bool, a string or NaN), or a
    :class:`NeboConfigurationError` naming the option: every numeric budget option goes through it."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise NeboConfigurationError(f"{name} must be a finite number; got {raw!r}")
    return float(raw)


def check_retries(raw: Any) -> int:
    """A retry count, validated like the constructor's (a per-call ``max_retries=`` too)."""
    return _retries(raw)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***`` (a server may echo what it was sent)."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


def _timeout(raw: Any) -> float:
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise NeboConfigurationError(f"timeout must be a finite number of seconds > 0, got {raw!r}")
    return value


def _retries(raw: Any) -> int:
    value: Any = raw
    if isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NeboConfigurationError(f"max_retries must be a whole number >= 0, got {raw!r}")
    return value


def _secret_text(raw: Any, name: str, env_name: str) -> str | None:
    """A secret argument as text, checked to be header-safe without ever echoing it."""
    if raw is None:
        return None
    value = raw.get_secret_value() if isinstance(raw, Secret) else raw
    if not isinstance(value, str):
        raise NeboConfigurationError(
            f"{name} must be a string (or set {env_name}), got a {type(value).__name__}"
        )
    value = value.strip()
    bad = next((i for i, c in enumerate(value) if not 33 <= ord(c) <= 126), None)
    if bad is not None:
        raise NeboConfigurationError(
            f"{name} has a space, line break or non-ASCII character at position {bad}: "
            f"copy the token again (check {env_name})"
        )
    return value


def _query(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) and k for k in raw):
        raise NeboConfigurationError(f"default_query must be a dict of parameter name to text, got {raw!r}")
    return {k: str(v) for k, v in raw.items()}


def check_headers(raw: Any) -> dict[str, str]:
    """Per-call HTTP headers (``extra_headers=``), validated: a mapping of printable ASCII text.
    ``Authorization`` is refused: the token comes from the settings, never from a call."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise NeboConfigurationError(
            f"extra_headers must be a dict of header name to text, got {type(raw).__name__}"
        )
    headers: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name or _header_text(name, "a header name") != name:
            raise NeboConfigurationError(f"extra_headers has an invalid header name {name!r}")
        if name.lower() == "authorization":
            raise NeboConfigurationError(
                "extra_headers may not set Authorization: Nebo's token comes from api_key (or NEBO_API_KEY)"
            )
        headers[name] = _header_text(value, f"header {name}") or ""
    return headers


def _header_text(value: str | None, name: str) -> str | None:
    if value is not None and (not isinstance(value, str) or any(not 32 <= ord(c) <= 126 for c in value)):
        raise NeboConfigurationError(f"{name} must be printable ASCII text on one line, got {value!r}")
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
    default_query: Mapping[str, str] = field(default_factory=dict)
    """Query parameters sent with every request (a call's ``extra_query`` adds to them)."""
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
        default_query: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        check_expiry: bool = True,
    ) -> NeboSettings:
        """Settings from the arguments, falling back to ``NEBO_*`` variables in ``environ``."""
        env = os.environ if environ is None else environ
        raw_key = api_key if api_key is not None else env.get(ENV_API_KEY, "")
        if isinstance(raw_key, str) and raw_key.strip().lower().startswith("bearer "):
            raw_key = raw_key.strip()[7:]
        key = _secret_text(raw_key, "api_key", ENV_API_KEY) or ""
        if not key:
            raise NeboConfigurationError(
                f"no Nebo API key: pass api_key= or set {ENV_API_KEY} (your NeboLoop subscription token)"
            )
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
        raw_provider = provider_api_key if provider_api_key is not None else env.get(ENV_PROVIDER_API_KEY)
        provider_text = _secret_text(raw_provider, "provider_api_key", ENV_PROVIDER_API_KEY)
        provider = Secret(provider_text) if provider_text else None
        lane = lane if lane is not None else env.get(ENV_LANE)
        if lane is not None and lane not in LANES:
            raise NeboConfigurationError(f"lane must be one of {sorted(LANES)}, got {lane!r}")
        return cls(
            api_key=Secret(key),
            base_url=url,
            timeout=_timeout(raw_timeout),
            max_retries=_retries(raw_retries),
            provider_api_key=provider,
            bot_id=_header_text(bot_id if bot_id is not None else env.get(ENV_BOT_ID), "bot_id"),
            lane=lane,
            purpose=_header_text(purpose if purpose is not None else env.get(ENV_PURPOSE), "purpose"),
            default_headers={
                k: _header_text(v, f"header {k}") or "" for k, v in (default_headers or {}).items()
            },
            default_query=_query(default_query),
            claims=claims,
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never appear in an error, a log line or a repr."""
        provider = self.provider_api_key.get_secret_value() if self.provider_api_key is not None else ""
        return tuple(v for v in (self.api_key.get_secret_value(), provider) if v)

    @property
    def account(self) -> str:
        """A short, stable id of this key at this URL (a hash: never the token itself).

        Budget state is kept per account, so one exhausted token never blocks another."""
        digest = hashlib.sha256(f"{self.base_url}\n{self.api_key.get_secret_value()}".encode())
        return digest.hexdigest()[:16]

    @property
    def plan(self) -> str | None:
        """The plan tier named in the token's claims, when it is a JWT that names one."""
        return self.claims.plan if self.claims else None

    @property
    def is_local(self) -> bool:
        """Whether the base URL points at this machine (the emulator)."""
        return is_loopback(urlsplit(self.base_url).hostname or "")
