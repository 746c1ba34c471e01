"""Budget foresight (issue 15): the forecast, fleet pacing and degradation, on short emulator windows.

Forecast: a constant spender on a 60 s session window, then at twice the rate; the forecast's
time to exhaustion against the true one. Pacing: 4 spawned processes on one Redis, paced and
unpaced (the control), against an emulator sized so that the batch at full speed would exhaust
the session window at 0.6 of it; and 3 ``main`` workers beside a ``heartbeat`` one. Degrade:
``gpt-5.2`` with ``Degrade(chain=("gpt-5-nano",))`` on a workload that would exhaust the window
at 0.6 of it, through the reset. The window is 60 s (20 s with ``--quick``); the Redis rows
are skipped, with a note, when ``redis-server`` is absent.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from bench._common import Table, fmt
from bench.budget import _Redis
from nebo_core import BudgetPolicy, BudgetTracker, Degrade, NeboBudgetExhausted, NeboClient
from nebo_emulator import NeboEmulator
from nebo_emulator._workloads import Rhythm, emulator_for, probe_cost, run_batches, spread

MINI = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
BIG = {**MINI, "model": "gpt-5.2"}
WORKERS = 4
LATENCY_S = 0.05
RESERVE = 0.05


# -- forecast ----------------------------------------------------------------------------------


def _forecast_round() -> dict[str, float]:
    """10 calls every 0.2 s, then 3 every 0.1 s, on a 60 s window: the forecast against the truth."""
    with (
        NeboEmulator(session_window_s=60, weekly_window_s=600, session_limit_micro=100_000) as emu,
        NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=(tracker := BudgetTracker())) as client,
    ):
        rhythm = Rhythm(client, MINI)
        rhythm.spend(10, 0.2)
        ledger = emu.ledger
        rate = sum(e.cost_micro for e in ledger[1:]) / (ledger[-1].at - ledger[0].at).total_seconds()
        f = tracker.forecast().session
        assert f.seconds_to_exhaustion is not None
        assert f.remaining_micro is not None
        truth = f.remaining_micro / rate
        rhythm.next_at -= 0.1  # from here on, one call every 0.1 s: twice the rate
        rhythm.spend(3, 0.1)
        g = tracker.forecast().session
        assert g.seconds_to_exhaustion is not None
    return {
        "samples": f.samples,
        "forecast_s": f.seconds_to_exhaustion,
        "true_s": truth,
        "error": abs(f.seconds_to_exhaustion / truth - 1),
        "doubled_s": g.seconds_to_exhaustion,
        "ratio": g.seconds_to_exhaustion / f.seconds_to_exhaustion,
    }


# -- pacing: spawned processes on one Redis ------------------------------------------------------


def _emulator_for(window: float, exhaust_at: float, latency: float, calls_per_s: float | None) -> Any:
    """An emulator (and its session limit) whose window the workload would exhaust at ``exhaust_at``
    of it: ``WORKERS`` callers at full speed, or ``calls_per_s`` of ``BIG`` when given."""
    if calls_per_s is None:
        return emulator_for(window, exhaust_at, WORKERS * probe_cost(MINI, latency) / LATENCY_S, latency)
    return emulator_for(window, exhaust_at, probe_cost(BIG, latency) * calls_per_s, latency)


def _shares(ledger: list[Any], window: float, limit: int) -> dict[str, Any]:
    share = spread(ledger, window, limit)
    return {"spent": share["spent"], "cv": share["cv"]}


def _pacing(window: float, redis_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    emu, limit = _emulator_for(window, 0.6, LATENCY_S, None)
    with emu:
        (paced,) = run_batches([(emu, True, ["main"] * WORKERS, window + 1.0)], redis_url)
        out["paced"] = {"refused": sum(r["refused"] for r in paced), **_shares(emu.ledger, window, limit)}
    control, c_limit = _emulator_for(window, 0.6, LATENCY_S, None)
    beat, _ = _emulator_for(window, 0.6, LATENCY_S, None)
    with control, beat:  # side by side: the control has no figure that timing could move
        unpaced, lanes = run_batches(
            [
                (control, False, ["main"] * WORKERS, window * 0.75),
                (beat, True, ["main"] * (WORKERS - 1) + ["heartbeat"], window * 0.5),
            ],
            redis_url,
        )
        out["control"] = {
            "refused": sum(r["refused"] for r in unpaced),
            **_shares(control.ledger, window, c_limit),
        }
        # Each worker read the shared counts as it ended: the fullest is the fleet's.
        counts = max((r["lanes"] for r in lanes), key=lambda c: sum(sum(v.values()) for v in c.values()))
        out["lanes"] = {"refused": sum(r["refused"] for r in lanes), "counts": counts}
    return out


# -- degrade -------------------------------------------------------------------------------------


def _degrade(window: float) -> dict[str, Any]:
    """``gpt-5.2`` at a pace that would exhaust the window at 0.6 of it, until 2 calls after the reset."""
    interval = window / 80
    emu, _ = _emulator_for(window, 0.6, 0.0, 1 / interval)
    policy = BudgetPolicy(degrade=Degrade(chain=("gpt-5-nano",)))  # a budget 429 raises
    refused, after = 0, []
    with (
        emu,
        NeboClient(
            api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker(), policy=policy
        ) as client,
    ):
        first = client.chat(BIG)
        reset = first.snapshot.session.reset_at if first.snapshot else None
        assert reset is not None
        next_at, give_up = time.monotonic() + interval, time.monotonic() + 2 * window + 30
        while len(after) < 2 and time.monotonic() < give_up:
            time.sleep(max(next_at - time.monotonic(), 0.0))
            next_at += interval
            sent = datetime.now(timezone.utc)
            try:
                model = client.chat(BIG).usage.model or ""
            except NeboBudgetExhausted:
                refused, model = refused + 1, "429"
            if sent >= reset:
                after.append(model)
        before = [e.model for e in emu.ledger if e.at < reset]
    return {"refused": refused, "before": {m: before.count(m) for m in dict.fromkeys(before)}, "after": after}


# -- the tables ----------------------------------------------------------------------------------


def run(quick: bool = False) -> tuple[list[Table], dict[str, Any]]:
    """The forecast, pacing and degrade tables, and the numbers the targets read."""
    window = 20.0 if quick else 60.0
    results: dict[str, Any] = {"window": window}
    results["forecast"] = [_forecast_round() for _ in range(1 if quick else 3)]
    redis = _Redis()
    try:
        results["pacing"] = _pacing(window, redis.url) if redis.url else None
    finally:
        redis.close()
    results["degrade"] = _degrade(window)

    t1 = Table(
        "Forecast accuracy: a constant spender on a 60 s session window, then twice the rate",
        ["round", "samples", "forecast s", "true s", "error", "3 calls after doubling s", "ratio"],
    )
    for i, r in enumerate(results["forecast"], 1):
        times = (fmt(r["forecast_s"], 1), fmt(r["true_s"], 1))
        t1.add(i, r["samples"], *times, f"{r['error']:.1%}", fmt(r["doubled_s"], 1), f"{r['ratio']:.3f}")
    t1.notes.append("10 calls 0.2 s apart, then 3 calls 0.1 s apart; true: remaining / the ledger's rate.")

    t2 = Table(
        f"Pacing: {WORKERS} processes on one Redis, {window:.0f} s session window",
        ["side", "budget 429s", "spent by the reset", f"CV per {window / 12:.0f} s bucket", "lanes"],
    )
    pacing = results["pacing"]
    if pacing is None:
        t2.notes.append("redis-server is not installed: the pacing rows were skipped.")
    else:
        for key, label in (("paced", "paced (Pace())"), ("control", "unpaced (the control)")):
            p = pacing[key]
            t2.add(label, p["refused"], f"{p['spent']:.1%}", f"{p['cv']:.3f}", "-")
        lanes = pacing["lanes"]
        cells = ", ".join(f"{k}: {v['booked']} booked / {v['held']} held" for k, v in lanes["counts"].items())
        t2.add("paced, 3 main + 1 heartbeat", lanes["refused"], "-", "-", cells)
        t2.notes.append(
            f"At full speed ({LATENCY_S * 1000:.0f} ms emulator latency) the batch would exhaust the window "
            f"at 0.6 of it. Paced: {window + 1:.0f} s; control: {window * 0.75:.0f} s; "
            f"heartbeat row: {window * 0.5:.0f} s, beside the control."
        )

    d = results["degrade"]
    t3 = Table(
        f"Degrade: gpt-5.2 with Degrade(chain=('gpt-5-nano',)), {window:.0f} s session window",
        ["budget 429s", "calls per model before the reset", "first calls after the reset"],
    )
    t3.add(d["refused"], ", ".join(f"{m}: {n}" for m, n in d["before"].items()), ", ".join(d["after"]))
    t3.notes.append(
        f"One call every {window / 80:.2f} s: at gpt-5.2 prices, the window would run out at 0.6."
    )
    return [t1, t2, t3], results


def target_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Issue 15's targets: forecast, pacing (zero 429s, spend, evenness, control, lanes), degrade."""
    w = f"{results['window']:.0f} s window"
    error = max(r["error"] for r in results["forecast"])
    ratio = max(results["forecast"], key=lambda r: abs(r["ratio"] - 0.5))["ratio"]
    rows: list[tuple[str, str, bool]] = [
        ("forecast after 10 calls within 5% of the true time", f"{error:.1%}", error <= 0.05),
        ("rate doubles: forecast halves (within 10%) in 3 calls", f"{ratio:.3f}x", abs(ratio - 0.5) <= 0.05),
    ]
    p = results["pacing"]
    if p is not None:
        paced, refused = p["paced"], p["control"]["refused"]
        floor = 1 - RESERVE - 0.02
        held = {lane: p["lanes"]["counts"].get(lane, {}).get("held", 0) for lane in ("main", "heartbeat")}
        rows += [
            (
                f"pacing, {WORKERS} processes, {w}: zero budget 429s",
                str(paced["refused"]),
                paced["refused"] == 0,
            ),
            (f"pacing: spent by the reset >= {floor:.0%}", f"{paced['spent']:.1%}", paced["spent"] >= floor),
            (
                "pacing: CV of spend per twelfth of the window <= 0.15",
                f"{paced['cv']:.3f}",
                paced["cv"] <= 0.15,
            ),
            ("pacing: the unpaced control hits budget 429s", str(refused), refused > 0),
            (
                "pacing: heartbeat held first, main never held",
                f"held: heartbeat {held['heartbeat']}, main {held['main']}",
                held["heartbeat"] > 0 and held["main"] == 0,
            ),
        ]
    d = results["degrade"]
    rows += [
        (f"degrade, {w}: zero budget 429s", str(d["refused"]), d["refused"] == 0),
        (
            "degrade: gpt-5.2 back within one call after the reset",
            ", ".join(d["after"]),
            "gpt-5.2" in d["after"][:2],
        ),
    ]
    return [(target, measured, "met" if ok else "MISSED") for target, measured, ok in rows]
