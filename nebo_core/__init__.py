"""Framework-free core of nebo-integrations: settings, wire protocol, budgets, clients, emulator.

Importing this package is cheap: names are loaded on first use, so ``import nebo_core``
pays for neither httpx nor the emulator until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nebo_core._version import __version__

if TYPE_CHECKING:
    from nebo_core.budget import BudgetSnapshot, UsageRecord, UsageReport, WindowState
    from nebo_core.caps import Cap
    from nebo_core.chat_stream import AsyncChatStream, ChatStream
    from nebo_core.client import AsyncNeboClient, NeboClient
    from nebo_core.degrade import Degrade
    from nebo_core.embeddings import MAX_EMBEDDING_BATCH
    from nebo_core.errors import (
        NeboAuthenticationError,
        NeboBadRequestError,
        NeboBudgetExhausted,
        NeboBudgetStoreUnavailable,
        NeboConfigurationError,
        NeboConnectionError,
        NeboContextLengthError,
        NeboError,
        NeboRateLimited,
        NeboStoreError,
        NeboStoreStateLost,
        NeboStreamError,
        NeboStreamTruncated,
        NeboTimeoutError,
        NeboUpstreamError,
    )
    from nebo_core.forecast import BudgetForecast, WindowForecast
    from nebo_core.landing import WindDown
    from nebo_core.models import ModelSpec, get_model
    from nebo_core.openai_compat import async_openai_client, openai_client
    from nebo_core.pacing import LaneRule, Pace
    from nebo_core.policy import BudgetPolicy, CallPlan, Decision, Go, Refuse, Wait, default_policy
    from nebo_core.provider import NeboProvider
    from nebo_core.results import ChatCompletion, EmbeddingResult
    from nebo_core.retry import RetryPolicy
    from nebo_core.settings import NeboSettings, Secret
    from nebo_core.sse import SSEDecoder, StreamState
    from nebo_core.tracker import BudgetTracker, TrackerTotals, default_tracker
    from nebo_core.transport import AsyncNeboTransport, NeboTransport
    from nebo_core.wire import ModelInfo

_EXPORTS = {
    "ChatCompletion": "nebo_core.results",
    "EmbeddingResult": "nebo_core.results",
    "default_policy": "nebo_core.policy",
    "ChatStream": "nebo_core.chat_stream",
    "AsyncChatStream": "nebo_core.chat_stream",
    "Go": "nebo_core.policy",
    "Wait": "nebo_core.policy",
    "Refuse": "nebo_core.policy",
    "NeboTimeoutError": "nebo_core.errors",
    "NeboTransport": "nebo_core.transport",
    "NeboProvider": "nebo_core.provider",
    "MAX_EMBEDDING_BATCH": "nebo_core.embeddings",
    "AsyncNeboTransport": "nebo_core.transport",
    "SSEDecoder": "nebo_core.sse",
    "BudgetSnapshot": "nebo_core.budget",
    "UsageRecord": "nebo_core.budget",
    "UsageReport": "nebo_core.budget",
    "WindowState": "nebo_core.budget",
    "NeboClient": "nebo_core.client",
    "AsyncNeboClient": "nebo_core.client",
    "NeboError": "nebo_core.errors",
    "NeboAuthenticationError": "nebo_core.errors",
    "NeboBadRequestError": "nebo_core.errors",
    "NeboBudgetExhausted": "nebo_core.errors",
    "NeboBudgetStoreUnavailable": "nebo_core.errors",
    "NeboStoreError": "nebo_core.errors",
    "NeboStoreStateLost": "nebo_core.errors",
    "Cap": "nebo_core.caps",
    "Degrade": "nebo_core.degrade",
    "BudgetForecast": "nebo_core.forecast",
    "WindowForecast": "nebo_core.forecast",
    "WindDown": "nebo_core.landing",
    "LaneRule": "nebo_core.pacing",
    "Pace": "nebo_core.pacing",
    "NeboConfigurationError": "nebo_core.errors",
    "NeboConnectionError": "nebo_core.errors",
    "NeboContextLengthError": "nebo_core.errors",
    "NeboRateLimited": "nebo_core.errors",
    "NeboStreamError": "nebo_core.errors",
    "NeboStreamTruncated": "nebo_core.errors",
    "NeboUpstreamError": "nebo_core.errors",
    "ModelSpec": "nebo_core.models",
    "get_model": "nebo_core.models",
    "openai_client": "nebo_core.openai_compat",
    "async_openai_client": "nebo_core.openai_compat",
    "BudgetPolicy": "nebo_core.policy",
    "CallPlan": "nebo_core.policy",
    "Decision": "nebo_core.policy",
    "RetryPolicy": "nebo_core.retry",
    "NeboSettings": "nebo_core.settings",
    "Secret": "nebo_core.settings",
    "StreamState": "nebo_core.sse",
    "BudgetTracker": "nebo_core.tracker",
    "TrackerTotals": "nebo_core.tracker",
    "default_tracker": "nebo_core.tracker",
    "ModelInfo": "nebo_core.wire",
}

__all__ = [
    "MAX_EMBEDDING_BATCH",
    "AsyncChatStream",
    "AsyncNeboClient",
    "AsyncNeboTransport",
    "BudgetForecast",
    "BudgetPolicy",
    "BudgetSnapshot",
    "BudgetTracker",
    "CallPlan",
    "Cap",
    "ChatCompletion",
    "ChatStream",
    "Decision",
    "Degrade",
    "EmbeddingResult",
    "Go",
    "LaneRule",
    "ModelInfo",
    "ModelSpec",
    "NeboAuthenticationError",
    "NeboBadRequestError",
    "NeboBudgetExhausted",
    "NeboBudgetStoreUnavailable",
    "NeboClient",
    "NeboConfigurationError",
    "NeboConnectionError",
    "NeboContextLengthError",
    "NeboError",
    "NeboProvider",
    "NeboRateLimited",
    "NeboSettings",
    "NeboStoreError",
    "NeboStoreStateLost",
    "NeboStreamError",
    "NeboStreamTruncated",
    "NeboTimeoutError",
    "NeboTransport",
    "NeboUpstreamError",
    "Pace",
    "Refuse",
    "RetryPolicy",
    "SSEDecoder",
    "Secret",
    "StreamState",
    "TrackerTotals",
    "UsageRecord",
    "UsageReport",
    "Wait",
    "WindDown",
    "WindowForecast",
    "WindowState",
    "__version__",
    "async_openai_client",
    "default_policy",
    "default_tracker",
    "get_model",
    "openai_client",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nebo_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
