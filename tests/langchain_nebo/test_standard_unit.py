"""langchain-tests' standard unit suites for ChatNebo and NeboEmbeddings (no network)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from langchain_nebo import ChatNebo, NeboEmbeddings

pytestmark = pytest.mark.disable_socket


class TestChatNeboUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatNebo]:
        return ChatNebo

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "gpt-5-mini", "api_key": "test-key"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"NEBO_API_KEY": "env-key", "NEBO_BASE_URL": "https://nebo.example/v1"},
            {"model": "gpt-5-mini"},
            {"api_key": "env-key", "base_url": "https://nebo.example/v1", "model_name": "gpt-5-mini"},
        )

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True


class TestNeboEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[NeboEmbeddings]:
        return NeboEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "neboloop/nebo-embed-small", "api_key": "test-key"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"NEBO_API_KEY": "env-key", "NEBO_BASE_URL": "https://nebo.example/v1"},
            {},
            {"api_key": "env-key", "base_url": "https://nebo.example/v1"},
        )
