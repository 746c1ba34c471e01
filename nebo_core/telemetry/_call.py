"""One call's telemetry: the hooks the exchange calls, the span they keep, and the instruments.

:class:`CallTelemetry` is what the exchange sees; :data:`OFF` (its no-op base) is what every call
gets while OpenTelemetry is not in use, and :class:`Traced` the real one. OpenTelemetry is imported
only when :class:`Instruments` are built, i.e. once a real provider is in use.
"""

from __future__ import annotations

import json
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from nebo_core._version import __version__
from nebo_core.budget import UsageRecord
from nebo_core.errors import NeboBudgetExhausted, NeboError
from nebo_core.telemetry._attributes import (
    COST,
    COST_SOURCE,
    ERROR_TYPE,
    OPERATION,
    PROVIDER,
    PROVIDER_NAME,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    SCOPE_ATTR,
    SERVER_ADDRESS,
    SERVER_PORT,
    TOKEN_ATTRIBUTES,
    Aborted,
    budget_attributes,
    budget_error,
    error_type,
    operation_name,
    request_attributes,
    response_attributes,
    server,
)

if TYPE_CHECKING:
    from nebo_core.exchange import Exchange, Send
    from nebo_core.tracker import BudgetTracker

R = TypeVar("R")
SCOPE = "nebo_core"
"""The instrumentation scope (tracer and meter name)."""
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
MICRO_UNIT = "{USD_micro}"
"""Microdollars (1e-6 USD): UCUM has no currency, so an annotation, as for ``{token}``."""


class Instruments:
    """A tracer and the metric instruments for one pair of providers (built once per pair)."""

    def __init__(
        self, tracer_provider: Any, meter_provider: Any, cost_semconv: bool, langfuse_cost: bool = False
    ) -> None:
        from opentelemetry import context, trace

        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.cost_semconv = cost_semconv
        self.langfuse_cost = langfuse_cost
        self.current_span = trace.get_current_span
        self.client = trace.SpanKind.CLIENT
        self.status = trace.Status
        self.error = trace.StatusCode.ERROR
        self.in_context = trace.set_span_in_context
        self.attach, self.detach = context.attach, context.detach
        self.tracer = tracer_provider.get_tracer(SCOPE, __version__) if tracer_provider is not None else None
        self.tokens: Any = None
        self.duration: Any = None
        self.cost: Any = None
        if meter_provider is not None:
            meter = meter_provider.get_meter(SCOPE, __version__)
            self.tokens = _histogram(
                meter,
                "gen_ai.client.token.usage",
                "{token}",
                "Number of input and output tokens used.",
                TOKEN_BUCKETS,
            )
            self.duration = _histogram(
                meter, "gen_ai.client.operation.duration", "s", "GenAI operation duration.", DURATION_BUCKETS
            )
            self.cost = meter.create_counter(
                "nebo.cost",
                unit=MICRO_UNIT,
                description="What Nebo billed for calls, exactly, in microdollars.",
            )
            meter.create_observable_gauge(
                "nebo.budget.remaining",
                callbacks=[_observe_budgets],
                unit=MICRO_UNIT,
                description="What Nebo says is left in each budget window, per account, in microdollars.",
            )


def _histogram(meter: Any, name: str, unit: str, description: str, buckets: tuple[float, ...]) -> Any:
    try:
        return meter.create_histogram(name, unit, description, explicit_bucket_boundaries_advisory=buckets)
    except TypeError:  # opentelemetry-api before 1.30 takes no bucket advice
        return meter.create_histogram(name, unit, description)


# --- the budget gauge --------------------------------------------------------------------------

_budgets: dict[str, weakref.ref[BudgetTracker]] = {}
"""Each account seen by a measured call, and the tracker that holds its freshest snapshot."""


def _remember_budget(tracker: BudgetTracker, account: str | None) -> None:
    if account is None:
        return
    known = _budgets.get(account)
    if known is None or known() is not tracker:
        _budgets[account] = weakref.ref(tracker)


