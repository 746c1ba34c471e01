"""``Nebo``: the LlamaIndex LLM for Nebo, a ``FunctionCallingLLM`` over ``nebo_core``.

Every request goes through ``nebo_core.NeboClient`` / ``AsyncNeboClient``: the one retry
layer, the budget policy (checked before the request), stream repair, and usage records.
This module only maps types (see ``_convert``; streams fold in ``_stream``); the sync and
async methods share ``_request``/``_finish``/``StreamAccumulator`` and differ only in ``await``.
``complete`` and its twins wrap the undecorated ``_chat`` bodies, so a completion is one LLM
event, one rate-limiter acquire and one usage record.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import httpx
from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.types import Model, PydanticProgramMode

from llama_index_nebo import _convert as conv
from llama_index_nebo._clients import OPENAI_SHARED, Refusal, connect, publish, restore_state
from llama_index_nebo._stream import StreamAccumulator
from nebo_core import (
    AsyncChatStream,
    AsyncNeboClient,
    BudgetPolicy,
    BudgetTracker,
    ChatCompletion,
    ChatStream,
    NeboClient,
    NeboConfigurationError,
    NeboProvider,
    get_model,
)
from nebo_core.models import AUTO_CONTEXT_WINDOW, AUTO_MAX_OUTPUT, DEFAULT_CHAT_MODEL
from nebo_core.settings import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from llama_index.core.prompts import BasePromptTemplate
    from llama_index.core.tools.types import BaseTool

# LlamaIndex passes these through **kwargs; they steer the adapter, not the request body.
_NOT_BODY = frozenset({"tool_required", "verbose", "allow_parallel_tool_calls", "formatted"})
# Per-call client options, not body fields: the budget scope, and the openai SDK's request
# options that OpenAILike users pass to chat() (timeout, extra_headers), plus max_retries.
_CALL_OPTIONS = ("scope", "timeout", "max_retries", "extra_headers")
_TEXT_ONLY = "Nebo chat answers in text; audio output is not supported"
_REFUSED: dict[str, Refusal] = {
    **OPENAI_SHARED,
    "openai_client": (
        lambda v: v is None,
        "Nebo does not run on the openai SDK; pass client=NeboClient(...) or http_client=httpx.Client(...)",
    ),
    "async_openai_client": (
        lambda v: v is None,
        "Nebo does not run on the openai SDK; pass async_client=AsyncNeboClient(...) "
        "or async_http_client=httpx.AsyncClient(...)",
    ),
    "modalities": (lambda v: v is None or (isinstance(v, (list, tuple)) and list(v) == ["text"]), _TEXT_ONLY),
    "audio_config": (lambda v: v is None, _TEXT_ONLY),
    "tokenizer": (
        lambda v: v is None,
        "OpenAILike uses it only for the legacy completions endpoint; Nebo always uses chat "
        "completions and reports token counts itself",
    ),
}
"""``OpenAILike`` keywords with no meaning here (see ``_clients.check_foreign``)."""


class Nebo(FunctionCallingLLM):
    """Nebo chat models (``"auto"`` routing or a named model) with tools, streaming and budgets.

    The token comes from ``api_key`` or ``NEBO_API_KEY`` and is never a field: it does not
    appear in ``to_dict()``, ``to_json()``, repr or instrumentation payloads. Nor in a pickle:
    an unpickled copy (e.g. in a worker process) reads ``NEBO_API_KEY`` on its first call and
    records into the process-wide default tracker and policy, not the ones given here.
    ``default_headers`` are not fields either (a header may hold a secret).

    ``OpenAILike``'s keywords work here: each reaches the wire (``api_base``, ``default_headers``,
    ``http_client``/``async_http_client``, ``logprobs``, ``reasoning_effort``, ``strict``...) or
    sets what it sets there (``context_window``, ``is_function_calling_model``...), and the few
    that mean nothing for Nebo (``api_version``, ``openai_client``, audio output) are refused by
    name. So are call keywords: body fields go into the body, ``extra_body`` is merged,
    ``timeout`` and ``extra_headers`` apply to the call, ``extra_query`` is refused.
    """

    model: str = Field(
        default=DEFAULT_CHAT_MODEL, description="A Nebo model id, or 'auto' to let Nebo route."
    )
    temperature: float | None = Field(
        default=None, description="Sampling temperature (server default if None)."
    )
    max_tokens: int | None = Field(default=None, description="Sent as max_completion_tokens.", gt=0)
    base_url: str = Field(default=DEFAULT_BASE_URL, description="Nebo API base URL, ending in /v1.")
    timeout: float = Field(default=DEFAULT_TIMEOUT, description="Seconds per request.")
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, description="Retries of transient failures.")
    additional_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra request body fields.")
    structured_output_mode: Literal["json_schema", "tools"] = Field(
        default="json_schema",
        description="structured_predict via a json_schema response_format, or via a forced tool call.",
    )
    scope: str | None = Field(default=None, description="Budget scope passed to the nebo_core policy.")
    reasoning_effort: str | None = Field(
        default=None,
        description="Sent as reasoning_effort ('low', 'medium', 'high'...) for reasoning models.",
    )
    logprobs: bool | None = Field(
        default=None, description="Ask for token log probabilities (filled into ChatResponse.logprobs)."
    )
    top_logprobs: int | None = Field(
        default=None, ge=0, le=20, description="Most likely alternatives per token (needs logprobs=True)."
    )
    strict: bool = Field(default=False, description="Send tools in OpenAI's strict schema mode.")
    context_window: int | None = Field(
        default=None, gt=0, description="Tokens the model reads (default: nebo_core's model table)."
    )
    num_output: int | None = Field(
        default=None, gt=0, description="Tokens kept for the answer (default: max_tokens, else the model's)."
    )
    is_chat_model: bool = Field(
        default=True, description="Reported in metadata; requests are chat either way."
    )
    is_function_calling_model: bool | None = Field(
        default=None, description="Reported in metadata (default: the model table's tool support)."
    )

    _clients: NeboProvider = PrivateAttr()

    def __init__(
        self,
        model: str = DEFAULT_CHAT_MODEL,
        *,
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
        _structured_mode(kwargs)
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
        super().__init__(model=model, **fields)
        if self.top_logprobs and not self.logprobs:
            raise NeboConfigurationError(f"top_logprobs={self.top_logprobs} needs logprobs=True")
        self._clients = clients

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "Nebo_llm"

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_state(self, state)

    @property
    def metadata(self) -> LLMMetadata:
        """What was set, else the model table's context window, output size and tool support
        (``auto``: the safe minimum)."""
        spec = get_model(self.model)
        chat_spec = spec if spec is not None and spec.kind == "chat" else None
        tools = self.is_function_calling_model
        return LLMMetadata(
            context_window=self.context_window
            or (chat_spec.context_window if chat_spec else AUTO_CONTEXT_WINDOW),
            num_output=self.num_output
            or self.max_tokens
            or (chat_spec.max_output_tokens if chat_spec else AUTO_MAX_OUTPUT),
            is_chat_model=self.is_chat_model,
            is_function_calling_model=tools
            if tools is not None
            else (chat_spec.supports_tools if chat_spec else True),
            model_name=self.model,
        )

    @property
    def tracker(self) -> BudgetTracker:
        """The ``nebo_core`` tracker this LLM records every call into."""
        return self._clients.tracker

    @property
    def policy(self) -> BudgetPolicy:
        """The ``nebo_core`` budget policy every call runs under."""
        return self._clients.policy

    # -- shared pure steps ----------------------------------------------------------------

    def _request(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any], stream: bool = False
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request body and the client's call options (scope, timeout, max_retries).

        Call keywords go into the body, as ``OpenAILike`` sends them, except the openai SDK's
        request options: ``extra_body`` is merged, ``timeout`` and ``extra_headers`` apply to
        this call, and ``extra_query`` is refused by name rather than sent as a body field."""
        extra = {k: v for k, v in kwargs.items() if k not in _NOT_BODY and v is not None}
        if "extra_query" in extra:
            raise NeboConfigurationError(
                "extra_query= is not supported by Nebo: its API takes no query parameters"
            )
        if extra.pop("use_chat_completions", True) is not True:
            raise NeboConfigurationError("use_chat_completions=False: Nebo serves chat completions only")
        if "stream" in extra or ("stream_options" in extra and not stream):
            name = "stream" if "stream" in extra else "stream_options"
            raise NeboConfigurationError(f"{name}= is for streams: call stream_chat()/astream_chat() instead")
        options = {name: extra.pop(name, None) for name in _CALL_OPTIONS}
        options["scope"] = options["scope"] or self.scope
        strict = extra.pop("strict", None)
        extra_body = extra.pop("extra_body", None) or {}
        if not isinstance(extra_body, Mapping):
            raise NeboConfigurationError(f"extra_body must be a dict, got {type(extra_body).__name__}")
        body: dict[str, Any] = {"model": self.model, "messages": conv.to_openai_messages(messages)}
        for name, value in (
            ("temperature", self.temperature),
            ("max_completion_tokens", self.max_tokens),
            ("reasoning_effort", self.reasoning_effort),
            ("logprobs", self.logprobs),
            ("top_logprobs", self.top_logprobs if self.logprobs else None),
        ):
            if value is not None:
                body[name] = value
        body.update(self.additional_kwargs)
        body.update(extra)
        body.update(extra_body)
        if strict is not None and not body.get("tools"):
            raise NeboConfigurationError("strict= applies to tools, and this call has none")
        if (self.strict if strict is None else strict) and body.get("tools"):
            body["tools"] = conv.strict_tools(body["tools"])
        return body, options

    def _finish(self, result: ChatCompletion) -> ChatResponse:
        publish(list(result.records) or [result.usage], self.callback_manager)
        return conv.chat_response(result)

    def _published(self, stream: ChatStream | AsyncChatStream) -> None:
        if stream.records:
            publish(stream.records, self.callback_manager)

    def _prompt(self, prompt: str, formatted: bool) -> str:
        to_prompt = self.completion_to_prompt
        return prompt if formatted or to_prompt is None else to_prompt(prompt)

    # -- chat: the undecorated bodies (complete() wraps these, so a call counts once) ----

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        body, options = self._request(messages, kwargs)
        return self._finish(self._clients.sync.chat(body, **options))

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        body, options = self._request(messages, kwargs)
        return self._finish(await self._clients.aio().chat(body, **options))

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        body, options = self._request(messages, kwargs, stream=True)

        def gen() -> Generator[ChatResponse, None, None]:
            stream = self._clients.sync.stream_chat(body, **options)
            acc = StreamAccumulator()
            try:
                with stream:
                    for chunk in stream:
                        response = acc.feed(chunk)
                        if response is not None:
                            yield response
                    yield acc.final(stream.completion(), stream.usage, stream.snapshot, stream.forecast)
            finally:
                self._published(stream)

        return gen()

    async def _astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        body, options = self._request(messages, kwargs, stream=True)

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            stream = await self._clients.aio().stream_chat(body, **options)
            acc = StreamAccumulator()
            try:
                async with stream:
                    async for chunk in stream:
                        response = acc.feed(chunk)
                        if response is not None:
                            yield response
                    yield acc.final(stream.completion(), stream.usage, stream.snapshot, stream.forecast)
            finally:
                self._published(stream)

        return gen()

    # -- chat -----------------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """One chat completion."""
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """One chat completion (async)."""
        return await self._achat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream a chat completion; the last response carries usage and budget (delta ``""``)."""
        return self._stream_chat(messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Stream a chat completion (async)."""
        return await self._astream_chat(messages, **kwargs)

    # -- completion (a chat with one user message, after completion_to_prompt) ------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete a prompt."""
        return chat_to_completion_decorator(self._chat)(self._prompt(prompt, formatted), **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete a prompt (async)."""
        return await achat_to_completion_decorator(self._achat)(self._prompt(prompt, formatted), **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream a completion."""
        return stream_chat_to_completion_decorator(self._stream_chat)(
            self._prompt(prompt, formatted), **kwargs
        )

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Stream a completion (async)."""
        return await astream_chat_to_completion_decorator(self._astream_chat)(
            self._prompt(prompt, formatted), **kwargs
        )

    # -- tools ----------------------------------------------------------------------------

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The ``chat`` arguments for a tool-calling turn: OpenAI ``tools``, ``tool_choice`` and
        ``parallel_tool_calls`` (so the model makes one call when parallel calls are not allowed)."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        prepared: dict[str, Any] = {"messages": messages, **kwargs}
        if tools:
            prepared["tools"] = conv.to_openai_tools(tools)
            prepared["parallel_tool_calls"] = allow_parallel_tool_calls
            choice = conv.tool_choice_param(tool_choice, tool_required)
            if choice is not None:
                prepared["tool_choice"] = choice
        return prepared

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep only the first tool call unless parallel calls were allowed (a backstop: the
        request already said ``parallel_tool_calls: false``)."""
        if not allow_parallel_tool_calls:
            conv.keep_first_tool_call(response.message)
        return response

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """The tool calls in a response, in order."""
        calls = conv.tool_selections(response.message)
        if not calls and error_on_no_tool_call:
            raise ValueError(f"expected at least one tool call, got none: {response.message.content!r}")
        return calls

    # -- structured output ----------------------------------------------------------------

    def _json_schema_mode(self) -> bool:
        # A pydantic_program_mode other than the default picks LlamaIndex's own program.
        if self.pydantic_program_mode != PydanticProgramMode.DEFAULT:
            return False
        spec = get_model(self.model)
        return self.structured_output_mode == "json_schema" and (spec is None or spec.supports_json_schema)

    def _structured_args(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None,
        args: Any,
    ) -> tuple[list[ChatMessage], dict[str, Any]]:
        messages = self._extend_messages(prompt.format_messages(llm=self, **args))
        return messages, {**(llm_kwargs or {}), "response_format": conv.response_format(output_cls)}

    def structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """An instance of ``output_cls``: via a json_schema response_format, or tools (see mode)."""
        if not self._json_schema_mode():
            return super().structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)  # type: ignore[arg-type,no-any-return]
        messages, kwargs = self._structured_args(output_cls, prompt, llm_kwargs, prompt_args)
        return conv.parse_structured(output_cls, self.chat(messages, **kwargs).message.content)

    async def astructured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """Async :meth:`structured_predict`."""
        if not self._json_schema_mode():
            return await super().astructured_predict(output_cls, prompt, llm_kwargs, **prompt_args)  # type: ignore[arg-type,no-any-return]
        messages, kwargs = self._structured_args(output_cls, prompt, llm_kwargs, prompt_args)
        response = await self.achat(messages, **kwargs)
        return conv.parse_structured(output_cls, response.message.content)


def _structured_mode(kwargs: dict[str, Any]) -> None:
    """``OpenAILike``'s ``should_use_structured_outputs`` as ``structured_output_mode``."""
    if "should_use_structured_outputs" not in kwargs:
        return
    mode = "json_schema" if kwargs.pop("should_use_structured_outputs") else "tools"
    if kwargs.setdefault("structured_output_mode", mode) != mode:
        raise NeboConfigurationError(
            f"should_use_structured_outputs asks for {mode!r} but structured_output_mode="
            f"{kwargs['structured_output_mode']!r}; pass only structured_output_mode"
        )
