"""langchain-tests' standard integration suites for ChatNebo and NeboEmbeddings, on the emulator.

The emulator runs with Nebo's stream quirks on. Tests it cannot serve are xfailed with the
reason naming what the emulator cannot do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests, EmbeddingsIntegrationTests

from langchain_nebo import ChatNebo, NeboEmbeddings

_STATE: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _emulator(emu: Any) -> Iterator[None]:
    _STATE["emu"] = emu
    yield
    _STATE.clear()


def _connection() -> dict[str, Any]:
    emu = _STATE["emu"]
    return {"api_key": emu.token, "base_url": emu.base_url, "max_retries": 0}


class TestChatNeboIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatNebo]:
        return ChatNebo

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "gpt-5-mini", **_connection()}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "gpt-5-nano"

    @pytest.mark.xfail(
        reason="the test downloads its image from raw.githubusercontent.com; only loopback network "
        "is allowed here (image inputs are covered by test_chat_models.py::test_image_inputs_*)",
        strict=True,
    )
    def test_image_inputs(self, model: Any) -> None:
        super().test_image_inputs(model)


class TestNeboEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[NeboEmbeddings]:
        return NeboEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "neboloop/nebo-embed-small", **_connection()}
