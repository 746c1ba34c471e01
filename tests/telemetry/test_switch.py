"""When Nebo emits telemetry, and when it costs nothing: ``import nebo_core`` (and a call) never
imports OpenTelemetry; with OpenTelemetry imported but no SDK provider set a call gets the no-op
hooks; the global providers are used once set (a fresh interpreter, since they are set once per
process); ``instrument()`` / ``uninstrument()``; one signal without the other; sampled-out spans."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from nebo_core import BudgetTracker, NeboClient, NeboConfigurationError, telemetry
from nebo_core.exchange import Call, Exchange
from nebo_core.policy import BudgetPolicy
from nebo_core.retry import RetryPolicy
from nebo_emulator import NeboEmulator

HI = {"messages": [{"role": "user", "content": "Say hello."}]}


def run(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its last printed line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def exchange() -> Exchange:
    return Exchange(
        Call("POST", "/chat/completions", HI, "chat"),
        tracker=BudgetTracker(),
        policy=BudgetPolicy(),
        retry=RetryPolicy(),
        account="a",
    )


def test_nebo_core_never_imports_opentelemetry() -> None:
    out = run(
        """
        import json, sys
        import nebo_core
        after_import = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        from nebo_core import NeboClient, BudgetTracker, BudgetPolicy
        from nebo_emulator import NeboEmulator
        with NeboEmulator() as emu, NeboClient(
            api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker(), policy=BudgetPolicy()
        ) as c:
            c.chat({"messages": [{"role": "user", "content": "hi"}]})
            with c.stream_chat({"messages": [{"role": "user", "content": "hi"}]}) as s:
                list(s)
        after_calls = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        ran = "nebo_core.exchange" in sys.modules
        print(json.dumps({"import": after_import, "calls": after_calls, "exchange": ran}))
        """
    )
    assert out == {"import": [], "calls": [], "exchange": True}


def test_the_global_providers_are_used_once_set() -> None:
    out = run(
        """
        import json
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from nebo_core import NeboClient, BudgetTracker, BudgetPolicy, telemetry
        from nebo_emulator import NeboEmulator

        with NeboEmulator() as emu, NeboClient(
            api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker(), policy=BudgetPolicy()
        ) as c:
            c.chat({"messages": [{"role": "user", "content": "before"}]})
            exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            c.chat({"messages": [{"role": "user", "content": "after"}]})
            spans = [(s.name, s.attributes["nebo.cost_micro"]) for s in exporter.get_finished_spans()]
            data = reader.get_metrics_data()
            groups = [g for r in data.resource_metrics for g in r.scope_metrics]
            names = sorted({m.name for g in groups for m in g.metrics})
            ledger = [e.cost_micro for e in emu.ledger]
            print(json.dumps({"spans": spans, "metrics": names, "ledger": ledger}))
        """
    )
    assert [name for name, _ in out["spans"]] == ["chat auto"]  # the call before the provider: none
    assert out["spans"][0][1] == out["ledger"][1]
    assert out["metrics"] == [
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "nebo.budget.remaining",
        "nebo.cost",
    ]


def test_a_provider_named_by_the_environment_is_used() -> None:
    out = run(
        """
        import json, os
        os.environ["OTEL_PYTHON_TRACER_PROVIDER"] = "sdk_tracer_provider"  # what the API loads on first use
        from opentelemetry import trace
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from nebo_core import NeboClient, BudgetTracker, BudgetPolicy
        from nebo_emulator import NeboEmulator

        with NeboEmulator() as emu, NeboClient(
            api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker(), policy=BudgetPolicy()
        ) as c:
            c.chat({"messages": [{"role": "user", "content": "first"}]})
            loaded = type(trace._TRACER_PROVIDER).__name__  # loaded by Nebo's check, not by this code
            exporter = InMemorySpanExporter()
            trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
            c.chat({"messages": [{"role": "user", "content": "second"}]})
            print(json.dumps({"loaded": loaded, "spans": [s.name for s in exporter.get_finished_spans()]}))
        """
    )
    assert out == {"loaded": "TracerProvider", "spans": ["chat auto"]}


def test_opentelemetry_imported_without_a_provider_gets_the_no_op_hooks() -> None:
    from opentelemetry import metrics, trace

    if type(trace.get_tracer_provider()).__name__ != "ProxyTracerProvider" or (
        type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider"
    ):
        pytest.skip("something in this process set a global OpenTelemetry provider")
    telemetry.instrument()
    assert telemetry.begin(exchange()) is telemetry.OFF


def test_uninstrument_stops_everything_and_instrument_resumes(
    emu: NeboEmulator, conn: dict[str, Any]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        telemetry.uninstrument()
        assert telemetry.begin(exchange()) is telemetry.OFF
        with NeboClient(**conn) as c:
            c.chat(HI)
            assert exporter.get_finished_spans() == ()
            telemetry.instrument(tracer_provider=provider)
            c.chat(HI)
        assert len(exporter.get_finished_spans()) == 1
    finally:
        telemetry.instrument()
        provider.shutdown()


def test_spans_without_metrics_and_metrics_without_spans(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    try:
        with NeboClient(**conn) as c:
            telemetry.instrument(tracer_provider=tracer_provider)
            c.chat(HI)
            telemetry.instrument(meter_provider=meter_provider)
            c.chat(HI)
        assert len(exporter.get_finished_spans()) == 1
        data = reader.get_metrics_data()
        assert data is not None
        (cost,) = [
            m
            for r in data.resource_metrics
            for s in r.scope_metrics
            for m in s.metrics
            if m.name == "nebo.cost"
        ]
        assert sum(p.value for p in cost.data.data_points) == emu.ledger[1].cost_micro
    finally:
        telemetry.instrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def test_a_sampled_out_span_still_measures(emu: NeboEmulator, conn: dict[str, Any]) -> None:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    try:
        telemetry.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        with NeboClient(**conn) as c, c.stream_chat(HI) as s:
            list(s)
        assert exporter.get_finished_spans() == ()
        data = reader.get_metrics_data()
        assert data is not None
        names = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
        assert "nebo.cost" in names
    finally:
        telemetry.instrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.mark.parametrize("given", [{"tracer_provider": object()}, {"meter_provider": "meter"}])
def test_instrument_rejects_what_is_not_a_provider(given: dict[str, Any]) -> None:
    with pytest.raises(NeboConfigurationError, match="not an OpenTelemetry provider"):
        telemetry.instrument(**given)
    telemetry.instrument()


@pytest.mark.parametrize(
    ("kind", "path", "name"),
    [
        ("chat", "/v1/chat/completions", "chat"),
        ("embedding", "/v1/embeddings", "embeddings"),
        (None, "/v1/chat/completions", "chat"),
        (None, "/models", "list_models"),
        (None, "/v1/usage/", "get_usage"),
        (None, "/v1/files", "nebo.request"),
        (None, "", "nebo.request"),
    ],
)
def test_operation_names(kind: Any, path: str, name: str) -> None:
    assert telemetry.operation_name(kind, path) == name


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"max_tokens": 10, "max_completion_tokens": 20}, {"gen_ai.request.max_tokens": 20}),
        ({"max_tokens": True, "temperature": "hot", "top_p": None, "seed": 1.5}, {}),
        ({"stop": ["a", 3, "b"], "n": 1}, {"gen_ai.request.stop_sequences": ("a", "b")}),
        ({"stop": [], "n": "2", "response_format": "json"}, {}),
        (
            {"response_format": {"type": "text"}, "frequency_penalty": 0},
            {
                "gen_ai.output.type": "text",
                "gen_ai.request.frequency_penalty": 0.0,
            },
        ),
        ({"temperature": float("inf")}, {"gen_ai.request.temperature": float("inf")}),
    ],
)
def test_request_attributes_keep_only_well_typed_values(
    body: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert telemetry.request_attributes("chat", body, stream=False) == expected


def test_embedding_request_attributes() -> None:
    got = telemetry.request_attributes(
        "embedding", {"encoding_format": "float", "dimensions": 256}, stream=False
    )
    assert got == {"gen_ai.request.encoding_formats": ("float",), "gen_ai.embeddings.dimension.count": 256}
    assert telemetry.request_attributes("embedding", {"encoding_format": "", "dimensions": -0.5}, False) == {}
    assert telemetry.request_attributes(None, {"temperature": 1}, stream=True) == {}
