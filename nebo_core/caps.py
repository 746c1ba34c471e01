"""Spending caps that nest and reset: which store lines a call reserves against, and when they reset.

A :class:`Cap` limits one *level* of a call's scope (``org``, ``tenant``, ``user``, ``run``...)
over a *period*: its lifetime, a calendar day, week or month in a time zone, or a rolling
``timedelta``. A call names its place with a scope mapping,
``{"org": "acme", "tenant": "t1", "user": "u42"}``; it reserves at every capped level it
names, in one atomic store step, and is refused if any level lacks room. A plain string
scope is the level ``"scope"``, which is what ``BudgetPolicy(max_spend_micro=...)`` caps.

Each capped level becomes a :class:`CapLine`: a store key (the scope's path down to that
level, plus the period it is in) and the cap. Keys of nested levels are paths
(``org=acme/tenant=t1``), so the same user id under two tenants is two budgets. Calendar
periods are part of the key (``@day:2026-12-02``), so a new day starts from zero; rolling
periods are summed by the store over time buckets (``@last:18000``). Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Literal

from nebo_core.errors import NeboConfigurationError

Period = Literal["day", "week", "month"] | timedelta | None
Scope = str | Mapping[str, str] | None
"""A call's place in the budget: a plain string (the level ``"scope"``), a mapping of level to
id, or ``None`` (the policy's own scope, else the global ``"*"``)."""

SCOPE_LEVEL = "scope"
"""The level a plain string scope names, and the one ``max_spend_micro=`` caps."""
GLOBAL_SCOPE = "*"
"""The store key of calls made without a scope."""
ROLLING_BUCKETS = 60
"""A rolling period is summed over this many time buckets: spend ages out within 1/60 of it."""
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class Cap:
    """At most ``max_spend_micro`` per ``period`` for each id at ``level`` of a call's scope.

    ``period``: ``None`` (the cap's lifetime), ``"day"``, ``"week"`` (ISO, from Monday) or
    ``"month"`` (calendar periods in time zone ``tz``), or a ``timedelta`` (rolling)."""

    level: str
    max_spend_micro: int
    period: Period = None
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.level, str) or not _NAME.match(self.level):
            raise NeboConfigurationError(
                "a Cap's level must be a short name (letters, digits, _ . : -), e.g. 'tenant'; "
                f"got {self.level!r}"
            )
        cap = self.max_spend_micro
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
            raise NeboConfigurationError(
                f"Cap({self.level!r}) max_spend_micro must be a non-negative int of microdollars "
                f"(500_000 is $0.50); got {cap!r}"
            )
        period = self.period
        if isinstance(period, timedelta):
            if period.total_seconds() < 1:
                raise NeboConfigurationError(f"Cap({self.level!r}) rolling period must be at least 1 s")
        elif period not in (None, "day", "week", "month"):
            raise NeboConfigurationError(
                f"Cap({self.level!r}) period must be None, 'day', 'week', 'month' or a timedelta; "
                f"got {period!r}"
            )
        zone(self.tz)  # fails now, not at the first call

    @property
    def rolling_s(self) -> float | None:
        """The rolling period in seconds (``None`` for lifetime and calendar periods)."""
        return self.period.total_seconds() if isinstance(self.period, timedelta) else None

    def describe(self) -> str:
        """``"tenant per day (Europe/Paris)"``, for messages."""
        if self.period is None:
            return self.level
        if isinstance(self.period, timedelta):
            return f"{self.level} per rolling {_span(self.period)}"
        where = "" if self.tz == "UTC" else f" ({self.tz})"
        return f"{self.level} per {self.period}{where}"


@dataclass(frozen=True)
class CapLine:
    """One store line a call reserves against: a key, its cap, and (rolling) its window."""

    key: str
    cap_micro: int | None
    window_s: float | None = None
    """Rolling window in seconds (spend older than this no longer counts); ``None``: all of the key's."""
    cap: Cap | None = None
    """The cap this line enforces (``None``: an uncapped line, recorded only)."""
    resets_at: datetime | None = None
    """When this line's period ends (calendar periods); ``None`` for lifetime and rolling caps."""


