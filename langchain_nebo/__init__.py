"""LangChain integration for Nebo: ``ChatNebo``, ``NeboEmbeddings`` and budget callbacks.

Everything protocol- and budget-related lives in ``nebo_core``; this package translates
LangChain types to and from it, and ``nebo_core`` errors to LangChain ``ModelError`` types.
"""

from typing import TYPE_CHECKING, Any

from langchain_nebo._callbacks import NeboBudgetCallbackHandler, NeboUsage, Tally, get_nebo_callback
from langchain_nebo._chat_models import ChatNebo
from langchain_nebo._embeddings import NeboEmbeddings
from langchain_nebo._errors import (
    RETRYABLE_ERRORS,
    NeboAPIError,
    NeboBudgetExhaustedError,
    NeboContextOverflowError,
    NeboInvalidRequestError,
    NeboModelAuthenticationError,
    NeboModelConnectionError,
    NeboModelError,
    NeboModelNotFoundError,
    NeboModelPermissionDeniedError,
    NeboModelTimeoutError,
    NeboRateLimitError,
    NeboStreamAPIError,
    NeboStreamTruncatedError,
    to_model_error,
)

if TYPE_CHECKING:
    from langchain_nebo.middleware import NeboBudgetMiddleware, NeboBudgetState

_LAZY = {"NeboBudgetMiddleware", "NeboBudgetState"}
"""Loaded on first use: the middleware pulls in ``langchain.agents`` (and langgraph)."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from langchain_nebo import middleware

        return getattr(middleware, name)
    raise AttributeError(f"module 'langchain_nebo' has no attribute {name!r}")


__all__ = [
    "RETRYABLE_ERRORS",
    "ChatNebo",
    "NeboAPIError",
    "NeboBudgetCallbackHandler",
    "NeboBudgetExhaustedError",
    "NeboBudgetMiddleware",
    "NeboBudgetState",
    "NeboContextOverflowError",
    "NeboEmbeddings",
    "NeboInvalidRequestError",
    "NeboModelAuthenticationError",
    "NeboModelConnectionError",
    "NeboModelError",
    "NeboModelNotFoundError",
    "NeboModelPermissionDeniedError",
    "NeboModelTimeoutError",
    "NeboRateLimitError",
    "NeboStreamAPIError",
    "NeboStreamTruncatedError",
    "NeboUsage",
    "Tally",
    "get_nebo_callback",
    "to_model_error",
]
