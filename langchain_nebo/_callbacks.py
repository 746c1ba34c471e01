"""Budget callbacks: ``NeboBudgetCallbackHandler`` and ``get_nebo_callback()``.

The handler reads what every ``ChatNebo`` result already carries (``usage_metadata`` and
``response_metadata["nebo"]``) and can refuse a call in ``on_chat_model_start``, before any
request, once a cap is reached (``raise_error = True``: otherwise LangChain swallows it).
Streams closed early or broken never reach ``on_llm_end``; ``ChatNebo`` hands their partial
usage record (from ``nebo_core``) to the handlers of that run through :func:`deliver_partial`.

``cost_for_langsmith()`` puts the exact cost where LangSmith reads it, for the tracer alone.

``get_nebo_callback()`` needs no handler at all: ``nebo_core``'s tracker calls a record
listener for every call (chat and embeddings, every model, exact server cost), and the
listener adds the record to the collectors active in the *current context* (a ContextVar,
reset on exit even when the block raises), so concurrent threads and tasks never mix.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from langchain_nebo._convert import usage_metadata
from langchain_nebo._errors import budget_cap_error
from nebo_core import AsyncChatStream, ChatStream
from nebo_core.budget import UsageRecord
from nebo_core.tracker import BudgetTracker, Totals, default_tracker

_ERRORED_KEEP = 256
"""How many errored runs a handler remembers, awaiting a late partial record."""


Tally = Totals
"""Calls, tokens and exact cost for one model, one kind, or everything (``nebo_core``'s ``Totals``)."""


@dataclass(eq=False)
class _Ledger:
    """A thread-safe total plus per-model breakdown (shared by the handler and the collector)."""

    total: Tally = field(default_factory=Tally)
    by_model: dict[str, Tally] = field(default_factory=dict)
    snapshot: dict[str, Any] | None = None
    forecast: dict[str, Any] | None = None
    """The budget forecast of the last call seen (``response_metadata["nebo"]["forecast"]``)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, model: str, prompt: Any, completion: Any, total: Any, cost: Any, snap: Any) -> None:
        with self._lock:
            self.total.add_counts(prompt, completion, total, cost)
            self.by_model.setdefault(model, Tally()).add_counts(prompt, completion, total, cost)
            if snap is not None:
                self.snapshot = snap

    def add_record(self, record: UsageRecord) -> None:
        """Count one ``nebo_core`` usage record (by the model it was routed to)."""
        snap = record.snapshot.to_dict() if record.snapshot is not None else None
        self.add(
            record.model or record.requested_model,
            record.prompt_tokens,
            record.completion_tokens,
            record.total_tokens,
            record.cost_micro,
            snap,
        )

    @property
    def total_cost_micro(self) -> int:
        """Exact spend in microdollars (calls of unknown cost excluded; see ``unknown_cost_calls``)."""
        return self.total.cost_micro

    @property
    def total_cost(self) -> float:
        """Spend in dollars."""
        return self.total.cost_dollars

    @property
    def total_tokens(self) -> int:
        return self.total.total_tokens

    @property
    def prompt_tokens(self) -> int:
        return self.total.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.total.completion_tokens

    @property
    def successful_requests(self) -> int:
        return self.total.calls


# --- the handler -----------------------------------------------------------------------------

_SINKS: ContextVar[tuple[tuple[weakref.ref[NeboBudgetCallbackHandler], UUID], ...]] = ContextVar(
    "nebo_budget_sinks", default=()
)


def active_sinks() -> tuple[tuple[weakref.ref[NeboBudgetCallbackHandler], UUID], ...]:
    """The budget handlers of the chat run starting in this context (captured by streams)."""
    return _SINKS.get()


def deliver_partial(
    sinks: tuple[tuple[weakref.ref[NeboBudgetCallbackHandler], UUID], ...], record: UsageRecord | None
) -> None:
    """Give a stream's partial usage (closed early or broken) to the handlers of its run."""
    if record is None:
        return
    for ref, run_id in sinks:
        handler = ref()
        if handler is not None:
            handler.record_partial(run_id, record)


class NeboBudgetCallbackHandler(BaseCallbackHandler, _Ledger):
    """Records every ``ChatNebo`` call's tokens, microdollars and budget snapshot; optional cap.

    With ``max_cost_micro`` set, a chat call that starts once the recorded spend has reached
    the cap is refused in ``on_chat_model_start`` (no request is sent) with the
    non-retryable :class:`~langchain_nebo.NeboBudgetExhaustedError`.
    """

    raise_error = True
    run_inline = True

    def __init__(self, max_cost_micro: int | None = None) -> None:
        _Ledger.__init__(self)
        if max_cost_micro is not None and max_cost_micro < 0:
            raise ValueError(f"max_cost_micro must be >= 0 microdollars, got {max_cost_micro}")
        self.max_cost_micro = max_cost_micro
        self.errors = 0
        self.partial_calls = 0
        self._open: set[UUID] = set()
        self._errored: OrderedDict[UUID, None] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"NeboBudgetCallbackHandler(calls={self.total.calls}, cost_micro={self.total.cost_micro}, "
            f"max_cost_micro={self.max_cost_micro})"
        )

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        with self._lock:
            spent = self.total.cost_micro
            if self.max_cost_micro is not None and spent >= self.max_cost_micro:
                raise budget_cap_error(spent, self.max_cost_micro)
            self._open.add(run_id)
        sinks = tuple(s for s in _SINKS.get() if s[1] == run_id)
        _SINKS.set((*sinks, (weakref.ref(self), run_id)))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            if run_id not in self._open:
                return
            self._open.discard(run_id)
        for generations in response.generations:
            for generation in generations:
                self._add_message(getattr(generation, "message", None))

    def _add_message(self, message: Any) -> None:
        meta: Mapping[str, Any] = getattr(message, "response_metadata", None) or {}
        usage: Mapping[str, Any] = getattr(message, "usage_metadata", None) or {}
        raw = meta.get("nebo")
        nebo: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        self.add(
            str(meta.get("model_name") or "unknown"),
            usage.get("input_tokens"),
            usage.get("output_tokens"),
            usage.get("total_tokens"),
            nebo.get("cost_micro"),
            nebo.get("snapshot"),
        )
        if isinstance(nebo.get("forecast"), Mapping):
            with self._lock:
                self.forecast = dict(nebo["forecast"])

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self.errors += 1
            if run_id in self._open:
                # Nothing recorded yet: a late partial record (an early-closed stream) may follow.
                self._open.discard(run_id)
                self._errored[run_id] = None
                while len(self._errored) > _ERRORED_KEEP:
                    self._errored.popitem(last=False)

    def record_partial(self, run_id: UUID, record: UsageRecord) -> None:
        """Record what a stream closed early or broken used (called by ``ChatNebo``)."""
        with self._lock:
            if run_id in self._open:
                self._open.discard(run_id)
            elif self._errored.pop(run_id, 0) is not None:
                return
            self.partial_calls += 1
        self.add_record(record)