def zone(name: str) -> tzinfo:
    """The time zone ``name`` (``"UTC"``, ``"Europe/Paris"``), or a clear configuration error."""
    if name == "UTC":
        return timezone.utc
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only for a non-UTC cap: a costly import

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise NeboConfigurationError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris' (pip install tzdata "
            "on systems without a zone database)"
        ) from exc


def normalize_scope(scope: Scope, default: Scope = None) -> dict[str, str] | None:
    """A call's scope as a level -> id mapping (``None``: no scope at all), validated."""
    scope = scope if scope is not None else default
    if scope is None:
        return None
    if isinstance(scope, str):
        if not scope:
            raise NeboConfigurationError("scope must be a non-empty string or a mapping of level to id")
        return {SCOPE_LEVEL: scope}
    if not isinstance(scope, Mapping) or not scope:
        raise NeboConfigurationError(
            f"scope must be a string or a mapping of level to id such as {{'tenant': 't1', 'user': 'u42'}}; "
            f"got {scope!r}"
        )
    out: dict[str, str] = {}
    for level, ident in scope.items():
        if not isinstance(level, str) or not _NAME.match(level):
            raise NeboConfigurationError(
                f"scope level {level!r} must be a short name (letters, digits, _ . : -)"
            )
        if not isinstance(ident, str) or not ident or any(c in ident for c in "/{}\n"):
            raise NeboConfigurationError(
                f"scope id for level {level!r} must be a non-empty string without '/', braces or newlines; "
                f"got {ident!r}"
            )
        out[level] = ident
    return out


def scope_label(scope: Mapping[str, str] | None) -> str:
    """The stable text form of a scope: ``job-42`` for a plain scope, ``org=acme/tenant=t1`` else."""
    if not scope:
        return GLOBAL_SCOPE
    if list(scope) == [SCOPE_LEVEL]:
        return scope[SCOPE_LEVEL]
    return "/".join(f"{level}={ident}" for level, ident in scope.items())


def parse_scope(text: str | None) -> Scope:
    """A scope from its text form (the ``X-Nebo-Scope`` header): ``org=acme/tenant=t1`` (also with
    ``,`` or ``;`` between levels) is a mapping; anything without ``=`` is a plain scope."""
    if not text:
        return None
    text = text.strip()
    if "=" not in text:
        return text
    parts = [p for p in re.split(r"[/,;]", text) if p.strip()]
    pairs = [p.split("=", 1) for p in parts]
    if any(len(p) != 2 for p in pairs):
        raise NeboConfigurationError(f"cannot read scope {text!r}: write it as level=id/level=id")
    return {k.strip(): v.strip() for k, v in pairs}


def _path(scope: Mapping[str, str], caps: Sequence[Cap], upto: Cap) -> str:
    """The key of ``upto``'s level: the scope's capped levels down to it, in the policy's order."""
    if upto.level == SCOPE_LEVEL and list(scope) == [SCOPE_LEVEL]:
        return scope[SCOPE_LEVEL]  # a plain scope keeps its plain key
    parts = []
    for cap in caps:
        if cap.level in scope and f"{cap.level}={scope[cap.level]}" not in parts:
            parts.append(f"{cap.level}={scope[cap.level]}")
        if cap.level == upto.level:
            break
    return "/".join(parts)


def period_start(period: Period, now: datetime, tz: tzinfo) -> tuple[str, datetime] | None:
    """The label and end of the calendar period ``now`` is in (``None`` for other periods)."""
    if period not in ("day", "week", "month"):
        return None
    local = now.astimezone(tz)
    day = local.date()
    if period == "day":
        start, end = day, day + timedelta(days=1)
        label = f"day:{day.isoformat()}"
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
        iso = start.isocalendar()
        label = f"week:{iso[0]}-W{iso[1]:02d}"
    else:
        start = day.replace(day=1)
        end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        label = f"month:{start.year}-{start.month:02d}"
    return label, _midnight(end, tz)


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz).astimezone(timezone.utc)


