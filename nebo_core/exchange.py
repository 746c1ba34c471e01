"""The exchange engine: one budget-aware Nebo call as a state machine that does no I/O.

Every path to Nebo runs its calls through an :class:`Exchange`: ``NeboClient`` and
``AsyncNeboClient`` above a user's ``httpx`` client, and the transports under the openai
SDK (:mod:`nebo_core.transport`). Given a :class:`Call`, the exchange says what to do next
as an action (:class:`Decide` with the budget policy, :class:`Send` a request,
:class:`Sleep`, :class:`Settle` a reservation, :class:`Fail` with a typed error, or
:class:`Done`), and takes in what happened (a decision, a response head, a body, the
first lines of a stream, a transport failure). It owns, once, for every path:

- the budget gate: a decision before the call, a new one after a budget 429 (wait, fall
  back or refuse), and the settlement of the reservation;
- the one retry layer: transient failures only, never a budget or authentication error;
- observing every response's budget headers into the tracker;
- mapping statuses and in-stream error events to the typed errors;
- stream read-ahead (a stream is retried until its first chunk), repair and usage;
- telemetry: the call's OpenTelemetry span and metrics (:mod:`nebo_core.telemetry`; no-op hooks
  unless OpenTelemetry is in use).

The drivers (:mod:`nebo_core.transport`) carry the actions out, blocking or awaited; that
is the only difference between the sync and async paths.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nebo_core import telemetry, wire
from nebo_core.budget import BudgetSnapshot, CallKind, UsageRecord
from nebo_core.caps import Scope, normalize_scope, scope_label
from nebo_core.errors import (
    NeboBudgetExhausted,
    NeboConfigurationError,
    NeboConnectionError,
    NeboError,
    NeboStreamTruncated,
    NeboTimeoutError,
    NeboUpstreamError,
    scrub_error,
)
from nebo_core.policy import BudgetPolicy, CallPlan, Decision, Go, Wait, default_estimate_micro
from nebo_core.retry import RetryPolicy
from nebo_core.sse import SSEDecoder, StreamState
from nebo_core.tracker import BudgetTracker

Chunk = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One API call as the caller asked for it (before any budget decision)."""

    method: str
    path: str
    """Relative to the base URL (``/chat/completions``), or the SDK request's path."""
    body: Mapping[str, Any] | None = None
    kind: CallKind | None = None
    """``chat`` and ``embedding`` calls are costed and run under the budget policy."""
    stream: bool = False
    scope: Scope = None
    """A plain string, or a mapping of level to id for nested caps."""
    timeout: float | None = None
    retry: RetryPolicy | None = None
    """This call's retry policy (``None``: the exchange's)."""
    headers: Mapping[str, str] | None = None
    """This call's own HTTP headers (``extra_headers=``), validated."""
    query: Mapping[str, Any] | None = None
    """This call's URL query parameters (``extra_query=``)."""

    @property
    def scope_text(self) -> str | None:
        """The scope as recorded in usage records (``org=acme/tenant=t1``; ``None`` without one)."""
        return None if self.scope is None else scope_label(normalize_scope(self.scope))

    @property
    def requested(self) -> str:
        """The model the caller asked for."""
        model = self.body.get("model") if self.body is not None else None
        return str(model) if model else "auto"

    @property
    def choices(self) -> int:
        """The request's ``n``: how many choices a stream must finish."""
        n = self.body.get("n") if self.body is not None else None
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1

    @property
    def inputs(self) -> int:
        """How many vectors an embeddings call must return (0: not an embeddings call)."""
        texts = self.body.get("input") if self.kind == "embedding" and self.body is not None else None
        if isinstance(texts, list) and texts and not all(isinstance(t, int) for t in texts):
            return len(texts)
        return 1 if texts else 0


def payload(call: Call, model: str) -> bytes | None:
    """The JSON body to send for ``call`` with ``model`` chosen (chat bodies made Nebo-safe)."""
    if call.body is None:
        return None
    try:
        return _encode(call, model)
    except (TypeError, ValueError) as exc:
        raise NeboConfigurationError(
            f"the request body cannot be sent as JSON ({exc}); pass only str, int, float, bool, None, "
            "lists and dicts (convert other objects first)"
        ) from None