# --- get_nebo_callback -----------------------------------------------------------------------


class NeboUsage(_Ledger):
    """What the calls inside one ``get_nebo_callback()`` block used: chat and embeddings."""

    def __init__(self) -> None:
        _Ledger.__init__(self)
        self.by_kind: dict[str, Tally] = {}

    def __repr__(self) -> str:
        return (
            f"NeboUsage(calls={self.total.calls}, tokens={self.total.total_tokens}, "
            f"cost_micro={self.total.cost_micro})"
        )

    def add_record(self, record: UsageRecord) -> None:
        """Count one core usage record, also by kind (chat, embedding)."""
        super().add_record(record)
        with self._lock:
            self.by_kind.setdefault(record.kind, Tally()).add_counts(
                record.prompt_tokens, record.completion_tokens, record.total_tokens, record.cost_micro
            )


_COLLECTORS: ContextVar[tuple[NeboUsage, ...]] = ContextVar("nebo_usage_collectors", default=())
_hooked: weakref.WeakSet[BudgetTracker] = weakref.WeakSet()
_hook_lock = threading.Lock()


def _dispatch(record: UsageRecord) -> None:
    for collector in _COLLECTORS.get():
        collector.add_record(record)


def hook_tracker(tracker: BudgetTracker) -> None:
    """Feed ``tracker``'s records to ``get_nebo_callback()`` blocks (once per tracker)."""
    if tracker in _hooked:
        return
    with _hook_lock:
        if tracker not in _hooked:
            tracker.add_record_listener(_dispatch)
            _hooked.add(tracker)


@contextmanager
def get_nebo_callback(tracker: BudgetTracker | None = None) -> Iterator[NeboUsage]:
    """Collect the exact usage and cost of every Nebo call (chat and embeddings) in the block.

    Counts calls made in this thread or task and in work it spawns with a copied context
    (LangChain's ``batch`` does); ``tracker`` defaults to ``nebo_core``'s default tracker
    (models with their own tracker are hooked when they make their client).
    """
    hook_tracker(tracker if tracker is not None else default_tracker())
    usage = NeboUsage()
    token = _COLLECTORS.set((*_COLLECTORS.get(), usage))
    try:
        yield usage
    finally:
        _COLLECTORS.reset(token)


