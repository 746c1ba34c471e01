"""Benchmark 7, telemetry overhead (issue 16): ``NeboClient.chat`` per call, with OpenTelemetry
not imported, imported with no provider set, switched off, and sending to an SDK provider.

Every call runs the exchange's telemetry hooks; with no provider they are the no-op ones, and
the only work left is one check per call (is ``opentelemetry`` imported, is a real provider set).
The sides run interleaved, round by round, in one process, on an in-memory transport that
replays one emulator reply, so the differences are the hooks' cost alone. "Not imported" is
made for its rounds by taking ``opentelemetry.trace`` / ``opentelemetry.metrics`` out of
``sys.modules`` (what a process that never imports OpenTelemetry looks like to the check).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from typing import Any

from bench._common import (
    CHAT_MODEL,
    MOCK_BASE_URL,
    EmulatorProcess,
    Table,
    capture,
    fmt,
    median,
    mock_client,
    per_call_us,
    try_import,
)

MESSAGES = [{"role": "user", "content": "Say hello. Context: the sky is blue."}]
OTEL_MODULES = ("opentelemetry.trace", "opentelemetry.metrics")
BASELINE = "telemetry off (uninstrument())"
TARGET = "opentelemetry imported, no provider set"


def _sides() -> dict[str, tuple[Callable[[], Any], Callable[[], Any]] | str]:
    """Name -> (enter, leave) around a round, or why the side cannot run."""
    from nebo_core import telemetry

    sides: dict[str, tuple[Callable[[], Any], Callable[[], Any]] | str] = {}
    sides[BASELINE] = (telemetry.uninstrument, telemetry.instrument)
    hidden: dict[str, Any] = {}

    def hide() -> None:
        telemetry.instrument()
        hidden.update({m: sys.modules.pop(m) for m in OTEL_MODULES if m in sys.modules})

    def unhide() -> None:
        sys.modules.update(hidden)
        hidden.clear()

    sides["opentelemetry not imported"] = (hide, unhide)
    if try_import("opentelemetry.trace") is None:
        sides[TARGET] = "opentelemetry-api is not installed"
    else:
        sides[TARGET] = (telemetry.instrument, lambda: None)
    sdk = try_import("opentelemetry.sdk.trace")
    if sdk is None:
        sides["SDK providers, in-memory exporters"] = "opentelemetry-sdk is not installed"
    else:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        tracer_provider = sdk.TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

        def on() -> None:
            telemetry.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)

        def off() -> None:
            telemetry.instrument()
            exporter.clear()

        sides["SDK providers, in-memory exporters"] = (on, off)
    return sides


def _measure(call: Callable[[], Any], *, calls: int, rounds: int) -> dict[str, list[float] | str]:
    sides = _sides()
    runs = {name: side for name, side in sides.items() if not isinstance(side, str)}
    out: dict[str, list[float] | str] = {n: s for n, s in sides.items() if isinstance(s, str)}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (enter, leave) in runs.items():  # interleaved: drift hits every side alike
            enter()
            try:
                samples[name] += per_call_us(call, calls=calls, rounds=1, warmup=max(calls // 10, 5))
            finally:
                leave()
    out.update(samples)
    return out


def _check_ns(enter: Callable[[], Any], leave: Callable[[], Any], ex: Any, n: int = 200_000) -> float:
    """Nanoseconds per ``telemetry.begin()``: the check every call pays (best of 5)."""
    import timeit

    from nebo_core import telemetry

    enter()
    try:
        return min(timeit.repeat(lambda: telemetry.begin(ex), number=n, repeat=5)) / n * 1e9
    finally:
        leave()


def run(quick: bool = False) -> tuple[list[Table], dict[str, Any]]:
    """The telemetry table, and the samples (for the target)."""
    import httpx

    from nebo_core import BudgetPolicy, BudgetTracker, NeboClient
    from nebo_core.exchange import Call, Exchange
    from nebo_core.retry import RetryPolicy

    calls, rounds = (50, 10) if quick else (100, 60)
    with EmulatorProcess() as emu:
        body = {"model": CHAT_MODEL, "messages": MESSAGES}
        canned = capture(emu.base_url, emu.token, "/chat/completions", body)
        http = mock_client(httpx, canned)
        client = NeboClient(
            api_key=emu.token,
            base_url=MOCK_BASE_URL,
            http_client=http,
            tracker=BudgetTracker(),
            policy=BudgetPolicy(),
        )
        try:
            results = _measure(lambda: client.chat(body), calls=calls, rounds=rounds)
        finally:
            client.close()
            http.close()
    ex = Exchange(
        Call("POST", "/chat/completions", body, "chat"),
        tracker=BudgetTracker(),
        policy=BudgetPolicy(),
        retry=RetryPolicy(),
        account="bench",
    )
    base = results.get(BASELINE)
    table = Table(
        "Telemetry overhead: NeboClient.chat, in-memory transport",
        [
            "side",
            "µs/call (median)",
            "vs telemetry off, paired (µs)",
            "paired spread (µs, IQR)",
            "check alone (ns)",
        ],
    )
    for name, value in results.items():
        if isinstance(value, str):
            table.add(name, "n/a", value, "-", "-")
            continue
        paired = [v - b for v, b in zip(value, base)] if isinstance(base, list) else []
        side = _sides()[name]
        check = _check_ns(*side, ex) if not isinstance(side, str) and "SDK" not in name else None
        table.add(name, fmt(median(value), 1), fmt(median(paired), 1), fmt(_iqr(paired), 1), fmt(check, 0))
    table.notes.append(
        f"{rounds} interleaved rounds of {calls} calls per side; 'paired' is the median over rounds of "
        "(this side - telemetry off) in the same round, so machine drift cancels. Every side runs the "
        "same hooks; with no provider set they are no-ops and a call pays one check ('check alone': "
        "telemetry.begin(), best of 5 x 200,000)."
    )
    return [table], results


def _iqr(values: list[float]) -> float:
    if len(values) < 4:
        return float("nan")
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def target_row(results: dict[str, Any]) -> tuple[str, str, str]:
    """(target, measured, verdict): OpenTelemetry imported with no provider costs no more than the noise."""
    target = "per-call overhead, OpenTelemetry installed and no provider set, within noise"
    base, side = results.get(BASELINE), results.get(TARGET)
    if not (isinstance(base, list) and isinstance(side, list)):
        return target, "not measured", "-"
    paired = [v - b for v, b in zip(side, base)]
    delta, noise = median(paired), _iqr(paired)
    return target, f"{delta:+.1f} µs (paired IQR {noise:.1f} µs)", "met" if abs(delta) <= noise else "MISSED"