def _encode(call: Call, model: str) -> bytes:
    assert call.body is not None
    if call.kind == "chat":
        body: dict[str, Any] = wire.prepare_chat_body({**call.body, "model": model}, stream=call.stream)
        if call.stream:
            # Usage is always asked for: it ends the stream at finish_reason and prices it.
            body["stream_options"] = {**body["stream_options"], "include_usage": True}
    elif call.kind == "embedding":
        body = {**call.body, "model": model}
    else:
        body = dict(call.body)
    return json.dumps(body, separators=(",", ":")).encode()


# --- actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decide:
    """Ask the budget policy about ``plan`` (after a budget 429 when ``error`` is set)."""

    plan: CallPlan
    error: NeboBudgetExhausted | None = None


@dataclass(frozen=True)
class Send:
    """Send the call's request with this body; open its response (a stream is not read yet)."""

    content: bytes | None
    timeout: float | None


@dataclass(frozen=True)
class Sleep:
    """Sleep, then call :meth:`Exchange.resume`."""

    seconds: float


@dataclass(frozen=True)
class Settle:
    """Settle a budget decision with the call's usage (``None``: nothing billed), then resume."""

    decision: Decision
    record: UsageRecord | None


@dataclass(frozen=True)
class Fail:
    """The call failed: raise ``error``."""

    error: NeboError


@dataclass(frozen=True)
class Done:
    """The call succeeded: a complete response (:attr:`Exchange.result`), or an open stream
    whose first chunks are in :attr:`Exchange.pending`."""


@dataclass(frozen=True)
class ReadBody:
    """Read the whole response body and pass it to :meth:`Exchange.body`."""


@dataclass(frozen=True)
class ReadStream:
    """Read the stream line by line into :meth:`Exchange.ahead` until it returns an action."""


Action = Decide | Send | Sleep | Settle | Fail | Done | ReadBody | ReadStream
READ_BODY = ReadBody()
READ_STREAM = ReadStream()
DONE = Done()


@dataclass(frozen=True)
class Result:
    """A complete response: decoded JSON, raw bytes, and what it cost."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    data: Any
    snapshot: BudgetSnapshot
    record: UsageRecord | None
    request_id: str | None


@dataclass
class _Response:
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    """Lower-cased, as a plain dict."""
    snapshot: BudgetSnapshot | None = None
    prior: BudgetSnapshot | None = None
    content: bytes | None = None
    raw_headers: Any = None
    """As received (an httpx ``Headers``, kept for drivers that hand the response on)."""


def _lane(headers: Mapping[str, str] | None) -> str | None:
    """A call's own ``X-Lane`` header (``extra_headers=``), if it sets one."""
    if not headers:
        return None
    return next((v for k, v in headers.items() if k.lower() == "x-lane"), None)


