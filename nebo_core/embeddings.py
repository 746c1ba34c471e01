"""Embeddings requests and results, as pure functions: batching, bodies, decoding vectors."""

from __future__ import annotations

import array
import base64
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from nebo_core.budget import UsageRecord
from nebo_core.errors import NeboConfigurationError, NeboUpstreamError
from nebo_core.models import DEFAULT_EMBEDDING_MODEL, check_embedding_model
from nebo_core.results import EmbeddingResult

MAX_EMBEDDING_BATCH = 2048
"""The most inputs one embeddings request may carry (OpenAI's limit, which Nebo relays)."""

Batch = tuple[list[list[float]], "str | None", list[UsageRecord]]
"""One embeddings request's vectors, the model the server echoed, and its usage records (an
attempt that may have been billed, then the answer)."""


def batches(texts: Sequence[str] | str, size: int) -> list[tuple[int, list[str]]]:
    """``(offset, batch)`` pairs covering ``texts`` in order (one string counts as one text)."""
    if isinstance(texts, str):
        texts = [texts]  # not one text per character
    if not isinstance(texts, Sequence):
        raise NeboConfigurationError(
            f"texts to embed must be a string or a list of strings, got {type(texts).__name__}"
        )
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise NeboConfigurationError(
            f"texts to embed must be strings; item {bad} is {type(texts[bad]).__name__}"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise NeboConfigurationError(f"embedding batch size must be >= 1, got {size}")
    size = min(size, MAX_EMBEDDING_BATCH)
    return [(i, list(texts[i : i + size])) for i in range(0, len(texts), size)]


OWN_FIELDS = ("input", "model", "encoding_format", "dimensions")
"""Body fields the embeddings call sets itself: ``extra_body`` may not override them."""


def embedding_body(
    texts: Sequence[str],
    model: str | None,
    dimensions: int | None,
    encoding_format: str,
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The request body for one batch (the model and dimensions checked against the table), with
    ``extra_body``'s fields merged in (``user``, or a field newer than this package)."""
    clash = sorted(set(extra_body or {}) & set(OWN_FIELDS))
    if clash:
        raise NeboConfigurationError(
            f"extra_body may not set {clash}: pass them as embed() arguments (model=, dimensions=, ...)"
        )
    body: dict[str, Any] = {
        **(extra_body or {}),
        "model": model or DEFAULT_EMBEDDING_MODEL,
        # OpenAI rejects "" as input; a space embeds as "nothing" without failing the batch.
        "input": [t if t else " " for t in texts],
        "encoding_format": encoding_format,
    }
    check_embedding_model(body["model"], dimensions)
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def decode_embedding(value: Any) -> list[float]:
    """A float list, or an OpenAI base64 little-endian float32 string, as floats."""
    try:
        if isinstance(value, str):
            values = array.array("f")
            values.frombytes(base64.b64decode(value, validate=True))
            if sys.byteorder != "little":
                values.byteswap()
            return values.tolist()
        if isinstance(value, list):
            return [float(v) for v in value]
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        raise NeboUpstreamError(
            f"Nebo returned an embedding that cannot be read: {exc}", status=200
        ) from None
    raise NeboUpstreamError("Nebo returned an embedding that is neither a list nor base64", status=200)


def _index(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def vectors(body: Any) -> list[list[float]]:
    """The vectors of an embeddings response (already checked to have ``data``), in input order."""
    data = body["data"]
    # A garbled index ("a", null) sorts as 0 instead of raising TypeError out of sorted().
    ordered = sorted(data, key=lambda d: _index(d.get("index")) if isinstance(d, dict) else 0)
    return [decode_embedding(d.get("embedding") if isinstance(d, dict) else None) for d in ordered]


def join_batches(results: Sequence[Batch]) -> EmbeddingResult:
    """The per-request results of one ``embed()`` call, as one result in input order."""
    return EmbeddingResult(
        [v for r in results for v in r[0]],
        next((r[1] for r in results), None),
        [record for r in results for record in r[2]],
    )
