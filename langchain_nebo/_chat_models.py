"""``ChatNebo``: a LangChain chat model on ``nebo_core``, translating types and nothing else.

The request body is built by one pure helper (:meth:`ChatNebo._request`) from the fields (built
once per configuration) and the call's keywords (sorted by :mod:`langchain_nebo._params`); the
result is shaped by the pure converters in :mod:`langchain_nebo._convert`; the sync and async
methods differ only in ``await``. Retries, budget policy, stream repair, header parsing and cost
all happen in ``nebo_core``; errors are translated once, in :func:`langchain_nebo._errors.translate`.
The class docstring follows LangChain's integration template; the tests run its examples.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput, ModelProfile
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr

from langchain_nebo import _convert, _params, _tokens
from langchain_nebo._callbacks import active_sinks, cost_for_langsmith, deliver_partial, stream_run_manager
from langchain_nebo._connection import NeboConnection
from langchain_nebo._errors import should_retry, translate
from langchain_nebo._profile import profile_for
from langchain_nebo._retry import NeboRetry
from langchain_nebo._structured import response_format_of, structured_output
from nebo_core import AsyncChatStream, ChatCompletion, ChatStream, NeboConfigurationError, NeboError, wire

_Request = tuple[dict[str, Any], dict[str, Any], bool]
"""The request body, the core client's keyword arguments, and whether the last chunk has usage."""


