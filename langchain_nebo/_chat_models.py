"""``ChatNebo``: a LangChain chat model on ``nebo_core``, translating types and nothing else.

The request body is built by one pure helper (:meth:`ChatNebo._body`) and the result shaped by
the pure converters in :mod:`langchain_nebo._convert`; the sync and async methods differ only
in ``await``. Retries, budget policy, stream repair, header parsing and cost all happen in
``nebo_core``; errors are translated once, in :func:`langchain_nebo._errors.translate`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from typing_extensions import Self

from langchain_nebo import _convert
from langchain_nebo._callbacks import active_sinks, deliver_partial
from langchain_nebo._connection import NeboConnection
from langchain_nebo._errors import should_retry, translate
from langchain_nebo._retry import NeboRetry
from langchain_nebo._structured import structured_output
from nebo_core import AsyncChatStream, ChatStream, NeboError, wire

_LC_ONLY = ("ls_structured_output_format", "structured_output_format", "stream")
_CALL_OPTIONS = ("timeout", "max_retries", "scope")


class ChatNebo(NeboConnection, BaseChatModel):
    """Nebo chat completions as a LangChain chat model, with budgets visible on every message.

    Every result carries ``response_metadata["nebo"]`` (budget snapshot, cost in microdollars
    and dollars) and ``usage_metadata``; streams carry both on exactly one, final chunk.

    Serialization: ``is_lc_serializable()`` is False. ``langchain_nebo`` is not on
    langchain-core's deserialization allowlist, so ``load()`` could not rebuild a ``ChatNebo``
    anyway; ``dumpd()`` gives a ``not_implemented`` stub whose repr masks the key.
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=())

    model_name: str = Field(default="auto", alias="model")
    """``"auto"`` lets Nebo route by prompt and plan; a model id routes directly."""
    temperature: float | None = None
    max_tokens: int | None = None
    """Sent as ``max_completion_tokens`` (what Nebo's own client sends)."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    seed: int | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra request-body fields (OpenAI's ``extra_body``), sent as given."""
    streaming: bool = False
    """Make ``invoke`` stream under the hood (callbacks then see tokens)."""
    stream_usage: bool = True
    """Put ``usage_metadata`` on the final stream chunk (on by default, unlike ChatOpenAI)."""
    scope: str | None = None
    """A budget scope passed to the core policy (e.g. a user or tenant id)."""

    _static: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _build_static(self) -> Self:
        self._refresh_static()
        return self

    def _refresh(self, changed: set[str]) -> None:
        super()._refresh(changed)
        self._refresh_static()

    def _refresh_static(self) -> None:
        """The request-body fields every call shares, built once per configuration."""
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        static: dict[str, Any] = {"model": self.model_name}
        for key, value in (
            ("temperature", self.temperature),
            ("max_completion_tokens", self.max_tokens),
            ("stop", self.stop or None),
            ("seed", self.seed),
            ("top_p", self.top_p),
            ("reasoning_effort", self.reasoning_effort),
        ):
            if value is not None:
                static[key] = value
        static.update(self.model_kwargs)
        self._static = static

    @property
    def _llm_type(self) -> str:
        return "nebo-chat"

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "NEBO_API_KEY", "provider_api_key": "NEBO_PROVIDER_API_KEY"}

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, **self._static}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="nebo",
            ls_model_name=str(kwargs.get("model") or self.model_name),
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- request building (pure, shared) --------------------------------------------------

    def _body(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """The OpenAI request body, the per-call client options (timeout, retries, budget scope),
        and whether the final stream chunk carries usage."""
        body = {**self._static, "messages": _convert.messages_to_dicts(messages)}
        options: dict[str, Any] = {"scope": self.scope}
        stream_usage = self.stream_usage
        if kwargs:
            for key in _LC_ONLY:
                kwargs.pop(key, None)
            stream_usage = bool(kwargs.pop("stream_usage", stream_usage))
            for key in _CALL_OPTIONS:
                if key in kwargs:
                    options[key] = kwargs.pop(key)
            if "max_tokens" in kwargs:
                body["max_completion_tokens"] = kwargs.pop("max_tokens")
            body.update(kwargs.pop("extra_body", None) or {})
            body.update(kwargs)
        if stop:
            body["stop"] = stop
        if not body.get("tools"):
            body.pop("tool_choice", None)
            body.pop("parallel_tool_calls", None)
        return body, options, stream_usage

    # -- sync -----------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            chunks = list(self._stream(messages, stop, run_manager, **kwargs))
            return _result_from_chunks(chunks)
        body, options, _ = self._body(messages, stop, kwargs)
        try:
            res = self._sync_client().chat(body, **options)
        except NeboError as err:
            raise translate(err) from err
        message = _convert.message_from_completion(res.data, res.usage, res.snapshot)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        body, options, stream_usage = self._body(messages, stop, kwargs)
        sinks, finished, stream = active_sinks(), False, None
        try:
            stream = self._sync_client().stream_chat(body, **options)
            with stream:
                for raw in stream:
                    chunk = _convert.chunk_from_delta(raw)
                    if chunk is not None:
                        yield ChatGenerationChunk(message=chunk)
            yield _final(stream, stream_usage)
            finished = True
        except NeboError as err:
            raise translate(err) from err
        finally:
            if not finished and stream is not None:
                # Closed early or broken: hand what the core recorded to the budget handlers.
                stream.close()
                deliver_partial(sinks, stream.usage)

    # -- async ----------------------------------------------------------------------------

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            chunks = [c async for c in self._astream(messages, stop, run_manager, **kwargs)]
            return _result_from_chunks(chunks)
        body, options, _ = self._body(messages, stop, kwargs)
        try:
            res = await self._async_client().chat(body, **options)
        except NeboError as err:
            raise translate(err) from err
        message = _convert.message_from_completion(res.data, res.usage, res.snapshot)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        body, options, stream_usage = self._body(messages, stop, kwargs)
        sinks, finished, stream = active_sinks(), False, None
        try:
            stream = await self._async_client().stream_chat(body, **options)
            async with stream:
                async for raw in stream:
                    chunk = _convert.chunk_from_delta(raw)
                    if chunk is not None:
                        yield ChatGenerationChunk(message=chunk)
            yield _final(stream, stream_usage)
            finished = True
        except NeboError as err:
            raise translate(err) from err
        finally:
            if not finished and stream is not None:
                await stream.aclose()
                deliver_partial(sinks, stream.usage)

    # -- retries --------------------------------------------------------------------------

    def with_retry(
        self,
        *,
        retry_if_exception_type: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (
            Exception,
        ),
        wait_exponential_jitter: bool = True,
        exponential_jitter_params: Any = None,
        stop_after_attempt: int = 3,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """LangChain's ``with_retry``, except that an error Nebo marks as final (``is_retryable``
        False: budget exhausted, authentication, bad request) is never retried or slept for.

        (langchain-core's own ``with_retry`` retries every exception it is given, ignoring
        ``is_retryable``; for a chain, pass ``retry_if_exception_type=RETRYABLE_ERRORS``.)"""
        given = retry_if_exception_type

        def retryable(error: BaseException) -> bool:
            if callable(given) and not isinstance(given, tuple):
                return should_retry(error, (BaseException,)) and bool(given(error))
            return should_retry(error, given)

        return NeboRetry(
            bound=self,
            kwargs={},
            config={},
            retry_exception_types=(Exception,),
            nebo_retry_if=retryable,
            wait_exponential_jitter=wait_exponential_jitter,
            exponential_jitter_params=exponential_jitter_params,
            max_attempt_number=stop_after_attempt,
        )

    # -- tools and structured output ------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (anything LangChain accepts); ``tool_choice``: auto, none, any/required, a name."""
        formatted = [convert_to_openai_tool(t, strict=strict) for t in tools]
        names = [t["function"]["name"] for t in formatted if "function" in t]
        choice = wire.tool_choice(tool_choice, names)
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Answers parsed into ``schema`` by tool call, JSON schema or JSON mode (``include_raw``)."""
        if kwargs:
            raise ValueError(f"with_structured_output got unexpected arguments: {sorted(kwargs)}")
        return structured_output(self, schema, method=method, include_raw=include_raw, strict=strict)


def _final(stream: ChatStream | AsyncChatStream, stream_usage: bool) -> ChatGenerationChunk:
    message = _convert.final_chunk(stream.completion(), stream.usage, stream.snapshot, stream_usage)
    return ChatGenerationChunk(message=message)


def _result_from_chunks(chunks: list[ChatGenerationChunk]) -> ChatResult:
    if not chunks:
        raise ValueError("the Nebo stream returned no chunks")
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    from langchain_core.messages.utils import message_chunk_to_message

    return ChatResult(generations=[ChatGeneration(message=message_chunk_to_message(merged.message))])
