"""Bearer authentication the way Janus does it: a JWT is the API key (nebo-api.md section 2).

Tokens are minted unsigned (``alg: none``) because the emulator only needs their
shape and claims: ``sub``, ``email``, ``plan`` and ``exp``. Expiry is checked against
the emulator clock so tests can let a token lapse without waiting.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

DEFAULT_SUB = "emu-user-0001"
DEFAULT_EMAIL = "dev@emulator.nebo.test"
FAR_FUTURE_EXP = 4_102_444_800  # 2100-01-01T00:00:00Z


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def make_jwt(claims: Mapping[str, Any]) -> str:
    """An unsigned, JWT-shaped token carrying ``claims``."""
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(dict(claims), separators=(",", ":"), sort_keys=True).encode())
    return f"{header}.{payload}."


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT-shaped token (signature not checked), or ``None`` if it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return claims


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was refused with 401: the message and ``type`` of the error body."""

    message: str
    type: str = "invalid_request_error"


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: its claims and the plan tier they name (if any)."""

    claims: Mapping[str, Any]

    @property
    def plan(self) -> str | None:
        value = self.claims.get("plan", self.claims.get("plan_tier"))
        return value if isinstance(value, str) and value else None


def authenticate(
    authorization: str | None,
    *,
    now: datetime,
    accepted: frozenset[str],
    accept_any_jwt: bool,
) -> Caller | AuthFailure:
    """Check an ``Authorization`` header; the caller on success, the 401 reason otherwise."""
    if not authorization:
        return AuthFailure(
            "You didn't provide an API key. You need to provide your NeboLoop JWT in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_TOKEN)."
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return AuthFailure("Invalid Authorization header: expected 'Bearer <token>'.")
    claims = jwt_claims(token)
    if token not in accepted and (claims is None or not accept_any_jwt):
        shown = token[:4] + "*" * 4 + token[-4:] if len(token) > 8 else "*" * len(token)
        return AuthFailure(f"Incorrect API key provided: {shown}. Use the JWT from your NeboLoop dashboard.")
    claims = claims or {}
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp < now.timestamp():
        return AuthFailure(
            "The access token expired; get a fresh token from the NeboLoop dashboard.",
            type="authentication_error",
        )
    return Caller(claims)
