"""The model table: lookups, costs, and the embedding check both adapters and the client use."""

from __future__ import annotations

import pytest

from nebo_core.errors import NeboConfigurationError
from nebo_core.models import check_embedding_model, get_model


@pytest.mark.parametrize(
    ("name", "dimensions", "expected"),
    [
        ("neboloop/nebo-embed-small", None, 1536),
        ("text-embedding-3-large", 256, 3072),  # the OpenAI alias
        ("neboloop/nebo-embed-large", 3072, 3072),
        ("some-new-embedding-model", 64, None),  # unknown: sent as given
    ],
)
def test_good_embedding_models(name: str, dimensions: int | None, expected: int | None) -> None:
    spec = check_embedding_model(name, dimensions)
    assert (spec.dimensions if spec else None) == expected


@pytest.mark.parametrize(
    ("name", "dimensions", "message"),
    [
        ("gpt-5.2", None, "is a chat model, not an embedding model; use one of: neboloop/nebo-embed-small"),
        ("neboloop/nebo-embed-small", 0, "dimensions must be a whole number >= 1"),
        ("neboloop/nebo-embed-small", True, "dimensions must be a whole number >= 1"),
        ("neboloop/nebo-embed-small", 4096, "it returns up to 1536"),
    ],
)
def test_bad_embedding_models_are_configuration_errors(name: str, dimensions: object, message: str) -> None:
    with pytest.raises(NeboConfigurationError, match=message):
        check_embedding_model(name, dimensions)  # type: ignore[arg-type]


def test_cost_rounds_up_and_charges_at_least_one_microdollar() -> None:
    nano = get_model("gpt-5-nano")
    assert nano is not None
    assert nano.cost_micro(1, 0) == 1
    assert nano.cost_micro(0, 0) == 0
    assert nano.cost_micro(1_000_000, 1_000_000) == 50_000 + 400_000
