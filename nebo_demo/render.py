"""Plain-text rendering for the ``nebo`` command and the demo: bars, tables, money and durations.

Pure functions from core data (``UsageReport``, ``BudgetSnapshot``, ``ModelInfo``,
``UsageRecord``, ``TrackerTotals``) to strings, so the CLI and the demo print the same
thing and tests can check the text without a terminal. No dependency beyond the stdlib and
``nebo_core`` (no framework, so the CLI imports it without the extras);
``ascii=True`` swaps the block characters for ``#`` and ``.`` on terminals without UTF-8.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from nebo_core.budget import BudgetSnapshot, UsageRecord, UsageReport, WindowState
from nebo_core.models import get_model
from nebo_core.tracker import TrackerTotals
from nebo_core.wire import ModelInfo

BAR_WIDTH = 24
_WINDOW_LABEL = {"session": "session (5 h)", "weekly": "weekly (7 d)"}


def bar(fraction: float | None, width: int = BAR_WIDTH, *, ascii: bool = False) -> str:
    """A ``[####....]`` bar for a 0-1 fraction (``[  unknown  ]`` when ``None``)."""
    if fraction is None:
        return "[" + "unknown".center(width) + "]"
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    full, empty = ("#", ".") if ascii else ("\u2588", "\u2591")
    return "[" + full * filled + empty * (width - filled) + "]"


def dollars(micro: int | None) -> str:
    """Microdollars as ``$1.23``, ``$0.0123`` or ``$0.000005`` (digits enough to see it); ``?`` if unknown."""
    if micro is None:
        return "?"
    if micro == 0:
        return "$0.00"
    value = micro / 1_000_000
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.6f}" if abs(value) < 0.01 else f"${value:.4f}"


def duration(seconds: float | None) -> str:
    """``4h 05m`` / ``6d 23h`` / ``45s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = int(max(seconds, 0))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A left-aligned text table (columns in ``right`` are right-aligned) with a rule under the header."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def window_line(window: WindowState, now: datetime | None = None, *, ascii: bool = False) -> str:
    """One window: label, bar, percent used, amounts, time to reset."""
    label = _WINDOW_LABEL.get(window.name, window.name).ljust(14)
    frac = window.used_fraction
    pct = f"{100 * frac:5.1f}%" if frac is not None else "    ?%"
    amounts = f"{dollars(window.used_micro)} of {dollars(window.limit_micro)} used"
    if window.used_micro is None and window.remaining_micro is not None:
        amounts = f"{dollars(window.remaining_micro)} left"
    reset = ""
    if window.reset_at is not None:
        at = window.reset_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        reset = f"  resets in {duration(window.seconds_to_reset(now))} ({at})"
    return f"  {label} {bar(frac, ascii=ascii)} {pct}  {amounts}{reset}"


def pools_line(snapshot: BudgetSnapshot) -> str:
    """The spend pools in draw order, and which one is funding calls."""
    cents = snapshot.credits_cents
    credit = "?" if cents is None else f"${cents / 100:,.2f}"
    active = snapshot.active_pool or "plan"
    return (
        f"  pools (drawn in order): free {dollars(snapshot.free_available_micro)}"
        f" > gift {dollars(snapshot.gift_available_micro)} > plan > credits {credit}"
        f"   (active: {active})"
    )


def render_snapshot(snapshot: BudgetSnapshot, now: datetime | None = None, *, ascii: bool = False) -> str:
    """Both windows and the pools, as lines."""
    lines = [window_line(w, now, ascii=ascii) for w in snapshot.windows if w.known]
    if not lines:
        lines = ["  (the server reported no session or weekly window)"]
    return "\n".join([*lines, pools_line(snapshot)])


def render_usage(report: UsageReport, now: datetime | None = None, *, ascii: bool = False) -> str:
    """``nebo usage``: the plan, both windows, the monthly percentage when sent, and the pools."""
    lines = [f"Nebo usage (plan: {report.plan or 'unknown'})"]
    if report.used_percent is not None:
        lines.append(
            f"  {'plan month'.ljust(14)} {bar(report.used_percent / 100, ascii=ascii)} "
            f"{report.used_percent:5.1f}%"
        )
    lines.append(render_snapshot(report.snapshot, now, ascii=ascii))
    return "\n".join(lines)


def model_rows(models: Sequence[ModelInfo]) -> list[dict[str, Any]]:
    """The server's model list joined with the local model table (kind, context, prices)."""
    rows = []
    for m in models:
        spec = get_model(m.id)
        rows.append(
            {
                "id": m.id,
                "name": m.name,
                "owned_by": m.owned_by,
                "created": m.created,
                "kind": spec.kind if spec else None,
                "context_window": spec.context_window if spec else None,
                "input_price_micro_per_m": spec.input_price if spec else None,
                "output_price_micro_per_m": spec.output_price if spec else None,
                "dimensions": spec.dimensions if spec else None,
            }
        )
    return rows


