"""Budget observers: an instrumentation event handler and a legacy callback handler.

Both only *observe*: they total tokens and microdollars per model for every Nebo LLM
and embedding call. The instrumentation dispatcher swallows handler exceptions, so a cap
enforced there would guard nothing; enforcement is the ``nebo_core`` budget policy that
``Nebo`` and ``NeboEmbedding`` run every request under (``policy=``), which raises a typed
``NeboBudgetExhausted`` before any request is sent. Totals live in a private
``nebo_core.BudgetTracker``, which is thread-safe.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.callbacks.schema import CBEventType
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from pydantic import PrivateAttr

from llama_index_nebo._events import NeboUsageEvent
from nebo_core import BudgetTracker, TrackerTotals, UsageRecord
from nebo_core.forecast import BudgetForecast


class _Totals:
    """Shared read API over a private tracker."""

    _tracker: BudgetTracker

    def record(self, record: UsageRecord) -> None:
        """Count one call."""
        self._tracker.record(record)

    def totals(self) -> TrackerTotals:
        """A consistent copy: ``.total``, ``.by_model``, ``.by_kind`` (calls, tokens, ``cost_micro``)."""
        return self._tracker.totals()

    @property
    def cost_micro(self) -> int:
        """Microdollars spent by every call seen (calls of unknown cost count as 0)."""
        return self._tracker.totals().total.cost_micro

    @property
    def cost_dollars(self) -> float:
        """:attr:`cost_micro` in dollars."""
        return self.cost_micro / 1_000_000

    @property
    def calls(self) -> int:
        """Requests seen."""
        return self._tracker.totals().total.calls

    def by_model(self) -> dict[str, dict[str, Any]]:
        """Per routed model: calls, prompt/completion tokens, ``cost_micro``."""
        return self._tracker.totals().to_dict()["by_model"]  # type: ignore[no-any-return]

    def history(self) -> list[UsageRecord]:
        """The most recent usage records, oldest first."""
        return self._tracker.history()

    def forecast(self, account: str | None = None) -> BudgetForecast:
        """Where the budget windows are heading, from the calls seen (``BudgetTracker.forecast``)."""
        return self._tracker.forecast(account)

    def reset(self) -> None:
        """Forget every total."""
        self._tracker.reset()


class NeboBudgetEventHandler(_Totals, BaseEventHandler):
    """Totals Nebo spend from ``NeboUsageEvent``s; attach with :meth:`attach` or to any dispatcher."""

    _tracker: BudgetTracker = PrivateAttr(default_factory=BudgetTracker)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "NeboBudgetEventHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Count ``NeboUsageEvent``s; ignore everything else."""
        if isinstance(event, NeboUsageEvent) and isinstance(event.record, UsageRecord):
            self._tracker.record(event.record)

    def attach(self, dispatcher_name: str = "root") -> NeboBudgetEventHandler:
        """Register on a dispatcher (the root one by default); returns ``self``."""
        dispatcher = get_dispatcher(dispatcher_name)
        if self not in dispatcher.event_handlers:
            dispatcher.add_event_handler(self)
        return self

    def detach(self, dispatcher_name: str = "root") -> None:
        """Unregister from a dispatcher."""
        dispatcher = get_dispatcher(dispatcher_name)
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not self]


class NeboBudgetCallbackHandler(_Totals, BaseCallbackHandler):
    """The same totals for the legacy ``CallbackManager``.

    ``Nebo`` and ``NeboEmbedding`` hand their usage records straight to every instance of this
    class on their ``callback_manager`` (LlamaIndex's embedding callback payloads carry no usage).
    """

    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self._tracker = BudgetTracker()

    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        """Nothing to do at the start: the core policy already vetted the call."""
        return event_id

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        """Nothing to do: usage arrives through :meth:`record`."""

    def start_trace(self, trace_id: str | None = None) -> None:
        """Unused."""

    def end_trace(self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None) -> None:
        """Unused."""
