"""Keywords in, request out: ChatOpenAI's rules for what a user passes, and nothing silently dropped.

Constructor (:func:`sort_init_kwargs`, as langchain-openai's ``build_extra``): an unknown keyword
moves into ``model_kwargs`` with a warning naming it, so it reaches the wire; a keyword given
both directly and in ``model_kwargs`` raises; a ``model_kwargs`` key that names a field moves to
that field with a warning. An OpenAI-only keyword that cannot work against Nebo (an openai
client, an organization, a proxy URL, the Responses API) is refused, naming the Nebo way.

Call time (:func:`split_call_kwargs`): the OpenAI chat-completions fields go into the body,
``extra_body`` is merged into it, ``extra_headers`` become HTTP headers and ``extra_query``
query parameters; ``timeout``, ``max_retries`` and ``scope`` are options of the core client.
Anything else is refused, as the openai SDK refuses an unknown keyword.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import AliasChoices, BaseModel

from nebo_core import NeboConfigurationError, NeboSettings


def _accepts(func: Any, name: str) -> bool:
    return name in inspect.signature(func).parameters


# TODO(#13, nebo_core): a default query (``NeboSettings.default_query``) is asked of nebo_core
# (docs/langchain.md, "Waiting on nebo_core"). Until a core has it, ``default_query=`` is refused
# loudly, naming itself; once it has, this flag turns on and the keyword reaches the wire.
CORE_DEFAULT_QUERY = _accepts(NeboSettings.resolve, "default_query")

CHAT_BODY_FIELDS = frozenset(
    {
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "metadata",
        "modalities",
        "model",
        "moderation",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
"""The request fields of OpenAI's ``chat.completions.create`` (openai 3.57), sent as given."""

EMBED_BODY_FIELDS = frozenset({"user"})
"""Embeddings request fields beyond ``input``, ``model``, ``dimensions`` and ``encoding_format``."""

LANGCHAIN_ONLY = frozenset({"ls_structured_output_format", "structured_output_format", "stream"})
"""Keywords LangChain itself passes down that are not request fields."""


@dataclass(frozen=True)
class Refusal:
    """Why a ChatOpenAI keyword cannot work here, and which values of it ask for nothing."""

    hint: str
    harmless: tuple[Any, ...] = (None, False)


_CLIENT = Refusal(
    "Nebo calls go through nebo_core, not an openai client; pass http_client= / http_async_client= "
    "(httpx clients) for transports, proxies and certificates"
)
_RESPONSES = Refusal("that is a Responses API option, and Nebo serves chat completions only")
_COMMON_REFUSED: dict[str, Refusal] = {
    "client": _CLIENT,
    "async_client": _CLIENT,
    "openai_api_key": Refusal(
        "that names an OpenAI key; pass api_key= (your NeboLoop token, else NEBO_API_KEY), and "
        "provider_api_key= to bring your own provider key"
    ),
    "openai_api_base": Refusal("pass base_url= (else NEBO_BASE_URL)"),
    "openai_organization": Refusal("OpenAI organizations do not apply: a NeboLoop token names its account"),
    "organization": Refusal("OpenAI organizations do not apply: a NeboLoop token names its account"),
    "openai_proxy": Refusal(
        "pass http_client=httpx.Client(proxy=...) and http_async_client=httpx.AsyncClient(proxy=...)"
    ),
}
CHAT_REFUSED: dict[str, Refusal] = {
    **_COMMON_REFUSED,
    "root_client": _CLIENT,
    "root_async_client": _CLIENT,
    "http_socket_options": Refusal("pass an http_client whose transport sets the socket options"),
    "stream_chunk_timeout": Refusal(
        "timeout= already bounds every read of a stream (it is httpx's read timeout), so a stream "
        "that goes silent fails after timeout seconds"
    ),
    "use_responses_api": _RESPONSES,
    "use_previous_response_id": _RESPONSES,
    "context_management": _RESPONSES,
    "include": _RESPONSES,
    "truncation": _RESPONSES,
}
"""ChatOpenAI keywords ChatNebo refuses (unless given a value that asks for nothing)."""

EMBEDDINGS_REFUSED: dict[str, Refusal] = {
    **_COMMON_REFUSED,
    "deployment": Refusal("Azure deployments do not apply; pass model="),
    "openai_api_version": Refusal("Azure API versions do not apply"),
    "api_version": Refusal("Azure API versions do not apply"),
    "openai_api_type": Refusal("Azure API types do not apply"),
    "allowed_special": Refusal("Nebo receives text, never token ids; nothing is tokenized for the request"),
    "disallowed_special": Refusal(
        "Nebo receives text, never token ids; nothing is tokenized for the request"
    ),
    "tiktoken_enabled": Refusal(
        "token counts use tiktoken where its encoding is cached, else an estimate", (None, True)
    ),
    "skip_empty": Refusal("every text is embedded (an empty one as a space)"),
    "retry_min_seconds": Refusal("retries happen once, in nebo_core: set max_retries="),
    "retry_max_seconds": Refusal("retries happen once, in nebo_core: set max_retries="),
}
"""OpenAIEmbeddings keywords NeboEmbeddings refuses."""


