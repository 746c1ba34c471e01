"""Parity with the anchors (issue 13): every constructor parameter and call-time keyword of
``OpenAILike`` (llama-index-llms-openai-like) and ``OpenAIEmbedding`` (llama-index-embeddings-openai)
either reaches the wire here, checked on a raw loopback server that records each request, or is
refused with a message naming it. Nothing a user moving over brings is silently dropped.

The lists are checked in, read from the installed anchors (llama-index-llms-openai-like 0.8.1,
llama-index-embeddings-openai 0.7.0, openai 2.54.0): ``__init__`` parameters plus pydantic fields,
the openai SDK's ``chat.completions.create`` keywords (``OpenAILike.chat(**kwargs)`` passes them on),
and ``chat_with_tools``' keywords. ``test_lists_match_the_installed_anchors`` re-reads them where the
anchors are installed (``bench/.venv``) and skips elsewhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.prompts import ChatPromptTemplate, PromptTemplate
from llama_index.core.rate_limiter import BaseRateLimiter
from llama_index.core.storage.kvstore import SimpleKVStore
from llama_index.core.tools import FunctionTool
from llama_index.core.types import BaseOutputParser
from pydantic import BaseModel

from llama_index_nebo import Nebo, NeboConfigurationError, NeboEmbedding, NeboTimeoutError, NeboUpstreamError
from nebo_core.models import get_model

OPENAILIKE_PARAMETERS = [
    "additional_kwargs", "api_base", "api_key", "api_version", "async_http_client", "async_openai_client",
    "audio_config", "callback_manager", "completion_to_prompt", "context_window", "default_headers",
    "http_client", "is_chat_model", "is_function_calling_model", "logprobs", "max_retries", "max_tokens",
    "messages_to_prompt", "modalities", "model", "openai_client", "output_parser", "pydantic_program_mode",
    "query_wrapper_prompt", "rate_limiter", "reasoning_effort", "reuse_client",
    "should_use_structured_outputs", "strict", "system_prompt", "temperature", "timeout", "tokenizer",
    "top_logprobs",
]  # fmt: skip
OPENAIEMBEDDING_PARAMETERS = [
    "additional_kwargs", "api_base", "api_key", "api_version", "async_http_client", "callback_manager",
    "default_headers", "dimensions", "embed_batch_size", "embeddings_cache", "http_client", "max_retries",
    "mode", "model", "model_name", "num_workers", "rate_limiter", "reuse_client", "timeout",
]  # fmt: skip
CHAT_CREATE_KEYWORDS = [
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
    "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n",
    "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options",
    "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier", "seed",
    "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice", "tools",
    "top_logprobs", "top_p", "user", "verbosity", "web_search_options", "extra_headers", "extra_query",
    "extra_body", "timeout",
]  # fmt: skip
CHAT_WITH_TOOLS_KEYWORDS = [
    "tools", "user_msg", "chat_history", "verbose", "allow_parallel_tool_calls", "tool_required",
    "tool_choice", "strict",
]  # fmt: skip
LLAMA_CALL_KEYWORDS = ["use_chat_completions", "formatted"]
"""``OpenAI.chat(use_chat_completions=)`` picks the endpoint; ``complete(formatted=)`` skips
``completion_to_prompt``."""

HELLO = [ChatMessage(role=MessageRole.USER, content="hello")]
Case = Callable[[Any], Awaitable[None]]
LLM_CASES: dict[str, Case] = {}
EMBEDDING_CASES: dict[str, Case] = {}
CALL_CASES: dict[str, Case] = {}


def case(table: dict[str, Case], *names: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        for name in names:
            assert name not in table, name
            table[name] = fn
        return fn

    return register


def last(raw: Any) -> Any:
    """The body of the last request the raw server saw."""
    return raw.server.seen[-1].json


def header(raw: Any, name: str) -> str | None:
    value: str | None = raw.server.seen[-1].headers.get(name.lower())
    return value


def add(a: int, b: int) -> int:
    """Add two integers a and b."""
    return a + b


class Person(BaseModel):
    name: str
    age: int


PERSON = PromptTemplate("Extract the person: {text}")


def person_reply(raw: Any, as_tool: bool) -> Any:
    if as_tool:
        call = {
            "id": "c",
            "type": "function",
            "function": {"name": "Person", "arguments": '{"name": "Mara", "age": 41}'},
        }
        return raw.Reply(raw.completion({"role": "assistant", "content": None, "tool_calls": [call]}))
    return raw.Reply(raw.completion({"role": "assistant", "content": '{"name": "Mara", "age": 41}'}))


class CountingLimiter(BaseRateLimiter):
    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self, num_tokens: int = 0) -> None:
        self.acquired += 1

    async def async_acquire(self, num_tokens: int = 0) -> None:
        self.acquired += 1


class Shout(BaseOutputParser):
    def parse(self, output: str) -> Any:
        return output.upper()

    def format(self, query: str) -> str:
        return query + " (answer in one word)"


def refused(cls: type, name: str, value: Any, error: type[Exception] = TypeError) -> Case:
    async def check(raw: Any) -> None:
        sent = len(raw.server.seen)
        with pytest.raises(error, match=name):
            cls(**{name: value}, **raw.conn)
        assert len(raw.server.seen) == sent

    return check


# -- OpenAILike constructor parameters ---------------------------------------------------------


@case(LLM_CASES, "model")
async def _model(raw: Any) -> None:
    Nebo("gpt-5-mini", **raw.conn).chat(HELLO)
    Nebo(model="nebo-1", **raw.conn).chat(HELLO)
    assert [s.json["model"] for s in raw.server.seen] == ["gpt-5-mini", "nebo-1"]


@case(LLM_CASES, "temperature")
async def _temperature(raw: Any) -> None:
    Nebo(temperature=0.3, **raw.conn).chat(HELLO)
    assert last(raw)["temperature"] == 0.3


@case(LLM_CASES, "max_tokens")
async def _max_tokens(raw: Any) -> None:
    Nebo(max_tokens=77, **raw.conn).chat(HELLO)
    assert last(raw)["max_completion_tokens"] == 77


@case(LLM_CASES, "additional_kwargs")
async def _additional_kwargs(raw: Any) -> None:
    Nebo(additional_kwargs={"seed": 7, "user": "u1"}, **raw.conn).chat(HELLO)
    assert (last(raw)["seed"], last(raw)["user"]) == (7, "u1")


@case(LLM_CASES, "api_key")
async def _api_key(raw: Any) -> None:
    Nebo(**raw.conn).chat(HELLO)
    assert header(raw, "Authorization") == "Bearer raw-token"


@case(LLM_CASES, "api_base")
async def _api_base(raw: Any) -> None:
    conn = {k: v for k, v in raw.conn.items() if k != "base_url"}
    Nebo(api_base=raw.server.base_url, **conn).chat(HELLO)
    assert raw.server.seen[-1].path == "/v1/chat/completions"


@case(LLM_CASES, "max_retries")
async def _max_retries(raw: Any) -> None:
    busy = raw.Reply({"error": {"message": "busy"}}, status=503, headers=(("Retry-After", "0"),))
    raw.server.answer(busy, busy, busy)
    with pytest.raises(NeboUpstreamError):
        Nebo(max_retries=1, **raw.conn).chat(HELLO)
    assert len(raw.server.seen) == 2


@case(LLM_CASES, "timeout")
async def _timeout(raw: Any) -> None:
    raw.server.answer(raw.Reply(raw.completion({"role": "assistant", "content": "late"}), delay=2.0))
    with pytest.raises(NeboTimeoutError):
        Nebo(timeout=0.2, max_retries=0, **raw.conn).chat(HELLO)


@case(LLM_CASES, "default_headers")
async def _default_headers(raw: Any) -> None:
    llm = Nebo(default_headers={"X-Trace": "t-1"}, **raw.conn)
    llm.chat(HELLO)
    assert header(raw, "X-Trace") == "t-1"
    await llm.achat(HELLO)
    assert header(raw, "X-Trace") == "t-1"
    assert "t-1" not in llm.to_json()  # header values may be secrets: not a serialised field


@case(LLM_CASES, "http_client")
async def _http_client(raw: Any) -> None:
    with httpx.Client(headers={"X-From-Client": "sync"}) as http:
        Nebo(http_client=http, **raw.conn).chat(HELLO)
    assert header(raw, "X-From-Client") == "sync"
    with pytest.raises(TypeError, match="http_client must be an httpx.Client"):
        Nebo(http_client=object(), **raw.conn)  # type: ignore[arg-type]


@case(LLM_CASES, "async_http_client")
async def _async_http_client(raw: Any) -> None:
    async with httpx.AsyncClient(headers={"X-From-Client": "async"}) as http:
        await Nebo(async_http_client=http, **raw.conn).achat(HELLO)
    assert header(raw, "X-From-Client") == "async"


@case(LLM_CASES, "reuse_client")
async def _reuse_client(raw: Any) -> None:
    Nebo(reuse_client=True, **raw.conn).chat(HELLO)  # what Nebo does anyway
    assert len(raw.server.seen) == 1
    await refused(Nebo, "reuse_client", False)(raw)


LLM_CASES["api_version"] = refused(Nebo, "api_version", "2024-06-01")
LLM_CASES["openai_client"] = refused(Nebo, "openai_client", object())
LLM_CASES["async_openai_client"] = refused(Nebo, "async_openai_client", object())
LLM_CASES["audio_config"] = refused(Nebo, "audio_config", {"voice": "alloy", "format": "wav"})
LLM_CASES["tokenizer"] = refused(Nebo, "tokenizer", "gpt2")


@case(LLM_CASES, "modalities")
async def _modalities(raw: Any) -> None:
    Nebo(modalities=["text"], **raw.conn).chat(HELLO)
    assert "modalities" not in last(raw)
    await refused(Nebo, "modalities", ["text", "audio"])(raw)


@case(LLM_CASES, "reasoning_effort")
async def _reasoning_effort(raw: Any) -> None:
    Nebo(reasoning_effort="low", **raw.conn).chat(HELLO)
    assert last(raw)["reasoning_effort"] == "low"


@case(LLM_CASES, "logprobs", "top_logprobs")
async def _logprobs(raw: Any) -> None:
    top = [
        {"token": "ok", "logprob": -0.1, "bytes": [111, 107]},
        {"token": "no", "logprob": -2.5, "bytes": None},
    ]
    lp = {"content": [{"token": "ok", "logprob": -0.1, "bytes": [111, 107], "top_logprobs": top}]}
    raw.server.answer(raw.Reply(raw.completion({"role": "assistant", "content": "ok"}, logprobs=lp)))
    response = Nebo(logprobs=True, top_logprobs=2, **raw.conn).chat(HELLO)
    assert (last(raw)["logprobs"], last(raw)["top_logprobs"]) == (True, 2)
    assert response.logprobs is not None
    assert [(p.token, p.logprob, p.bytes) for p in response.logprobs[0]] == [
        ("ok", -0.1, [111, 107]),
        ("no", -2.5, []),
    ]
    with pytest.raises(NeboConfigurationError, match="top_logprobs"):
        Nebo(top_logprobs=2, **raw.conn)
    Nebo(top_logprobs=0, **raw.conn).chat(HELLO)  # OpenAILike's default: asks for nothing
    assert "top_logprobs" not in last(raw)
    assert "logprobs" not in last(raw)


@case(LLM_CASES, "strict")
async def _strict(raw: Any) -> None:
    Nebo(strict=True, **raw.conn).chat_with_tools([FunctionTool.from_defaults(add)], user_msg="add 1 and 2")
    (tool,) = last(raw)["tools"]
    assert tool["function"]["strict"] is True
    assert tool["function"]["parameters"]["additionalProperties"] is False


@case(LLM_CASES, "context_window", "is_function_calling_model", "is_chat_model")
async def _metadata(raw: Any) -> None:
    assert get_model("gpt-5-mini") is not None
    meta = Nebo("gpt-5-mini", **raw.conn).metadata
    assert (meta.context_window, meta.is_chat_model) == (get_model("gpt-5-mini").context_window, True)  # type: ignore[union-attr]
    meta = Nebo(
        "gpt-5-mini", context_window=8000, is_function_calling_model=False, is_chat_model=False, **raw.conn
    ).metadata
    assert (meta.context_window, meta.is_function_calling_model, meta.is_chat_model) == (8000, False, False)
    # Not a chat model to LlamaIndex: predict() formats one prompt and completes it (still a chat call).
    llm = Nebo(
        is_chat_model=False, messages_to_prompt=lambda ms: "|".join(m.content or "" for m in ms), **raw.conn
    )
    llm.predict(ChatPromptTemplate.from_messages([("system", "be brief"), ("user", "hi {x}")]), x="there")
    assert last(raw)["messages"] == [{"role": "user", "content": "be brief|hi there"}]


LLM_CASES["messages_to_prompt"] = LLM_CASES["is_chat_model"]


@case(LLM_CASES, "query_wrapper_prompt")
async def _query_wrapper_prompt(raw: Any) -> None:
    llm = Nebo(
        is_chat_model=False, query_wrapper_prompt=PromptTemplate("[INST] {query_str} [/INST]"), **raw.conn
    )
    llm.predict(PromptTemplate("hi {x}"), x="there")
    assert last(raw)["messages"][-1]["content"] == "[INST] hi there [/INST]"


@case(LLM_CASES, "system_prompt")
async def _system_prompt(raw: Any) -> None:
    Nebo(system_prompt="Be brief.", **raw.conn).predict(PromptTemplate("hi"))
    assert last(raw)["messages"][0] == {"role": "system", "content": "Be brief."}


@case(LLM_CASES, "completion_to_prompt")
async def _completion_to_prompt(raw: Any) -> None:
    Nebo(completion_to_prompt=lambda p: f"<<{p}>>", **raw.conn).complete("hi")
    assert last(raw)["messages"] == [{"role": "user", "content": "<<hi>>"}]


@case(LLM_CASES, "output_parser")
async def _output_parser(raw: Any) -> None:
    out = Nebo(output_parser=Shout(), **raw.conn).predict(PromptTemplate("hi"))
    assert last(raw)["messages"][-1]["content"] == "hi (answer in one word)"
    assert out == "OK"


@case(LLM_CASES, "callback_manager")
async def _callback_manager(raw: Any) -> None:
    counter = TokenCountingHandler(tokenizer=str.split)
    Nebo(callback_manager=CallbackManager([counter]), **raw.conn).chat(HELLO)
    assert counter.prompt_llm_token_count == 3  # the raw server's usage


@case(LLM_CASES, "rate_limiter")
async def _rate_limiter(raw: Any) -> None:
    limiter = CountingLimiter()
    llm = Nebo(rate_limiter=limiter, **raw.conn)
    llm.chat(HELLO)
    await llm.acomplete("hi")
    assert limiter.acquired == 2


@case(LLM_CASES, "should_use_structured_outputs", "pydantic_program_mode")
async def _structured(raw: Any) -> None:
    raw.server.answer(person_reply(raw, as_tool=False))
    person = Nebo(should_use_structured_outputs=True, **raw.conn).structured_predict(
        Person, PERSON, text="Mara, 41"
    )
    assert last(raw)["response_format"]["type"] == "json_schema"
    assert "tools" not in last(raw)
    raw.server.answer(person_reply(raw, as_tool=True))
    assert (
        Nebo(should_use_structured_outputs=False, **raw.conn).structured_predict(Person, PERSON, text="x")
        == person
    )
    assert last(raw)["tools"][0]["function"]["name"] == "Person"
    assert "response_format" not in last(raw)
    # pydantic_program_mode="llm": LlamaIndex's text-completion program (the schema in the prompt).
    raw.server.answer(person_reply(raw, as_tool=False))
    assert (
        Nebo(pydantic_program_mode="llm", **raw.conn).structured_predict(Person, PERSON, text="x") == person
    )
    assert "tools" not in last(raw)
    assert "response_format" not in last(raw)
    with pytest.raises(NeboConfigurationError, match="should_use_structured_outputs"):
        Nebo(should_use_structured_outputs=True, structured_output_mode="tools", **raw.conn)


# -- OpenAIEmbedding constructor parameters -----------------------------------------------------


@case(EMBEDDING_CASES, "model", "model_name")
async def _embedding_model(raw: Any) -> None:
    NeboEmbedding(model="text-embedding-3-small", **raw.conn).get_text_embedding("a")
    NeboEmbedding(model_name="neboloop/nebo-embed-large", **raw.conn).get_text_embedding("a")
    assert [s.json["model"] for s in raw.server.seen] == [
        "text-embedding-3-small",
        "neboloop/nebo-embed-large",
    ]
    with pytest.raises(NeboConfigurationError, match="model_name"):
        NeboEmbedding(model_name="text-embedding-3-small", model="text-embedding-3-large", **raw.conn)


@case(EMBEDDING_CASES, "dimensions")
async def _embedding_dimensions(raw: Any) -> None:
    NeboEmbedding("text-embedding-3-small", dimensions=256, **raw.conn).get_text_embedding("a")
    assert last(raw)["dimensions"] == 256


@case(EMBEDDING_CASES, "embed_batch_size")
async def _embed_batch_size(raw: Any) -> None:
    NeboEmbedding(embed_batch_size=2, **raw.conn).get_text_embedding_batch(["a", "b", "c"])
    assert [len(s.json["input"]) for s in raw.server.seen] == [2, 1]


@case(EMBEDDING_CASES, "num_workers")
async def _num_workers(raw: Any) -> None:
    texts = [f"t{i}" for i in range(512)]
    NeboEmbedding(num_workers=4, **raw.conn).get_text_embedding_batch(texts)
    assert sorted(len(s.json["input"]) for s in raw.server.seen) == [128] * 4
    NeboEmbedding(num_workers=1, **raw.conn).get_text_embedding_batch(texts)
    assert len(last(raw)["input"]) == 512


@case(EMBEDDING_CASES, "additional_kwargs")
async def _embedding_additional_kwargs(raw: Any) -> None:
    NeboEmbedding(additional_kwargs={"user": "u1"}, **raw.conn).get_text_embedding("a")
    assert last(raw)["user"] == "u1"
    NeboEmbedding(additional_kwargs={}, **raw.conn).get_text_embedding("a")


@case(EMBEDDING_CASES, "api_key")
async def _embedding_api_key(raw: Any) -> None:
    NeboEmbedding(**raw.conn).get_text_embedding("a")
    assert header(raw, "Authorization") == "Bearer raw-token"


@case(EMBEDDING_CASES, "api_base")
async def _embedding_api_base(raw: Any) -> None:
    conn = {k: v for k, v in raw.conn.items() if k != "base_url"}
    NeboEmbedding(api_base=raw.server.base_url, **conn).get_text_embedding("a")
    assert raw.server.seen[-1].path == "/v1/embeddings"


@case(EMBEDDING_CASES, "default_headers")
async def _embedding_default_headers(raw: Any) -> None:
    embed = NeboEmbedding(default_headers={"X-Trace": "e-1"}, **raw.conn)
    embed.get_text_embedding("a")
    assert header(raw, "X-Trace") == "e-1"
    await embed.aget_text_embedding("b")
    assert header(raw, "X-Trace") == "e-1"


@case(EMBEDDING_CASES, "http_client")
async def _embedding_http_client(raw: Any) -> None:
    with httpx.Client(headers={"X-From-Client": "sync"}) as http:
        NeboEmbedding(http_client=http, **raw.conn).get_text_embedding("a")
    assert header(raw, "X-From-Client") == "sync"


@case(EMBEDDING_CASES, "async_http_client")
async def _embedding_async_http_client(raw: Any) -> None:
    async with httpx.AsyncClient(headers={"X-From-Client": "async"}) as http:
        await NeboEmbedding(async_http_client=http, **raw.conn).aget_text_embedding("a")
    assert header(raw, "X-From-Client") == "async"


@case(EMBEDDING_CASES, "max_retries")
async def _embedding_max_retries(raw: Any) -> None:
    busy = raw.Reply({"error": {"message": "busy"}}, status=503, headers=(("Retry-After", "0"),))
    raw.server.answer(busy, busy, busy)
    with pytest.raises(NeboUpstreamError):
        NeboEmbedding(max_retries=1, **raw.conn).get_text_embedding("a")
    assert len(raw.server.seen) == 2


@case(EMBEDDING_CASES, "timeout")
async def _embedding_timeout(raw: Any) -> None:
    raw.server.answer(raw.Reply({"data": []}, delay=2.0))
    with pytest.raises(NeboTimeoutError):
        NeboEmbedding(timeout=0.2, max_retries=0, **raw.conn).get_text_embedding("a")


@case(EMBEDDING_CASES, "callback_manager")
async def _embedding_callback_manager(raw: Any) -> None:
    counter = TokenCountingHandler(tokenizer=str.split)
    NeboEmbedding(callback_manager=CallbackManager([counter]), **raw.conn).get_text_embedding("one two")
    assert counter.total_embedding_token_count == 2


@case(EMBEDDING_CASES, "rate_limiter")
async def _embedding_rate_limiter(raw: Any) -> None:
    limiter = CountingLimiter()
    NeboEmbedding(rate_limiter=limiter, **raw.conn).get_query_embedding("a")
    assert limiter.acquired == 1


@case(EMBEDDING_CASES, "embeddings_cache")
async def _embeddings_cache(raw: Any) -> None:
    embed = NeboEmbedding(embeddings_cache=SimpleKVStore(), **raw.conn)
    assert embed.get_query_embedding("a") == embed.get_query_embedding("a")
    assert len(raw.server.seen) == 1


@case(EMBEDDING_CASES, "mode")
async def _embedding_mode(raw: Any) -> None:
    NeboEmbedding(mode="text_search", **raw.conn).get_text_embedding("a")  # one mode per model, as OpenAI's
    assert len(raw.server.seen) == 1
    await refused(NeboEmbedding, "mode", "code_search")(raw)


@case(EMBEDDING_CASES, "reuse_client")
async def _embedding_reuse_client(raw: Any) -> None:
    NeboEmbedding(reuse_client=True, **raw.conn).get_text_embedding("a")
    await refused(NeboEmbedding, "reuse_client", False)(raw)


EMBEDDING_CASES["api_version"] = refused(NeboEmbedding, "api_version", "2024-06-01")


# -- call-time keywords: chat(**kwargs) -------------------------------------------------------------

BODY_VALUES: dict[str, Any] = {
    "audio": {"voice": "alloy", "format": "wav"},
    "frequency_penalty": 0.5,
    "function_call": "auto",
    "functions": [{"name": "f", "parameters": {"type": "object"}}],
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "max_completion_tokens": 9,
    "max_tokens": 9,
    "metadata": {"k": "v"},
    "modalities": ["text"],
    "moderation": {"mode": "x"},
    "n": 2,
    "parallel_tool_calls": False,
    "prediction": {"type": "content", "content": "x"},
    "presence_penalty": -0.5,
    "prompt_cache_key": "key",
    "prompt_cache_options": {"a": 1},
    "prompt_cache_retention": "24h",
    "reasoning_effort": "high",
    "response_format": {"type": "json_object"},
    "safety_identifier": "s",
    "seed": 3,
    "service_tier": "flex",
    "stop": ["\n\n"],
    "store": True,
    "temperature": 0.0,
    "tool_choice": "none",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "top_logprobs": 3,
    "top_p": 0.9,
    "user": "u1",
    "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
    "model": "gpt-5-mini",
}
"""Every ``chat.completions.create`` keyword that is a request body field, with a value to send."""


def body_field(name: str) -> Case:
    async def check(raw: Any) -> None:
        llm = Nebo(**raw.conn)
        llm.chat(HELLO, **{name: BODY_VALUES[name]})
        assert last(raw)[name] == BODY_VALUES[name]
        await llm.acomplete("hi", **{name: BODY_VALUES[name]})
        assert last(raw)[name] == BODY_VALUES[name]

    return check


for _name in BODY_VALUES:
    CALL_CASES[_name] = body_field(_name)


@case(CALL_CASES, "messages")
async def _messages(raw: Any) -> None:
    Nebo(**raw.conn).chat([ChatMessage(role=MessageRole.USER, content="what")])
    assert last(raw)["messages"] == [{"role": "user", "content": "what"}]


@case(CALL_CASES, "stream", "stream_options")
async def _stream(raw: Any) -> None:
    llm = Nebo(**raw.conn)
    for name, value in (("stream", True), ("stream_options", {"include_usage": False})):
        with pytest.raises(NeboConfigurationError, match=name):
            llm.chat(HELLO, **{name: value})
    list(llm.stream_chat(HELLO, stream_options={"include_obfuscation": False}))
    assert last(raw)["stream"] is True
    # Usage is always asked for: it is what the budget is settled with.
    assert last(raw)["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert len(raw.server.seen) == 1


@case(CALL_CASES, "extra_body")
async def _extra_body(raw: Any) -> None:
    Nebo(**raw.conn).chat(HELLO, extra_body={"custom": {"a": 1}, "seed": 5}, seed=4)
    assert (last(raw)["custom"], last(raw)["seed"]) == ({"a": 1}, 5)
    assert "extra_body" not in last(raw)


@case(CALL_CASES, "extra_headers")
async def _extra_headers(raw: Any) -> None:
    llm = Nebo(default_headers={"X-Team": "a"}, **raw.conn)
    llm.chat(HELLO, extra_headers={"X-Request-Tag": "r1"})
    assert (header(raw, "X-Request-Tag"), header(raw, "X-Team")) == ("r1", "a")
    assert "extra_headers" not in last(raw)
    list(llm.stream_chat(HELLO, extra_headers={"X-Request-Tag": "r2"}))
    assert header(raw, "X-Request-Tag") == "r2"
    await llm.acomplete("hi", extra_headers={"X-Request-Tag": "r3"})
    assert header(raw, "X-Request-Tag") == "r3"
    llm.chat(HELLO)
    assert header(raw, "X-Request-Tag") is None  # per call, not sticky
    with pytest.raises(NeboConfigurationError, match="Authorization"):
        llm.chat(HELLO, extra_headers={"Authorization": "Bearer other"})
    assert len(raw.server.seen) == 4


@case(CALL_CASES, "extra_query")
async def _extra_query(raw: Any) -> None:
    with pytest.raises(NeboConfigurationError, match="extra_query"):
        Nebo(**raw.conn).chat(HELLO, extra_query={"x": "1"})
    assert raw.server.seen == []


@case(CALL_CASES, "timeout")
async def _call_timeout(raw: Any) -> None:
    raw.server.answer(raw.Reply(raw.completion({"role": "assistant", "content": "late"}), delay=2.0))
    with pytest.raises(NeboTimeoutError):
        Nebo(max_retries=0, **raw.conn).chat(HELLO, timeout=0.2)
    assert "timeout" not in raw.server.seen[-1].json


@case(CALL_CASES, "use_chat_completions")
async def _use_chat_completions(raw: Any) -> None:
    llm = Nebo(**raw.conn)
    llm.chat(HELLO, use_chat_completions=True)
    assert "use_chat_completions" not in last(raw)
    with pytest.raises(NeboConfigurationError, match="use_chat_completions"):
        llm.chat(HELLO, use_chat_completions=False)


@case(CALL_CASES, "formatted")
async def _formatted(raw: Any) -> None:
    Nebo(completion_to_prompt=lambda p: f"<<{p}>>", **raw.conn).complete("hi", formatted=True)
    assert last(raw)["messages"] == [{"role": "user", "content": "hi"}]


TOOL = FunctionTool.from_defaults(add)


@case(CALL_CASES, "user_msg", "chat_history", "verbose")
async def _tool_turn(raw: Any) -> None:
    history = [ChatMessage(role=MessageRole.SYSTEM, content="be brief")]
    Nebo(**raw.conn).chat_with_tools([TOOL], user_msg="add 1 and 2", chat_history=history, verbose=True)
    body = last(raw)
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "add 1 and 2"},
    ]
    assert body["tools"][0]["function"]["name"] == "add"
    assert "verbose" not in body  # LlamaIndex's logging flag, as in OpenAILike


@case(CALL_CASES, "allow_parallel_tool_calls")
async def _allow_parallel(raw: Any) -> None:
    llm = Nebo(**raw.conn)
    llm.chat_with_tools([TOOL], user_msg="x")
    assert last(raw)["parallel_tool_calls"] is False
    llm.chat_with_tools([TOOL], user_msg="x", allow_parallel_tool_calls=True)
    assert last(raw)["parallel_tool_calls"] is True


@case(CALL_CASES, "tool_required")
async def _tool_required(raw: Any) -> None:
    Nebo(**raw.conn).chat_with_tools([TOOL], user_msg="x", tool_required=True)
    assert last(raw)["tool_choice"] == "required"


@case(CALL_CASES, "strict")
async def _call_strict(raw: Any) -> None:
    llm = Nebo(**raw.conn)
    llm.chat_with_tools([TOOL], user_msg="x", strict=True)
    assert last(raw)["tools"][0]["function"]["strict"] is True
    llm.chat_with_tools([TOOL], user_msg="x")
    assert "strict" not in last(raw)["tools"][0]["function"]
    with pytest.raises(NeboConfigurationError, match="strict"):
        llm.chat(HELLO, strict=True)


CHAT_WITH_TOOLS_ONLY = [k for k in CHAT_WITH_TOOLS_KEYWORDS if k not in CHAT_CREATE_KEYWORDS]
ALL_CALL_KEYWORDS = sorted({*CHAT_CREATE_KEYWORDS, *CHAT_WITH_TOOLS_ONLY, *LLAMA_CALL_KEYWORDS})


# -- the tests ---------------------------------------------------------------------------------


def test_every_listed_parameter_has_a_case() -> None:
    assert sorted(LLM_CASES) == sorted(OPENAILIKE_PARAMETERS)
    assert sorted(EMBEDDING_CASES) == sorted(OPENAIEMBEDDING_PARAMETERS)
    assert sorted(CALL_CASES) == ALL_CALL_KEYWORDS


@pytest.mark.parametrize("name", OPENAILIKE_PARAMETERS)
async def test_openailike_parameter(raw: Any, name: str) -> None:
    await LLM_CASES[name](raw)


@pytest.mark.parametrize("name", OPENAIEMBEDDING_PARAMETERS)
async def test_openaiembedding_parameter(raw: Any, name: str) -> None:
    await EMBEDDING_CASES[name](raw)


@pytest.mark.parametrize("name", ALL_CALL_KEYWORDS)
async def test_call_keyword(raw: Any, name: str) -> None:
    await CALL_CASES[name](raw)


def test_lists_match_the_installed_anchors() -> None:
    like = pytest.importorskip("llama_index.llms.openai_like", reason="the anchors live in bench/.venv")
    emb = pytest.importorskip("llama_index.embeddings.openai", reason="the anchors live in bench/.venv")
    completions = pytest.importorskip("openai.resources.chat.completions")

    def names(fn: Any) -> set[str]:
        return {p for p in inspect.signature(fn).parameters if p not in ("self", "args", "kwargs")}

    assert sorted(names(like.OpenAILike.__init__) | set(like.OpenAILike.model_fields)) == sorted(
        OPENAILIKE_PARAMETERS
    )
    embedding = emb.OpenAIEmbedding
    assert sorted(names(embedding.__init__) | set(embedding.model_fields)) == sorted(
        OPENAIEMBEDDING_PARAMETERS
    )
    assert names(completions.Completions.create) <= set(CHAT_CREATE_KEYWORDS)
    assert names(like.OpenAILike._prepare_chat_with_tools) - {"tools"} <= set(CHAT_WITH_TOOLS_KEYWORDS)
