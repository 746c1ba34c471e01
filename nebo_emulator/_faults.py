"""Scripted faults: what goes wrong on the next N requests, for testing a client's resilience.

Each kind mimics something a client of the real server meets (nebo-api.md sections 9
and 11): 5xx and 502 relays, a transient 429 with ``Retry-After``, a rate limit sent
inside a 200 SSE stream with a Go-duration ``retry_after``, a stream cut off before its
``finish_reason``, a slow response, garbled budget headers, an unparseable body, and the
terminal ``USAGE_LIMIT_EXCEEDED``. Faults are consumed in the order they were injected,
one per request, whatever the endpoint.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nebo_emulator._errors import ApiError, usage_limit_exceeded

FAULT_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "500": {},
    "502": {},
    "429": {"retry_after": 1},
    "stream_rate_limit": {"retry_after": "1.2s"},
    "drop_midstream": {"after_chunks": 2},
    "delay": {"seconds": 1.0},
    "malformed_headers": {},
    "malformed_body": {},
    "usage_limit": {},
}

GARBLED_HEADERS: Mapping[str, str] = {
    "X-RateLimit-Session-Limit-Credits": "-1",
    "X-RateLimit-Session-Remaining-Credits": "not-a-number",
    "X-RateLimit-Session-Reset": "yesterday-ish",
    "X-RateLimit-Weekly-Limit-Credits": "",
    "X-RateLimit-Weekly-Remaining-Credits": "inf",
    "X-RateLimit-Weekly-Reset": "2026-13-45T99:61:00Z",
    "X-Budget-Free-Available": "NaN",
    "X-Budget-Gift-Available": "1e309",
    "X-Budget-Credits-Cents": "12.5.3",
    "X-Budget-Active-Pool": "???",
}

MALFORMED_JSON = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'


@dataclass(frozen=True)
class Fault:
    """One scripted fault: its kind and parameters (defaults filled in)."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, kind: str, **params: Any) -> Fault:
        """A validated fault; ``ValueError`` for an unknown kind or parameter."""
        if kind not in FAULT_DEFAULTS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_DEFAULTS)}")
        unknown = set(params) - set(FAULT_DEFAULTS[kind])
        if unknown:
            raise ValueError(f"fault {kind!r} takes no parameter(s) {sorted(unknown)}")
        return cls(kind, {**FAULT_DEFAULTS[kind], **params})


class FaultQueue:
    """Faults waiting for the next requests, consumed first-in first-out under a lock."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()
        self._lock = threading.Lock()

    def inject(self, fault: Fault, count: int) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._queue.extend([fault] * count)

    def pop(self) -> Fault | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


def immediate_error(fault: Fault, *, streaming: bool) -> ApiError | None:
    """The error response a fault turns the request into, or ``None`` if it lets it proceed."""
    if fault.kind == "500":
        return ApiError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        )
    if fault.kind == "502":
        # Janus relays an upstream 529 as 502 (nebo-api.md section 9.1).
        return ApiError(
            502,
            "Bad gateway: the upstream provider is overloaded (529).",
            type="upstream_error",
            code="upstream_error",
        )
    if fault.kind == "429" or (fault.kind == "stream_rate_limit" and not streaming):
        seconds = _seconds(fault.params["retry_after"])
        return ApiError(
            429,
            "Rate limit exceeded for user. Please retry after a short wait.",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=(("Retry-After", str(max(int(-(-seconds // 1)), 0))),),
        )
    if fault.kind == "usage_limit":
        return usage_limit_exceeded()
    return None


def stream_error_event(fault: Fault) -> dict[str, Any]:
    """The in-stream error envelope Janus sends after a 200 (nebo-api.md section 9.2)."""
    error = {
        "message": "Rate limit exceeded for user",
        "type": "rate_limit_error",
        "code": "rate_limit_exceeded",
        "retryable": True,
        "retry_after": fault.params["retry_after"],
    }
    return {"error": error}


def _seconds(value: Any) -> float:
    """Seconds in a number or a Go duration string (``"1.2s"``, ``"250ms"``, ``"2m30s"``)."""
    if isinstance(value, (int, float)):
        return float(value)
    total, number = 0.0, ""
    text = str(value).strip()
    i = 0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            number += text[i]
            i += 1
            continue
        unit = next((u for u in ("ms", "us", "µs", "ns", "h", "m", "s") if text.startswith(u, i)), None)
        if unit is None or not number:
            raise ValueError(f"not a Go duration: {value!r}")
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    return total + (float(number) if number else 0.0)
