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


def test_partner_style_module_paths() -> None:
    from langchain_nebo.chat_models import ChatNebo
    from langchain_nebo.embeddings import NeboEmbeddings

    assert ChatNebo is langchain_nebo.ChatNebo
    assert NeboEmbeddings is langchain_nebo.NeboEmbeddings
    import langchain_nebo.chat_models as chat_models
    import langchain_nebo.embeddings as embeddings

    assert chat_models.__all__ == ["ChatNebo"]
    assert embeddings.__all__ == ["NeboEmbeddings"]
