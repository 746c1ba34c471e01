"""``Nebo``: the LlamaIndex LLM for Nebo, a ``FunctionCallingLLM`` over ``nebo_core``.

Every request goes through ``nebo_core.NeboClient`` / ``AsyncNeboClient``: the one retry
layer, the budget policy (checked before the request), stream repair, and usage records.
This module only maps types (see ``_convert``); the sync and async methods share
``_body``/``_finish``/``_stream_*`` and differ only in ``await``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Sequence
from typing import TYPE_CHECKING, Any, Literal

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
from llama_index.core.types import Model

from llama_index_nebo import _convert as conv
from llama_index_nebo._clients import connect, publish, restore_state
from nebo_core import (
    AsyncChatStream,
    AsyncNeboClient,
    BudgetPolicy,
    BudgetTracker,
    ChatCompletion,
    ChatStream,
    NeboClient,
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


class Nebo(FunctionCallingLLM):
    """Nebo chat models (``"auto"`` routing or a named model) with tools, streaming and budgets.

    The token comes from ``api_key`` or ``NEBO_API_KEY`` and is never a field: it does not
    appear in ``to_dict()``, ``to_json()``, repr or instrumentation payloads. Nor in a pickle:
    an unpickled copy (e.g. in a worker process) reads ``NEBO_API_KEY`` on its first call and
    records into the process-wide default tracker and policy, not the ones given here.
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
        tracker: BudgetTracker | None = None,
        policy: BudgetPolicy | None = None,
        client: NeboClient | None = None,
        async_client: AsyncNeboClient | None = None,
        **kwargs: Any,
    ) -> None:
        clients, fields = connect(
            type(self),
            kwargs,
            base_url=base_url,
            api_base=api_base,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            provider_api_key=provider_api_key,
            tracker=tracker,
            policy=policy,
            client=client,
            async_client=async_client,
        )
        super().__init__(model=model, **fields)
        self._clients = clients

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "Nebo_llm"

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_state(self, state)

    @property
    def metadata(self) -> LLMMetadata:
        """Context window and output size from ``nebo_core.models`` (``auto``: the safe minimum)."""
        spec = get_model(self.model)
        chat_spec = spec if spec is not None and spec.kind == "chat" else None
        return LLMMetadata(
            context_window=chat_spec.context_window if chat_spec else AUTO_CONTEXT_WINDOW,
            num_output=self.max_tokens or (chat_spec.max_output_tokens if chat_spec else AUTO_MAX_OUTPUT),
            is_chat_model=True,
            is_function_calling_model=chat_spec.supports_tools if chat_spec else True,
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

    def _body(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        extra = {k: v for k, v in kwargs.items() if k not in _NOT_BODY and v is not None}
        scope = extra.pop("scope", self.scope)
        body: dict[str, Any] = {"model": self.model, "messages": conv.to_openai_messages(messages)}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_completion_tokens"] = self.max_tokens
        body.update(self.additional_kwargs)
        body.update(extra)
        return body, scope

    def _finish(self, result: ChatCompletion) -> ChatResponse:
        publish([result.usage], self.callback_manager)
        return conv.chat_response(result.data, result.usage, result.snapshot)

    @staticmethod
    def _stream_step(stream: ChatStream | AsyncChatStream, chunk: dict[str, Any]) -> ChatResponse | None:
        text, calls = conv.chunk_delta(chunk)
        if not text and not calls:
            return None
        return ChatResponse(message=conv.from_openai_message(stream.message), delta=text, raw=chunk)

    @staticmethod
    def _stream_end(stream: ChatStream | AsyncChatStream) -> ChatResponse:
        return ChatResponse(
            message=conv.from_openai_message(stream.message),
            delta="",
            raw=stream.completion(),
            additional_kwargs=conv.response_kwargs(stream.usage, stream.snapshot),
        )

    def _published(self, stream: ChatStream | AsyncChatStream) -> None:
        if stream.usage is not None:
            publish([stream.usage], self.callback_manager)

    # -- chat -----------------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """One chat completion."""
        body, scope = self._body(messages, kwargs)
        return self._finish(self._clients.sync.chat(body, scope=scope))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """One chat completion (async)."""
        body, scope = self._body(messages, kwargs)
        return self._finish(await self._clients.aio().chat(body, scope=scope))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream a chat completion; the last response carries usage and budget (delta ``""``)."""
        body, scope = self._body(messages, kwargs)

        def gen() -> Generator[ChatResponse, None, None]:
            stream = self._clients.sync.stream_chat(body, scope=scope)
            try:
                with stream:
                    for chunk in stream:
                        response = self._stream_step(stream, chunk)
                        if response is not None:
                            yield response
                    yield self._stream_end(stream)
            finally:
                self._published(stream)

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Stream a chat completion (async)."""
        body, scope = self._body(messages, kwargs)

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            stream = await self._clients.aio().stream_chat(body, scope=scope)
            try:
                async with stream:
                    async for chunk in stream:
                        response = self._stream_step(stream, chunk)
                        if response is not None:
                            yield response
                    yield self._stream_end(stream)
            finally:
                self._published(stream)

        return gen()

    # -- completion (a chat with one user message) ---------------------------------------

    @staticmethod
    def _prompt_messages(prompt: str) -> list[ChatMessage]:
        return [ChatMessage(role=MessageRole.USER, content=prompt)]

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete a prompt."""
        return chat_to_completion_decorator(self.chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete a prompt (async)."""
        return await achat_to_completion_decorator(self.achat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream a completion."""
        return stream_chat_to_completion_decorator(self.stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Stream a completion (async)."""
        return await astream_chat_to_completion_decorator(self.astream_chat)(prompt, **kwargs)

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
        """The ``chat`` arguments for a tool-calling turn (OpenAI ``tools``/``tool_choice``)."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        prepared: dict[str, Any] = {"messages": messages, **kwargs}
        if tools:
            prepared["tools"] = conv.to_openai_tools(tools)
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
        """Keep only the first tool call unless parallel calls were allowed."""
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
