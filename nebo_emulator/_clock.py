"""The emulator's notion of time: a clock that tests move forward instead of sleeping.

Budget windows (nebo-api.md section 10) roll over this clock, JWT expiry is checked
against it, and the ``Date`` and ``*-Reset`` headers are written from it, so a test
can exhaust a five-hour window and recover it in microseconds.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    """What the emulator needs from a clock: an aware UTC ``now()`` and a way to move it."""

    def now(self) -> datetime: ...

    def advance(self, seconds: float) -> None: ...


class EmulatorClock:
    """A UTC clock that starts at real time and moves only when advanced (unless ``frozen=False``).

    Frozen is the default for tests, so reset headers and usage figures are exact;
    the CLI uses a ticking clock so a long-running emulator's windows really roll.
    """

    def __init__(self, start: datetime | None = None, *, frozen: bool = True) -> None:
        now = datetime.now(timezone.utc)
        # A frozen clock starts on a whole second (exact headers); a ticking one keeps real time.
        base = start if start is not None else (now.replace(microsecond=0) if frozen else now)
        if base.tzinfo is None:
            base = base.replace(tzinfo=timezone.utc)
        self._base = base.astimezone(timezone.utc)
        self._frozen = frozen
        self._mono = time.monotonic()
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The emulator's current time (aware, UTC)."""
        with self._lock:
            ticked = timedelta() if self._frozen else timedelta(seconds=time.monotonic() - self._mono)
            return self._base + self._offset + ticked

    def advance(self, seconds: float) -> None:
        """Move time forward (or back, with a negative value) by ``seconds``."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (an aware datetime; naive values are taken as UTC)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        current = self.now()
        with self._lock:
            self._offset += when - current


def rfc3339(when: datetime) -> str:
    """``when`` as an RFC 3339 UTC timestamp, rounded up to the whole second.

    Rounding up means a client that waits until the advertised reset never arrives early.
    """
    when = when.astimezone(timezone.utc)
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
