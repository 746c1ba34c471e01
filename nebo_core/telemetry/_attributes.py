"""The attributes of a Nebo client span, by the OpenTelemetry GenAI conventions (pure functions).

Names as in semantic-conventions v1.41 (the GenAI conventions, status development), plus Nebo's
own ``nebo.*``. Nothing here imports OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nebo_core.budget import BudgetSnapshot
from nebo_core.errors import NeboBudgetExhausted

if TYPE_CHECKING:
    from nebo_core.exchange import Exchange

PROVIDER = "nebo"
"""``gen_ai.provider.name``: a custom value (the convention lists none for Nebo)."""
OPERATIONS = (
    ("/chat/completions", "chat"),
    ("/embeddings", "embeddings"),
    ("/models", "list_models"),
    ("/usage", "get_usage"),
)
"""``gen_ai.operation.name`` by path: the convention's names, and custom ones for the two calls it lacks."""

OPERATION = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
COST = "nebo.cost_micro"
COST_SOURCE = "nebo.cost_source"
SCOPE_ATTR = "nebo.scope"
TOKEN_ATTRIBUTES = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
)
OUTPUT_TYPES = {"json_object": "json", "json_schema": "json", "text": "text"}


class Aborted(Exception):
    """Stands for the reason a call was given up when none is known."""


_SERVERS: dict[str, dict[str, Any]] = {}
_DEFAULT_PORTS = {"https": 443, "http": 80}


def server(url: str | None) -> dict[str, Any]:
    """``server.address`` and ``server.port`` of a URL (empty when unknown); parsed once per URL."""
    if not url:
        return {}
    found = _SERVERS.get(url)
    if found is None:
        try:
            parts = urlsplit(url)
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            parts, port = None, None
        host = parts.hostname if parts is not None else None
        found = {SERVER_ADDRESS: host, SERVER_PORT: port} if host and port else {}
        if len(_SERVERS) < 64:
            _SERVERS[url] = found
    return found


def operation_name(kind: str | None, path: str) -> str:
    """``gen_ai.operation.name`` of a call (``nebo.request`` for a path Nebo does not document)."""
    if kind is not None:
        return "chat" if kind == "chat" else "embeddings"
    path = path.rstrip("/")
    return next((name for suffix, name in OPERATIONS if path.endswith(suffix)), "nebo.request")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def request_attributes(kind: str | None, body: Mapping[str, Any] | None, stream: bool) -> dict[str, Any]:
    """The ``gen_ai.request.*`` attributes a request body states (wrong types are left out)."""
    out: dict[str, Any] = {}
    if body is None:
        return out
    if kind == "embedding":
        fmt = body.get("encoding_format")
        out["gen_ai.request.encoding_formats"] = (fmt,) if isinstance(fmt, str) and fmt else None
        out["gen_ai.embeddings.dimension.count"] = _count(body.get("dimensions"))
    elif kind == "chat":
        limit = body.get("max_completion_tokens")
        out["gen_ai.request.max_tokens"] = _count(limit if limit is not None else body.get("max_tokens"))
        for key in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
            out[f"gen_ai.request.{key}"] = _number(body.get(key))
        out["gen_ai.request.seed"] = _count(body.get("seed"))
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
        out["gen_ai.request.stop_sequences"] = tuple(s for s in stops if isinstance(s, str)) or None
        n = _count(body.get("n"))
        out["gen_ai.request.choice.count"] = n if n is not None and n != 1 else None
        fmt = body.get("response_format")
        shape = fmt.get("type") if isinstance(fmt, Mapping) else None
        out["gen_ai.output.type"] = OUTPUT_TYPES.get(str(shape))
        out["gen_ai.request.stream"] = True if stream else None
    return {k: v for k, v in out.items() if v is not None}


def response_attributes(ex: Exchange) -> dict[str, Any]:
    """``gen_ai.response.*`` and ``nebo.request_id`` from what came back (a body, or a stream)."""
    model = response_id = None
    reasons: tuple[str, ...] = ()
    request_id = ex.record.request_id if ex.record is not None else None
    state = ex.state
    if ex.call.stream and state.chunks_seen:
        model, response_id, request_id = state.model, state.id, request_id or state.request_id
        if state.expected_choices > 1:
            reasons = tuple(c["finish_reason"] for c in state.completion()["choices"] if c["finish_reason"])
        elif state.finish_reason:
            reasons = (state.finish_reason,)
    elif ex.result is not None and isinstance(ex.result.data, dict):
        data = ex.result.data
        model, request_id = data.get("model"), request_id or ex.result.request_id
        if ex.call.kind == "chat":
            response_id = data.get("id")
            choices = data.get("choices")
            reasons = tuple(
                c["finish_reason"]
                for c in (choices if isinstance(choices, list) else ())
                if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
            )
    if not model and ex.record is not None:
        model = ex.record.model
    return {
        RESPONSE_MODEL: model if isinstance(model, str) and model else None,
        "gen_ai.response.id": response_id if isinstance(response_id, str) and response_id else None,
        "gen_ai.response.finish_reasons": reasons or None,
        "nebo.request_id": request_id,
    }


def budget_attributes(snapshot: BudgetSnapshot | None) -> dict[str, Any]:
    """``nebo.budget.*`` from the budget Nebo last reported to this account."""
    if snapshot is None:
        return {}
    return {
        "nebo.budget.session.remaining_micro": snapshot.session.remaining_micro,
        "nebo.budget.weekly.remaining_micro": snapshot.weekly.remaining_micro,
        "nebo.budget.active_pool": snapshot.active_pool,
    }


def budget_error(error: NeboBudgetExhausted) -> dict[str, Any]:
    """The attributes of a budget event: Nebo's code and the window that ran out."""
    return {"nebo.error.code": error.code, "nebo.budget.window": error.window}


def error_type(error: BaseException) -> str:
    """``error.type``: the exception's class name (``NeboBudgetExhausted``, ``CancelledError``...)."""
    return "_OTHER" if isinstance(error, Aborted) else type(error).__qualname__
