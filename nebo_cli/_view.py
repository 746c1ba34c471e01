"""What ``nebo top`` and ``nebo usage`` draw: a frame of budget state, and pure text for it.

A :class:`TopFrame` is one moment of everything the view shows (both windows, the forecast,
spend per store line, lanes); :func:`render_top` and :func:`render_forecast` turn data into
text and :meth:`TopFrame.to_dict` into JSON, with no clock, terminal or I/O of their own, so
a snapshot test pins the exact text. Line keys are read back into scope, level and period
by :func:`split_key` (the inverse of how :mod:`nebo_core.caps` builds them). Bars, money and
durations come from :mod:`nebo_demo.render`, so every command prints them alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from nebo_core.budget import BudgetSnapshot
from nebo_core.forecast import BudgetForecast, WindowForecast
from nebo_core.stores import LineUsage
from nebo_demo.render import bar, dollars, duration, table, window_line

LANE_ORDER = ("main", "subagent", "comm", "events", "heartbeat")
"""Lanes in priority order (``main`` keeps a floor; ``heartbeat`` is held first)."""
SCOPE_LEVEL = "scope"
"""The level of a plain string scope (as :data:`nebo_core.caps.SCOPE_LEVEL`)."""


@dataclass(frozen=True)
class KeyParts:
    """A store line key read back: ``org=acme/tenant=t1@day:2026-12-02``."""

    path: str
    """The scope path without the period (``org=acme/tenant=t1``, a plain ``job-42``, or ``*``)."""
    level: str
    """The innermost level the line caps (``tenant``; ``scope`` for a plain scope)."""
    ident: str
    """That level's id (``t1``)."""
    period: str | None
    """``day:2026-12-02``, ``week:2026-W49``, ``month:2026-12``, ``last:18000``; ``None``: lifetime."""
    depth: int
    """Levels above this one in the path (0 for the outermost)."""


def split_key(key: str) -> KeyParts:
    """The scope path, level, id and period encoded in a line key (never raises)."""
    path, sep, period = key.rpartition("@")
    if not sep or not period or ":" not in period:
        path, period = key, ""
    parts = [p for p in path.split("/") if p]
    last = parts[-1] if parts else path
    level, eq, ident = last.partition("=")
    if not eq:
        level, ident = SCOPE_LEVEL, last
    return KeyParts(path, level, ident, period or None, max(len(parts) - 1, 0))


def describe_period(period: str | None) -> str:
    """``day 2026-12-02``, ``rolling 5h 00m``, ``lifetime``."""
    if period is None:
        return "lifetime"
    kind, _, value = period.partition(":")
    if kind == "last" and value.isdigit():
        return f"rolling {duration(int(value))}"
    return f"{kind} {value}"


def lanes_of(raw: Any) -> dict[str, dict[str, int]] | None:
    """A ``lanes()`` answer as ``{lane: {"held": n, "booked": n}}`` (``None`` if it is not a mapping)."""
    if not isinstance(raw, Mapping):
        return None
    out: dict[str, dict[str, int]] = {}
    for lane, counts in raw.items():
        if not isinstance(counts, Mapping):
            continue
        out[str(lane)] = {k: _count(counts.get(k)) for k in ("held", "booked")}
    return out or None  # no lane counted yet: no pacing to show


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class TopFrame:
    """One frame of ``nebo top``: what the store (or the local tracker) says at :attr:`at`."""

    at: datetime
    source: str
    """Where the numbers come from (``redis namespace nebo-budget``)."""
    account: str | None
    snapshot: BudgetSnapshot | None
    forecast: BudgetForecast | None
    lines: tuple[LineUsage, ...] | None
    """Every store line (``None``: no store to read them from)."""
    lanes: Mapping[str, Mapping[str, int]] | None = None
    """Lane -> ``{"held", "booked"}`` when a pacing policy reports lanes; ``None``: no lanes."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the store's numbers as they are, plus the parsed key parts."""
        lines = None
        if self.lines is not None:
            lines = [
                {**asdict(line), **_parts_dict(split_key(line.key)), "remaining_micro": _left(line)}
                for line in self.lines
            ]
        return {
            "at": self.at.isoformat(),
            "source": self.source,
            "account": self.account,
            "snapshot": self.snapshot.to_dict() if self.snapshot is not None else None,
            "forecast": self.forecast.to_dict() if self.forecast is not None else None,
            "lines": lines,
            "lanes": {k: dict(v) for k, v in self.lanes.items()} if self.lanes is not None else None,
        }


def _parts_dict(parts: KeyParts) -> dict[str, Any]:
    return {"path": parts.path, "level": parts.level, "id": parts.ident, "period": parts.period}


def _left(line: LineUsage) -> int | None:
    if line.cap_micro is None:
        return None
    return line.cap_micro - line.spent_micro - line.reserved_micro


