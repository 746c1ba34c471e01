"""Construction: unknown arguments fail loudly instead of being dropped by pydantic."""

from __future__ import annotations

import pytest

from llama_index_nebo import Nebo, NeboEmbedding


@pytest.mark.parametrize("cls", [Nebo, NeboEmbedding])
def test_unknown_argument_is_a_type_error_naming_it(cls: type) -> None:
    with pytest.raises(TypeError, match=r"unknown argument\(s\) temprature") as info:
        cls(api_key="tok", temprature=0.2)
    assert "tok" not in str(info.value)


@pytest.mark.parametrize("cls", [Nebo, NeboEmbedding])
def test_http_client_points_to_the_core_client(cls: type) -> None:
    with pytest.raises(TypeError, match=r"client=NeboClient\(http_client=\.\.\.\)"):
        cls(api_key="tok", http_client=object())


def test_known_framework_fields_are_accepted() -> None:
    llm = Nebo(api_key="tok", temperature=0.1, system_prompt="Be brief.")
    assert llm.system_prompt == "Be brief."
    emb = NeboEmbedding(api_key="tok", embed_batch_size=64, num_workers=2)
    assert (emb.embed_batch_size, emb.num_workers) == (64, 2)