# --- LangSmith: the exact cost on the run ------------------------------------------------------

_LANGSMITH_TRACERS = ("LangChainTracer",)
"""Class names (in the MRO) of the handlers that post runs to LangSmith."""

_STREAM_DRIVERS = frozenset(
    getattr(BaseChatModel, name).__code__
    for name in ("stream", "astream", "_generate_with_cache", "_agenerate_with_cache")
    if hasattr(BaseChatModel, name)
)
"""The langchain-core methods that open a chat run and then call ``_stream`` without its manager."""


def _is_langsmith(handler: Any) -> bool:
    return any(cls.__name__ in _LANGSMITH_TRACERS for cls in type(handler).__mro__)


def _dollars(message: Any) -> float | None:
    meta = getattr(message, "response_metadata", None)
    nebo = meta.get("nebo") if isinstance(meta, Mapping) else None
    cost = nebo.get("cost_micro") if isinstance(nebo, Mapping) else None
    return _micro_to_dollars(cost)


def _micro_to_dollars(cost: Any) -> float | None:
    if isinstance(cost, bool) or not isinstance(cost, int):
        return None
    return cost / 1_000_000


def stream_run_manager() -> Any:
    """The run manager of the langchain-core method driving the caller (``_stream``/``_astream``).

    Call it first thing in ``_stream`` / ``_astream``. langchain-core's ``stream()`` /
    ``astream()`` (and ``invoke`` with ``streaming=True``, through ``_generate_with_cache``) open
    the run, a local ``run_manager``, and then call ``_stream`` without it, so the run's tracers
    are out of reach; the frame that drives the generator is that method, and its
    ``run_manager`` is the run's. Anything else (another caller, a langchain-core that renamed
    it): ``None``, and the run simply carries no cost.
    """
    frame = sys._getframe(2)  # 0: here, 1: _stream, 2: whatever drives it
    if frame.f_code not in _STREAM_DRIVERS:
        return None
    manager = frame.f_locals.get("run_manager")
    return manager if isinstance(manager, (CallbackManagerForLLMRun, AsyncCallbackManagerForLLMRun)) else None


class RunCost:
    """What the LangSmith cost handlers of one chat run share (see :func:`cost_for_langsmith`)."""

    def __init__(self, run_id: UUID) -> None:
        self.run_id = run_id
        self.saved: dict[int, Any] = {}
        self._stream: ChatStream | AsyncChatStream | None = None

    def follow(self, stream: ChatStream | AsyncChatStream) -> None:
        """The run is this stream: should it end in error (closed early, broken), the run gets
        what the stream showed until then."""
        self._stream = stream

    def usage_so_far(self) -> tuple[dict[str, Any], str | None] | None:
        """The followed stream's usage (``total_cost`` in dollars) and routed model, if known."""
        stream = self._stream
        if stream is None:
            return None
        record = stream.usage  # set once the stream is closed; before that, its running usage
        completion = stream.completion()
        raw = completion.get("usage")
        usage = usage_metadata(raw)
        if record is not None:
            dollars = _micro_to_dollars(record.cost_micro)
        else:
            dollars = _micro_to_dollars(raw.get("cost_micro")) if isinstance(raw, Mapping) else None
        if usage is None or dollars is None:
            return None
        model = completion.get("model") or (record.model if record is not None else None)
        return {**usage, "total_cost": dollars}, model if isinstance(model, str) and model else None


class _CostFor(BaseCallbackHandler):
    """Shows LangSmith's tracer, and only it, the call's exact cost in ``usage_metadata``.

    LangSmith reads a run's cost from ``usage_metadata["total_cost"]`` (dollars, a float), which
    LangChain's tracer takes from the messages in ``on_llm_end``; a float there breaks
    ``add_usage`` (chunk merging, ``get_usage_metadata_callback``). So the messages keep integer
    usage, and two of these handlers sit around each LangSmith tracer of the run: the first adds
    ``total_cost``, the second puts the integer usage back before any other handler sees it.
    A run that ends in error (a stream closed early or broken) gets no usage from the tracer:
    the first handler sets it, with what the stream showed, on the tracer's own run.
    """

    run_inline = True

    def __init__(self, cost: RunCost, tracer: Any = None) -> None:
        self.cost, self.tracer = cost, tracer

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id != self.cost.run_id:
            return
        saved = self.cost.saved
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                usage = getattr(message, "usage_metadata", None)
                if self.tracer is not None:
                    dollars = _dollars(message)
                    if usage is not None and dollars is not None and id(message) not in saved:
                        saved[id(message)] = usage
                        message.usage_metadata = {**usage, "total_cost": dollars}  # type: ignore[union-attr]
                elif id(message) in saved:
                    message.usage_metadata = saved.pop(id(message))  # type: ignore[union-attr]

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id != self.cost.run_id or self.tracer is None:
            return
        seen = self.cost.usage_so_far()
        run_map = getattr(self.tracer, "run_map", None)
        run = run_map.get(str(run_id)) if isinstance(run_map, Mapping) else None
        if seen is None or run is None:
            return
        usage, model = seen
        metadata = run.extra.setdefault("metadata", {})
        metadata["usage_metadata"] = usage
        if model is not None:
            metadata["ls_model_name"] = model