class Exchange:
    """One call's state: feed it what happened, do what it returns."""

    def __init__(
        self,
        call: Call,
        *,
        tracker: BudgetTracker,
        policy: BudgetPolicy,
        retry: RetryPolicy,
        account: str | None,
        timeout: float | None = None,
        secrets: tuple[str, ...] = (),
        server: str | None = None,
        lane: str | None = None,
    ) -> None:
        self.call = call
        self.server = server
        """The base URL (or request URL) the call goes to, for telemetry's ``server.*``."""
        self.secrets = secrets
        """Scrubbed from every error built from what the server sent (it may echo our headers)."""
        self.tracker = tracker
        self.policy = policy
        self.retry = call.retry or retry
        self.account = account
        self.timeout = call.timeout if call.timeout is not None else timeout
        self.governed = call.kind is not None
        self.plan = CallPlan(
            call.kind or "chat",
            call.requested,
            call.scope,
            account=account,
            timeout=self.timeout,
            body=call.body,
            lane=_lane(call.headers) or lane,
        )
        self.model = call.requested
        self.decision: Decision | None = None
        self.attempt = 0
        self.before: BudgetSnapshot | None = None
        self.started = time.perf_counter()
        self.response = _Response()
        self.result: Result | None = None
        self.cause: BaseException | None = None
        """The transport exception behind the last failure (set by the driver; cleared per send)."""
        self.state = StreamState()
        self.pending: list[Chunk] = []
        self.ended = False
        self.record: UsageRecord | None = None
        self.records: list[UsageRecord] = []
        """Every usage record of this call: an attempt that may have been billed, then the answer."""
        self._decoder = SSEDecoder()
        self._then: Action | Callable[[], Action] | None = None
        self._closed = False
        self._in_flight = False
        """A request was sent and its outcome is not judged yet: if it fails now, it may have been billed."""
        self.telemetry: telemetry.CallTelemetry = telemetry.OFF
        """This call's span and metrics (:mod:`nebo_core.telemetry`), begun by :meth:`start`."""
        self.stream_error: NeboError | None = None
        """The error that ended a handed-on stream (for the stream's telemetry)."""

    # -- gate -----------------------------------------------------------------------------

    def start(self) -> Action:
        """The first action."""
        self.telemetry = telemetry.begin(self)
        return Decide(self.plan) if self.governed else self._send()

    def decided(self, decision: Decision) -> Action:
        """The policy's answer to :class:`Decide`."""
        if isinstance(decision, Go):
            if decision.model != self.plan.model:
                self.telemetry.fallback(decision.model)
            self.decision = decision
            self.model = decision.model
            return self._send()
        if isinstance(decision, Wait):
            self.telemetry.budget_wait(decision.seconds, decision.model)
            if decision.reason == "reset":
                self.plan = replace(self.plan, model=decision.model, step=self.plan.step + 1)
            else:  # pacing: not a budget step; a booked slot is not booked twice
                self.plan = replace(
                    self.plan,
                    model=decision.model,
                    paced=decision.reason == "pace",
                    held_s=self.plan.held_s + decision.seconds,
                )
            return self._later(Sleep(decision.seconds), lambda: self._slept(decision))
        self.telemetry.budget_refused(decision.error)
        return self._fail(decision.error)

    def resume(self) -> Action:
        """The action queued behind a :class:`Sleep` or :class:`Settle`."""
        action, self._then = self._then, None
        assert action is not None, "resume() without a queued action"
        return action() if callable(action) else action

    def _later(self, first: Sleep | Settle, then: Action | Callable[[], Action]) -> Action:
        self._then = then
        return first

    def _send(self) -> Action:
        content = payload(self.call, self.model)
        self.before = self.tracker.snapshot_for(self.account)
        self.started = time.perf_counter()
        self.response = _Response()
        self.cause = None
        self._in_flight = True
        return Send(content, self.timeout)

    def _slept(self, wait: Wait) -> Action:
        self.policy.slept(wait)
        return Decide(self.plan)

    def _again(self) -> Action:
        """A retry: a governed call asks the budget again (its last reservation is settled)."""
        return Decide(self.plan) if self.governed else self._send()

    # -- responses ------------------------------------------------------------------------

    def head(self, status: int, raw_headers: Mapping[str, str], content_type: str | None = None) -> Action:
        """A response's status and headers: recorded into the tracker, whatever they say."""
        headers = wire.plain_headers(raw_headers)  # read once: an httpx Headers lookup is O(n)
        snapshot = wire.parse_budget_headers(headers, account=self.account)
        prior = self.tracker.snapshot_for(self.account)
        self.tracker.observe(snapshot)
        self.response = _Response(status, headers, snapshot, prior, raw_headers=raw_headers)
        if 300 <= status < 400:
            return self._failed(
                NeboConfigurationError(
                    f"Nebo answered HTTP {status}, redirecting to {headers.get('location')!r}; redirects are "
                    "never followed (they would carry your token elsewhere): set base_url to the final URL "
                    "if you trust it",
                    status=status,
                    snapshot=snapshot,
                )
            )
        if status >= 400 or not self.call.stream:
            return READ_BODY
        if content_type is not None and not content_type.startswith("text/event-stream"):
            return READ_BODY  # a stream answered with a plain body: judged by body()
        self.state = StreamState(snapshot, wire.request_id_from(headers), self.call.choices)
        self.stream_error = None
        self._decoder = SSEDecoder()
        self.ended = False
        self.pending = []
        return READ_STREAM

    def body(self, content: bytes) -> Action:
        """The whole body of the response announced by :meth:`head`."""
        r = self.response
        r.content = content
        assert r.snapshot is not None
        try:
            data = self._decode(r.status, content, r.headers, r.snapshot)
            record = self._record(data) if self.governed else None
        except NeboError as err:
            return self._failed(err)
        self._in_flight = False
        self.result = Result(
            r.status, r.raw_headers, content, data, r.snapshot, record, wire.request_id_from(r.headers)
        )
        self.telemetry.end(self)
        if self.governed and self.decision is not None:
            return self._later(Settle(self.decision, record), DONE)
        return DONE

    def _decode(
        self, status: int, content: bytes, headers: Mapping[str, str], snapshot: BudgetSnapshot
    ) -> Any:
        try:
            data: Any = json.loads(content) if content else None
        except ValueError:
            text = content.decode("utf-8", "replace")[:500]
            if status >= 400:
                raise wire.error_from_response(status, text, headers, snapshot) from None
            raise NeboUpstreamError(
                "Nebo returned a body that is not JSON",
                status=status,
                body=text,
                request_id=wire.request_id_from(headers),
                snapshot=snapshot,
            ) from None
        if status >= 400:
            raise wire.error_from_response(status, data, headers, snapshot)
        if self.call.stream and isinstance(data, dict) and "error" in data:
            raise wire.error_from_stream_event(data["error"], snapshot, wire.request_id_from(headers))
        if self.call.stream:
            raise NeboUpstreamError(
                "Nebo answered a streaming request with a plain body instead of an event stream",
                status=status,
                body=data if isinstance(data, (dict, list)) else str(data)[:500],
                request_id=wire.request_id_from(headers),
                snapshot=snapshot,
            )
        wire.check_body(self.call.kind, data, self.call.inputs, snapshot)
        return data

    def _record(self, data: Any) -> UsageRecord:
        r = self.response
        # The drop in remaining budget is this call's cost only if no other response landed meanwhile.
        before = self.before if r.prior is self.before else None
        record = wire.usage_record(
            self.plan.kind,
            self.call.requested,
            data.get("usage") if isinstance(data, dict) else None,
            model=(data.get("model") or None) if isinstance(data, dict) else None,
            before=before,
            after=r.snapshot,
            latency_s=time.perf_counter() - self.started,
            streamed=False,
            complete=True,
            request_id=wire.request_id_from(r.headers),
            scope=self.call.scope_text,
        )
        return self._keep(self._charged(record))

    # -- money: a call that may have been billed is never counted as zero -------------------

    @property
    def maybe_billed(self) -> bool:
        """The request went out and no answer ruled a charge out (no response yet, or a 2xx)."""
        status = self.response.status
        return self.governed and self._in_flight and (status == 0 or 200 <= status < 300)

    def _estimate(self) -> int:
        decision = self.decision
        if isinstance(decision, Go) and decision.reservation is not None:
            return decision.reservation.amount_micro
        return default_estimate_micro(self.plan.kind, self.model, self.call.body)

    def _charged(self, record: UsageRecord) -> UsageRecord:
        """``record``, charged the estimate when its cost is unknown (the ledger may hold it)."""
        if record.cost_micro is not None or not self.governed:
            return record
        return replace(record, cost_micro=self._estimate(), cost_source="estimate")

    def _uncertain(self) -> UsageRecord | None:
        """The record of an attempt that may have been billed and whose cost is unknown."""
        if not self.maybe_billed:
            return None
        self._in_flight = False
        record = self._charged(
            UsageRecord(
                kind=self.plan.kind,
                requested_model=self.call.requested,
                latency_s=time.perf_counter() - self.started,
                streamed=self.call.stream,
                complete=False,
                # The answer's head if one came; else the budget as it stood before the call.
                snapshot=self.response.snapshot or self.before,
                scope=self.call.scope_text,
            )
        )
        return self._keep(record)

    def _keep(self, record: UsageRecord) -> UsageRecord:
        """Record one attempt's usage: into the tracker, and into this call's telemetry."""
        self.tracker.record(record)
        self.telemetry.recorded(record)
        self.record = record
        self.records.append(record)
        return record

    # -- failures -------------------------------------------------------------------------

    def transport_error(self, exc: BaseException, *, timed_out: bool, sent: bool = True) -> Action:
        """Sending or reading failed below HTTP (connect, read, timeout). ``sent`` is False only
        when the request certainly never reached the server (it could not connect)."""
        cls = NeboTimeoutError if timed_out else NeboConnectionError
        kind = "timed out" if timed_out else "failed"
        if not sent:
            self._in_flight = False
        return self._failed(cls(f"the connection to Nebo {kind}: {type(exc).__name__}: {exc}"))

    def _failed(self, error: NeboError) -> Action:
        error = scrub_error(error, self.secrets)
        # A cut or a timeout after the request went out may have been billed, and a 2xx whose body
        # is unusable was: charge the estimate.
        billed = isinstance(error, (NeboConnectionError, NeboStreamTruncated)) or (
            isinstance(error, NeboUpstreamError) and 200 <= self.response.status < 300
        )
        record = self._uncertain() if billed else None
        self._in_flight = False
        if isinstance(error, NeboBudgetExhausted) and self.governed:
            self.telemetry.budget(error)
            self.plan = replace(self.plan, model=self.model, step=self.plan.step + 1)
            self.attempt = 0
            return self._settle_then(record, Decide(self.plan, error))
        delay = self.retry.delay(error, self.attempt)
        if delay is not None:
            self.attempt += 1
            self.telemetry.retry(self.attempt, delay, error)
            # Each attempt holds its own reservation: settled now, asked again after the sleep.
            return self._settle_then(record, lambda: self._later(Sleep(delay), self._again))
        return self._settle_then(record, self._fail(error))

    def _fail(self, error: NeboError) -> Fail:
        """The call's final failure (its telemetry ends here)."""
        self.telemetry.end(self, error)
        return Fail(error)

    def _settle_then(self, record: UsageRecord | None, then: Action | Callable[[], Action]) -> Action:
        decision, self.decision = self.decision, None
        if decision is None or not self.governed:
            return then() if callable(then) else then
        return self._later(Settle(decision, record), then)

    def abort(self) -> Settle | None:
        """The caller gave up mid-call (cancelled, interrupted): settle what the call holds,
        charging the estimate if the request was out (the server may have billed it)."""
        record = self._uncertain()
        self.telemetry.abort(self)
        self._in_flight = False
        decision, self.decision = self.decision, None
        self._then = None
        return Settle(decision, record) if decision is not None and self.governed else None

    # -- streams --------------------------------------------------------------------------

    def ahead(self, line: str | None) -> Action | None:
        """One line read before the stream is handed on (``None`` at the end of the body).

        Returns ``None`` to be fed the next line, :data:`DONE` once the first chunks are in
        :attr:`pending`, or the failure's next step (a retry, while nothing was handed on)."""
        try:
            chunks = self.feed_line(line) if line is not None else []
            if line is None or (self.state.done and not chunks):
                chunks += self.end()
        except NeboError as err:
            return self._failed(err)
        if chunks or self.ended:
            self.pending = chunks
            return DONE
        return None

    def feed_line(self, line: str) -> list[Chunk]:
        """One line of the stream: the standard chunks it completes (raises in-stream errors)."""
        data = self._decoder.feed_line(line)
        if data is None:
            return []
        try:
            if self._decoder.event == "error":  # whatever its data looks like, it ends the stream
                raise wire.error_from_event_data(data, self.state.snapshot, self.state.request_id)
            return self.state.feed_data(data)
        except NeboError as err:
            raise self._stream_failed(err) from None

    def end(self) -> list[Chunk]:
        """The end of the body (or of the stream): the final usage chunk, or the truncation error."""
        if self.ended:
            return []
        self.ended = True
        out: list[Chunk] = []
        try:
            if not self.state.done:
                data = self._decoder.flush()
                if data is not None:
                    out = self.state.feed_data(data)
            return out + self.state.finish()
        except NeboError as err:
            raise self._stream_failed(err) from None

    def _stream_failed(self, error: NeboError) -> NeboError:
        self.stream_error = scrub_error(error, self.secrets)
        return self.stream_error

    @property
    def finishing(self) -> bool:
        """Every choice has finished: only final usage can follow (readers give it a short grace)."""
        return self.state.all_finished

    def close_stream(self, complete: bool) -> Settle | None:
        """The stream is over (``complete``) or was closed early or broke: record what it showed
        and settle its reservation. Returns the settlement to carry out (once)."""
        if self._closed:
            return None
        self._closed = True
        state = self.state
        record = None
        if state.chunks_seen or state.usage is not None:
            record = wire.usage_record(
                "chat",
                self.call.requested,
                state.usage,
                model=state.model or None,
                before=None,
                after=state.snapshot,
                latency_s=time.perf_counter() - self.started,
                streamed=True,
                complete=complete,
                request_id=state.request_id,
                scope=self.call.scope_text,
            )
            record = self._keep(self._charged(record))
        self.telemetry.end(self, self.stream_error, complete=complete)
        self._in_flight = False
        decision, self.decision = self.decision, None
        return Settle(decision, record) if decision is not None and self.governed else None
