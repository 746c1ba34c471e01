"""Budget policy: what to do before each call and when the budget runs out.

A policy returns *decisions* ("go with model M", "wait N s", "refuse with this error");
the clients carry them out (send, sleep, raise). It warns at configurable used fractions
of Nebo's windows (once per threshold per window cycle, through the tracker), enforces
spending caps per scope from exact costs, and on exhaustion (a window at zero, a cap
reached, or a budget 429) raises, waits for the reset, or falls back to cheaper models.

Caps use reservations: before a call, an estimate is reserved in the store in one atomic
step (granted only if ``spent + reserved + estimate <= cap``); after it, the reservation
is replaced by the real cost, or released if the call failed. Slack, precisely: the final
spend of a scope can exceed its cap by at most the sum of ``max(cost - estimate, 0)`` over
the calls that were in flight together when the last reservation was granted. Calls made
one at a time overshoot by at most one call's estimate error; with an exact or
upper-bound ``estimate_micro`` they never overshoot. A call whose cost is unknown is
charged its estimate.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, cast

from nebo_core import estimate, pacing
from nebo_core.budget import BudgetSnapshot, CallKind, UsageRecord, WindowState
from nebo_core.caps import (
    SCOPE_LEVEL,
    Cap,
    CapLine,
    LineBook,
    Scope,
    cap_list,
    normalize_scope,
    scope_label,
)
from nebo_core.decisions import (
    CallPlan,
    Decision,
    Go,
    Refuse,
    Steps,
    StoreOp,
    Wait,
    arun_steps,
    run_steps,
)
from nebo_core.degrade import Degrade, Degrader
from nebo_core.errors import (
    EXHAUSTED_TRUST_S,
    NeboBudgetExhausted,
    NeboConfigurationError,
    NeboStoreError,
    exhausted_error,
)
from nebo_core.models import MODELS, get_model
from nebo_core.store_guard import STORE_CODE, StoreErrorMode, StoreGuard
from nebo_core.stores import BudgetStore, InMemoryBudgetStore, ReserveResult
from nebo_core.tracker import BudgetTracker

logger = logging.getLogger("nebo_core.budget")

Action = Literal["go", "wait", "refuse"]
ExhaustedMode = Literal["raise", "wait", "fallback"]
WarnCallback = Callable[[WindowState, float, BudgetSnapshot], None]
MEAN_CACHE_S = 2.0
"""How long a model's observed mean cost is reused before the store is asked again by default (it
moves slowly; asking every call would cost a round trip)."""
CAP_CODE = "BUDGET_CAP_REACHED"
PACE_CODE = pacing.PACE_CODE
RESERVATION_MARGIN_S = 60.0
"""Added to a call's timeout for its reservation's time-to-live (retry sleeps, settling)."""
DEFAULT_RESERVATION_TTL_S = 360.0
"""A reservation's time-to-live when the call states no timeout (the default timeout + margin)."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def default_estimate_micro(kind: CallKind, model: str, body: Mapping[str, Any] | None = None) -> int:
    """A cost for a call to ``model`` before any has been observed, read from its request
    (:mod:`nebo_core.estimate`). Unknown models and ``auto`` are priced as the dearest model."""
    return estimate.estimate_micro(kind, model, body)


def _price(model: str) -> int | None:
    spec = get_model(model)
    return None if spec is None else spec.input_price + spec.output_price


def _check_options(
    warn_at: tuple[float, ...],
    max_spend_micro: int | None,
    on_exhausted: str,
    max_wait: float,
    fallback: Sequence[str] | str,
    estimate_micro: object,
    on_store_error: str = "closed",
    wait_jitter: float = 0.0,
) -> None:
    if on_store_error not in ("closed", "open", "local"):
        raise NeboConfigurationError(
            f"on_store_error must be 'closed', 'open' or 'local'; got {on_store_error!r}"
        )
    if not wait_jitter >= 0:
        raise NeboConfigurationError(f"wait_jitter must be seconds >= 0; got {wait_jitter!r}")
    for fraction in warn_at:
        if not 0.0 < fraction <= 1.0:
            raise NeboConfigurationError(f"warn_at fractions must be in (0, 1], e.g. 0.8; got {fraction!r}")
    if max_spend_micro is not None and (
        not isinstance(max_spend_micro, int) or isinstance(max_spend_micro, bool) or max_spend_micro < 0
    ):
        raise NeboConfigurationError(
            f"max_spend_micro must be a non-negative int of microdollars (500_000 is $0.50); "
            f"got {max_spend_micro!r}"
        )
    if on_exhausted not in ("raise", "wait", "fallback"):
        raise NeboConfigurationError(
            f"on_exhausted must be 'raise', 'wait' or 'fallback'; got {on_exhausted!r}"
        )
    if not max_wait >= 0:
        raise NeboConfigurationError(f"max_wait must be seconds >= 0; got {max_wait!r}")
    if isinstance(fallback, str) and fallback != "auto":
        raise NeboConfigurationError(
            f"fallback must be a list of model ids (cheaper ones later) or 'auto'; got {fallback!r}"
        )
    if not (estimate_micro is None or callable(estimate_micro)) and (
        not isinstance(estimate_micro, int) or isinstance(estimate_micro, bool) or estimate_micro < 0
    ):
        raise NeboConfigurationError(
            f"estimate_micro must be a non-negative int of microdollars or a function of the CallPlan; "
            f"got {estimate_micro!r}"
        )


