"""``NeboEmbedding`` on the emulator: batching, order, async, model names, pipelines."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter

from llama_index_nebo import NeboEmbedding
from nebo_emulator import NeboEmulator

TEXTS = [
    "refund policy for annual plans",
    "API rate limits per minute",
    "company history in Norway",
    "offline mode sync conflicts",
    "pricing for nonprofit teams",
]


def test_dimensions_per_model_and_aliases(conn: dict[str, Any]) -> None:
    small = NeboEmbedding(**conn)
    assert small.model_name == "neboloop/nebo-embed-small"
    assert small.dimension == 1536
    assert len(small.get_query_embedding("hello")) == 1536
    large = NeboEmbedding("text-embedding-3-large", **conn)
    assert large.dimension == 3072
    assert len(large.get_text_embedding("hello")) == 3072
    short = NeboEmbedding("neboloop/nebo-embed-small", dimensions=256, **conn)
    assert short.dimension == 256
    assert len(short.get_text_embedding("hello")) == 256


def test_chat_model_name_is_rejected(conn: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="chat model.*neboloop/nebo-embed-small"):
        NeboEmbedding("gpt-5-mini", **conn)


def test_batches_keep_order_and_count_requests(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    one_by_one = [NeboEmbedding(**conn).get_text_embedding(t) for t in TEXTS]
    before = emu.requests
    batched = NeboEmbedding(embed_batch_size=2, **conn).get_text_embedding_batch(TEXTS)
    assert emu.requests - before == 3  # 2 + 2 + 1
    assert batched == one_by_one
    before = emu.requests
    assert NeboEmbedding(**conn).get_text_embedding_batch(TEXTS) == one_by_one
    assert emu.requests - before == 1  # the default batch of 2048 sends everything at once


async def test_async_batches_match_sync(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    embed = NeboEmbedding(embed_batch_size=2, num_workers=2, **conn)
    sync = embed.get_text_embedding_batch(TEXTS)
    asynced = await embed.aget_text_embedding_batch(TEXTS)
    assert asynced == sync
    assert await embed.aget_query_embedding(TEXTS[0]) == sync[0]
    assert embed.tracker.totals().by_kind["embedding"].cost_micro == emu.ledger_total_micro()


def test_similarity_follows_shared_words(conn: dict[str, Any]) -> None:
    embed = NeboEmbedding(**conn)
    query = embed.get_query_embedding("refund policy")
    scores = [embed.similarity(query, v) for v in embed.get_text_embedding_batch(TEXTS)]
    assert max(range(len(TEXTS)), key=scores.__getitem__) == 0


def test_ingestion_pipeline(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), NeboEmbedding(**conn)]
    )
    nodes = pipeline.run(documents=[Document(text=". ".join(TEXTS * 6))], show_progress=True)
    assert len(nodes) > 1
    assert all(n.embedding is not None and len(n.embedding) == 1536 for n in nodes)
    assert emu.ledger_total_micro() > 0


def test_key_never_serialized(emu: NeboEmulator) -> None:
    embed = NeboEmbedding(api_key=emu.token, base_url=emu.base_url)
    for text in (
        json.dumps(embed.to_dict(), default=str),
        embed.to_json(),
        repr(embed),
        str(embed.to_payload()) if hasattr(embed, "to_payload") else "",
    ):
        assert emu.token not in text
    assert embed.to_dict()["embed_batch_size"] == 2048
