"""``NeboRetry``: LangChain's ``RunnableRetry`` that honours ``is_retryable``.

langchain-core's ``RunnableRetry`` retries by exception type only, so a budget 429 (or a 401)
raised as a LangChain ``ModelError`` would be retried, with backoff sleeps, ``stop_after_attempt``
times. This subclass adds one predicate to tenacity's ``retry``; everything else (callbacks,
batching, async) is the framework's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables.retry import RunnableRetry
from tenacity import retry_if_exception


class NeboRetry(RunnableRetry[Any, Any]):
    """A ``RunnableRetry`` whose retry decision is ``nebo_retry_if(error)``."""

    nebo_retry_if: Callable[[BaseException], bool]

    @property
    def _kwargs_retrying(self) -> dict[str, Any]:
        kwargs = dict(super()._kwargs_retrying)
        kwargs["retry"] = retry_if_exception(self.nebo_retry_if)
        return kwargs
