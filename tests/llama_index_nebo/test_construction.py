"""Construction: unknown arguments fail loudly instead of being dropped by pydantic."""

from __future__ import annotations

import logging

import pytest

from llama_index_nebo import Nebo, NeboConfigurationError, NeboEmbedding
from nebo_core import NeboClient


@pytest.mark.parametrize("cls", [Nebo, NeboEmbedding])
def test_unknown_argument_is_a_type_error_naming_it(cls: type) -> None:
    with pytest.raises(TypeError, match=r"unknown argument\(s\) temprature") as info:
        cls(api_key="tok", temprature=0.2)
    assert "tok" not in str(info.value)


@pytest.mark.parametrize("cls", [Nebo, NeboEmbedding])
@pytest.mark.parametrize("name", ["http_client", "async_http_client"])
def test_http_clients_must_be_httpx_clients(cls: type, name: str) -> None:
    with pytest.raises(TypeError, match=rf"{name} must be an httpx\.(Async)?Client, got object"):
        cls(api_key="tok", **{name: object()})


@pytest.mark.parametrize("cls", [Nebo, NeboEmbedding])
def test_settings_beside_a_client_are_refused_not_ignored(cls: type) -> None:
    client = NeboClient(api_key="tok")
    try:
        with pytest.raises(NeboConfigurationError, match="default_headers, timeout") as info:
            cls(client=client, timeout=3.0, default_headers={"X-A": "1"})
        assert "tok" not in str(info.value)
        assert cls(client=client).timeout == client.settings.timeout
    finally:
        client.close()


def test_known_framework_fields_are_accepted() -> None:
    llm = Nebo(api_key="tok", temperature=0.1, system_prompt="Be brief.")
    assert llm.system_prompt == "Be brief."
    emb = NeboEmbedding(api_key="tok", embed_batch_size=64, num_workers=2)
    assert (emb.embed_batch_size, emb.num_workers) == (64, 2)


def test_unknown_embedding_model_is_accepted_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llama_index_nebo"):
        emb = NeboEmbedding("nope", api_key="tok")
    assert emb.model_name == "nope"
    assert emb.dimension is None
    messages = [r.getMessage() for r in caplog.records if r.name == "llama_index_nebo"]
    assert len(messages) == 1
    assert "'nope'" in messages[0]
    assert "neboloop/nebo-embed-small" in messages[0]
    assert "neboloop/nebo-embed-large" in messages[0]
    assert "tok" not in messages[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llama_index_nebo"):
        NeboEmbedding("text-embedding-3-small", api_key="tok")
    assert caplog.records == []
