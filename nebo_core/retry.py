"""The one retry policy of the whole stack, as pure decisions.

Budget exhaustion and authentication errors are never retried: they cannot succeed
until a window resets or the token changes. Transient failures (rate limits, 5xx,
connection errors, truncated streams) are retried with jittered exponential backoff that
honours the server's ``retry_after`` up to a cap; a longer wait is the budget policy's
business, not a retry's. The drivers in :mod:`nebo_core.client` only sleep and resend.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from nebo_core.errors import NeboError


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    """A server asking for a longer wait than this gets the error instead of a sleeping client."""
    jitter: Callable[[], float] = random.random

    def delay(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` (0-based ``attempt``), or ``None`` to raise."""
        if not isinstance(error, NeboError) or not error.is_retryable or attempt >= self.max_retries:
            return None
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            return float(error.retry_after) + self.jitter() * 0.1
        backoff: float = min(self.base_delay * float(2**attempt), self.max_delay)
        return backoff * (0.75 + 0.5 * self.jitter())