def _observe_budgets(options: Any) -> Iterator[Any]:
    from opentelemetry.metrics import Observation

    for account, ref in list(_budgets.items()):
        tracker = ref()
        snapshot = tracker.snapshot_for(account) if tracker is not None else None
        for window in snapshot.windows if snapshot is not None else ():
            if window.remaining_micro is not None:
                yield Observation(
                    window.remaining_micro, {"nebo.budget.window": window.name, "nebo.account": account}
                )


# --- one call ----------------------------------------------------------------------------------


class CallTelemetry:
    """What the exchange tells telemetry about one call. This base does nothing (:data:`OFF`)."""

    def opener(self, open_: Callable[[Send], R]) -> Callable[[Send], R]:
        """The driver's send step, run with this call's span as the current one."""
        return open_

    def aopener(self, open_: Callable[[Send], Awaitable[R]]) -> Callable[[Send], Awaitable[R]]:
        """The async twin of :meth:`opener`."""
        return open_

    def recorded(self, record: UsageRecord) -> None:
        """One attempt's usage record (a retried call may have several, each maybe billed)."""

    def retry(self, attempt: int, delay: float, error: NeboError) -> None:
        """A transient failure, retried after ``delay`` seconds."""

    def budget(self, error: NeboBudgetExhausted) -> None:
        """Nebo answered a budget 429; the policy decides next."""

    def budget_wait(self, seconds: float, model: str) -> None:
        """The policy waits for a window to reset."""

    def budget_refused(self, error: NeboBudgetExhausted) -> None:
        """The policy refused the call (up front, or after a budget 429)."""

    def fallback(self, model: str) -> None:
        """The policy sends the call to another model."""

    def end(self, ex: Exchange, error: BaseException | None = None, *, complete: bool | None = None) -> None:
        """The call is over: succeeded, failed with ``error``, or (a stream) ended ``complete`` or not."""

    def abort(self, ex: Exchange) -> None:
        """The caller gave up mid-call (from the driver's ``except``: the exception is the one raised)."""


OFF = CallTelemetry()
"""The telemetry of every call while OpenTelemetry is not in use."""


