"""OpenTelemetry for every Nebo call: one GenAI client span and the GenAI metrics, from the engine.

The exchange (:mod:`nebo_core.exchange`) tells this package when a call starts, retries, waits on
the budget, records usage and ends, so every path (``NeboClient``, ``AsyncNeboClient``, the SDK
transports under ``openai_client()``, and the framework models above them) emits the same
telemetry, once. Spans follow the OpenTelemetry GenAI semantic conventions (status: development):
kind ``CLIENT``, named ``"{gen_ai.operation.name} {gen_ai.request.model}"``, with ``gen_ai.*``,
``server.*`` and ``error.type`` attributes, and Nebo's own ``nebo.*`` ones (the exact cost, the
budget). Metrics: ``gen_ai.client.token.usage``, ``gen_ai.client.operation.duration``, the
``nebo.cost`` counter and the ``nebo.budget.remaining`` gauge. docs/observability.md lists them all.

Nothing is imported and nothing is done unless OpenTelemetry is in use: each call checks whether
anyone imported ``opentelemetry`` and whether a real tracer or meter provider is set (the global
ones, or those given to :func:`instrument`); otherwise it gets :data:`OFF`, whose hooks do nothing.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from nebo_core.errors import NeboConfigurationError
from nebo_core.telemetry._attributes import (
    budget_attributes,
    operation_name,
    request_attributes,
    response_attributes,
)
from nebo_core.telemetry._call import OFF, CallTelemetry, Instruments, Traced

if TYPE_CHECKING:
    from nebo_core.exchange import Exchange

__all__ = [
    "ENV_COST_SEMCONV",
    "ENV_LANGFUSE_COST",
    "OFF",
    "CallTelemetry",
    "begin",
    "budget_attributes",
    "instrument",
    "operation_name",
    "request_attributes",
    "response_attributes",
    "uninstrument",
]

ENV_COST_SEMCONV = "NEBO_OTEL_EMIT_COST_SEMCONV"
"""``1`` / ``true``: also emit the proposed ``gen_ai.usage.cost.*`` attributes (not yet a convention)."""
ENV_LANGFUSE_COST = "NEBO_OTEL_LANGFUSE_COST"
"""``1`` / ``true``: put the exact cost where Langfuse reads it (``langfuse.observation.*``)."""
_NO_PROVIDER = frozenset(
    {"ProxyTracerProvider", "NoOpTracerProvider", "_DefaultTracerProvider", "_ProxyMeterProvider"}
    | {"NoOpMeterProvider", "_DefaultMeterProvider"}
)
"""The API's stand-ins while no SDK provider is set: calls then cost a check, nothing more."""


# --- configuration -----------------------------------------------------------------------------

_lock = threading.Lock()
_enabled = True
_tracer_provider: Any = None
_meter_provider: Any = None
_cost_semconv: bool | None = None
_langfuse_cost: bool | None = None
_generation = 0
_fixed: Instruments | None = None
"""Instruments whose providers can no longer change (set globally, or both given): used as they are."""
_recent: Instruments | None = None


def instrument(
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    emit_cost_semconv: bool | None = None,
    langfuse_cost: bool | None = None,
) -> None:
    """Emit Nebo's spans and metrics to these providers (``None``: the global one, the default).

    ``emit_cost_semconv`` adds the proposed ``gen_ai.usage.cost.*`` attributes (default: the
    ``NEBO_OTEL_EMIT_COST_SEMCONV`` variable). ``langfuse_cost`` gives Langfuse the exact cost
    (default: the ``NEBO_OTEL_LANGFUSE_COST`` variable): on the Langfuse generation the call
    runs in (a LangChain or ``@observe`` generation), else on Nebo's own span, made a Langfuse
    generation. Without a call, the global providers are used once set. Calls already started
    keep the providers they started with."""
    for given, method in ((tracer_provider, "get_tracer"), (meter_provider, "get_meter")):
        if given is not None and not callable(getattr(given, method, None)):
            raise NeboConfigurationError(
                f"{type(given).__name__} is not an OpenTelemetry provider (it has no {method}())"
            )
    _configure(True, tracer_provider, meter_provider, emit_cost_semconv, langfuse_cost)


def uninstrument() -> None:
    """Emit nothing from Nebo calls, whatever providers are set (until :func:`instrument`)."""
    _configure(False, None, None, None, None)


def _configure(enabled: bool, tracer: Any, meter: Any, cost: bool | None, langfuse: bool | None) -> None:
    global _enabled, _tracer_provider, _meter_provider, _cost_semconv, _langfuse_cost
    global _generation, _fixed, _recent
    with _lock:
        _enabled, _tracer_provider, _meter_provider, _cost_semconv = enabled, tracer, meter, cost
        _langfuse_cost = langfuse
        _generation += 1
        _fixed = _recent = None


def begin(ex: Exchange) -> CallTelemetry:
    """The telemetry of a call starting now: :data:`OFF` unless OpenTelemetry is in use (cheap)."""
    instruments = _fixed
    if instruments is None:
        if not _enabled:
            return OFF
        instruments = _current()
        if instruments is None:
            return OFF
    return Traced(instruments, ex)


def _current() -> Instruments | None:
    global _fixed, _recent
    generation, tracer, meter = _generation, _tracer_provider, _meter_provider
    if tracer is None:
        tracer = _global("opentelemetry.trace", "opentelemetry.trace", "_TRACER_PROVIDER", 0)
    if meter is None:
        meter = _global("opentelemetry.metrics", "opentelemetry.metrics._internal", "_METER_PROVIDER", 1)
    # Nobody imported OpenTelemetry, or no SDK provider is set: nothing could receive anything.
    tracer = None if tracer is None or type(tracer).__name__ in _NO_PROVIDER else tracer
    meter = None if meter is None or type(meter).__name__ in _NO_PROVIDER else meter
    if tracer is None and meter is None:
        return None
    recent = _recent
    if recent is not None and recent.tracer_provider is tracer and recent.meter_provider is meter:
        return recent
    built = Instruments(
        tracer, meter, _switch(_cost_semconv, ENV_COST_SEMCONV), _switch(_langfuse_cost, ENV_LANGFUSE_COST)
    )
    with _lock:
        if generation == _generation:
            _recent = built
            if tracer is not None and meter is not None:
                _fixed = built  # a global provider is set once; given ones until instrument() again
    return built


_UNSET = object()
_env_providers: tuple[bool, bool] | None = None
"""Whether ``OTEL_PYTHON_TRACER_PROVIDER`` / ``OTEL_PYTHON_METER_PROVIDER`` name a provider (read once)."""


def _global(public: str, internal: str, held_name: str, env_index: int) -> Any:
    """The global provider of one signal, or ``None`` when nobody imported that API or set one.

    The API's own getter checks ``os.environ`` on every call (about 0.8 us, twice a call), so
    the provider the API holds is read first; the getter runs only once one is set, when an
    environment variable names one, or when this API version keeps it elsewhere."""
    global _env_providers
    module = sys.modules.get(public)
    if module is None:
        return None
    held = getattr(sys.modules.get(internal), held_name, _UNSET)
    if held is not None and held is not _UNSET:
        return held
    env = _env_providers
    if env is None:
        env = _env_providers = (
            "OTEL_PYTHON_TRACER_PROVIDER" in os.environ,
            "OTEL_PYTHON_METER_PROVIDER" in os.environ,
        )
    if held is None and not env[env_index]:
        return None
    return module.get_tracer_provider() if env_index == 0 else module.get_meter_provider()


def _switch(given: bool | None, variable: str) -> bool:
    if given is not None:
        return given
    return os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")