@functools.cache
def _names(cls: type[BaseModel]) -> dict[str, str]:
    """Every keyword a pydantic model takes (field names, aliases, alias choices) -> its field."""
    names: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        choices = info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else ()
        for key in (name, info.alias, info.validation_alias, *choices):
            if isinstance(key, str):
                names[key] = name
    return names


def accepted_names(cls: type[BaseModel]) -> set[str]:
    """Every keyword a pydantic model takes: field names, aliases and alias choices."""
    return set(_names(cls))


def _field_of(cls: type[BaseModel], name: str) -> str | None:
    return _names(cls).get(name)


def _refuse(owner: str, name: str, refusal: Refusal, where: str = "") -> NeboConfigurationError:
    return NeboConfigurationError(f"{owner} does not take {name}={where}: {refusal.hint}")


def _check_refused(owner: str, values: Mapping[str, Any], refused: Mapping[str, Refusal], where: str) -> None:
    for name, value in values.items():
        refusal = refused.get(name)
        if refusal is not None and not any(value is h or value == h for h in refusal.harmless):
            raise _refuse(owner, name, refusal, where)


def sort_init_kwargs(
    cls: type[BaseModel], values: dict[str, Any], refused: Mapping[str, Refusal]
) -> dict[str, Any]:
    """Constructor keywords as ChatOpenAI sorts them (module docstring); refused ones raise."""
    owner = cls.__name__
    _check_refused(owner, values, refused, "")
    values = {k: v for k, v in values.items() if k not in refused}  # the harmless ones ask for nothing
    extra = dict(values.get("model_kwargs") or {})
    known = _names(cls)
    for name in list(values):
        if name in extra:
            raise NeboConfigurationError(
                f"{owner} got {name} twice, as {name}= and in model_kwargs; pass it once"
            )
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            warnings.warn(
                f"{name} is not a {owner} parameter{hint}; it was moved to model_kwargs and is sent in "
                f"the request body as is. Check that {name} is what you intended.",
                UserWarning,
                stacklevel=3,
            )
            extra[name] = values.pop(name)
    given = {_field_of(cls, name) for name in values}
    for name in [k for k in extra if k in known]:
        target = _field_of(cls, name) or name
        if target in given:
            raise NeboConfigurationError(
                f"{owner} got {target} twice, directly and as {name!r} in model_kwargs; pass it once"
            )
        warnings.warn(
            f"{name} should be passed as {name}=, not in model_kwargs; it was moved out of model_kwargs",
            UserWarning,
            stacklevel=3,
        )
        values[name] = extra.pop(name)
        given.add(target)
    _check_refused(owner, extra, refused, " (in model_kwargs)")
    if extra or "model_kwargs" in values:
        values["model_kwargs"] = extra
    return values


@dataclass
class CallParts:
    """One call's keywords, sorted: body fields, HTTP headers, query parameters, client options."""

    body: dict[str, Any] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    stream_usage: bool | None = None


def _mapping(owner: str, name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise NeboConfigurationError(f"{owner}: {name} must be a dict, got {type(value).__name__}")
    return dict(value)


def split_call_kwargs(owner: str, kwargs: Mapping[str, Any], body_fields: frozenset[str]) -> CallParts:
    """Sort the keywords of one call (``invoke(..., **kwargs)``, ``bind(...)``); unknown ones raise."""
    parts = CallParts()
    for name, value in kwargs.items():
        if name in LANGCHAIN_ONLY:
            continue
        if name == "stream_usage":
            parts.stream_usage = bool(value)
        elif name in ("timeout", "request_timeout"):
            if value is not None:
                parts.options["timeout"] = value
        elif name in ("max_retries", "scope"):
            parts.options[name] = value
        elif name == "extra_body":
            parts.extra_body.update(_mapping(owner, name, value))
        elif name == "extra_headers":
            parts.headers.update(_mapping(owner, name, value))
        elif name == "extra_query":
            parts.params.update(_mapping(owner, name, value))
        elif name in ("max_tokens", "max_completion_tokens") and "max_completion_tokens" in body_fields:
            if value is not None:
                parts.body["max_completion_tokens"] = value
        elif name in body_fields:
            parts.body[name] = value
        else:
            close = difflib.get_close_matches(name, sorted(body_fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise NeboConfigurationError(
                f"{owner} got an unexpected keyword argument {name!r}{hint}; a field the server knows "
                f"and OpenAI does not goes in extra_body={{{name!r}: ...}}"
            )
    return parts


def core_options(parts: CallParts) -> dict[str, Any]:
    """The keyword arguments for the core client call (per-call headers and query included)."""
    options = dict(parts.options)
    if parts.headers:
        options["extra_headers"] = parts.headers  # validated by nebo_core (never Authorization)
    if parts.params:
        options["extra_query"] = parts.params
    return options