def lines_for(caps: Sequence[Cap], scope: Mapping[str, str] | None, now: datetime) -> list[CapLine]:
    """The store lines a call with ``scope`` reserves against at ``now`` (UTC): one per cap whose
    level the scope names; an unscoped call, or one no cap applies to, gets one uncapped line
    (its spend is still kept, under :func:`scope_label`)."""
    lines: list[CapLine] = []
    if scope:
        for cap in caps:
            if cap.level not in scope:
                continue
            key = _path(scope, caps, cap)
            resets_at = None
            window = cap.rolling_s
            calendar = period_start(cap.period, now, zone(cap.tz))
            if calendar is not None:
                label, resets_at = calendar
                key = f"{key}@{label}"
            elif window is not None:
                key = f"{key}@last:{int(window)}"
            lines.append(CapLine(key, cap.max_spend_micro, window, cap, resets_at))
    elif any(cap.level == SCOPE_LEVEL for cap in caps):
        cap = next(c for c in caps if c.level == SCOPE_LEVEL)
        return lines_for([cap], {SCOPE_LEVEL: GLOBAL_SCOPE}, now)
    if not lines:
        lines.append(CapLine(scope_label(scope), None))
    return lines


class LineBook:
    """Each scope's lines (:func:`lines_for`), kept until the first of their periods ends, so a
    call does not work its periods and time zones out again (about 12 µs). An entry holds only
    for the caps and default scope it was worked out from, and from the time it was (a clock
    set back works it out again); a scope that is not valid is never kept."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._kept: dict[object, tuple[list[CapLine], datetime, datetime, Sequence[Cap], Scope]] = {}

    def lines(self, caps: Sequence[Cap], scope: Scope, default: Scope, now: datetime) -> list[CapLine]:
        """:func:`lines_for` ``scope`` (``default`` when ``None``) at ``now``; a list of its own."""
        try:
            key: object = scope if scope is None or isinstance(scope, str) else tuple(scope.items())
            kept = self._kept.get(key)
        except (TypeError, AttributeError):  # not a valid scope: normalize_scope says why
            key, kept = _NO_KEY, None
        if kept is not None and kept[1] <= now < kept[2] and kept[3] is caps and kept[4] is default:
            return list(kept[0])
        lines = lines_for(caps, normalize_scope(scope, default), now)
        if key is not _NO_KEY:
            until = min((line.resets_at for line in lines if line.resets_at is not None), default=_NEVER)
            if len(self._kept) >= self._size:
                self._kept.clear()
            self._kept[key] = (lines, now, until, caps, default)
        return list(lines)


_NO_KEY = object()
_NEVER = datetime.max.replace(tzinfo=timezone.utc)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} s"


def cap_list(caps: Sequence[Cap], max_spend_micro: int | None = None) -> tuple[Cap, ...]:
    """A policy's caps, checked: ``Cap`` objects, one per level, plus the ``max_spend_micro``
    shorthand as the ``scope`` level (refused beside an explicit ``Cap("scope", ...)``)."""
    out = list(caps)
    if any(not isinstance(cap, Cap) for cap in out):
        raise NeboConfigurationError(
            "caps must be a list of nebo_core.Cap(level, max_spend_micro, period=...)"
        )
    if max_spend_micro is not None:
        if any(cap.level == SCOPE_LEVEL for cap in out):
            raise NeboConfigurationError(
                "max_spend_micro= is the shorthand for Cap('scope', ...): pass one or the other, not both"
            )
        out.append(Cap(SCOPE_LEVEL, max_spend_micro))
    levels = [cap.level for cap in out]
    twice = sorted({level for level in levels if levels.count(level) > 1})
    if twice:
        raise NeboConfigurationError(f"one Cap per level: {twice} appear more than once")
    return tuple(out)
