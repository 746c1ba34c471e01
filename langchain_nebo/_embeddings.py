"""``NeboEmbeddings``: LangChain embeddings on ``nebo_core``'s batched, concurrent ``embed``.

The core does the work (batches of up to 2,048 inputs, bounded concurrent requests, base64
transfer, order kept, usage and exact cost recorded into the tracker); this class only
adapts the call and translates errors at one boundary.
"""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import Field, model_validator
from typing_extensions import Self

from langchain_nebo._connection import NeboConnection
from langchain_nebo._errors import translate
from nebo_core import MAX_EMBEDDING_BATCH, NeboError
from nebo_core.models import DEFAULT_EMBEDDING_MODEL, check_embedding_model


class NeboEmbeddings(NeboConnection, Embeddings):
    """Nebo embeddings (``neboloop/nebo-embed-small`` by default); usage lands in the tracker."""

    model: str = DEFAULT_EMBEDDING_MODEL
    dimensions: int | None = None
    """Shorter vectors, where the model supports it (a clear error where it does not)."""
    chunk_size: int = Field(default=MAX_EMBEDDING_BATCH, ge=1)
    """Inputs per request (the server takes at most 2,048)."""
    max_concurrency: int = Field(default=4, ge=1)
    """Requests in flight at once when the input spans several batches."""
    scope: str | None = None

    @model_validator(mode="after")
    def _check_sizes(self) -> Self:
        if self.chunk_size > MAX_EMBEDDING_BATCH:
            raise ValueError(
                f"chunk_size must be <= {MAX_EMBEDDING_BATCH} (Nebo's limit), got {self.chunk_size}"
            )
        check_embedding_model(self.model, self.dimensions)
        return self

    def _kwargs(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dimensions": self.dimensions,
            "batch_size": self.chunk_size,
            "concurrency": self.max_concurrency,
            "scope": self.scope,
        }

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order (empty input: no request)."""
        if not texts:
            return []
        try:
            return self._sync_client().embed(texts, **self._kwargs()).vectors
        except NeboError as err:
            raise translate(err) from err

    def embed_query(self, text: str) -> list[float]:
        """The vector of one text."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`; batches run concurrently, bounded by ``max_concurrency``."""
        if not texts:
            return []
        try:
            return (await self._async_client().embed(texts, **self._kwargs())).vectors
        except NeboError as err:
            raise translate(err) from err

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        return (await self.aembed_documents([text]))[0]
