"""Budget callbacks: ``NeboBudgetCallbackHandler`` and ``get_nebo_callback()``.

The handler reads what every ``ChatNebo`` result already carries (``usage_metadata`` and
``response_metadata["nebo"]``) and can refuse a call in ``on_chat_model_start``, before any
request, once a cap is reached (``raise_error = True``: otherwise LangChain swallows it).
Streams closed early or broken never reach ``on_llm_end``; ``ChatNebo`` hands their partial
usage record (from ``nebo_core``) to the handlers of that run through :func:`deliver_partial`.

``get_nebo_callback()`` needs no handler at all: ``nebo_core``'s tracker calls a record
listener for every call (chat and embeddings, every model, exact server cost), and the
listener adds the record to the collectors active in the *current context* (a ContextVar,
reset on exit even when the block raises), so concurrent threads and tasks never mix.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from langchain_nebo._errors import budget_cap_error
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


def _is_langsmith(handler: Any) -> bool:
    return any(cls.__name__ in _LANGSMITH_TRACERS for cls in type(handler).__mro__)


def _dollars(message: Any) -> float | None:
    meta = getattr(message, "response_metadata", None)
    nebo = meta.get("nebo") if isinstance(meta, Mapping) else None
    cost = nebo.get("cost_micro") if isinstance(nebo, Mapping) else None
    if isinstance(cost, bool) or not isinstance(cost, int):
        return None
    return cost / 1_000_000


class _CostFor(BaseCallbackHandler):
    """Shows LangSmith's tracer, and only it, the call's exact cost in ``usage_metadata``.

    LangSmith reads a run's cost from ``usage_metadata["total_cost"]`` (dollars, a float), which
    LangChain's tracer takes from the messages in ``on_llm_end``; a float there breaks
    ``add_usage`` (chunk merging, ``get_usage_metadata_callback``). So the messages keep integer
    usage, and two of these handlers sit around each LangSmith tracer of the run: the first adds
    ``total_cost``, the second puts the integer usage back before any other handler sees it.
    """

    run_inline = True

    def __init__(self, run_id: UUID, saved: dict[int, Any], *, add: bool) -> None:
        self.run_id, self.saved, self.add = run_id, saved, add

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id != self.run_id:
            return
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                usage = getattr(message, "usage_metadata", None)
                if self.add:
                    dollars = _dollars(message)
                    if usage is not None and dollars is not None and id(message) not in self.saved:
                        self.saved[id(message)] = usage
                        message.usage_metadata = {**usage, "total_cost": dollars}  # type: ignore[union-attr]
                elif id(message) in self.saved:
                    message.usage_metadata = self.saved.pop(id(message))  # type: ignore[union-attr]


def cost_for_langsmith(run_manager: Any) -> None:
    """Give the LangSmith tracers of this chat run the exact cost (no-op without one)."""
    handlers = getattr(run_manager, "handlers", None)
    if not handlers or not any(_is_langsmith(h) for h in handlers):
        return
    saved: dict[int, Any] = {}
    run_id = run_manager.run_id
    arranged: list[Any] = []
    for handler in handlers:
        if _is_langsmith(handler):
            arranged += [_CostFor(run_id, saved, add=True), handler, _CostFor(run_id, saved, add=False)]
        else:
            arranged.append(handler)
    handlers[:] = arranged
