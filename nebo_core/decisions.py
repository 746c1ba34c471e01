"""Budget decisions as data, and the two drivers that run a policy step against a store.

A policy answers every call with a :data:`Decision`: :class:`Go` (with a reservation),
:class:`Wait` or :class:`Refuse`. Its logic is written once as *steps*: generators that yield
store calls (:data:`StoreOp`) and receive their results; :func:`run_steps` calls the store,
:func:`arun_steps` awaits its ``a``-prefixed twins. This module holds no policy rules.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from nebo_core.budget import CallKind
from nebo_core.caps import CapLine, Scope
from nebo_core.errors import NeboBudgetExhausted

if TYPE_CHECKING:  # types only: the stores import pacing, which builds on these decisions
    from nebo_core.stores import BudgetStore, Reservation

T = TypeVar("T")


@dataclass(frozen=True)
class CallPlan:
    """A call about to be made: what kind, which model, on whose budget."""

    kind: CallKind
    model: str
    scope: Scope = None
    """A plain string, or a mapping of level to id for nested caps (``{"tenant": "t1", "user": "u42"}``)."""
    step: int = 0
    """How many budget decisions this call has already had (waits, fallbacks)."""
    account: str | None = None
    """The client's ``NeboSettings.account``: whose Nebo budget applies (``None``: the freshest seen)."""
    timeout: float | None = None
    """The call's request timeout: its reservation lives that long plus a margin."""
    body: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The request body, for estimates read from the request (prompt size, ``max_completion_tokens``)."""
    lane: str | None = None
    """The call's ``X-Lane`` (``main`` when ``None``): pacing priorities."""
    paced: bool = False
    """A pace slot is booked already (after a pace wait), or the decision is a check that books none."""
    held_s: float = 0.0
    """Seconds this call has waited on pacing so far (bounded by ``max_wait``)."""


@dataclass(frozen=True)
class Go:
    """Send the call to ``model``; ``reservation`` (from the store) is settled after it.
    ``unchecked`` lists the lines to charge later when the store failed and the policy let the
    call through unchecked (``on_store_error="open"``)."""

    model: str
    reservation: Reservation | None = None
    unchecked: tuple[CapLine, ...] = ()


@dataclass(frozen=True)
class Wait:
    """Sleep ``seconds`` (a window resets then), then tell the policy (:meth:`BudgetPolicy.slept`)
    and ask again."""

    seconds: float
    model: str
    until: datetime | None = None
    """The reset waited for, in the server's time."""
    reason: Literal["reset", "pace", "held"] = "reset"
    """``reset``: a window or cap ran out; ``pace``: the call booked a pace slot that starts then;
    ``held``: its lane is held (pacing) and it asks again then."""


@dataclass(frozen=True)
class Refuse:
    """Do not send: raise ``error``."""

    error: NeboBudgetExhausted
    model: str


Decision = Go | Wait | Refuse
"""What a client does next: a closed union, so an impossible state (a refusal without an
error, a wait without a duration) cannot be built."""

StoreOp = tuple[str, tuple[Any, ...]]
"""One store call a policy step needs: a :class:`BudgetStore` method name and its arguments."""
Steps = Generator[StoreOp, Any, T]
"""A policy step written once: it yields store calls and receives their results. The sync
driver calls the store's methods; the async driver awaits their ``a``-prefixed twins, so an
event loop never blocks on store I/O."""


def run_steps(steps: Steps[T], store: BudgetStore) -> T:
    """Run a policy step against the store, blocking."""
    try:
        name, args = next(steps)
        while True:
            name, args = steps.send(getattr(store, name)(*args))
    except StopIteration as done:
        return cast(T, done.value)
    finally:
        steps.close()  # a store failure ends the step now: its finally blocks run here, not in the GC


async def arun_steps(steps: Steps[T], store: BudgetStore) -> T:
    """Run a policy step against the store, awaiting each store call."""
    try:
        name, args = next(steps)
        while True:
            name, args = steps.send(await getattr(store, "a" + name)(*args))
    except StopIteration as done:
        return cast(T, done.value)
    finally:
        steps.close()
