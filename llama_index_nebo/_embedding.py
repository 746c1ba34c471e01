"""``NeboEmbedding``: LlamaIndex embeddings over ``nebo_core``'s batched, base64 ``embed``.

LlamaIndex splits texts into batches of ``embed_batch_size`` (2048 by default: one request
per 2048 inputs, the server's limit) and shows its own progress bar; each batch is sent as
up to ``num_workers`` concurrent requests, sync or async. Each request runs under the ``nebo_core``
budget policy and one retry layer, and its usage is published as a ``NeboUsageEvent``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from llama_index_nebo._clients import OPENAI_SHARED, Refusal, connect, publish, restore_state
from nebo_core import (
    AsyncNeboClient,
    BudgetPolicy,
    BudgetTracker,
    EmbeddingResult,
    NeboClient,
    NeboConfigurationError,
    NeboProvider,
    get_model,
)
from nebo_core.models import DEFAULT_EMBEDDING_MODEL, check_embedding_model, embedding_models
from nebo_core.settings import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT

logger = logging.getLogger("llama_index_nebo")

MAX_BATCH = 2048
MIN_SPLIT = 128
_REFUSED: dict[str, Refusal] = {
    **OPENAI_SHARED,
    # OpenAIEmbedding maps both modes to the same model for every current OpenAI model.
    "mode": (lambda v: v in ("text_search", "similarity"), "Nebo has one mode per embedding model"),
}
"""``OpenAIEmbedding`` keywords with no meaning here (see ``_clients.check_foreign``)."""


def _check_model(model_name: str, dimensions: int | None) -> None:
    if check_embedding_model(model_name, dimensions) is None:
        names = ", ".join(m.id for m in embedding_models())
        logger.warning(
            "NeboEmbedding: unknown embedding model %r (known: %s); sending it as given, dimension is None",
            model_name,
            names,
        )


class NeboEmbedding(BaseEmbedding):
    """Nebo embeddings (``neboloop/nebo-embed-small``/``-large`` or their OpenAI names).

    The token comes from ``api_key`` or ``NEBO_API_KEY`` and is never a field, nor pickled: an
    unpickled copy (e.g. in an ``IngestionPipeline`` worker) reads ``NEBO_API_KEY`` on its first
    call and records into the process-wide default tracker and policy, not the ones given here.
    A model name ``nebo_core`` does not know is accepted (Nebo may add models), with a warning
    logged; its ``dimension`` is ``None``.

    ``OpenAIEmbedding``'s keywords work here (``model=`` for ``model_name``, ``api_base``,
    ``default_headers``, ``http_client``/``async_http_client``...); ``api_version`` and other
    values that mean nothing for Nebo are refused by name. A vector Nebo sends that cannot be
    decoded is a ``NeboUpstreamError``.
    """

    model_name: str = Field(
        default=DEFAULT_EMBEDDING_MODEL, description="Nebo or OpenAI embedding model name."
    )
    embed_batch_size: int = Field(default=MAX_BATCH, gt=0, le=MAX_BATCH, description="Inputs per request.")
    num_workers: int | None = Field(default=4, description="Concurrent requests for async batches.")
    dimensions: int | None = Field(default=None, description="Shorter vectors (text-embedding-3 models).")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="Nebo API base URL, ending in /v1.")
    timeout: float = Field(default=DEFAULT_TIMEOUT, description="Seconds per request.")
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, description="Retries of transient failures.")
    scope: str | None = Field(default=None, description="Budget scope passed to the nebo_core policy.")
    additional_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra request body fields (e.g. user)."
    )

    _clients: NeboProvider = PrivateAttr()

    def __init__(
        self,
        model_name: str | None = None,
        *,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        api_base: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        provider_api_key: str | None = None,
        bot_id: str | None = None,
        lane: str | None = None,
        purpose: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        tracker: BudgetTracker | None = None,
        policy: BudgetPolicy | None = None,
        client: NeboClient | None = None,
        async_client: AsyncNeboClient | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        **kwargs: Any,
    ) -> None:
        if model_name is not None and model is not None and model != model_name:
            raise NeboConfigurationError(f"model_name={model_name!r} and model={model!r} disagree; pass one")
        model_name = model_name or model or DEFAULT_EMBEDDING_MODEL
        _check_model(model_name, kwargs.get("dimensions"))
        clients, fields = connect(
            type(self),
            kwargs,
            refusals=_REFUSED,
            base_url=base_url,
            api_base=api_base,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            provider_api_key=provider_api_key,
            bot_id=bot_id,
            lane=lane,
            purpose=purpose,
            default_headers=default_headers,
            tracker=tracker,
            policy=policy,
            client=client,
            async_client=async_client,
            http_client=http_client,
            async_http_client=async_http_client,
        )
        super().__init__(model_name=model_name, **fields)
        self._clients = clients

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "NeboEmbedding"

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_state(self, state)

    @property
    def dimension(self) -> int | None:
        """Vector width: ``dimensions`` if set, else the model's; ``None`` for a model ``nebo_core``
        does not know (a warning naming the known models was logged at construction)."""
        spec = get_model(self.model_name)
        return self.dimensions or (spec.dimensions if spec is not None else None)

    @property
    def tracker(self) -> BudgetTracker:
        """The ``nebo_core`` tracker every request records into."""
        return self._clients.tracker

    def _embed_kwargs(self, count: int) -> dict[str, Any]:
        workers = max(self.num_workers or 1, 1)
        # One LlamaIndex batch is split across `num_workers` concurrent requests (of at least
        # MIN_SPLIT inputs), so the network wait of one overlaps the decoding of another.
        per_request = min(self.embed_batch_size, max(MIN_SPLIT, -(-count // workers)))
        kwargs: dict[str, Any] = {
            "model": self.model_name,
            "dimensions": self.dimensions,
            "batch_size": per_request,
            "concurrency": workers,
            "scope": self.scope,
        }
        if self.additional_kwargs:
            kwargs["extra_body"] = self.additional_kwargs
        return kwargs

    def _vectors(self, result: EmbeddingResult) -> list[Embedding]:
        publish(result.usage, self.callback_manager)
        return result.vectors

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        result = self._clients.sync.embed(texts, **self._embed_kwargs(len(texts)))
        return self._vectors(result)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        result = await self._clients.aio().embed(texts, **self._embed_kwargs(len(texts)))
        return self._vectors(result)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aget_text_embeddings([text]))[0]

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await self._aget_text_embedding(query)