class ChatNebo(NeboConnection, BaseChatModel):
    """Nebo chat completions as a LangChain chat model, with budgets visible on every message.

    ???+ info "Setup"

        Install `nebo-integrations` with LangChain and set `NEBO_API_KEY` (your NeboLoop
        subscription token).

        ```bash
        pip install -U "nebo-integrations[langchain]"
        export NEBO_API_KEY="your-neboloop-token"
        ```

    ??? info "Key init args — completion params"

        | Param | Type | Description |
        | ----- | ---- | ----------- |
        | `model` | `str` | A Nebo model id, or `"auto"` (default): Nebo routes the call. |
        | `temperature` | `float \\| None` | Sampling temperature. |
        | `max_completion_tokens` | `int \\| None` | Output limit (`max_tokens=` is the same). |
        | `n`, `logprobs`, `top_logprobs` | | As in ChatOpenAI; `n` choices give `n` generations. |
        | `seed`, `stop`, `reasoning_effort` | | Sent as given (so are the other OpenAI fields). |
        | `model_kwargs`, `extra_body` | `dict` | More body fields (unknown keywords land in the first). |

        See `docs/langchain.md` for every ChatOpenAI keyword and what it does here.

    ??? info "Key init args — client params"

        | Param | Type | Description |
        | ----- | ---- | ----------- |
        | `api_key` | `str \\| None` | The NeboLoop token (else `NEBO_API_KEY`). |
        | `base_url` | `str \\| None` | Ending in `/v1` (else `NEBO_BASE_URL`, else Nebo's public endpoint). |
        | `timeout` / `request_timeout` | `float \\| None` | Seconds per request (default 300). |
        | `max_retries` | `int \\| None` | Transient failures only; a budget 429 is never retried. |
        | `default_headers` | `dict \\| None` | Sent on every request. |
        | `policy`, `tracker`, `scope` | | nebo_core's budget policy, usage tracker and budget scope. |

    ??? info "Instantiate"

        ```python
        from langchain_nebo import ChatNebo

        model = ChatNebo(
            model="gpt-5-mini",
            temperature=0.2,
            max_completion_tokens=500,
            timeout=60,
            max_retries=2,
            # api_key="...",   # else NEBO_API_KEY
            # base_url="...",  # else NEBO_BASE_URL
        )
        ```

    ??? info "Invoke"

        ```python
        messages = [
            ("system", "You are a helpful assistant. Answer from the context."),
            ("human", "Context: the Seine flows through Paris. Which river flows through Paris?"),
        ]
        response = model.invoke(messages)
        print(response.content)
        ```

        ```txt
        The Seine flows through Paris.
        ```

    ??? info "Stream"

        ```python
        for chunk in model.stream(messages):
            print(chunk.text, end="")

        stream = model.stream(messages)
        full = next(stream)
        for chunk in stream:
            full += chunk
        print(full.usage_metadata)
        ```

        Usage, cost and finish reason arrive on exactly one chunk, the last.

    ??? info "Async"

        ```python
        response = await model.ainvoke(messages)

        async for chunk in model.astream(messages):
            print(chunk.text, end="")

        responses = await model.abatch([messages, messages])
        ```

    ??? info "Tool calling"

        ```python
        from pydantic import BaseModel, Field


        class GetWeather(BaseModel):
            '''Get the current weather in a given city.'''

            city: str = Field(description="The city, e.g. Lyon")


        model_with_tools = model.bind_tools([GetWeather], tool_choice="GetWeather")
        ai_msg = model_with_tools.invoke("What is the weather like in Lyon?")
        print(ai_msg.tool_calls)
        ```

        ```txt
        [{'name': 'GetWeather', 'args': {'city': 'Lyon'}, 'id': 'call_...', 'type': 'tool_call'}]
        ```

        `tool_choice` takes `"auto"`, `"none"`, `"any"`/`"required"` or a tool name;
        `parallel_tool_calls=False` reaches the wire.

    ??? info "Structured output"

        ```python
        class Person(BaseModel):
            '''A person mentioned in the text.'''

            name: str
            city: str


        structured_model = model.with_structured_output(Person)
        person = structured_model.invoke("Ada lives in the city of London.")
        print(person)
        ```

        `method=` is `"function_calling"` (default), `"json_schema"` or `"json_mode"`;
        `include_raw=True` keeps the raw message (with its cost).

    ??? info "Token usage"

        ```python
        ai_msg = model.invoke(messages)
        print(ai_msg.usage_metadata)
        print(model.get_num_tokens("How many tokens is this sentence?"))
        ```

        ```txt
        {'input_tokens': 31, 'output_tokens': 9, 'total_tokens': 40}
        ```

        Counting tokens works offline: exact with tiktoken where its `o200k_base` file is
        cached, else an estimate within about 6 % on average (see `docs/langchain.md`).

    ??? info "Response metadata"

        ```python
        ai_msg = model.invoke(messages)
        print(ai_msg.response_metadata["model_name"], ai_msg.response_metadata["finish_reason"])
        print(ai_msg.response_metadata["nebo"]["cost_micro"], "microdollars")
        print(ai_msg.response_metadata["nebo"]["snapshot"]["session"])
        ```

        `model_name` is the model Nebo routed to; `nebo` holds this call's exact cost and the
        budget the response reported. `logprobs` (with `logprobs=True`) and `headers` (with
        `include_response_headers=True`) are there when asked for.

    ??? info "Several choices, logprobs, headers"

        ```python
        from langchain_core.messages import HumanMessage

        result = ChatNebo(model="gpt-5-mini", n=2).generate([[HumanMessage("Name a river.")]])
        print([g.message.content for g in result.generations[0]])

        ai_msg = model.bind(logprobs=True, top_logprobs=2).invoke(messages)
        print(ai_msg.response_metadata["logprobs"])
        ```

    ??? info "Migrating from ChatOpenAI"

        ```python
        # ChatOpenAI(model="gpt-5-mini", base_url=..., api_key=..., max_completion_tokens=200,
        #            frequency_penalty=0.5, extra_body={"metadata": {"team": "search"}})
        model = ChatNebo(
            model="gpt-5-mini", max_completion_tokens=200, frequency_penalty=0.5,
            extra_body={"metadata": {"team": "search"}},
        )
        ```

        The same keywords mean the same thing and reach the wire; an OpenAI-only one (an openai
        client, `organization`, the Responses API) is refused with the Nebo way to do it.

    Pickling: a model whose key came from `NEBO_API_KEY` pickles (the copy reads it again where
    it is loaded); one given `api_key=` refuses, saying so. `is_lc_serializable()` is False:
    `langchain_nebo` is not on langchain-core's deserialization allowlist.
    """

    model_config = ConfigDict(
        populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=(), extra="forbid"
    )
    _refused: ClassVar[dict[str, _params.Refusal]] = _params.CHAT_REFUSED

    model_name: str = Field(default="auto", alias="model")
    """``"auto"`` lets Nebo route by prompt and plan; a model id routes directly."""
    temperature: float | None = None
    max_tokens: int | None = Field(
        default=None, validation_alias=AliasChoices("max_tokens", "max_completion_tokens")
    )
    """The output limit, sent as ``max_completion_tokens`` (``max_completion_tokens=`` is the same)."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    seed: int | None = None
    top_p: float | None = None
    n: int | None = None
    """Choices per call: ``generate()`` returns one generation each (``invoke`` the first)."""
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | None = None
    """Return token logprobs, in ``response_metadata["logprobs"]`` (on each chunk when streaming)."""
    top_logprobs: int | None = None
    logit_bias: dict[int, int] | None = None
    reasoning_effort: str | None = None
    reasoning: dict[str, Any] | None = None
    """ChatOpenAI's Responses-API form: only ``{"effort": ...}`` applies (sent as ``reasoning_effort``)."""
    verbosity: str | None = None
    service_tier: str | None = None
    store: bool | None = None
    prompt_cache_options: dict[str, Any] | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    """Sent when tools are bound (OpenAI rejects it without tools)."""
    response_format: dict[str, Any] | type[BaseModel] | None = None
    """An OpenAI ``response_format`` dict, or a pydantic class (sent as its JSON schema)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """More request-body fields, sent as given (unknown constructor keywords land here)."""
    extra_body: dict[str, Any] | None = None
    """Merged into every request body last (a call's own ``extra_body`` merges over it)."""
    disabled_params: dict[str, Any] | None = None
    """Body fields never to send: ``{"parallel_tool_calls": None}`` drops the field whatever its
    value; ``{"tool_choice": ["required"]}`` only those values (as in ChatOpenAI)."""
    include_response_headers: bool = False
    """Put the raw response headers in ``response_metadata["headers"]`` (the last chunk's, streaming)."""
    tiktoken_model_name: str | None = None
    """The OpenAI model whose tiktoken encoding counts tokens (default: ``o200k_base``)."""
    streaming: bool = False
    """Make ``invoke`` stream under the hood (callbacks then see tokens)."""
    stream_usage: bool = True
    """Put ``usage_metadata`` on the final stream chunk (on by default, unlike ChatOpenAI)."""
    scope: str | None = None
    """A budget scope passed to the core policy (e.g. a user or tenant id)."""

    _static: dict[str, Any] = PrivateAttr(default_factory=dict)

    def _configure(self) -> None:
        """Check the fields and build the request-body fields every call shares."""
        owner = type(self).__name__
        for name in ("max_tokens", "n"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise NeboConfigurationError(f"{owner}: {name} must be >= 1, got {value}")
        if (self.n or 1) > 1 and self.streaming:
            raise NeboConfigurationError(f"{owner}: n must be 1 when streaming (a stream is one message)")
        static: dict[str, Any] = {"model": self.model_name}
        for key, value in (
            ("temperature", self.temperature),
            ("max_completion_tokens", self.max_tokens),
            ("stop", self.stop or None),
            ("seed", self.seed),
            ("top_p", self.top_p),
            ("n", self.n),
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
            ("logprobs", self.logprobs),
            ("top_logprobs", self.top_logprobs),
            ("logit_bias", self.logit_bias),
            ("reasoning_effort", self._effort()),
            ("verbosity", self.verbosity),
            ("service_tier", self.service_tier),
            ("store", self.store),
            ("prompt_cache_options", self.prompt_cache_options),
            ("user", self.user),
            ("parallel_tool_calls", self.parallel_tool_calls),
            ("response_format", response_format_of(self.response_format)),
        ):
            if value is not None:
                static[key] = value
        static.update(self.model_kwargs)
        self._static = static

    def _effort(self) -> str | None:
        if not self.reasoning:
            return self.reasoning_effort
        other = sorted(set(self.reasoning) - {"effort"})
        if other:
            raise NeboConfigurationError(
                f"ChatNebo: reasoning={self.reasoning!r}: only 'effort' applies (Nebo serves chat "
                f"completions, which have no {other}); pass reasoning_effort="
            )
        effort = self.reasoning.get("effort")
        if self.reasoning_effort is not None and effort not in (None, self.reasoning_effort):
            raise NeboConfigurationError(
                f"ChatNebo got two efforts: reasoning_effort={self.reasoning_effort!r} and "
                f"reasoning={self.reasoning!r}; pass one"
            )
        return self.reasoning_effort or effort

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
        max_tokens = kwargs.get("max_tokens", kwargs.get("max_completion_tokens", self.max_tokens))
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def _resolve_model_profile(self) -> ModelProfile | None:
        return profile_for(self.model_name)

    # -- tokens (offline) -----------------------------------------------------------------

    def _count(self) -> Callable[[str], int]:
        if self.custom_get_token_ids is not None:
            custom = self.custom_get_token_ids
            return lambda text: len(custom(text))
        return _tokens.counter(_tokens.encoding_name(self.tiktoken_model_name))

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids from tiktoken's cached encoding (never downloaded); without one, use
        :meth:`get_num_tokens`, which estimates."""
        if self.custom_get_token_ids is not None:
            return self.custom_get_token_ids(text)
        name = _tokens.encoding_name(self.tiktoken_model_name)
        enc = _tokens.encoding(name)
        if enc is None:
            raise NeboConfigurationError(
                f"token ids need tiktoken's {name} file, which is not cached here (it is never downloaded "
                "at run time); get_num_tokens() estimates without it, or cache it once with tiktoken"
            )
        return list(enc.encode(text, disallowed_special=()))

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text``: exact with a cached tiktoken encoding, else estimated (offline)."""
        return self._count()(text)

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Tokens of a prompt as OpenAI counts chat messages (``tools`` included), offline."""
        formatted = [convert_to_openai_tool(t) for t in tools or ()]
        return _tokens.count_messages(_convert.messages_to_dicts(messages), formatted, self._count())

    # -- request building (pure, shared) --------------------------------------------------

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Request:
        """The OpenAI request body, the core client's keyword arguments (timeout, retries, budget
        scope, per-call headers) and whether the final stream chunk carries usage."""
        parts = _params.split_call_kwargs("ChatNebo", kwargs, _params.CHAT_BODY_FIELDS)
        body = {**self._static, **parts.body, "messages": _convert.messages_to_dicts(messages)}
        if stop:
            body["stop"] = stop
        if "response_format" in parts.body:
            body["response_format"] = response_format_of(parts.body["response_format"])
        body.update(self.extra_body or {})
        body.update(parts.extra_body)
        if not body.get("tools"):
            body.pop("tool_choice", None)
            body.pop("parallel_tool_calls", None)
        for name, values in (self.disabled_params or {}).items():
            if name in body and (values is None or body[name] in values):
                del body[name]
        options = {"scope": self.scope, **_params.core_options(parts)}
        stream_usage = self.stream_usage if parts.stream_usage is None else parts.stream_usage
        return body, options, stream_usage

    def _stream_request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Request:
        request = self._request(messages, stop, kwargs)
        n = request[0].get("n")
        if isinstance(n, int) and n > 1:
            raise NeboConfigurationError(
                f"ChatNebo: n={n} cannot be streamed (a stream is one message); generate() gives {n} choices"
            )
        return request

    def _result(self, res: ChatCompletion) -> ChatResult:
        headers = res.headers if self.include_response_headers else None
        messages = _convert.messages_from_completion(
            res.data,
            res.usage,
            res.snapshot,
            request_id=res.request_id,
            headers=headers,
            forecast=res.forecast,
        )
        info = _convert.routed_model_info(res.data)
        return ChatResult(generations=[ChatGeneration(message=m, generation_info=info) for m in messages])

    def _final(self, stream: ChatStream | AsyncChatStream, stream_usage: bool) -> ChatGenerationChunk:
        headers = stream.headers if self.include_response_headers else None
        completion = stream.completion()
        message = _convert.final_chunk(
            completion, stream.usage, stream.snapshot, stream_usage, headers, stream.forecast
        )
        return ChatGenerationChunk(message=message, generation_info=_convert.routed_model_info(completion))

    # -- sync -----------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return _result_from_chunks(list(self._stream(messages, stop, run_manager, **kwargs)))
        cost_for_langsmith(run_manager)
        try:
            body, options, _ = self._request(messages, stop, kwargs)
            return self._result(self._sync_client().chat(body, **options))
        except NeboError as err:
            raise translate(err) from err

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        sinks, finished, stream = active_sinks(), False, None
        ls_cost = cost_for_langsmith(run_manager or stream_run_manager())
        try:
            body, options, stream_usage = self._stream_request(messages, stop, kwargs)
            stream = self._sync_client().stream_chat(body, **options)
            if ls_cost is not None:
                ls_cost.follow(stream)
            with stream:
                for raw in stream:
                    chunk = _convert.chunk_from_delta(raw)
                    if chunk is not None:
                        yield ChatGenerationChunk(message=chunk)
            yield self._final(stream, stream_usage)
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
            return _result_from_chunks(
                [c async for c in self._astream(messages, stop, run_manager, **kwargs)]
            )
        cost_for_langsmith(run_manager)
        try:
            body, options, _ = self._request(messages, stop, kwargs)
            return self._result(await self._async_client().chat(body, **options))
        except NeboError as err:
            raise translate(err) from err

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        sinks, finished, stream = active_sinks(), False, None
        ls_cost = cost_for_langsmith(run_manager or stream_run_manager())
        try:
            body, options, stream_usage = self._stream_request(messages, stop, kwargs)
            stream = await self._async_client().stream_chat(body, **options)
            if ls_cost is not None:
                ls_cost.follow(stream)
            async with stream:
                async for raw in stream:
                    chunk = _convert.chunk_from_delta(raw)
                    if chunk is not None:
                        yield ChatGenerationChunk(message=chunk)
            yield self._final(stream, stream_usage)
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
        response_format: dict[str, Any] | type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (anything LangChain accepts); ``tool_choice``: auto, none, any/required, a name."""
        formatted = [_strict(convert_to_openai_tool(t, strict=strict), strict) for t in tools]
        names = [t["function"]["name"] for t in formatted if "function" in t]
        choice = wire.tool_choice(tool_choice, names)
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        if response_format is not None:
            kwargs["response_format"] = response_format
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


def _strict(tool: dict[str, Any], strict: bool | None) -> dict[str, Any]:
    # langchain-core leaves a tool given in OpenAI's format as it is: ``strict`` is set here, so
    # that it is never dropped (ChatOpenAI drops it).
    function = tool.get("function")
    if (
        strict is None
        or tool.get("type") != "function"
        or not isinstance(function, dict)
        or "strict" in function
    ):
        return tool
    return {**tool, "function": {**function, "strict": strict}}


def _result_from_chunks(chunks: list[ChatGenerationChunk]) -> ChatResult:
    if not chunks:
        raise ValueError("the Nebo stream returned no chunks")
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    from langchain_core.messages.utils import message_chunk_to_message

    return ChatResult(generations=[ChatGeneration(message=message_chunk_to_message(merged.message))])
