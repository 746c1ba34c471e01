"""``NeboEmbeddings``: LangChain embeddings on ``nebo_core``'s batched, concurrent ``embed``.

The core does the work (batches of up to 2,048 inputs, bounded concurrent requests, base64
transfer, order kept, usage and exact cost recorded into the tracker); this class adapts the
call, refuses a text longer than the model's context before sending it, shows progress when
asked, makes the call a LangSmith ``embedding`` run with its exact cost when LangSmith traces,
and translates errors at one boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from langchain_core.embeddings import Embeddings
from pydantic import Field

from langchain_nebo import _params, _tokens
from langchain_nebo._callbacks import embedding_run
from langchain_nebo._connection import NeboConnection
from langchain_nebo._errors import translate
from nebo_core import MAX_EMBEDDING_BATCH, NeboConfigurationError, NeboError
from nebo_core.errors import NeboContextLengthError
from nebo_core.models import DEFAULT_EMBEDDING_MODEL, check_embedding_model, get_model

_OPTIONS = frozenset({"dimensions", "encoding_format", "model"})
"""Call-time keywords that are arguments of the core's ``embed`` (the rest are body fields)."""


class NeboEmbeddings(NeboConnection, Embeddings):
    """Nebo embeddings (``neboloop/nebo-embed-small`` by default); usage lands in the tracker.

    ???+ info "Setup"

        ```bash
        pip install -U "nebo-integrations[langchain]"
        export NEBO_API_KEY="your-neboloop-token"
        ```

    ??? info "Key init args"

        | Param | Type | Description |
        | ----- | ---- | ----------- |
        | `model` | `str` | `neboloop/nebo-embed-small` (default) or `neboloop/nebo-embed-large`. |
        | `dimensions` | `int \\| None` | Shorter vectors, where the model supports it. |
        | `chunk_size` | `int` | Texts per request (at most 2,048). |
        | `max_concurrency` | `int` | Requests in flight at once. |
        | `model_kwargs` | `dict` | More request-body fields (unknown keywords land here, with a warning). |
        | `default_headers` | `dict \\| None` | Sent on every request. |
        | `show_progress_bar` | `bool` | A tqdm bar over the texts. |

    ??? info "Instantiate"

        ```python
        from langchain_nebo import NeboEmbeddings

        embeddings = NeboEmbeddings(model="neboloop/nebo-embed-small", dimensions=256)
        ```

    ??? info "Embed"

        ```python
        vector = embeddings.embed_query("The meaning of life is 42")
        vectors = embeddings.embed_documents(["budgets", "limits", "pools"])
        print(len(vector), len(vectors))
        ```

        ```txt
        256 3
        ```

    ??? info "Async"

        ```python
        vector = await embeddings.aembed_query("The meaning of life is 42")
        vectors = await embeddings.aembed_documents(["budgets", "limits", "pools"])
        ```

    Long texts are refused, never truncated: a text longer than the model's context
    (``embedding_ctx_length``, default the model's window, 8,191 tokens) raises
    ``NeboContextOverflowError`` before anything is sent, naming the text. (OpenAIEmbeddings
    splits such a text and averages the pieces' vectors; a vector of an average is not the
    vector of the text, so here the caller splits, e.g. with a text splitter.) Tokens are
    counted with tiktoken where its encoding is cached, else estimated: an estimate refuses only
    a text that is surely too long, and a borderline one gets the server's
    ``NeboContextOverflowError``. ``check_embedding_ctx_length=False`` leaves it all to the server.
    """

    _refused: ClassVar[dict[str, _params.Refusal]] = _params.EMBEDDINGS_REFUSED

    model: str = DEFAULT_EMBEDDING_MODEL
    dimensions: int | None = None
    """Shorter vectors, where the model supports it (a clear error where it does not)."""
    chunk_size: int = Field(default=MAX_EMBEDDING_BATCH, ge=1)
    """Inputs per request (the server takes at most 2,048)."""
    max_concurrency: int = Field(default=4, ge=1)
    """Requests in flight at once when the input spans several batches."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """More request-body fields, sent as given (unknown constructor keywords land here)."""
    show_progress_bar: bool = False
    """Show a tqdm progress bar over the texts (needs ``tqdm``)."""
    embedding_ctx_length: int | None = None
    """The most tokens one text may have (default: the model's context window)."""
    check_embedding_ctx_length: bool = True
    """Refuse a text longer than ``embedding_ctx_length`` before sending it."""
    tiktoken_model_name: str | None = None
    """The OpenAI model whose tiktoken encoding counts tokens (default: the model's upstream)."""
    scope: str | None = None

    def _configure(self) -> None:
        owner = type(self).__name__
        if self.chunk_size > MAX_EMBEDDING_BATCH:
            raise NeboConfigurationError(
                f"{owner}: chunk_size must be <= {MAX_EMBEDDING_BATCH} (Nebo's limit), got {self.chunk_size}"
            )
        check_embedding_model(self.model, self.dimensions)
        if self.show_progress_bar:
            _tqdm()

    # -- request building (pure, shared) --------------------------------------------------

    def _call(self, texts: list[str], chunk_size: int | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The core ``embed`` keyword arguments for one call, after refusing over-long texts."""
        owner = type(self).__name__
        known = _params.EMBED_BODY_FIELDS | _OPTIONS
        parts = _params.split_call_kwargs(owner, kwargs, known)
        call: dict[str, Any] = {
            "model": self.model,
            "dimensions": self.dimensions,
            "batch_size": chunk_size or self.chunk_size,
            "concurrency": self.max_concurrency,
            "scope": self.scope,
            **{k: v for k, v in parts.body.items() if k in _OPTIONS},
            **_params.core_options(parts),
        }
        body = {**self.model_kwargs, **{k: v for k, v in parts.body.items() if k not in _OPTIONS}}
        body.update(parts.extra_body)
        if body:
            call["extra_body"] = body
        self._check_lengths(texts, str(call["model"]))
        return call

    def _check_lengths(self, texts: list[str], model: str) -> None:
        spec = get_model(model)
        limit = self.embedding_ctx_length or (spec.context_window if spec is not None else None)
        if not self.check_embedding_ctx_length or limit is None:
            return
        name = _tokens.encoding_name(self.tiktoken_model_name or (spec.upstream if spec else None) or model)
        exact = _tokens.encoding(name)
        for i, text in enumerate(texts):
            if not isinstance(text, str) or len(text.encode("utf-8", "replace")) <= limit:
                continue  # a token is at least one byte (byte-level BPE); the core checks types
            if exact is not None:
                tokens, over = len(exact.encode(text, disallowed_special=())), limit
            else:
                tokens, over = _tokens.estimate(text), int(limit * (1 + _tokens.ESTIMATE_MAX_OVERCOUNT))
            if tokens > over:
                about = "about " if exact is None else ""
                raise NeboContextLengthError(
                    f"text {i} has {about}{tokens} tokens and {model} takes at most {limit}: split it first "
                    "(for example with a text splitter); NeboEmbeddings never truncates or averages"
                )

    def _groups(self, texts: list[str], call: dict[str, Any]) -> Iterator[list[str]]:
        """The whole input at once, or groups of ``max_concurrency`` batches for a progress bar."""
        if not self.show_progress_bar:
            yield texts
            return
        step = call["batch_size"] * max(call["concurrency"], 1)
        bar = _tqdm()(total=len(texts))
        try:
            for start in range(0, len(texts), step):
                yield texts[start : start + step]
                bar.update(len(texts[start : start + step]))
        finally:
            bar.close()

    # -- calls ----------------------------------------------------------------------------

    def embed_documents(
        self, texts: list[str], chunk_size: int | None = None, **kwargs: Any
    ) -> list[list[float]]:
        """One vector per text, in order (empty input: no request). Call-time keywords: ``dimensions``,
        ``user``, ``encoding_format``, ``extra_body``, ``extra_headers``, ``timeout``, ``scope``."""
        if not texts:
            return []
        vectors: list[list[float]] = []
        with _boundary():
            call = self._call(texts, chunk_size, kwargs)
            with embedding_run(type(self).__name__, str(call["model"]), texts) as calls:
                for group in self._groups(texts, call):
                    result = self._sync_client().embed(group, **call)
                    calls.add(result.model, result.usage, result.vectors)
                    vectors += result.vectors
        return vectors

    def embed_query(self, text: str, **kwargs: Any) -> list[float]:
        """The vector of one text."""
        return self.embed_documents([text], **kwargs)[0]

    async def aembed_documents(
        self, texts: list[str], chunk_size: int | None = None, **kwargs: Any
    ) -> list[list[float]]:
        """Async :meth:`embed_documents`; batches run concurrently, bounded by ``max_concurrency``."""
        if not texts:
            return []
        vectors: list[list[float]] = []
        with _boundary():
            call = self._call(texts, chunk_size, kwargs)
            with embedding_run(type(self).__name__, str(call["model"]), texts) as calls:
                for group in self._groups(texts, call):
                    result = await self._async_client().embed(group, **call)
                    calls.add(result.model, result.usage, result.vectors)
                    vectors += result.vectors
        return vectors

    async def aembed_query(self, text: str, **kwargs: Any) -> list[float]:
        """Async :meth:`embed_query`."""
        return (await self.aembed_documents([text], **kwargs))[0]


class _boundary:
    """The one place errors are translated to their LangChain twins."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, NeboError):
            raise translate(exc) from exc


def _tqdm() -> Callable[..., Any]:
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    except ImportError as exc:
        raise NeboConfigurationError("show_progress_bar=True needs tqdm: pip install tqdm") from exc
    return tqdm  # type: ignore[no-any-return]
