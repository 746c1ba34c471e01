"""Soft landing: when an agent should wind down (wrap up and answer) before its budget runs out.

An agent loop keeps calling the model until the model stops asking for tools; if the budget runs
out first, the run ends with an error and no answer. The adapters' soft landing
(``langchain_nebo.middleware.NeboBudgetMiddleware``, ``llama_index_nebo.NeboFunctionAgent``)
ends it before that: past a threshold, the next model call is told to wrap up and its tools are
switched off. This module holds the framework-free part both share (the adapters never import
each other): the validated thresholds (:class:`WindDown`), the rule that says whether one is
crossed, read from a tracker's snapshot and forecast with no network call, and the default
wrap-up instruction. How a call is wound down is the adapter's business. See ``docs/agents.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from nebo_core.budget import BudgetSnapshot
from nebo_core.errors import NeboConfigurationError
from nebo_core.forecast import BudgetForecast
from nebo_core.settings import check_number as _number

WIND_DOWN_MESSAGE = (
    "The budget for this task is almost spent. Do not call any more tools. Give your final "
    "answer now, using what you already know, and say briefly what is left undone."
)
"""The default wrap-up instruction appended (as a system message) to a wound-down model call."""


@dataclass(frozen=True)
class WindDown:
    """When to wind an agent down (validated; pure: no I/O, no clock of its own).

    Any threshold crossed triggers it: ``at`` (used fraction of the tighter window),
    ``below_micro`` (microdollars left in the tighter window), ``within_s`` (the forecast says
    the binding window runs out before its reset, within this many seconds). ``message`` is the
    wrap-up instruction. Build it with :meth:`build`, which checks the values.
    """

    at: float | None
    within_s: float | None
    below_micro: int | None
    message: str

    @classmethod
    def build(
        cls,
        at: float | None,
        within_s: float | None,
        below_micro: int | None,
        message: str | None,
        also: Mapping[str, object] | None = None,
    ) -> WindDown | None:
        """The settings, or ``None`` when no threshold is set; each bad value raises
        :class:`~nebo_core.errors.NeboConfigurationError` naming its keyword (``wind_down_at``,
        ``wind_down_within_s``, ``wind_down_below_micro``, ``wind_down_message``). ``also``: an
        adapter's own wind-down keywords (name -> value, ``None`` when not given), which like the
        message have no effect, and so are refused, without a threshold."""
        if at is not None and not 0.0 < _number("wind_down_at", at) <= 1.0:
            raise NeboConfigurationError(f"wind_down_at must be a used fraction in (0, 1]; got {at!r}")
        if within_s is not None and not _number("wind_down_within_s", within_s) > 0:
            raise NeboConfigurationError(f"wind_down_within_s must be seconds > 0; got {within_s!r}")
        if below_micro is not None and (
            isinstance(below_micro, bool) or not isinstance(below_micro, int) or below_micro <= 0
        ):
            raise NeboConfigurationError(
                f"wind_down_below_micro must be a positive int of microdollars; got {below_micro!r}"
            )
        if message is not None and (not isinstance(message, str) or not message.strip()):
            raise NeboConfigurationError(f"wind_down_message must be a non-empty string; got {message!r}")
        if at is None and within_s is None and below_micro is None:
            given = [n for n, v in (("wind_down_message", message), *(also or {}).items()) if v is not None]
            if given:
                raise NeboConfigurationError(
                    f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} a threshold: set "
                    "wind_down_at, wind_down_within_s or wind_down_below_micro"
                )
            return None
        return cls(
            at=None if at is None else float(at),
            within_s=None if within_s is None else float(within_s),
            below_micro=below_micro,
            message=message if message is not None else WIND_DOWN_MESSAGE,
        )

    def reason(
        self, snapshot: BudgetSnapshot | None, forecast: BudgetForecast | None, now: datetime
    ) -> str | None:
        """Why the next model call must wind down (``None``: it need not). ``now`` is this
        machine's time; reset times are corrected by the snapshot's resolved clock skew. Windows
        that reset since the snapshot, or have no limit, do not count; neither do free, gift or
        credit pools."""
        if snapshot is not None:
            server_now = now + timedelta(seconds=snapshot.resolved_skew())
            live = [
                w
                for w in snapshot.windows
                if w.limit_micro
                and w.remaining_micro is not None
                and (w.reset_at is None or w.reset_at > server_now)
            ]
            if self.at is not None and live:
                tight = max(live, key=lambda w: w.used_fraction or 0.0)
                used = tight.used_fraction or 0.0
                if used >= self.at:
                    return f"the {tight.name} window is {used:.0%} used (wind_down_at={self.at:g})"
            if self.below_micro is not None and live:
                low = min(live, key=lambda w: w.remaining_micro or 0)
                left = low.remaining_micro or 0
                if left < self.below_micro:
                    return (
                        f"the {low.name} window has {left} microdollars left "
                        f"(wind_down_below_micro={self.below_micro})"
                    )
        binding = forecast.binding if forecast is not None else None
        if self.within_s is not None and binding is not None and binding.exhausts_before_reset:
            left_s = binding.seconds_to_exhaustion
            if left_s is not None and left_s <= self.within_s:
                return (
                    f"the {binding.name} window runs out in about {left_s:.0f} s at the recent burn rate, "
                    f"before its reset (wind_down_within_s={self.within_s:g})"
                )
        return None


__all__ = ["WIND_DOWN_MESSAGE", "WindDown"]
