"""Every ChatOpenAI / OpenAIEmbeddings keyword a user brings either reaches the wire or is refused
loudly, naming itself. Nothing is silently dropped (#13).

The keywords are a checked-in list, ``chatopenai_surface.json``, read once from the real
packages (the versions are in the file) with::

    fields = [{"name": n, "alias": f.alias} for n, f in ChatOpenAI.model_fields.items()]
    call = inspect.signature(openai.resources.chat.completions.Completions.create).parameters
    # ... and the same for OpenAIEmbeddings, Embeddings.create, bind_tools, with_structured_output

For each keyword there is one case below, and a test checks the cases cover the list exactly.
Each case sends a real request to a raw loopback server (``raw`` in conftest) and checks the
body, headers or query it received; or checks the refusal (``NeboConfigurationError``, the
keyword in its message); or, for a keyword with no wire form (callbacks, cache, retries,
timeouts, token counting), checks its effect. A keyword whose nebo_core feature is detected
at import (``langchain_nebo._params.CORE_DEFAULT_QUERY``: a default query) is refused by name
on a core without it and reaches the wire on a core with it: its case checks whichever holds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.rate_limiters import BaseRateLimiter
from pydantic import BaseModel

from langchain_nebo import (
    ChatNebo,
    NeboContextOverflowError,
    NeboEmbeddings,
    NeboInvalidRequestError,
    NeboModelTimeoutError,
    _params,
)
from nebo_core import NeboConfigurationError

SURFACE = json.loads((Path(__file__).parent / "chatopenai_surface.json").read_text())

Case = Callable[[Any, dict[str, Any]], None]
CHAT_INIT: dict[str, Case] = {}
CHAT_CALL: dict[str, Case] = {}
EMB_INIT: dict[str, Case] = {}
EMB_CALL: dict[str, Case] = {}


def _names(entries: list[dict[str, Any]]) -> set[str]:
    return {e["name"] for e in entries} | {e["alias"] for e in entries if e["alias"]}


def case(table: dict[str, Case], *names: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        for name in names:
            assert name not in table, name
            table[name] = fn
        return fn

    return register


def _chat(raw_connect: dict[str, Any], **init: Any) -> ChatNebo:
    return ChatNebo(**{**raw_connect, **init})


def _invoke(raw: Any, raw_connect: dict[str, Any], init: dict[str, Any] | None = None, **call: Any) -> Any:
    _chat(raw_connect, **(init or {})).invoke("hi", **call)
    return raw.last


def _refused(make: Callable[[], Any], name: str, kind: type[Exception] = NeboConfigurationError) -> None:
    """``make()`` raises exactly ``kind`` naming ``name`` (a call's refusal is LangChain's twin)."""
    with pytest.raises(kind) as err:
        make()
    assert type(err.value) is kind
    assert name in str(err.value)


# --- the list is covered exactly --------------------------------------------------------------


def test_the_checked_in_surface_is_from_real_packages() -> None:
    assert SURFACE["versions"]["langchain-openai"].split(".")[0] == "1"
    assert "max_completion_tokens" in _names(SURFACE["ChatOpenAI"]["init"])
    assert "extra_headers" in SURFACE["ChatOpenAI"]["call"]


@pytest.mark.parametrize(
    ("table", "surface"),
    [
        (CHAT_INIT, _names(SURFACE["ChatOpenAI"]["init"])),
        (CHAT_CALL, set(SURFACE["ChatOpenAI"]["call"])),
        (EMB_INIT, _names(SURFACE["OpenAIEmbeddings"]["init"])),
        (
            EMB_CALL,
            set(SURFACE["OpenAIEmbeddings"]["call"]) | set(SURFACE["OpenAIEmbeddings"]["embed_documents"]),
        ),
    ],
    ids=["ChatOpenAI-init", "ChatOpenAI-call", "OpenAIEmbeddings-init", "OpenAIEmbeddings-call"],
)
def test_every_keyword_has_exactly_one_case(table: dict[str, Case], surface: set[str]) -> None:
    assert sorted(surface - set(table)) == []
    assert sorted(set(table) - surface) == []


# --- ChatOpenAI constructor: sent as given ------------------------------------------------------

WIRE_INIT: dict[str, tuple[Any, str, Any]] = {
    "model_name": ("gpt-5-nano", "model", "gpt-5-nano"),
    "model": ("gpt-5-nano", "model", "gpt-5-nano"),
    "temperature": (0.3, "temperature", 0.3),
    "presence_penalty": (0.5, "presence_penalty", 0.5),
    "frequency_penalty": (0.25, "frequency_penalty", 0.25),
    "seed": (7, "seed", 7),
    "logprobs": (True, "logprobs", True),
    "top_logprobs": (2, "top_logprobs", 2),
    "logit_bias": ({50256: -100}, "logit_bias", {"50256": -100}),
    "n": (2, "n", 2),
    "top_p": (0.9, "top_p", 0.9),
    "max_tokens": (20, "max_completion_tokens", 20),
    "max_completion_tokens": (20, "max_completion_tokens", 20),
    "reasoning_effort": ("low", "reasoning_effort", "low"),
    "reasoning": ({"effort": "high"}, "reasoning_effort", "high"),
    "verbosity": ("low", "verbosity", "low"),
    "stop": (["END"], "stop", ["END"]),
    "stop_sequences": (["END"], "stop", ["END"]),
    "service_tier": ("flex", "service_tier", "flex"),
    "store": (True, "store", True),
    "prompt_cache_options": ({"ttl": "1h"}, "prompt_cache_options", {"ttl": "1h"}),
    "extra_body": ({"custom": {"a": 1}}, "custom", {"a": 1}),
    "model_kwargs": ({"prompt_cache_key": "k"}, "prompt_cache_key", "k"),
    "streaming": (True, "stream", True),
}


def _wire_init(name: str) -> Case:
    value, key, expected = WIRE_INIT[name]

    def check(raw: Any, raw_connect: dict[str, Any]) -> None:
        assert _invoke(raw, raw_connect, {name: value}).body[key] == expected

    return check


for _name in WIRE_INIT:
    case(CHAT_INIT, _name)(_wire_init(_name))


@case(CHAT_INIT, "api_key")
def _api_key(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _invoke(raw, raw_connect, {"api_key": "my-token"}).headers["authorization"] == "Bearer my-token"


@case(CHAT_INIT, "base_url")
def _base_url(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _invoke(raw, raw_connect, {"base_url": raw.base_url}).path == "/v1/chat/completions"


@case(CHAT_INIT, "default_headers")
def _default_headers(raw: Any, raw_connect: dict[str, Any]) -> None:
    sent = _invoke(raw, raw_connect, {"default_headers": {"X-Team": "search", "Authorization": "nope"}})
    assert sent.headers["x-team"] == "search"
    assert sent.headers["authorization"] == "Bearer raw-test-key"  # never replaced


@case(CHAT_INIT, "default_query")
def _default_query(raw: Any, raw_connect: dict[str, Any]) -> None:
    if not _params.CORE_DEFAULT_QUERY:
        _refused(lambda: _chat(raw_connect, default_query={"tenant": "t1"}), "default_query")
        return
    assert _invoke(raw, raw_connect, {"default_query": {"tenant": "t1"}}).query == {"tenant": ["t1"]}


@case(CHAT_INIT, "disabled_params")
def _disabled_params(raw: Any, raw_connect: dict[str, Any]) -> None:
    model = _chat(raw_connect, disabled_params={"parallel_tool_calls": None, "tool_choice": ["required"]})
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    model.bind_tools([tool], tool_choice="any", parallel_tool_calls=False).invoke("hi")
    assert "parallel_tool_calls" not in raw.last.body
    assert "tool_choice" not in raw.last.body
    model.bind_tools([tool], tool_choice="none").invoke("hi")
    assert raw.last.body["tool_choice"] == "none"


@case(CHAT_INIT, "include_response_headers")
def _include_response_headers(raw: Any, raw_connect: dict[str, Any]) -> None:
    raw.reply(raw.completion(), headers={"X-Request-Id": "req-1"})
    msg = _chat(raw_connect, include_response_headers=True).invoke("hi")
    assert msg.response_metadata["headers"]["x-request-id"] == "req-1"
    raw.reply(stream=raw.stream_events(), headers={"X-Request-Id": "req-2"})
    chunks = list(_chat(raw_connect, include_response_headers=True).stream("hi"))
    assert chunks[-1].response_metadata["headers"]["x-request-id"] == "req-2"


REFUSED_INIT: dict[str, Any] = {
    "client": object(),
    "async_client": object(),
    "root_client": object(),
    "root_async_client": object(),
    "openai_api_key": "sk-openai",
    "openai_api_base": "https://api.openai.com/v1",
    "openai_organization": "org-1",
    "organization": "org-1",
    "openai_proxy": "http://proxy:3128",
    "http_socket_options": [(6, 1, 1)],
    "stream_chunk_timeout": 5.0,
    "context_management": [{"type": "compaction"}],
    "include": ["reasoning.encrypted_content"],
    "truncation": "auto",
    "use_previous_response_id": True,
    "use_responses_api": True,
}


def _refused_init(name: str) -> Case:
    def check(raw: Any, raw_connect: dict[str, Any]) -> None:
        _refused(lambda: _chat(raw_connect, **{name: REFUSED_INIT[name]}), name)
        # None (and False) ask for nothing: accepted, and not sent.
        assert name not in _invoke(raw, raw_connect, {name: None}).body

    return check


for _name in REFUSED_INIT:
    case(CHAT_INIT, _name)(_refused_init(_name))


# --- ChatOpenAI constructor: keywords with no wire form, by their effect -------------------------


class _Seen(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []
        self.ends = 0

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.starts.append(kwargs)

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.ends += 1


@case(CHAT_INIT, "callbacks", "tags", "metadata", "name", "verbose")
def _framework_fields(raw: Any, raw_connect: dict[str, Any]) -> None:
    seen = _Seen()
    model = _chat(raw_connect, callbacks=[seen], tags=["t1"], metadata={"m": 1}, name="mine", verbose=True)
    model.invoke("hi")
    assert seen.ends == 1
    assert seen.starts[0]["tags"] == ["t1"]
    assert seen.starts[0]["metadata"]["m"] == 1
    assert (model.name, model.verbose) == ("mine", True)


@case(CHAT_INIT, "cache")
def _cache(raw: Any, raw_connect: dict[str, Any]) -> None:
    model = _chat(raw_connect, cache=InMemoryCache())
    first, second = model.invoke("hi"), model.invoke("hi")
    assert first.content == second.content
    assert len(raw.requests) == 1


class _CountingLimiter(BaseRateLimiter):
    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self, *, blocking: bool = True) -> bool:
        self.acquired += 1
        return True

    async def aacquire(self, *, blocking: bool = True) -> bool:
        return self.acquire(blocking=blocking)


@case(CHAT_INIT, "rate_limiter")
def _rate_limiter(raw: Any, raw_connect: dict[str, Any]) -> None:
    limiter = _CountingLimiter()
    _chat(raw_connect, rate_limiter=limiter).invoke("hi")
    assert limiter.acquired == 1


@case(CHAT_INIT, "custom_get_token_ids")
def _custom_token_ids(raw: Any, raw_connect: dict[str, Any]) -> None:
    model = _chat(raw_connect, custom_get_token_ids=lambda text: [1] * len(text))
    assert model.get_num_tokens("abcd") == 4
    assert model.get_token_ids("ab") == [1, 1]


@case(CHAT_INIT, "tiktoken_model_name")
def _tiktoken_model_name(raw: Any, raw_connect: dict[str, Any]) -> None:
    from langchain_nebo import _tokens

    model = _chat(raw_connect, tiktoken_model_name="gpt-4")
    assert _tokens.encoding_name(model.tiktoken_model_name) == "cl100k_base"
    assert model.get_num_tokens("hello world") >= 1  # exact or estimated: it never fails offline


@case(CHAT_INIT, "disable_streaming")
def _disable_streaming(raw: Any, raw_connect: dict[str, Any]) -> None:
    chunks = list(_chat(raw_connect, disable_streaming=True).stream("hi"))
    assert "stream" not in raw.last.body
    assert chunks[0].content == "ok"


@case(CHAT_INIT, "output_version")
def _output_version(raw: Any, raw_connect: dict[str, Any]) -> None:
    msg = _chat(raw_connect, output_version="v1").invoke("hi")
    assert msg.content == [{"type": "text", "text": "ok"}]


@case(CHAT_INIT, "profile")
def _profile(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _chat(raw_connect, profile={"max_input_tokens": 10}).profile == {"max_input_tokens": 10}
    assert _chat(raw_connect, model="gpt-5-mini").profile["max_input_tokens"] == 272_000  # type: ignore[index]


@case(CHAT_INIT, "stream_usage")
def _stream_usage(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert list(_chat(raw_connect, stream_usage=True).stream("hi"))[-1].usage_metadata is not None
    assert all(c.usage_metadata is None for c in _chat(raw_connect, stream_usage=False).stream("hi"))


@case(CHAT_INIT, "max_retries")
def _max_retries(raw: Any, raw_connect: dict[str, Any]) -> None:
    raw.reply({"error": {"message": "down"}}, status=503, headers={"Retry-After": "0"})
    assert _chat(raw_connect, max_retries=1).invoke("hi").content == "ok"
    assert len(raw.requests) == 2


@case(CHAT_INIT, "request_timeout", "timeout")
def _timeout(raw: Any, raw_connect: dict[str, Any]) -> None:
    for name in ("request_timeout", "timeout"):
        raw.reply(raw.completion(), delay=2.0)
        with pytest.raises(NeboModelTimeoutError):
            _chat(raw_connect, **{name: 0.1}).invoke("hi")


@case(CHAT_INIT, "http_client", "http_async_client")
def _http_clients(raw: Any, raw_connect: dict[str, Any]) -> None:
    seen: list[str] = []

    def hook(request: httpx.Request) -> None:
        seen.append("sync")

    async def ahook(request: httpx.Request) -> None:
        seen.append("async")

    with httpx.Client(event_hooks={"request": [hook]}) as client:
        _chat(raw_connect, http_client=client).invoke("hi")

    async def run() -> None:
        async with httpx.AsyncClient(event_hooks={"request": [ahook]}) as client:
            await _chat(raw_connect, http_async_client=client).ainvoke("hi")

    asyncio.run(run())
    assert seen == ["sync", "async"]


# --- ChatOpenAI call time: create()'s keywords ----------------------------------------------------

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
WIRE_CALL: dict[str, tuple[Any, str, Any]] = {
    "audio": ({"voice": "alloy", "format": "wav"}, "audio", {"voice": "alloy", "format": "wav"}),
    "frequency_penalty": (0.1, "frequency_penalty", 0.1),
    "function_call": ("auto", "function_call", "auto"),
    "functions": ([TOOL["function"]], "functions", [TOOL["function"]]),
    "logit_bias": ({1: 2}, "logit_bias", {"1": 2}),
    "logprobs": (True, "logprobs", True),
    "max_completion_tokens": (9, "max_completion_tokens", 9),
    "max_tokens": (9, "max_completion_tokens", 9),
    "modalities": (["text"], "modalities", ["text"]),
    "moderation": ({"mode": "strict"}, "moderation", {"mode": "strict"}),
    "model": ("gpt-5-nano", "model", "gpt-5-nano"),
    "n": (3, "n", 3),
    "prediction": ({"type": "content", "content": "x"}, "prediction", {"type": "content", "content": "x"}),
    "presence_penalty": (0.2, "presence_penalty", 0.2),
    "prompt_cache_key": ("k", "prompt_cache_key", "k"),
    "prompt_cache_options": ({"ttl": "1h"}, "prompt_cache_options", {"ttl": "1h"}),
    "prompt_cache_retention": ("24h", "prompt_cache_retention", "24h"),
    "reasoning_effort": ("minimal", "reasoning_effort", "minimal"),
    "response_format": ({"type": "json_object"}, "response_format", {"type": "json_object"}),
    "safety_identifier": ("s1", "safety_identifier", "s1"),
    "seed": (3, "seed", 3),
    "service_tier": ("priority", "service_tier", "priority"),
    "stop": (["x"], "stop", ["x"]),
    "store": (False, "store", False),
    "temperature": (0.1, "temperature", 0.1),
    "tools": ([TOOL], "tools", [TOOL]),
    "top_logprobs": (1, "top_logprobs", 1),
    "top_p": (0.5, "top_p", 0.5),
    "user": ("u1", "user", "u1"),
    "verbosity": ("high", "verbosity", "high"),
    "web_search_options": ({}, "web_search_options", {}),
    "extra_body": ({"custom": 1}, "custom", 1),
}


def _wire_call(name: str) -> Case:
    value, key, expected = WIRE_CALL[name]

    def check(raw: Any, raw_connect: dict[str, Any]) -> None:
        assert _invoke(raw, raw_connect, **{name: value}).body[key] == expected

    return check


for _name in WIRE_CALL:
    case(CHAT_CALL, _name)(_wire_call(_name))


@case(CHAT_CALL, "tool_choice", "parallel_tool_calls")
def _tool_fields(raw: Any, raw_connect: dict[str, Any]) -> None:
    body = _invoke(raw, raw_connect, tools=[TOOL], tool_choice="required", parallel_tool_calls=False).body
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("required", False)
    # Without tools OpenAI rejects both; they ask for nothing then, and are left out.
    assert "tool_choice" not in _invoke(raw, raw_connect, tool_choice="required").body


@case(CHAT_CALL, "stream", "stream_options")
def _stream_fields(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _invoke(raw, raw_connect, stream=True).body["stream"] is True  # LangChain streams the call
    list(_chat(raw_connect).stream("hi", stream_options={"include_obfuscation": False}))
    assert raw.last.body["stream_options"] == {"include_obfuscation": False, "include_usage": True}


@case(CHAT_CALL, "messages", "metadata")
def _langchain_names(raw: Any, raw_connect: dict[str, Any]) -> None:
    # LangChain's own generate() takes these names: it refuses them itself, by name (as for
    # ChatOpenAI). OpenAI's ``metadata`` field goes in extra_body (or model_kwargs).
    for name in ("messages", "metadata"):
        with pytest.raises(TypeError, match=name):
            _chat(raw_connect).invoke("hi", **{name: {}})
    assert raw.requests == []
    assert _invoke(raw, raw_connect, extra_body={"metadata": {"k": "v"}}).body["metadata"] == {"k": "v"}


@case(CHAT_CALL, "timeout")
def _call_timeout(raw: Any, raw_connect: dict[str, Any]) -> None:
    raw.reply(raw.completion(), delay=2.0)
    with pytest.raises(NeboModelTimeoutError):
        _chat(raw_connect).invoke("hi", timeout=0.1)


@case(CHAT_CALL, "extra_headers")
def _extra_headers(raw: Any, raw_connect: dict[str, Any]) -> None:
    sent = _invoke(raw, raw_connect, extra_headers={"X-Trace": "t1"})
    assert sent.headers["x-trace"] == "t1"
    assert "extra_headers" not in sent.body
    list(_chat(raw_connect).stream("hi", extra_headers={"X-Trace": "t2"}))
    assert raw.last.headers["x-trace"] == "t2"
    # The token comes from api_key only: a call may not replace it (nebo_core refuses, by name).
    _refused(
        lambda: _chat(raw_connect).invoke("hi", extra_headers={"Authorization": "Bearer x"}),
        "Authorization",
        NeboInvalidRequestError,
    )


@case(CHAT_CALL, "extra_query")
def _extra_query(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _invoke(raw, raw_connect, extra_query={"trace": "t1"}).query == {"trace": ["t1"]}


# --- OpenAIEmbeddings constructor ---------------------------------------------------------------


def _emb(raw_connect: dict[str, Any], **init: Any) -> NeboEmbeddings:
    return NeboEmbeddings(**{**raw_connect, **init})


def _embed(raw: Any, raw_connect: dict[str, Any], init: dict[str, Any] | None = None, **call: Any) -> Any:
    _emb(raw_connect, **(init or {})).embed_documents(["a", "b"], **call)
    return raw.last


@case(EMB_INIT, "model")
def _emb_model(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert (
        _embed(raw, raw_connect, {"model": "neboloop/nebo-embed-large"}).body["model"]
        == "neboloop/nebo-embed-large"
    )


@case(EMB_INIT, "dimensions")
def _emb_dimensions(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _embed(raw, raw_connect, {"dimensions": 256}).body["dimensions"] == 256


@case(EMB_INIT, "api_key", "openai_api_key")
def _emb_key(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _embed(raw, raw_connect, {"api_key": "my-token"}).headers["authorization"] == "Bearer my-token"
    _refused(lambda: _emb(raw_connect, openai_api_key="sk-openai"), "openai_api_key")


@case(EMB_INIT, "base_url", "openai_api_base")
def _emb_base(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _embed(raw, raw_connect, {"base_url": raw.base_url}).path == "/v1/embeddings"
    _refused(lambda: _emb(raw_connect, openai_api_base="https://api.openai.com/v1"), "openai_api_base")


@case(EMB_INIT, "default_headers", "headers")
def _emb_headers(raw: Any, raw_connect: dict[str, Any]) -> None:
    for name in ("default_headers", "headers"):
        assert _embed(raw, raw_connect, {name: {"X-Team": name}}).headers["x-team"] == name


@case(EMB_INIT, "default_query")
def _emb_default_query(raw: Any, raw_connect: dict[str, Any]) -> None:
    if not _params.CORE_DEFAULT_QUERY:
        _refused(lambda: _emb(raw_connect, default_query={"t": "1"}), "default_query")
        return
    assert _embed(raw, raw_connect, {"default_query": {"t": "1"}}).query == {"t": ["1"]}


@case(EMB_INIT, "model_kwargs")
def _emb_model_kwargs(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _embed(raw, raw_connect, {"model_kwargs": {"user": "u1"}}).body["user"] == "u1"


@case(EMB_INIT, "chunk_size")
def _emb_chunk_size(raw: Any, raw_connect: dict[str, Any]) -> None:
    _emb(raw_connect, chunk_size=1, max_concurrency=1).embed_documents(["a", "b", "c"])
    assert [r.body["input"] for r in raw.requests] == [["a"], ["b"], ["c"]]


@case(EMB_INIT, "max_retries")
def _emb_retries(raw: Any, raw_connect: dict[str, Any]) -> None:
    raw.reply({"error": {"message": "down"}}, status=503, headers={"Retry-After": "0"})
    assert len(_emb(raw_connect, max_retries=1).embed_documents(["a"])) == 1
    assert len(raw.requests) == 2


@case(EMB_INIT, "request_timeout", "timeout")
def _emb_timeout(raw: Any, raw_connect: dict[str, Any]) -> None:
    for name in ("request_timeout", "timeout"):
        raw.reply({}, delay=2.0)
        with pytest.raises(NeboModelTimeoutError):
            _emb(raw_connect, **{name: 0.1}).embed_documents(["a"])


@case(EMB_INIT, "embedding_ctx_length", "check_embedding_ctx_length")
def _emb_ctx(raw: Any, raw_connect: dict[str, Any]) -> None:
    with pytest.raises(NeboContextOverflowError, match="text 1"):
        _emb(raw_connect, embedding_ctx_length=5).embed_documents(["short", "word " * 100])
    assert raw.requests == []
    _emb(raw_connect, embedding_ctx_length=5, check_embedding_ctx_length=False).embed_documents(
        ["word " * 100]
    )
    assert len(raw.requests) == 1


@case(EMB_INIT, "tiktoken_model_name")
def _emb_tiktoken(raw: Any, raw_connect: dict[str, Any]) -> None:
    with pytest.raises(NeboContextOverflowError):
        _emb(raw_connect, tiktoken_model_name="gpt-4", embedding_ctx_length=5).embed_documents(
            ["word " * 100]
        )


@case(EMB_INIT, "show_progress_bar")
def _emb_progress(raw: Any, raw_connect: dict[str, Any]) -> None:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        vectors = _emb(raw_connect, show_progress_bar=True, chunk_size=1, max_concurrency=1).embed_documents(
            ["a", "b"]
        )
    assert len(vectors) == 2
    assert "2/2" in err.getvalue()


@case(EMB_INIT, "http_client", "http_async_client")
def _emb_http(raw: Any, raw_connect: dict[str, Any]) -> None:
    seen: list[str] = []

    def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    with httpx.Client(event_hooks={"request": [hook]}) as client:
        _emb(raw_connect, http_client=client).embed_documents(["a"])

    async def ahook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async def run() -> None:
        async with httpx.AsyncClient(event_hooks={"request": [ahook]}) as client:
            await _emb(raw_connect, http_async_client=client).aembed_documents(["a"])

    asyncio.run(run())
    assert seen == ["/v1/embeddings", "/v1/embeddings"]


REFUSED_EMB: dict[str, Any] = {
    "client": object(),
    "async_client": object(),
    "deployment": "my-deployment",
    "openai_api_version": "2024-01-01",
    "api_version": "2024-01-01",
    "openai_api_type": "azure",
    "openai_proxy": "http://proxy:3128",
    "openai_organization": "org-1",
    "organization": "org-1",
    "allowed_special": "all",
    "disallowed_special": (),
    "tiktoken_enabled": False,
    "skip_empty": True,
    "retry_min_seconds": 1,
    "retry_max_seconds": 2,
}


def _refused_emb(name: str) -> Case:
    def check(raw: Any, raw_connect: dict[str, Any]) -> None:
        _refused(lambda: _emb(raw_connect, **{name: REFUSED_EMB[name]}), name)

    return check


for _name in REFUSED_EMB:
    case(EMB_INIT, _name)(_refused_emb(_name))


# --- OpenAIEmbeddings call time ---------------------------------------------------------------


@case(EMB_CALL, "model", "dimensions", "encoding_format")
def _emb_call_options(raw: Any, raw_connect: dict[str, Any]) -> None:
    body = _embed(
        raw, raw_connect, model="neboloop/nebo-embed-large", dimensions=64, encoding_format="float"
    ).body
    assert (body["model"], body["dimensions"], body["encoding_format"]) == (
        "neboloop/nebo-embed-large",
        64,
        "float",
    )


@case(EMB_CALL, "chunk_size")
def _emb_call_chunk_size(raw: Any, raw_connect: dict[str, Any]) -> None:
    _emb(raw_connect, max_concurrency=1).embed_documents(["a", "b", "c"], chunk_size=2)
    assert [r.body["input"] for r in raw.requests] == [["a", "b"], ["c"]]


@case(EMB_CALL, "user", "extra_body")
def _emb_call_body(raw: Any, raw_connect: dict[str, Any]) -> None:
    body = _embed(raw, raw_connect, user="u1", extra_body={"custom": 1}).body
    assert (body["user"], body["custom"]) == ("u1", 1)
    # The call's own fields are arguments, never extra_body (nebo_core refuses, by name).
    _refused(
        lambda: _emb(raw_connect).embed_documents(["a"], extra_body={"input": ["x"]}),
        "input",
        NeboInvalidRequestError,
    )


@case(EMB_CALL, "extra_headers")
def _emb_call_headers(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _embed(raw, raw_connect, extra_headers={"X-T": "1"}).headers["x-t"] == "1"


@case(EMB_CALL, "extra_query")
def _emb_call_query(raw: Any, raw_connect: dict[str, Any]) -> None:
    assert _embed(raw, raw_connect, extra_query={"t": "1"}).query == {"t": ["1"]}


@case(EMB_CALL, "timeout")
def _emb_call_timeout(raw: Any, raw_connect: dict[str, Any]) -> None:
    raw.reply({}, delay=2.0)
    with pytest.raises(NeboModelTimeoutError):
        _emb(raw_connect).embed_documents(["a"], timeout=0.1)


# --- the cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CHAT_INIT))
def test_chatopenai_constructor_keyword(raw: Any, raw_connect: dict[str, Any], name: str) -> None:
    CHAT_INIT[name](raw, raw_connect)


@pytest.mark.parametrize("name", sorted(CHAT_CALL))
def test_chatopenai_call_keyword(raw: Any, raw_connect: dict[str, Any], name: str) -> None:
    CHAT_CALL[name](raw, raw_connect)


@pytest.mark.parametrize("name", sorted(EMB_INIT))
def test_openaiembeddings_constructor_keyword(raw: Any, raw_connect: dict[str, Any], name: str) -> None:
    EMB_INIT[name](raw, raw_connect)


@pytest.mark.parametrize("name", sorted(EMB_CALL))
def test_openaiembeddings_call_keyword(raw: Any, raw_connect: dict[str, Any], name: str) -> None:
    EMB_CALL[name](raw, raw_connect)


# --- methods: bind_tools, with_structured_output ---------------------------------------------------


class Answer(BaseModel):
    """An answer."""

    text: str


@pytest.mark.parametrize("name", SURFACE["ChatOpenAI"]["bind_tools"])
def test_bind_tools_keyword(raw: Any, raw_connect: dict[str, Any], name: str) -> None:
    values: dict[str, Any] = {
        "tool_choice": "f",
        "strict": True,
        "parallel_tool_calls": False,
        "response_format": Answer,
    }
    _chat(raw_connect).bind_tools([TOOL], **{name: values[name]}).invoke("hi")
    body = raw.last.body
    expected = {
        "tool_choice": lambda: body["tool_choice"] == {"type": "function", "function": {"name": "f"}},
        "strict": lambda: body["tools"][0]["function"]["strict"] is True,
        "parallel_tool_calls": lambda: body["parallel_tool_calls"] is False,
        "response_format": lambda: body["response_format"]["json_schema"]["name"] == "Answer",
    }
    assert expected[name]()


@pytest.mark.parametrize("name", SURFACE["ChatOpenAI"]["with_structured_output"])
def test_with_structured_output_keyword(raw: Any, raw_connect: dict[str, Any], name: str) -> None:
    model = _chat(raw_connect)
    if name == "tools":  # ChatOpenAI's Responses-API extra: refused, by name
        with pytest.raises(ValueError, match="tools"):
            model.with_structured_output(Answer, tools=[TOOL])
        return
    raw.reply(raw.completion(content='{"text": "hi"}'))
    values: dict[str, Any] = {"method": "json_schema", "include_raw": True, "strict": True}
    out = model.with_structured_output(Answer, **{"method": "json_schema", name: values[name]}).invoke("hi")
    parsed = out["parsed"] if isinstance(out, dict) and "parsed" in out else out
    assert parsed == Answer(text="hi")
    response_format = raw.last.body["response_format"]
    assert response_format["type"] == "json_schema"
    if name == "strict":
        assert response_format["json_schema"]["strict"] is True
    if name == "include_raw":
        assert isinstance(out, dict)
        assert out["raw"].response_metadata["nebo"]["cost_micro"] == 11


def test_unknown_constructor_keywords_warn_by_name_and_reach_the_wire(
    raw: Any, raw_connect: dict[str, Any]
) -> None:
    with pytest.warns(
        UserWarning, match=r"temprature is not a ChatNebo parameter \(did you mean 'temperature'\?\)"
    ):
        model = _chat(raw_connect, temprature=0.2)
    model.invoke("hi")
    assert raw.last.body["temprature"] == 0.2
    assert "temperature" not in raw.last.body


def test_unknown_call_keywords_are_refused_by_name(raw: Any, raw_connect: dict[str, Any]) -> None:
    with pytest.raises(NeboInvalidRequestError, match="'temprature'.*did you mean 'temperature'"):
        _chat(raw_connect).invoke("hi", temprature=0.2)
    with pytest.raises(NeboInvalidRequestError, match="'foo'"):
        _emb(raw_connect).embed_documents(["a"], foo=1)
    assert raw.requests == []
