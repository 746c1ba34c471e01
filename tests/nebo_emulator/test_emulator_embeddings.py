"""Embeddings: deterministic unit vectors, float and base64, widths, names, and retrieval that works."""

from __future__ import annotations

import base64
import math
import ssl
import struct
from collections.abc import Callable, Mapping

import httpx
import pytest

from nebo_emulator import NeboEmulator
from nebo_emulator._embed import embed

TLS = ssl.create_default_context()
Factory = Callable[..., NeboEmulator]
DOCS = [
    "The Eiffel Tower is in Paris, the capital of France.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "The stock market fell sharply after the interest rate decision.",
    "Cats are small domesticated carnivores that purr and hunt mice.",
]


def post(emu: NeboEmulator, body: Mapping[str, object]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {emu.token}"}
    with httpx.Client(base_url=emu.base_url, headers=headers, verify=TLS) as c:
        return c.post("/embeddings", json=body)


def vectors(response: httpx.Response) -> list[list[float]]:
    return [d["embedding"] for d in sorted(response.json()["data"], key=lambda d: d["index"])]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


@pytest.mark.parametrize(
    ("model", "dims", "echo"),
    [
        ("neboloop/nebo-embed-small", 1536, "text-embedding-3-small"),
        ("text-embedding-3-small", 1536, "text-embedding-3-small"),
        ("neboloop/nebo-embed-large", 3072, "text-embedding-3-large"),
        ("text-embedding-3-large", 3072, "text-embedding-3-large"),
    ],
)
def test_models_widths_and_the_upstream_name_echoed(
    nebo_emulator: NeboEmulator, model: str, dims: int, echo: str
) -> None:
    response = post(nebo_emulator, {"model": model, "input": ["hello world", "goodbye"]})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == echo
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in body["data"])
    for vector in vectors(response):
        assert len(vector) == dims
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-9)
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] > 0
    assert usage["cost_micro"] == nebo_emulator.ledger[0].cost_micro >= 1
    assert nebo_emulator.ledger[0].endpoint == "embedding"


def test_a_single_string_input_gives_one_vector(nebo_emulator: NeboEmulator) -> None:
    response = post(nebo_emulator, {"model": "neboloop/nebo-embed-small", "input": "just one"})
    assert len(response.json()["data"]) == 1


def test_base64_is_little_endian_float32_of_the_same_vector(nebo_emulator: NeboEmulator) -> None:
    body = {"model": "neboloop/nebo-embed-small", "input": ["a cat on a mat"]}
    floats = vectors(post(nebo_emulator, body))[0]
    encoded = post(nebo_emulator, {**body, "encoding_format": "base64"}).json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    raw = base64.b64decode(encoded)
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == 1536
    assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(decoded, floats))


def test_same_text_same_vector_across_emulators(nebo_emulator_factory: Factory) -> None:
    a, b = nebo_emulator_factory(), nebo_emulator_factory()
    body = {"model": "neboloop/nebo-embed-small", "input": ["determinism matters"]}
    assert vectors(post(a, body)) == vectors(post(b, body))


def test_shared_words_mean_closer_vectors() -> None:
    query = embed("Where is the Eiffel Tower?", 1536)
    scores = [cosine(query, embed(doc, 1536)) for doc in DOCS]
    assert max(range(len(DOCS)), key=lambda i: scores[i]) == 0
    assert cosine(embed("cats purr", 256), embed("a cat purrs", 256)) > cosine(
        embed("cats purr", 256), embed("interest rates", 256)
    )


def test_retrieval_over_the_http_api_finds_the_right_document(nebo_emulator: NeboEmulator) -> None:
    doc_vectors = vectors(post(nebo_emulator, {"model": "neboloop/nebo-embed-small", "input": DOCS}))
    questions = {
        "What does photosynthesis make from sunlight?": 1,
        "Why did the stock market fall?": 2,
        "Do cats hunt mice?": 3,
    }
    for question, expected in questions.items():
        q = vectors(post(nebo_emulator, {"model": "neboloop/nebo-embed-small", "input": question}))[0]
        assert max(range(len(DOCS)), key=lambda i: cosine(q, doc_vectors[i])) == expected


def test_dimensions_are_honoured_for_models_that_allow_it(nebo_emulator: NeboEmulator) -> None:
    response = post(nebo_emulator, {"model": "neboloop/nebo-embed-large", "input": "x", "dimensions": 256})
    assert len(vectors(response)[0]) == 256
    too_wide = post(nebo_emulator, {"model": "neboloop/nebo-embed-small", "input": "x", "dimensions": 4096})
    assert too_wide.status_code == 400
    assert too_wide.json()["error"]["param"] == "dimensions"


def test_token_id_inputs_are_accepted(nebo_emulator: NeboEmulator) -> None:
    response = post(nebo_emulator, {"model": "neboloop/nebo-embed-small", "input": [[1, 2, 3], [4, 5]]})
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens"] == 5


@pytest.mark.parametrize("bad", ["", [], [""], [1.5], {"text": "x"}])
def test_bad_input_is_400(nebo_emulator: NeboEmulator, bad: object) -> None:
    response = post(nebo_emulator, {"model": "neboloop/nebo-embed-small", "input": bad})
    assert response.status_code == 400
    assert response.json()["error"]["param"].startswith("input")


def test_unknown_and_chat_models_are_refused(nebo_emulator: NeboEmulator) -> None:
    assert post(nebo_emulator, {"model": "embed-9000", "input": "x"}).status_code == 404
    assert post(nebo_emulator, {"model": "gpt-5-nano", "input": "x"}).status_code == 400
    assert (
        post(
            nebo_emulator, {"model": "neboloop/nebo-embed-small", "input": "x", "encoding_format": "int8"}
        ).status_code
        == 400
    )
