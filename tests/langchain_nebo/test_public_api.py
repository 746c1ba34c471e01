"""The public names of langchain_nebo are pinned."""

from __future__ import annotations

import pytest

import langchain_nebo

pytestmark = pytest.mark.disable_socket


def test_all_is_pinned() -> None:
    assert sorted(langchain_nebo.__all__) == sorted(
        [
            "ChatNebo",
            "RETRYABLE_ERRORS",
            "NeboAPIError",
            "NeboBudgetCallbackHandler",
            "NeboBudgetExhaustedError",
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
            "NeboBudgetMiddleware",
            "NeboBudgetState",
            "Tally",
            "get_nebo_callback",
            "to_model_error",
        ]
    )
    for name in langchain_nebo.__all__:
        assert getattr(langchain_nebo, name) is not None