def cost_for_langsmith(run_manager: Any) -> RunCost | None:
    """Give the LangSmith tracers of this chat run the exact cost (``None``: no tracer, nothing
    done)."""
    handlers = getattr(run_manager, "handlers", None)
    if not handlers or not any(_is_langsmith(h) for h in handlers):
        return None
    for handler in handlers:
        if isinstance(handler, _CostFor) and handler.cost.run_id == run_manager.run_id:
            return handler.cost  # arranged already (generate's streaming path)
    cost = RunCost(run_manager.run_id)
    arranged: list[Any] = []
    for handler in handlers:
        if _is_langsmith(handler):
            arranged += [_CostFor(cost, handler), handler, _CostFor(cost)]
        else:
            arranged.append(handler)
    handlers[:] = arranged
    return cost


# --- LangSmith: embeddings as runs -------------------------------------------------------------


def langsmith_tracing() -> bool:
    """Whether LangSmith traces a run started here (environment, ``tracing_context``, a parent run).

    Costs a few microseconds: langchain-core has imported ``langsmith`` already, and nothing from
    it is imported unless some module did (a process without it never imports it here)."""
    if "langsmith" not in sys.modules:
        return False
    from langsmith.utils import tracing_is_enabled

    return tracing_is_enabled() is True


@dataclass(eq=False)
class EmbeddingCalls:
    """What the requests of one embedding call returned: models, usage records, vectors."""

    models: list[str] = field(default_factory=list)
    records: list[UsageRecord] = field(default_factory=list)
    vectors: int = 0
    dimensions: int | None = None

    def add(self, model: str | None, records: list[UsageRecord], vectors: list[list[float]]) -> None:
        if model and model not in self.models:
            self.models.append(model)
        self.records += records
        self.vectors += len(vectors)
        if vectors and self.dimensions is None:
            self.dimensions = len(vectors[0])

    def usage(self) -> dict[str, Any]:
        """LangSmith's ``usage_metadata``: tokens, and ``total_cost`` in dollars when every request's
        cost is known."""
        prompt = sum(r.prompt_tokens or 0 for r in self.records)
        usage: dict[str, Any] = {"input_tokens": prompt, "output_tokens": 0, "total_tokens": prompt}
        costs = [r.cost_micro for r in self.records]
        if costs and all(isinstance(c, int) for c in costs):
            usage["total_cost"] = sum(c for c in costs if c is not None) / 1_000_000
        return usage

    def metadata(self) -> dict[str, Any]:
        """The routed model (``ls_model_name``) and Nebo's own numbers, for the run's metadata."""
        costs = [r.cost_micro for r in self.records]
        nebo: dict[str, Any] = {
            "cost_micro": sum(c for c in costs if c is not None) if None not in costs else None,
            "request_ids": [r.request_id for r in self.records if r.request_id],
        }
        metadata: dict[str, Any] = {"nebo": nebo}
        if self.models:
            metadata["ls_model_name"] = ", ".join(self.models)
        return metadata


@contextmanager
def embedding_run(name: str, model: str, texts: list[str]) -> Iterator[EmbeddingCalls]:
    """A LangSmith run of type ``embedding`` around one embedding call, when LangSmith traces.

    LangChain embeddings have no callbacks, so no LangChain run: the call gets a LangSmith run
    of its own (a child of the current run, e.g. a traced retriever's), with the exact cost in
    ``usage_metadata.total_cost`` and the routed model in ``ls_model_name``. Tracing off: no run.
    """
    calls = EmbeddingCalls()
    if not langsmith_tracing():
        yield calls
        return
    from langsmith.run_helpers import trace

    metadata = {"ls_provider": "nebo", "ls_model_name": model, "ls_model_type": "embedding"}
    with trace(name, run_type="embedding", inputs={"input": texts}, metadata=metadata) as run:
        yield calls
        run.set(usage_metadata=calls.usage(), metadata=calls.metadata())  # type: ignore[arg-type]
        run.end(outputs={"vectors": calls.vectors, "dimensions": calls.dimensions})