def _rate(rate: float | None) -> str:
    """Microdollars per second as ``$0.000620/s ($2.23/h)``: per second as the forecast measures
    it, per hour as a person reads it."""
    if rate is None:
        return "?"
    return f"{dollars(round(rate))}/s ({dollars(round(rate * 3600))}/h)"


def forecast_line(w: WindowForecast) -> str:
    """One window's outlook: burn rate, time to exhaustion, projected use at the reset."""
    label = w.name.ljust(8)
    if w.limit_micro is None:
        return f"    {label} not reported"
    if w.burn_rate is None:
        plural = "s" if w.samples != 1 else ""
        return f"    {label} collecting ({w.samples} reading{plural}; a rate needs two)"
    parts = [f"burn {_rate(w.burn_rate)}"]
    left = w.seconds_to_exhaustion
    if left == 0.0:
        parts.append("exhausted")
    elif left is None:
        parts.append("no spend seen")
    else:
        parts.append(f"empty in {duration(left)} ({'before' if w.exhausts_before_reset else 'after'} reset)")
    projected = w.projected_used_fraction_at_reset
    if projected is not None:
        parts.append(f"{100 * projected:.1f}% used at reset")
    if w.calls_left:
        parts.append(", ".join(f"~{n:,} {kind} calls left" for kind, n in sorted(w.calls_left.items())))
    return f"    {label} " + "   ".join(parts)


def render_forecast(fc: BudgetForecast | None) -> str:
    """The forecast block: both windows and the binding one (``collecting`` until a rate is known)."""
    if fc is None or not fc.known:
        return "  forecast: unknown (no budget reported yet)"
    samples = max(w.samples for w in fc.windows)
    if all(w.burn_rate is None for w in fc.windows):
        return (
            f"  forecast: collecting ({samples} reading{'s' if samples != 1 else ''}; "
            "a burn rate needs two: `nebo usage --watch` or `nebo top`)"
        )
    binding = fc.binding
    head = f"  forecast ({samples} readings)" + (f", binding window: {binding.name}" if binding else "")
    return "\n".join([head, *(forecast_line(w) for w in fc.windows)])


def render_lines(lines: Sequence[LineUsage] | None, *, ascii: bool = False) -> str:
    """Spend per scope and level, nested lines indented under their parent, with caps and holds."""
    if lines is None:
        return "  spend per scope: no budget store (pass --redis URL to see a fleet's scopes and caps)"
    if not lines:
        return "  spend per scope: no lines in the store yet"
    rows = []
    for line in lines:
        parts = split_key(line.key)
        name = "  " * parts.depth + (
            parts.ident if parts.level == SCOPE_LEVEL else f"{parts.level}={parts.ident}"
        )
        used = None if not line.cap_micro else (line.spent_micro + line.reserved_micro) / line.cap_micro
        rows.append(
            [
                name,
                describe_period(parts.period),
                dollars(line.spent_micro),
                dollars(line.reserved_micro),
                str(line.in_flight),
                dollars(line.cap_micro) if line.cap_micro is not None else "-",
                f"{bar(used, 10, ascii=ascii)} {100 * used:5.1f}%" if used is not None else "",
                dollars(line.uncertain_micro) if line.uncertain_micro else "",
            ]
        )
    headers = ["SCOPE", "PERIOD", "SPENT", "RESERVED", "IN FLIGHT", "CAP", "USED OF CAP", "UNCERTAIN"]
    body = table(headers, rows, right=(2, 3, 4, 5, 7))
    return "\n".join("  " + row for row in body.splitlines())


def render_lanes(lanes: Mapping[str, Mapping[str, int]]) -> str:
    """Lanes in priority order: calls held back by pacing and booked."""
    order = [lane for lane in LANE_ORDER if lane in lanes] + sorted(set(lanes) - set(LANE_ORDER))
    rows = [[lane, str(lanes[lane].get("held", 0)), str(lanes[lane].get("booked", 0))] for lane in order]
    body = table(["LANE", "HELD", "BOOKED"], rows, right=(1, 2))
    return "\n".join("  " + row for row in body.splitlines())


def render_top(frame: TopFrame, *, ascii: bool = False) -> str:
    """One ``nebo top`` frame as text (pure: the clock is :attr:`TopFrame.at`)."""
    when = frame.at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    account = frame.account or "-"
    out = [f"nebo top | {frame.source} | account {account} | {when}", ""]
    snap = frame.snapshot
    if snap is None or not snap.known:
        out.append(
            "  no budget snapshot for this account yet (each call through the store publishes one; "
            "--account picks another)"
        )
    else:
        out.extend(window_line(w, frame.at, ascii=ascii) for w in snap.windows)
    out.append(render_forecast(frame.forecast))
    out.append("")
    out.append(render_lines(frame.lines, ascii=ascii))
    if frame.lanes:
        out.append("")
        out.append(render_lanes(frame.lanes))
    return "\n".join(out)
