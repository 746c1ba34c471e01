"""NeboEmbeddings refuses a text longer than the model's context before sending it: never truncated,
never split and averaged. Exact where tiktoken's encoding is cached, else only when surely over."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from langchain_nebo import NeboContextOverflowError, NeboEmbeddings, _tokens

CL100K = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"  # tiktoken's cache name for cl100k_base


def _embed(model: NeboEmbeddings, path: str, texts: list[str]) -> list[list[float]]:
    return model.embed_documents(texts) if path == "sync" else asyncio.run(model.aembed_documents(texts))


@pytest.fixture
def cl100k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    try:
        import llama_index.core
    except ImportError:
        pytest.skip("no cached cl100k_base file here (llama-index-core ships one)")
    source = Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache" / CL100K
    if not source.exists():
        pytest.skip("no cached cl100k_base file here")
    shutil.copy(source, tmp_path / CL100K)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    enc = _tokens.encoding("cl100k_base")
    assert enc is not None
    return enc


@pytest.mark.parametrize("path", ["sync", "async"])
def test_exact_counts_refuse_one_token_over(
    raw: Any, raw_connect: dict[str, Any], cl100k: Any, path: str
) -> None:
    text = "budget " * 30
    tokens = len(cl100k.encode(text))
    fits = NeboEmbeddings(embedding_ctx_length=tokens, **raw_connect)
    assert len(_embed(fits, path, ["short", text])) == 2
    assert raw.last.body["input"] == ["short", text]  # sent whole
    sent = len(raw.requests)
    over = NeboEmbeddings(embedding_ctx_length=tokens - 1, **raw_connect)
    with pytest.raises(
        NeboContextOverflowError, match=rf"text 1 has {tokens} tokens .* at most {tokens - 1}"
    ):
        _embed(over, path, ["short", text])
    assert len(raw.requests) == sent  # nothing sent


@pytest.mark.parametrize("path", ["sync", "async"])
def test_estimates_refuse_only_what_is_surely_over(
    raw: Any, raw_connect: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # nothing cached: estimates
    text = "budget " * 30
    estimate = _tokens.estimate(text)
    borderline = NeboEmbeddings(embedding_ctx_length=estimate - 2, **raw_connect)
    _embed(borderline, path, [text])  # maybe over: the server decides (and errors typed)
    assert len(raw.requests) == 1
    surely_over = NeboEmbeddings(embedding_ctx_length=estimate // 2, **raw_connect)
    with pytest.raises(NeboContextOverflowError, match=rf"text 0 has about {estimate} tokens"):
        _embed(surely_over, path, [text])
    assert len(raw.requests) == 1


def test_a_few_characters_can_be_many_tokens(raw: Any, raw_connect: dict[str, Any], cl100k: Any) -> None:
    text = "┬┘" * 5  # 10 characters, 20 tokens: the check counts bytes, not characters, to skip
    assert len(cl100k.encode(text)) > len(text)
    with pytest.raises(NeboContextOverflowError):
        NeboEmbeddings(embedding_ctx_length=len(text), **raw_connect).embed_documents([text])


def test_the_default_limit_is_the_models_window(raw: Any, raw_connect: dict[str, Any]) -> None:
    with pytest.raises(NeboContextOverflowError, match="at most 8191"):
        NeboEmbeddings(**raw_connect).embed_query("budget " * 20_000)
    assert raw.requests == []
