"""Typed errors for everything that can go wrong talking to Nebo.

A program acts on the class, not on a message: budget exhaustion is final until a
window resets, a transient rate limit is worth waiting for, an upstream 502 is worth
one more try. Every error carries what the server said (status, code, message,
request id, the budget snapshot from the headers) and never the token.

    NeboError
    ├── NeboConfigurationError     settings are wrong (no key, plain http to a remote host, expired JWT)
    ├── NeboAuthenticationError    401 / 403
    ├── NeboBudgetExhausted        429 USAGE_LIMIT_EXCEEDED, a window at 0, or a policy cap
    ├── NeboRateLimited            transient 429, or a rate_limit_error inside a 200 stream
    ├── NeboUpstreamError          502 / 5xx
    ├── NeboConnectionError        connect / read failures
    │   └── NeboTimeoutError       the request timed out
    ├── NeboBadRequestError        400 / 404 / 422
    │   └── NeboContextLengthError context_length_exceeded
    └── NeboStreamError            an error event inside a 200 stream
        └── NeboStreamTruncated    EOF before finish_reason (``partial`` holds what arrived)

``is_retryable`` says whether the same request may succeed later; only the client's
one retry layer acts on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nebo_core.budget import BudgetSnapshot


class NeboError(Exception):
    """Base of every error this package raises."""

    is_retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        snapshot: BudgetSnapshot | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.body = body
        self.snapshot = snapshot
        self.retry_after = retry_after

    def _state(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "message"}

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not pickle by default; errors cross process boundaries.
        return (_rebuild_error, (type(self), self.message, self._state()))

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"


def _rebuild_error(cls: type[NeboError], message: str, state: dict[str, Any]) -> NeboError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.message = message
    err.__dict__.update(state)
    return err


class NeboConfigurationError(NeboError, ValueError):
    """The settings cannot work; the message says which one and how to fix it."""


class NeboAuthenticationError(NeboError):
    """The token was refused (401/403) or has expired."""


class NeboBudgetExhausted(NeboError):
    """No budget left for this call: a Nebo window or pool is empty, or a local cap is reached.

    Never retryable: only a window reset (``reset_at``) or a top-up changes the answer.
    ``window`` is ``"session"``, ``"weekly"``, ``"pools"``, ``"cap"`` (a local policy cap) or
    ``"store"`` (the cap could not be checked). For a cap, ``level`` names the level that
    tripped (``"tenant"``; ``"scope"`` for ``max_spend_micro``), ``period`` its period
    (``"day"``, ``"rolling 5 hours"``... or ``None`` for a lifetime cap) and ``reset_at`` when
    that period ends (calendar periods).
    """

    def __init__(
        self,
        message: str,
        *,
        window: str | None = None,
        reset_at: datetime | None = None,
        scope: str | None = None,
        level: str | None = None,
        period: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.window = window
        self.reset_at = reset_at
        self.scope = scope
        self.level = level
        self.period = period


class NeboBudgetStoreUnavailable(NeboBudgetExhausted):
    """The budget could not be checked because its store failed or lost its state, and the
    policy fails closed (``on_store_error="closed"``, the default). ``window`` is ``"store"``;
    ``store_error`` is the :class:`NeboStoreError` (a :class:`NeboStoreStateLost` when the
    store's state is gone)."""

    store_error: NeboStoreError | None = None


class NeboStoreError(NeboError):
    """The budget store (Redis) failed: unreachable, paused past its timeout, or an error reply.
    The policy's ``on_store_error`` decides what a call does then."""


class NeboStoreStateLost(NeboStoreError):
    """The budget store's state is gone (Redis restarted without persistence, ``FLUSHALL``, key
    eviction): caps would silently start from zero, so the store refuses to go on."""


class NeboRateLimited(NeboError):
    """A transient rate limit: the same request should succeed after ``retry_after`` seconds."""

    is_retryable = True


class NeboUpstreamError(NeboError):
    """Nebo or the provider behind it failed (502, 5xx)."""

    is_retryable = True


class NeboConnectionError(NeboError):
    """The server could not be reached, or the connection failed or timed out."""

    is_retryable = True


class NeboTimeoutError(NeboConnectionError):
    """The request timed out (connecting, or waiting for the server)."""


class NeboBadRequestError(NeboError):
    """The server rejected the request as malformed (400, 404, 422)."""


class NeboContextLengthError(NeboBadRequestError):
    """The prompt is longer than the model's context window."""


class NeboStreamError(NeboError):
    """The server sent an error event inside a 200 stream."""


class NeboStreamTruncated(NeboStreamError):
    """The stream ended before a ``finish_reason``; ``partial`` holds the message assembled so far."""

    is_retryable = True

    def __init__(self, message: str, *, partial: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.partial = partial or {}


def scrub_error(error: NeboError, secrets: tuple[str, ...]) -> NeboError:
    """Remove ``secrets`` from what the server put into ``error`` (message and body), in place.

    A gateway may echo the request's ``Authorization`` or ``X-Provider-API-Key`` header in
    an error message; that text must not reach ``str(err)``, a pickle or a traceback."""
    if not secrets:
        return error

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            for secret in secrets:
                if secret in value:
                    value = value.replace(secret, "***")
            return value
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    error.message = clean(error.message)
    error.args = (error.message,)
    error.body = clean(error.body)
    partial = getattr(error, "partial", None)
    if partial:
        error.partial = clean(partial)  # type: ignore[attr-defined]
    return error


EXHAUSTED_TRUST_S = 60.0
"""How long a reported exhaustion refuses calls up front. After that the next call goes to the
server again, so a top-up or a plan change is seen within a minute, even with the reset hours away."""


def exhausted_error(snapshot: BudgetSnapshot, now: datetime | None = None) -> NeboBudgetExhausted | None:
    """The budget error a call would get now, judging by a snapshot (``None`` if it may go).

    ``now`` is the server's time (ours corrected by the snapshot's clock skew, the default)."""
    if not snapshot.exhausted:
        return None
    window = snapshot.exhausted_window
    assert window is not None
    skew = snapshot.clock_skew()
    now = now or datetime.now(timezone.utc) + timedelta(seconds=skew)
    if window.reset_at is not None and window.reset_at <= now:
        return None  # the window has rolled since this snapshot: let the server say
    age = (now - snapshot.observed_at).total_seconds() - skew  # `now` is server time; observed_at ours
    if age > EXHAUSTED_TRUST_S:
        return None  # an old report: ask the server again (a top-up may have refilled the pools)
    when = f"; it resets at {window.reset_at.isoformat()}" if window.reset_at else ""
    return NeboBudgetExhausted(
        f"the Nebo {window.name} budget is exhausted{when}",
        window=window.name,
        reset_at=window.reset_at,
        snapshot=snapshot,
        status=None,
        code="USAGE_LIMIT_EXCEEDED",
    )


# The error classes (the adapters re-export exactly these); exhausted_error is reached through
# nebo_core.policy.
__all__ = [
    "NeboAuthenticationError",
    "NeboBadRequestError",
    "NeboBudgetExhausted",
    "NeboBudgetStoreUnavailable",
    "NeboConfigurationError",
    "NeboConnectionError",
    "NeboContextLengthError",
    "NeboError",
    "NeboRateLimited",
    "NeboStoreError",
    "NeboStoreStateLost",
    "NeboStreamError",
    "NeboStreamTruncated",
    "NeboTimeoutError",
    "NeboUpstreamError",
]