def render_models(models: Sequence[ModelInfo]) -> str:
    """``nebo models``: one row per model, with what the local model table knows about it."""
    if not models:
        return "Nebo lists no models for this token."

    def price(micro: int | None) -> str:
        return "-" if not micro else f"${micro / 1_000_000:.2f}"

    rows = [
        [
            r["id"],
            r["name"] or "",
            r["owned_by"] or "?",
            r["kind"] or "?",
            f"{r['context_window']:,}" if r["context_window"] else "?",
            price(r["input_price_micro_per_m"]),
            price(r["output_price_micro_per_m"]),
        ]
        for r in model_rows(models)
    ]
    headers = ["MODEL", "NAME", "OWNED BY", "KIND", "CONTEXT", "IN $/1M", "OUT $/1M"]
    note = "\n(`auto` lets Nebo route each request; prices are the local table's, Nebo bills exactly.)"
    return table(headers, rows, right=(4, 5, 6)) + note


def render_cost(record: UsageRecord | None) -> str:
    """One line after a chat: routed model, tokens, exact cost and where the number came from."""
    if record is None:
        return "cost: unknown (the stream ended before Nebo reported usage)"
    model = record.model or record.requested_model
    tokens = f"{record.prompt_tokens or 0} in / {record.completion_tokens or 0} out tokens"
    cost = "unknown"
    if record.cost_micro is not None:
        cost = f"{dollars(record.cost_micro)} ({record.cost_micro} microdollars)"
    source = {"server": "reported by Nebo", "headers": "from the budget headers"}.get(record.cost_source, "")
    suffix = f", {source}" if source else ""
    partial = "" if record.complete else " [incomplete stream]"
    return f"model {model} | {tokens} | cost {cost}{suffix}{partial}"


def render_spend(totals: TrackerTotals) -> str:
    """Spend per model, as a table with a total row."""
    rows = [
        [model, str(t.calls), str(t.prompt_tokens), str(t.completion_tokens), dollars(t.cost_micro)]
        for model, t in sorted(totals.by_model.items(), key=lambda kv: -kv[1].cost_micro)
    ]
    t = totals.total
    rows.append(
        ["total", str(t.calls), str(t.prompt_tokens), str(t.completion_tokens), dollars(t.cost_micro)]
    )
    return table(["MODEL", "CALLS", "IN TOK", "OUT TOK", "COST"], rows, right=(1, 2, 3, 4))


def render_steps(records: Sequence[UsageRecord]) -> str:
    """Cost per call, in order, as a table (the demo's "cost per step")."""
    rows = [
        [
            str(i),
            r.scope or "-",
            r.kind,
            r.model or r.requested_model,
            str(r.total_tokens or (r.prompt_tokens or 0) + (r.completion_tokens or 0)),
            dollars(r.cost_micro),
        ]
        for i, r in enumerate(records, 1)
    ]
    return table(["#", "STEP", "KIND", "MODEL", "TOKENS", "COST"], rows, right=(0, 4, 5))
