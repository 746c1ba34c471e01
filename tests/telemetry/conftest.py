"""Fixtures for the telemetry tests: OpenTelemetry SDK providers with in-memory exporters, given
to ``nebo_core.telemetry.instrument()`` (the process-wide global providers are never set here, so
no other test emits anything), a fresh emulator per test (its ledger is the truth), and fresh
budget state."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from nebo_core import telemetry


def _have_sdk() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.sdk") is not None
    except ModuleNotFoundError:
        return False


if not _have_sdk():
    # The `otel` extra and opentelemetry-sdk are dev dependencies: CI must have them.
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError("CI=true but opentelemetry-sdk is not installed (pip install -e '.[dev]')")
    collect_ignore_glob = ["test_*.py"]


@dataclass
class Otel:
    """The providers Nebo's telemetry is sent to, and what they received."""

    tracer_provider: Any
    meter_provider: Any
    spans_out: Any
    reader: Any

    def spans(self) -> list[Any]:
        """Every finished Nebo client span so far, in end order."""
        return [
            s
            for s in self.spans_out.get_finished_spans()
            if s.kind.name == "CLIENT"
            and s.instrumentation_scope
            and s.instrumentation_scope.name == "nebo_core"
        ]

    def span(self) -> Any:
        """The one Nebo client span so far (fails if there is not exactly one)."""
        (only,) = self.spans()
        return only

    def points(self, name: str) -> list[Any]:
        """The data points of one metric (every attribute set), as collected now."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    """SDK providers with in-memory exporters, instrumented for this test only."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans_out = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans_out))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Otel(tracer_provider, meter_provider, spans_out, reader)
    finally:
        telemetry.instrument()  # back to the default: the global providers, once set
        tracer_provider.shutdown()
        meter_provider.shutdown()