class Traced(CallTelemetry):
    """One call's span (kept out of the current context) and its measurements."""

    def __init__(self, instruments: Instruments, ex: Exchange) -> None:
        self._i = instruments
        self._t0 = time.perf_counter()
        self._ended = False
        self._records = 0
        self._cost = 0
        self._uncertain = False
        self._source: str | None = None
        self._tokens: list[int | None] = [None, None, None]  # input, output, cached input
        call = ex.call
        self._operation = operation_name(call.kind, call.path)
        model = call.requested if call.kind is not None else None
        base: dict[str, Any] = {OPERATION: self._operation, PROVIDER_NAME: PROVIDER}
        if model is not None:
            base[REQUEST_MODEL] = model
        base.update(server(ex.server))
        self._base = base
        self.span: Any = None
        self._recording = False
        self._parent: Any = None
        if instruments.tracer is not None:
            if instruments.langfuse_cost:
                self._parent = instruments.current_span()
            attributes = {**base, **request_attributes(call.kind, call.body, call.stream)}
            if call.scope is not None:
                attributes[SCOPE_ATTR] = call.scope_text
            name = f"{self._operation} {model}" if model else self._operation
            self.span = instruments.tracer.start_span(name, kind=instruments.client, attributes=attributes)
            self._recording = self.span.is_recording()

    # -- while it runs --------------------------------------------------------------------

    def opener(self, open_: Callable[[Send], R]) -> Callable[[Send], R]:
        def traced(send: Send) -> R:
            token = self._i.attach(self._i.in_context(self.span)) if self.span is not None else None
            try:
                response = open_(send)
            finally:
                if token is not None:
                    self._i.detach(token)
            self._learnserver(response)
            return response

        return traced

    def aopener(self, open_: Callable[[Send], Awaitable[R]]) -> Callable[[Send], Awaitable[R]]:
        async def traced(send: Send) -> R:
            token = self._i.attach(self._i.in_context(self.span)) if self.span is not None else None
            try:
                response = await open_(send)
            finally:
                if token is not None:
                    self._i.detach(token)
            self._learnserver(response)
            return response

        return traced

    def _learnserver(self, response: Any) -> None:
        """``server.*`` from the request, when the call did not say where it goes (``NeboClient``)."""
        if SERVER_ADDRESS in self._base:
            return
        try:
            url = response.request.url
        except (AttributeError, RuntimeError):  # a transport's own response has no request
            return
        found = server(str(url))
        self._base.update(found)
        if self._recording and found:
            self.span.set_attributes(found)

    def recorded(self, record: UsageRecord) -> None:
        self._records += 1
        self._cost += record.cost_micro or 0
        self._uncertain = self._uncertain or record.uncertain
        self._source = record.cost_source
        for i, value in enumerate((record.prompt_tokens, record.completion_tokens, record.cached_tokens)):
            if value is not None:
                self._tokens[i] = (self._tokens[i] or 0) + value

    def _event(self, name: str, attributes: dict[str, Any]) -> None:
        if self._recording:
            self.span.add_event(name, {k: v for k, v in attributes.items() if v is not None})

    def retry(self, attempt: int, delay: float, error: NeboError) -> None:
        self._event(
            "nebo.retry",
            {
                "nebo.retry.attempt": attempt,
                "nebo.retry.delay_s": float(delay),
                ERROR_TYPE: error_type(error),
            },
        )

    def budget(self, error: NeboBudgetExhausted) -> None:
        self._event("nebo.budget.exhausted", budget_error(error))

    def budget_wait(self, seconds: float, model: str) -> None:
        self._event("nebo.budget.wait", {"nebo.budget.wait_s": float(seconds), "nebo.model": model})

    def budget_refused(self, error: NeboBudgetExhausted) -> None:
        self._event("nebo.budget.refused", budget_error(error))

    def fallback(self, model: str) -> None:
        self._event("nebo.budget.fallback", {"nebo.model": model})

    # -- the end --------------------------------------------------------------------------

    def abort(self, ex: Exchange) -> None:
        self.end(ex, sys.exc_info()[1] or Aborted())

    def end(self, ex: Exchange, error: BaseException | None = None, *, complete: bool | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        duration = time.perf_counter() - self._t0
        outcome = self._outcome(ex, error, complete)
        span = self.span
        if span is not None:
            if self._recording:
                if self._i.langfuse_cost and self._records:
                    outcome.update(langfuse_cost(self._parent, self._cost, self._tokens, outcome))
                span.set_attributes(outcome)
                if error is not None:
                    span.set_status(self._i.status(self._i.error, str(error)[:500]))
            span.end()
        if self._i.duration is not None:
            self._measure(ex, outcome, duration)

    def _outcome(self, ex: Exchange, error: BaseException | None, complete: bool | None) -> dict[str, Any]:
        """The span's closing attributes: what came back, what it cost, the budget after it."""
        out = response_attributes(ex)
        for name, value in zip(TOKEN_ATTRIBUTES, self._tokens, strict=True):
            if value is not None and (self._operation == "chat" or name == TOKEN_ATTRIBUTES[0]):
                out[name] = value  # an embedding has input tokens only
        if self._records:
            out[COST] = self._cost
            out[COST_SOURCE] = "estimate" if self._uncertain else self._source
            if self._uncertain:
                out["nebo.cost_uncertain"] = True
            if self._i.cost_semconv:
                out["gen_ai.usage.cost.amount"] = self._cost / 1_000_000
                out["gen_ai.usage.cost.currency"] = "USD"
                out["gen_ai.usage.cost.source"] = "local" if self._uncertain else "provider"
        elif ex.governed:
            out[COST] = 0  # no attempt could have been billed (refused, or rejected before billing)
        snapshot = ex.response.snapshot
        if snapshot is None or not snapshot.known:
            snapshot = ex.tracker.snapshot_for(ex.account)
        out.update(budget_attributes(snapshot))
        if complete is not None:
            out["nebo.stream.complete"] = complete
            out["nebo.stream.closed_early"] = not complete and error is None
        if ex.response.status:
            out["http.response.status_code"] = ex.response.status
        if error is not None:
            out[ERROR_TYPE] = error_type(error)
            code = getattr(error, "code", None)
            if isinstance(code, str) and code:
                out["nebo.error.code"] = code
        return {k: v for k, v in out.items() if v is not None}

    def _measure(self, ex: Exchange, outcome: Mapping[str, Any], duration: float) -> None:
        i = self._i
        base = dict(self._base)
        if RESPONSE_MODEL in outcome:
            base[RESPONSE_MODEL] = outcome[RESPONSE_MODEL]
        timed = {**base, ERROR_TYPE: outcome[ERROR_TYPE]} if ERROR_TYPE in outcome else base
        i.duration.record(duration, timed)
        used, produced = self._tokens[0], self._tokens[1]
        if used is not None:
            i.tokens.record(used, {**base, "gen_ai.token.type": "input"})
        if produced is not None and self._operation == "chat":
            i.tokens.record(produced, {**base, "gen_ai.token.type": "output"})
        if self._records and self._cost > 0:
            spent = {k: v for k, v in base.items() if k not in (SERVER_ADDRESS, SERVER_PORT)}
            spent[COST_SOURCE] = outcome[COST_SOURCE]
            if ex.call.scope is not None:
                spent[SCOPE_ATTR] = ex.call.scope_text
            i.cost.add(self._cost, spent)
        _remember_budget(ex.tracker, ex.account)


# --- Langfuse ----------------------------------------------------------------------------------

LANGFUSE_TYPE = "langfuse.observation.type"
LANGFUSE_COST = "langfuse.observation.cost_details"
LANGFUSE_USAGE = "langfuse.observation.usage_details"
LANGFUSE_MODEL = "langfuse.observation.model.name"


def langfuse_cost(
    parent: Any, cost_micro: int, tokens: list[int | None], outcome: Mapping[str, Any]
) -> dict[str, Any]:
    """Where Langfuse reads a generation's cost (``cost_details``, JSON, dollars), for one call.

    Langfuse prices a generation from its model table unless the generation carries
    ``langfuse.observation.cost_details``. When the call runs inside a Langfuse generation (its
    LangChain ``CallbackHandler`` makes the chat run one, and the current span), that generation
    gets Nebo's cost, and Nebo's span is marked a plain span so Langfuse does not count the call
    twice; otherwise Nebo's own span becomes the generation, with model, usage and cost. Returns
    the attributes for Nebo's span."""
    cost = json.dumps({"total": cost_micro / 1_000_000})
    routed = outcome.get(RESPONSE_MODEL)
    model = {LANGFUSE_MODEL: routed} if isinstance(routed, str) and routed else {}
    attributes = getattr(parent, "attributes", None)
    if isinstance(attributes, Mapping) and attributes.get(LANGFUSE_TYPE) == "generation":
        parent.set_attributes({LANGFUSE_COST: cost, **model})  # and the model ``auto`` was routed to
        return {LANGFUSE_TYPE: "span"}
    usage = {k: v for k, v in (("input", tokens[0]), ("output", tokens[1])) if v is not None}
    return {LANGFUSE_TYPE: "generation", LANGFUSE_COST: cost, LANGFUSE_USAGE: json.dumps(usage), **model}


# --- attributes (pure) -------------------------------------------------------------------------