class BudgetPolicy:
    """Warnings, caps and what to do on exhaustion, for every client that shares it.

    ``on_exhausted``: ``"raise"`` (the default) raises :class:`NeboBudgetExhausted`;
    ``"wait"`` sleeps until the window (or a calendar cap's period) resets when that is within
    ``max_wait`` seconds, plus up to ``wait_jitter`` seconds so a fleet of waiters does not
    wake at once; ``"fallback"`` moves along ``fallback`` (a chain of cheaper models, or
    ``"auto"`` for the next cheaper model in the table).
    ``caps`` are nested, periodic caps (:class:`~nebo_core.caps.Cap`): a call reserves at
    every level its scope names (``scope={"tenant": "t1", "user": "u42"}``), atomically, and
    is refused if any lacks room. ``max_spend_micro`` is the one-level shorthand: it caps each
    plain scope (the call's ``scope=``, else ``scope``).
    ``on_store_error``: what a call does when the store fails or lost its state:
    ``"closed"`` (the default: refuse with :class:`NeboBudgetStoreUnavailable`, so no cap is
    ever overspent unseen), ``"open"`` (let it through, logged, and charge it once the store
    is back: :meth:`settle_pending`), or ``"local"`` (enforce the caps in this process only,
    logged). A capped call costs two store round trips: one reservation (which reads other
    processes' budget snapshot too) and one settlement (which publishes this call's); a model's
    observed mean cost is reused for ``mean_cache_s`` seconds. After a store failure the store is
    left alone for ``store_retry_s`` seconds (calls go by ``on_store_error`` at once, and settle
    later), so an outage does not cost every call a timeout.
    ``reservation_ttl`` is how long a call's hold on a cap outlives a dead worker; by default
    the call's timeout plus :data:`RESERVATION_MARGIN_S`. A hold that expires unsettled is
    charged (the call may have been billed), and corrected if its call settles later.
    """

    def __init__(
        self,
        *,
        warn_at: Sequence[float] = (0.8, 0.95),
        on_warn: WarnCallback | None = None,
        max_spend_micro: int | None = None,
        scope: Scope = None,
        caps: Sequence[Cap] = (),
        on_exhausted: ExhaustedMode = "raise",
        max_wait: float = 900.0,
        fallback: Sequence[str] | Literal["auto"] = ("gpt-5-mini", "gpt-5-nano"),
        store: BudgetStore | None = None,
        estimate_micro: int | Callable[[CallPlan], int] | None = None,
        reservation_ttl: float | None = None,
        wait_margin: float = 1.0,
        max_steps: int = 8,
        on_store_error: StoreErrorMode = "closed",
        wait_jitter: float = 10.0,
        mean_cache_s: float = MEAN_CACHE_S,
        store_retry_s: float = 5.0,
        pace: pacing.Pace | None = None,
        degrade: Degrade | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.warn_at = tuple(warn_at)
        _check_options(
            self.warn_at,
            max_spend_micro,
            on_exhausted,
            max_wait,
            fallback,
            estimate_micro,
            on_store_error,
            wait_jitter,
        )
        if pace is not None and not isinstance(pace, pacing.Pace):
            raise NeboConfigurationError(
                f"pace must be a nebo_core.Pace(reserve_fraction=..., ...) or None; got {pace!r}"
            )
        if degrade is not None and not isinstance(degrade, Degrade):
            raise NeboConfigurationError(
                f"degrade must be a nebo_core.Degrade(chain=..., ...) or None; got {degrade!r}"
            )
        self.pace = pace
        """Spread each window's budget until its reset, fleet-wide (:mod:`nebo_core.pacing`)."""
        self.degrade = degrade
        """Cheaper models before a window runs out, the requested one after its reset
        (:mod:`nebo_core.degrade`)."""
        self._degrader = Degrader(degrade) if degrade is not None else None
        self.on_warn = on_warn
        self.max_spend_micro = max_spend_micro
        self.scope = scope
        normalize_scope(scope)  # fails now, not at the first call
        self.caps: tuple[Cap, ...] = cap_list(caps, max_spend_micro)
        self.on_store_error: StoreErrorMode = on_store_error
        self.store_retry_s = float(store_retry_s)
        self.guard = StoreGuard(on_store_error, store_retry_s)
        """What calls do while the store fails (:mod:`nebo_core.store_guard`)."""
        self.wait_jitter = float(wait_jitter)
        self.mean_cache_s = mean_cache_s
        self._means: dict[str, tuple[float, float]] = {}
        """Model -> (observed mean cost, when to ask the store again)."""
        self.mode: ExhaustedMode = on_exhausted
        self.max_wait = float(max_wait)
        self.fallback: tuple[str, ...] | Literal["auto"] = "auto" if fallback == "auto" else tuple(fallback)
        self.store: BudgetStore = store if store is not None else InMemoryBudgetStore()
        self.estimate_micro = estimate_micro
        self.reservation_ttl = reservation_ttl
        self.wait_margin = wait_margin
        self.max_steps = max_steps
        self._clock = clock
        self._lines = LineBook()
        self._lock = threading.Lock()
        self._waited_past: datetime | None = None
        """The latest reset a caller has slept through (server time)."""
        self._attached: weakref.WeakSet[BudgetTracker] = weakref.WeakSet()

    def __repr__(self) -> str:
        return (
            f"BudgetPolicy(on_exhausted={self.mode!r}, caps={list(self.caps)!r}, "
            f"scope={self.scope!r}, store={self.store!r})"
        )

    # -- warnings -------------------------------------------------------------------------

    def attach(self, tracker: BudgetTracker) -> None:
        """Register this policy's warnings on ``tracker`` (once per tracker)."""
        if tracker in self._attached:
            return
        self._attached.add(tracker)
        for fraction in self.warn_at:
            tracker.add_threshold_listener(fraction, self._warn)

    def _warn(self, window: WindowState, fraction: float, snapshot: BudgetSnapshot) -> None:
        logger.warning(
            "Nebo %s budget %.0f%% used (threshold %.0f%%): %s left, resets %s",
            window.name,
            100 * (window.used_fraction or 0.0),
            100 * fraction,
            f"${window.remaining_dollars:.4f}" if window.remaining_dollars is not None else "unknown",
            window.reset_at.isoformat() if window.reset_at else "unknown",
        )
        if self.on_warn is not None:
            self.on_warn(window, fraction, snapshot)

    # -- queries --------------------------------------------------------------------------

    def lines(self, scope: Scope = None) -> list[CapLine]:
        """The store lines a call with ``scope`` reserves against now (the policy's own scope when
        ``None``): one per capped level the scope names, in the current period. Kept per scope
        until the first of its periods ends (a call does not work its periods out again)."""
        return self._lines.lines(self.caps, scope, self.scope, self._clock())

    def scope_key(self, scope: Scope = None, level: str | None = None) -> str:
        """The store key of a scope's ``level`` in the current period (default: the deepest capped
        level the scope names; an uncapped scope's own key)."""
        lines = self.lines(scope)
        if level is None:
            return lines[-1].key
        for line in lines:
            if line.cap is not None and line.cap.level == level:
                return line.key
        names = sorted({line.cap.level for line in lines if line.cap is not None})
        raise NeboConfigurationError(f"no cap at level {level!r} applies to scope {scope!r}; capped: {names}")

    def spent_micro(self, scope: Scope = None, level: str | None = None) -> int:
        """Settled spend of a scope's level in its current period, in microdollars (see :meth:`scope_key`)."""
        return self.store.spent(self.scope_key(scope, level))

    async def aspent_micro(self, scope: Scope = None, level: str | None = None) -> int:
        """The async twin of :meth:`spent_micro`."""
        return await self.store.aspent(self.scope_key(scope, level))

    def uncertain_micro(self, scope: Scope = None, level: str | None = None) -> int:
        """The part of a scope's spend charged at estimates: calls that may have been billed with
        no cost seen (timeouts, cuts, cancellations after sending, dead workers' reservations)."""
        return self.store.uncertain(self.scope_key(scope, level))

    async def auncertain_micro(self, scope: Scope = None, level: str | None = None) -> int:
        """The async twin of :meth:`uncertain_micro`."""
        return await self.store.auncertain(self.scope_key(scope, level))

    def remaining_micro(self, scope: Scope = None, level: str | None = None) -> int | None:
        """What a scope's cap still allows at ``level`` (``None`` when no cap applies)."""
        line = self._line(scope, level)
        if line.cap_micro is None:
            return None
        return max(line.cap_micro - self.store.spent(line.key), 0)

    def levels(self, scope: Scope = None) -> dict[str, dict[str, Any]]:
        """Every capped level of ``scope``: its key, cap, spend, what remains, and when its period
        resets (calendar periods), keyed by level."""
        out: dict[str, dict[str, Any]] = {}
        for line in self.lines(scope):
            if line.cap is None:
                continue
            spent = self.store.spent(line.key)
            out[line.cap.level] = {
                "key": line.key,
                "cap_micro": line.cap_micro,
                "spent_micro": spent,
                "remaining_micro": max((line.cap_micro or 0) - spent, 0),
                "period": line.cap.describe(),
                "resets_at": line.resets_at,
            }
        return out

    def _line(self, scope: Scope, level: str | None) -> CapLine:
        key = self.scope_key(scope, level)
        return next(line for line in self.lines(scope) if line.key == key)

    def estimate(self, plan: CallPlan) -> int:
        """What to reserve for ``plan`` (see :meth:`estimate_steps`), blocking on the store."""
        return run_steps(self.estimate_steps(plan), self.store)

    def estimate_steps(self, plan: CallPlan) -> Steps[int]:
        """What to reserve for ``plan``: ``estimate_micro``, else an estimate read from the request
        and learned from the model's observed mean cost (:mod:`nebo_core.estimate`)."""
        if callable(self.estimate_micro):
            return int(self.estimate_micro(plan))
        if self.estimate_micro is not None:
            return self.estimate_micro
        mean = None
        if plan.kind == "chat":
            cached = self._means.get(plan.model)
            if cached is not None and cached[1] > time.monotonic():
                mean = cached[0]
            else:
                mean = yield ("mean_cost", (plan.model,))
                if mean is not None and self.mean_cache_s > 0:  # a model never costed is asked each time
                    self._means[plan.model] = (mean, time.monotonic() + self.mean_cache_s)
        return estimate.estimate_micro(plan.kind, plan.model, plan.body, mean)

    def ttl(self, plan: CallPlan) -> float:
        """How long ``plan``'s reservation lives unsettled: ``reservation_ttl``, else the call's
        timeout plus :data:`RESERVATION_MARGIN_S`."""
        if self.reservation_ttl is not None:
            return self.reservation_ttl
        if plan.timeout is None:
            return DEFAULT_RESERVATION_TTL_S
        return plan.timeout + RESERVATION_MARGIN_S

    def snapshot(self, tracker: BudgetTracker, account: str | None = None) -> BudgetSnapshot | None:
        """The freshest snapshot of ``account``: the tracker's, or one another process published."""
        return run_steps(self._snapshot(tracker, account), self.store)

    def _snapshot(self, tracker: BudgetTracker, account: str | None) -> Steps[BudgetSnapshot | None]:
        mine = tracker.snapshot if account is None else tracker.snapshot_for(account)
        shared = yield ("snapshot", (account,))
        if mine is None or (shared is not None and shared.observed_at > mine.observed_at):
            return cast("BudgetSnapshot | None", shared)
        return mine

    def next_model(self, plan: CallPlan, chain: Sequence[str] | Literal["auto"] | None = None) -> str | None:
        """The next cheaper model after ``plan.model`` along ``chain`` (default: ``fallback``;
        ``None`` at the end of the chain)."""
        order = self.fallback if chain is None else chain
        if order != "auto":
            chain = [m for m in order if (s := get_model(m)) is None or s.kind == plan.kind]
            if plan.model in chain:
                i = chain.index(plan.model) + 1
                return chain[i] if i < len(chain) else None
            return chain[0] if chain else None
        current = _price(plan.model)
        candidates = sorted(
            (m for m in MODELS if m.kind == plan.kind and m.tier != "router"),
            key=lambda m: m.input_price + m.output_price,
            reverse=True,
        )
        for spec in candidates:
            if current is None and spec.tier not in ("mini", "nano", "embedding"):
                continue
            if current is None or spec.input_price + spec.output_price < current:
                return spec.id
        return None

    # -- decisions (each written once as steps; sync and async drivers below) --------------

    def decide_steps(
        self, plan: CallPlan, tracker: BudgetTracker, error: NeboBudgetExhausted | None = None
    ) -> Steps[Decision]:
        """The decision for ``plan``: before the call (``error`` is ``None``), or after the budget
        ran out under it (a budget 429). Past ``max_steps`` decisions for one call, a refusal."""
        if plan.step > self.max_steps:
            last = f" The last answer was: {error.message}" if error is not None else ""
            return Refuse(
                NeboBudgetExhausted(
                    f"gave up on this call after {plan.step} budget decisions (waits, fallbacks, 429s) "
                    f"without room to send it; raise max_steps or max_wait, or top up.{last}",
                    window=error.window if error is not None else None,
                    reset_at=error.reset_at if error is not None else None,
                    scope=scope_label(normalize_scope(plan.scope, self.scope)),
                    snapshot=error.snapshot if error is not None else None,
                    code=error.code if error is not None else "USAGE_LIMIT_EXCEEDED",
                ),
                plan.model,
            )
        if error is not None:
            return (yield from self._exhausted(plan, error, tracker))
        # This process's snapshot first (no I/O); other processes' comes with the reservation.
        exhausted = self._exhausted_now(tracker.snapshot_for(plan.account))
        if exhausted is not None:
            # A newer report from another process may say the budget is back (a top-up, a reset).
            exhausted = self._exhausted_now((yield from self._snapshot(tracker, plan.account)))
            if exhausted is not None:
                return (yield from self._exhausted(plan, exhausted, tracker))
        if self.degrade is not None and plan.kind == "chat" and plan.step == 0 and not plan.paced:
            plan = self._degrade(plan, tracker)
        return (yield from self._admit(plan, tracker))

    def _degrade(self, plan: CallPlan, tracker: BudgetTracker) -> CallPlan:
        """``plan`` on the model the forecast calls for (:mod:`nebo_core.degrade`)."""
        assert self._degrader is not None
        now = self._clock()
        return self._degrader.apply(plan, tracker.forecast(plan.account, now), now, self.next_model)

    def degraded_depth(self, account: str | None = None) -> int:
        """How many steps down the degrade chain ``account``'s chat calls go now (0: none)."""
        return self._degrader.depth(account) if self._degrader is not None else 0

    def _exhausted_now(self, snapshot: BudgetSnapshot | None) -> NeboBudgetExhausted | None:
        """The budget error ``snapshot`` means for a call now (``None``: it may go)."""
        if snapshot is None or not snapshot.exhausted:
            return None
        now = self._clock() + timedelta(seconds=snapshot.clock_skew())
        with self._lock:
            if self._waited_past is not None and self._waited_past > now:
                now = self._waited_past  # a caller slept through that reset (our clock may lag)
        return exhausted_error(snapshot, now)

    def _admit(self, plan: CallPlan, tracker: BudgetTracker) -> Steps[Decision]:
        lines = self.lines(plan.scope)
        amount = yield from self.estimate_steps(plan)
        if self.pace is not None and not plan.paced:
            paced = yield from self._pace(plan, amount, tracker)
            if paced is not None:
                return paced
        result: ReserveResult = yield (
            "reserve_lines",
            (lines, plan.model, amount, self.ttl(plan), plan.account),
        )
        mine = tracker.snapshot_for(plan.account)
        shared = result.snapshot
        if shared is not None and (mine is None or shared.observed_at > mine.observed_at):
            exhausted = self._exhausted_now(shared)  # another process saw the budget run out
            if exhausted is not None:
                if result.reservation is not None:
                    yield ("release", (result.reservation,))
                return (yield from self._exhausted(plan, exhausted, tracker))
        if result.reservation is not None:
            return Go(plan.model, result.reservation)
        line = result.line or lines[0]
        cap = line.cap
        assert cap is not None
        assert line.cap_micro is not None
        when = f"; it resets at {line.resets_at.isoformat()}" if line.resets_at is not None else ""
        fix = "Raise max_spend_micro" if cap.level == SCOPE_LEVEL else f"Raise the {cap.level!r} cap"
        error = NeboBudgetExhausted(
            f"the spending cap of {cap.describe()} {line.key!r} is reached: ${result.spent_micro / 1e6:.6f} "
            f"spent and ${result.reserved_micro / 1e6:.6f} held by calls in flight, of "
            f"${line.cap_micro / 1e6:.6f}{when}; a call to {plan.model!r} needs about ${amount / 1e6:.6f}. "
            f"{fix}, use another scope, or pass estimate_micro= if that estimate is too high for your calls",
            window="cap",
            scope=scope_label(normalize_scope(plan.scope, self.scope)),
            level=cap.level,
            period=None if cap.period is None else cap.describe().split(" per ", 1)[1],
            reset_at=line.resets_at,
            code=CAP_CODE,
        )
        return (yield from self._exhausted(plan, error, tracker))

    def _pace(self, plan: CallPlan, amount: int, tracker: BudgetTracker) -> Steps[Decision | None]:
        """Book ``plan`` on the fleet's pace schedule (:func:`nebo_core.pacing.pace_steps`)."""
        assert self.pace is not None
        cached = self._means.get(plan.model)
        cost = cached[0] if cached is not None and cached[0] > 0 else float(amount)
        jitter = random.uniform(0.0, self.wait_jitter) if self.wait_jitter else 0.0
        return (
            yield from pacing.pace_steps(
                self.pace,
                plan,
                cost,
                tracker.snapshot_for(plan.account),
                self._clock(),
                self.max_wait,
                self.wait_margin + jitter,
                scope_label(normalize_scope(plan.scope, self.scope)),
            )
        )

    def _exhausted(
        self, plan: CallPlan, error: NeboBudgetExhausted, tracker: BudgetTracker
    ) -> Steps[Decision]:
        if error.snapshot is not None:
            yield ("publish", (error.snapshot,))
        if self.mode == "wait" and (error.window != "cap" or error.reset_at is not None):
            snapshot = (
                None
                if error.window == "cap"
                else error.snapshot or (yield from self._snapshot(tracker, plan.account))
            )
            wait = self.wait_seconds(error, snapshot)
            if wait is not None and wait <= self.max_wait:
                # Positive jitter only: a fleet waiting on one reset wakes spread out, never early.
                wait += random.uniform(0.0, self.wait_jitter) if self.wait_jitter else 0.0
                logger.info("Nebo budget exhausted; waiting %.1f s for the reset", wait)
                return Wait(wait, plan.model, _reset_of(error, snapshot))
        if self.mode == "fallback":
            model = self.next_model(plan)
            if model is not None:
                logger.info("Nebo budget exhausted for %s (%s); falling back to %s", plan.model, error, model)
                return (yield from self._admit(replace(plan, model=model), tracker))
        return Refuse(error, plan.model)

    def wait_seconds(self, error: NeboBudgetExhausted, snapshot: BudgetSnapshot | None) -> float | None:
        """Seconds until the exhausted window resets, by our clock, correcting the server's skew.

        ``reset_at`` is in the server's time; the snapshot's ``Date`` header says how far its
        clock is from ours. ``wait_margin`` is added because ``Date`` has one-second resolution.
        ``None`` when the reset is unknown and the server gave no Retry-After.
        """
        reset_at = error.reset_at
        if reset_at is None and snapshot is not None and snapshot.exhausted_window is not None:
            reset_at = snapshot.exhausted_window.reset_at
        if reset_at is None:
            return error.retry_after
        skew = snapshot.clock_skew() if snapshot is not None else 0.0
        try:
            local_reset = reset_at - timedelta(seconds=skew)
        except OverflowError:  # a reset near year 9999: as good as never
            return None
        return max((local_reset - self._clock()).total_seconds(), 0.0) + self.wait_margin

    def slept(self, wait: Wait) -> None:
        """A caller has slept out ``wait``: its reset counts as passed from now on, even if our
        clock lags the server's (callers still planning their waits are not affected)."""
        if wait.until is None:
            return
        with self._lock:
            if self._waited_past is None or wait.until > self._waited_past:
                self._waited_past = wait.until

    def check_steps(self, plan: CallPlan, tracker: BudgetTracker) -> Steps[Decision]:
        """What a call would be told now, without holding a reservation (for hooks such as agent
        middleware that decide ahead of the model, which reserves for itself)."""
        # A check books no pace slot and moves no degrade step: the call it checks for does that.
        decision = yield from self.decide_steps(replace(plan, paced=True), tracker)
        if isinstance(decision, Go) and decision.reservation is not None:
            yield ("release", (decision.reservation,))
            decision = replace(decision, reservation=None)
        return decision

    def settle_steps(self, decision: Decision, record: UsageRecord | None) -> Steps[None]:
        """After the call: ``record`` is its usage, or ``None`` when it failed unbilled. One store
        step: the settlement publishes the call's snapshot too."""
        snapshot = record.snapshot if record is not None else None
        reservation = decision.reservation if isinstance(decision, Go) else None
        if snapshot is not None and (reservation is None or record is None):
            yield ("publish", (snapshot,))
        if reservation is None:
            if isinstance(decision, Go) and decision.unchecked and record is not None:
                self.guard.unchecked(decision, record)
            return
        if record is None:
            yield ("release", (reservation,))
            return
        observed = record.cost_source in ("server", "headers") and record.complete
        cost = record.cost_micro if record.cost_micro is not None else reservation.amount_micro
        estimated = record.cost_micro is None or record.uncertain
        yield ("commit_nowait", (reservation, cost, observed, estimated, snapshot))

    # -- drivers: the same steps, blocking or awaited ------------------------------------

    def decide(
        self, plan: CallPlan, tracker: BudgetTracker, error: NeboBudgetExhausted | None = None
    ) -> Decision:
        """:meth:`decide_steps`, blocking on the store (on a store failure: ``on_store_error``)."""
        failure = self.guard.down()
        if failure is None:
            self.settle_pending()
            try:
                return run_steps(self.decide_steps(plan, tracker, error), self.store)
            except NeboStoreError as exc:
                failure = self.guard.broke(exc)
        fallback = self._failed(plan, failure)
        if fallback is not None:
            return fallback
        return self.guard.local(run_steps(self.decide_steps(plan, tracker, error), self.guard.local_store()))

    async def adecide(
        self, plan: CallPlan, tracker: BudgetTracker, error: NeboBudgetExhausted | None = None
    ) -> Decision:
        """:meth:`decide_steps`, awaiting the store (on a store failure: ``on_store_error``)."""
        failure = self.guard.down()
        if failure is None:
            await self.asettle_pending()
            try:
                return await arun_steps(self.decide_steps(plan, tracker, error), self.store)
            except NeboStoreError as exc:
                failure = self.guard.broke(exc)
        fallback = self._failed(plan, failure)
        if fallback is not None:
            return fallback
        return self.guard.local(run_steps(self.decide_steps(plan, tracker, error), self.guard.local_store()))

    # -- when the store fails: nebo_core.store_guard ------------------------------------------

    def _failed(self, plan: CallPlan, exc: NeboStoreError) -> Decision | None:
        """The decision by ``on_store_error`` (``None``: decide again on the local store)."""
        scope = scope_label(normalize_scope(plan.scope, self.scope))
        return self.guard.decision(plan, self.lines(plan.scope), scope, exc)

    @property
    def pending_micro(self) -> int:
        """Spend the store could not take yet (its outage), charged by :meth:`settle_pending`:
        calls kept by the policy, and settlements the store failed to send behind."""
        return self.guard.pending_micro + self.store.unsent_micro

    def flush(self) -> None:
        """Send the settlements the store still holds back (:meth:`BudgetStore.flush`); a
        store that fails keeps them for later (counted in :attr:`pending_micro`). A client's
        ``close()`` does this."""
        try:
            self.store.flush()
        except NeboStoreError as exc:
            logger.debug("Nebo budget settlements kept for later: %s", type(exc).__name__)

    async def aflush(self) -> None:
        """:meth:`flush`, awaited."""
        try:
            await self.store.aflush()
        except NeboStoreError as exc:
            logger.debug("Nebo budget settlements kept for later: %s", type(exc).__name__)

    def settle_pending(self) -> int:
        """Charge what the store could not take during an outage; returns how many calls the policy
        kept were charged (0 while it is still down), and sends the settlements the store held back
        too. With something pending it asks the store even during a presumed outage, and a success
        ends it."""
        unsent = self.store.unsent_micro
        if not self.guard.pending and not unsent:
            return 0
        try:
            done = run_steps(self.guard.replay_steps(), self.store) if self.guard.pending else 0
            if unsent:
                self.store.flush()
        except NeboStoreError as exc:
            self.guard.broke(exc)
            return 0
        self.guard.back()
        return done

    async def asettle_pending(self) -> int:
        """The async twin of :meth:`settle_pending`."""
        unsent = self.store.unsent_micro
        if not self.guard.pending and not unsent:
            return 0
        try:
            done = await arun_steps(self.guard.replay_steps(), self.store) if self.guard.pending else 0
            if unsent:
                await self.store.aflush()
        except NeboStoreError as exc:
            self.guard.broke(exc)
            return 0
        self.guard.back()
        return done

    def before_call(self, plan: CallPlan, tracker: BudgetTracker) -> Decision:
        """Whether the call may go, before any request is sent (reserves against the cap)."""
        return self.decide(plan, tracker)

    def on_exhausted(self, plan: CallPlan, error: NeboBudgetExhausted, tracker: BudgetTracker) -> Decision:
        """What to do when the budget is gone (before the call, or after a budget 429)."""
        return self.decide(plan, tracker, error)

    def check(self, plan: CallPlan, tracker: BudgetTracker) -> Decision:
        """:meth:`check_steps`, blocking on the store (on a store failure: ``on_store_error``)."""
        failure = self.guard.down()
        if failure is None:
            try:
                return run_steps(self.check_steps(plan, tracker), self.store)
            except NeboStoreError as exc:
                failure = self.guard.broke(exc)
        fallback = self._failed(plan, failure)
        if fallback is not None:
            return fallback
        return run_steps(self.check_steps(plan, tracker), self.guard.local_store())

    async def acheck(self, plan: CallPlan, tracker: BudgetTracker) -> Decision:
        """:meth:`check_steps`, awaiting the store (on a store failure: ``on_store_error``)."""
        failure = self.guard.down()
        if failure is None:
            try:
                return await arun_steps(self.check_steps(plan, tracker), self.store)
            except NeboStoreError as exc:
                failure = self.guard.broke(exc)
        fallback = self._failed(plan, failure)
        if fallback is not None:
            return fallback
        return run_steps(self.check_steps(plan, tracker), self.guard.local_store())

    def settle(self, decision: Decision, record: UsageRecord | None) -> None:
        """:meth:`settle_steps`, blocking on the store (a failed store keeps the charge for later)."""
        store = self.guard.store_for(decision, self.store)
        down = self.guard.down() if store is self.store else None
        if down is not None:
            self.guard.keep(decision, record, down)
            return
        try:
            run_steps(self.settle_steps(decision, record), store)
        except NeboStoreError as exc:
            self.guard.keep(decision, record, self.guard.broke(exc))

    async def asettle(self, decision: Decision, record: UsageRecord | None) -> None:
        """:meth:`settle_steps`, awaiting the store (a failed store keeps the charge for later)."""
        store = self.guard.store_for(decision, self.store)
        down = self.guard.down() if store is self.store else None
        if down is not None:
            self.guard.keep(decision, record, down)
            return
        try:
            if store is self.store:
                await arun_steps(self.settle_steps(decision, record), store)
            else:
                run_steps(self.settle_steps(decision, record), store)
        except NeboStoreError as exc:
            self.guard.keep(decision, record, self.guard.broke(exc))


def _reset_of(error: NeboBudgetExhausted, snapshot: BudgetSnapshot | None) -> datetime | None:
    if error.reset_at is not None or error.window == "cap":
        return error.reset_at
    window = snapshot.exhausted_window if snapshot is not None else None
    return window.reset_at if window is not None else None


_default_policy: BudgetPolicy | None = None


def default_policy() -> BudgetPolicy:
    """The process-wide default policy: warn at 80% and 95%, raise when exhausted."""
    global _default_policy
    if _default_policy is None:
        _default_policy = BudgetPolicy()
    return _default_policy


__all__ = [
    "CAP_CODE",
    "DEFAULT_RESERVATION_TTL_S",
    "EXHAUSTED_TRUST_S",
    "MEAN_CACHE_S",
    "PACE_CODE",
    "RESERVATION_MARGIN_S",
    "STORE_CODE",
    "BudgetPolicy",
    "CallPlan",
    "Decision",
    "Go",
    "Refuse",
    "Steps",
    "StoreErrorMode",
    "StoreOp",
    "Wait",
    "arun_steps",
    "default_estimate_micro",
    "default_policy",
    "exhausted_error",
    "run_steps",
]
