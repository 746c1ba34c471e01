"""Nebo's wire protocol as pure functions: header names, paths, parsers, request fixes, error mapping.

This is the only module that knows a header name or a status code. Every parser is
tolerant (nebo-api.md: "be tolerant on input"): a missing or garbled value becomes
``None`` and never fails the call; every builder is strict (send what the docs show).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from nebo_core import _version
from nebo_core.budget import MAX_CLOCK_SKEW_S, BudgetSnapshot, CallKind, UsageRecord, UsageReport, WindowState
from nebo_core.errors import (
    NeboAuthenticationError,
    NeboBadRequestError,
    NeboBudgetExhausted,
    NeboConfigurationError,
    NeboContextLengthError,
    NeboError,
    NeboRateLimited,
    NeboStreamError,
    NeboUpstreamError,
)
from nebo_core.settings import NeboSettings

CHAT_PATH = "/chat/completions"
EMBEDDINGS_PATH = "/embeddings"
MODELS_PATH = "/models"
USAGE_PATH = "/usage"

USAGE_LIMIT_CODE = "USAGE_LIMIT_EXCEEDED"
_MAX_INT = 2**63 - 1

# Request headers (nebo-api.md section 3).
H_AUTHORIZATION = "Authorization"
H_PROVIDER_KEY = "X-Provider-API-Key"
H_BOT_ID = "X-Bot-ID"
H_LANE = "X-Lane"
H_PURPOSE = "X-Purpose"
SECRET_HEADERS = (H_AUTHORIZATION, H_PROVIDER_KEY, H_BOT_ID)
"""Headers scrubbed from recordings and never logged."""

# Response headers (nebo-api.md section 8), lower-cased.
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-nebo-request-id")


def request_headers(settings: NeboSettings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers every request carries: auth, BYOK, bot/lane/purpose, user defaults, then the
    call's own ``extra`` headers (validated by ``settings.check_headers``; never the token)."""
    headers = {
        "Accept": "application/json",
        "User-Agent": f"nebo-integrations/{_version.__version__}",
        **settings.default_headers,
        **(extra or {}),
        H_AUTHORIZATION: f"Bearer {settings.api_key.get_secret_value()}",
    }
    if settings.provider_api_key is not None:
        headers[H_PROVIDER_KEY] = settings.provider_api_key.get_secret_value()
    for name, value in ((H_BOT_ID, settings.bot_id), (H_LANE, settings.lane), (H_PURPOSE, settings.purpose)):
        if value:
            headers[name] = value
    return headers


# --- tolerant scalar parsers -------------------------------------------------------------


def parse_int(value: Any) -> int | None:
    """A non-negative integer from a header value, else ``None`` (``"nan"``, ``"-1"``, ``""``...)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= _MAX_INT else None
    text = str(value).strip()
    if not text:
        return None
    if "," in text:
        # A header sent twice arrives joined ("0, 0"): agreeing copies count, anything else is garbled
        # (and "1,000" is not a number we accept).
        values = {parse_int(part) for part in text.split(",")}
        return values.pop() if len(values) == 1 and ", " in text else None
    try:
        number = float(text) if any(c in text for c in ".eE") else int(text)
    except (ValueError, OverflowError):
        return None
    if isinstance(number, float):
        if not math.isfinite(number) or number != int(number):
            return None
        number = int(number)
    return number if 0 <= number <= _MAX_INT else None


def parse_datetime(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or offset) as an aware datetime, else ``None``."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_reset(value: Any, now: datetime) -> datetime | None:
    """A ``*-Reset`` header: RFC 3339 first, then integer seconds from ``now`` (nebo-api.md 8.4)."""
    stamp = parse_datetime(value)
    if stamp is not None:
        return stamp
    seconds = parse_int(value)
    if seconds is None or seconds > 10 * 365 * 86400:
        return None
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:  # a server date near year 9999: no header value may raise
        return None


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(value: str) -> float | None:
    """A Go ``time.Duration`` string (``5s``, ``1.2s``, ``250ms``, ``2m30s``) in seconds."""
    text = value.strip()
    if not text:
        return None
    pos, total = 0, 0.0
    for match in _GO_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 and math.isfinite(total) else None


def parse_retry_after(value: Any, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or a Go duration; else ``None``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) and value >= 0 else None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    duration = parse_go_duration(text)
    if duration is not None:
        return duration
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - (now or datetime.now(timezone.utc))).total_seconds(), 0.0)


# --- budget headers ------------------------------------------------------------------------


def plain_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as a plain dict with lower-cased names (read once; later lookups are cheap)."""
    return {str(k).lower(): v for k, v in headers.items()}


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return headers if type(headers) is dict and all(k.islower() for k in headers) else plain_headers(headers)


def _credit(h: Mapping[str, str], window: str, what: str) -> int | None:
    # Header names moved from -Tokens to -Credits (nebo-api.md 8.4): prefer -Credits.
    value = parse_int(h.get(f"x-ratelimit-{window}-{what}-credits"))
    return value if value is not None else parse_int(h.get(f"x-ratelimit-{window}-{what}-tokens"))


def parse_budget_headers(
    headers: Mapping[str, str], observed_at: datetime | None = None, account: str | None = None
) -> BudgetSnapshot:
    """The budget a response's headers report; never raises, unknown fields are ``None``."""
    h = _lower(headers)
    now = observed_at or datetime.now(timezone.utc)
    server_date = None
    if "date" in h:
        try:
            server_date = parsedate_to_datetime(h["date"])
        except (TypeError, ValueError, IndexError):
            server_date = None
        if server_date is not None and server_date.tzinfo is None:
            server_date = server_date.replace(tzinfo=timezone.utc)
    # Seconds-from-now resets count from the server's clock, unless its Date is implausible.
    plausible = server_date is not None and abs((server_date - now).total_seconds()) <= MAX_CLOCK_SKEW_S
    base = server_date if plausible and server_date is not None else now
    windows = []
    for name in ("session", "weekly"):
        windows.append(
            WindowState(
                name,  # type: ignore[arg-type]
                limit_micro=_credit(h, name, "limit"),
                remaining_micro=_credit(h, name, "remaining"),
                reset_at=parse_reset(h.get(f"x-ratelimit-{name}-reset"), base),
            )
        )
    pool = h.get("x-budget-active-pool")
    pool = pool.strip().lower() if isinstance(pool, str) and pool.strip() else None
    return BudgetSnapshot(
        session=windows[0],
        weekly=windows[1],
        free_available_micro=parse_int(h.get("x-budget-free-available")),
        gift_available_micro=parse_int(h.get("x-budget-gift-available")),
        credits_cents=parse_int(h.get("x-budget-credits-cents")),
        active_pool=pool,
        observed_at=now,
        server_date=server_date,
        account=account,
    )


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The server's request id, when it sent one."""
    h = _lower(headers)
    return next((h[k] for k in _REQUEST_ID_HEADERS if h.get(k)), None)


# --- /v1/usage ---------------------------------------------------------------------------


def parse_usage_body(body: Any, observed_at: datetime | None = None) -> UsageReport:
    """``GET /v1/usage`` in the documented 5h/7d shape or the newer monthly one (nebo-api.md 7)."""
    now = observed_at or datetime.now(timezone.utc)
    data = body if isinstance(body, dict) else {}
    allm = data.get("all_models") if isinstance(data.get("all_models"), dict) else {}
    grants = data.get("grants") if isinstance(data.get("grants"), dict) else {}
    credits = data.get("credits") if isinstance(data.get("credits"), dict) else {}
    assert isinstance(allm, dict)
    assert isinstance(grants, dict)
    assert isinstance(credits, dict)

    def window(name: str) -> WindowState:
        limit = parse_int(allm.get(f"{name}_limit"))
        used = parse_int(allm.get(f"{name}_used"))
        remaining = max(limit - used, 0) if limit is not None and used is not None else None
        reset = parse_int(allm.get(f"{name}_reset_seconds"))
        reset_at = now + timedelta(seconds=reset) if reset is not None else None
        return WindowState(name, limit, remaining, reset_at)  # type: ignore[arg-type]

    free = parse_int(grants.get("free_available"))
    gift = parse_int(grants.get("gift_available"))
    cents = parse_int(credits.get("balance_cents"))
    session, weekly = window("session"), window("weekly")
    used_percent = parse_int(allm.get("used_percent"))
    known = [w for w in (session, weekly) if w.remaining_micro is not None]
    plan_left = all(not w.exhausted for w in known) if known else None
    if plan_left is None and used_percent is not None:
        plan_left = used_percent < 100
    # The active pool follows draw order free > gift > plan > credits, not the `plan` field
    # (nebo-api.md 7.2 known pitfall, section 10).
    pool = "free" if free else "gift" if gift else "plan" if plan_left else "credits" if cents else None
    snapshot = BudgetSnapshot(session, weekly, free, gift, cents, pool, now)
    included = allm.get("included") if isinstance(allm.get("included"), bool) else None
    plan = data.get("plan") if isinstance(data.get("plan"), str) else None
    return UsageReport(
        plan, snapshot, min(used_percent, 100) if used_percent is not None else None, included, dict(data)
    )


# --- requests ------------------------------------------------------------------------------


def prepare_chat_body(body: Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
    """A chat request body made safe for Nebo (a copy; the caller's dict is untouched)."""
    out = dict(body)
    out.setdefault("model", "auto")
    messages = []
    for message in out.get("messages") or []:
        if (
            isinstance(message, dict)
            and message.get("role") == "assistant"
            and message.get("tool_calls")
            and not message.get("content")
        ):
            # Janus routes to upstreams that reject null content beside tool calls (nebo-api.md 11.5).
            message = {**message, "content": " "}
        messages.append(message)
    out["messages"] = messages
    if stream:
        out["stream"] = True
        options = dict(out.get("stream_options") or {})
        options.setdefault("include_usage", True)
        out["stream_options"] = options
    else:
        out.pop("stream", None)
        out.pop("stream_options", None)
    return out


_TOOL_CHOICE_WORDS = {"any": "required", "required": "required", "none": "none"}


def tool_choice(value: Any, tool_names: Sequence[str] = ()) -> Any:
    """A framework's ``tool_choice`` as the OpenAI field; ``None`` means leave it out (auto).

    Accepts ``"auto"``, ``"none"``, ``"any"``/``"required"``, ``True``/``False``, a tool name
    (checked against ``tool_names`` when given) or an OpenAI dict. Nebo's own client omits the
    field for auto (nebo-api.md 4.1).
    """
    if value is None or value == "auto":
        return None
    if value is True or value is False:
        return "required" if value else "none"
    if isinstance(value, str):
        if value in _TOOL_CHOICE_WORDS:
            return _TOOL_CHOICE_WORDS[value]
        if tool_names and value not in tool_names:
            raise NeboConfigurationError(
                f"tool_choice={value!r} names no bound tool; use one of {sorted(tool_names)} "
                "or 'auto', 'none', 'any', 'required'"
            )
        return {"type": "function", "function": {"name": value}}
    if isinstance(value, dict):
        return value
    raise NeboConfigurationError(
        f"tool_choice must be 'auto', 'none', 'any', 'required', a tool name, a bool or a dict; got {value!r}"
    )


# --- usage records -------------------------------------------------------------------------


def usage_record(
    kind: CallKind,
    requested_model: str,
    usage: Mapping[str, Any] | None,
    *,
    model: str | None,
    before: BudgetSnapshot | None,
    after: BudgetSnapshot | None,
    latency_s: float | None,
    streamed: bool,
    complete: bool = True,
    request_id: str | None = None,
    scope: str | None = None,
) -> UsageRecord:
    """A :class:`UsageRecord` from a response's ``usage`` object and the budget around the call."""
    u = usage if isinstance(usage, Mapping) else {}
    details = u.get("prompt_tokens_details")
    cached = parse_int(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    cost = parse_int(u.get("cost_micro"))
    source = "server"
    if not cost:  # the Nebo client ignores values <= 0 (nebo-api.md 4.3)
        cost, source = _cost_from_headers(before, after), "headers"
        if cost is None:
            source = "unknown"
    snapshot = after or before
    return UsageRecord(
        kind=kind,
        requested_model=requested_model,
        model=model,
        prompt_tokens=parse_int(u.get("prompt_tokens")),
        completion_tokens=parse_int(u.get("completion_tokens")),
        cached_tokens=cached,
        total_tokens=parse_int(u.get("total_tokens")),
        cost_micro=cost,
        cost_source=source,  # type: ignore[arg-type]
        pool=snapshot.active_pool if snapshot else None,
        latency_s=latency_s,
        streamed=streamed,
        complete=complete,
        snapshot=snapshot,
        request_id=request_id,
        scope=scope,
    )


def _cost_from_headers(before: BudgetSnapshot | None, after: BudgetSnapshot | None) -> int | None:
    """The drop in session remaining across one call, when nothing else could explain it."""
    if before is None or after is None or before is after:
        return None
    a, b = before.session, after.session
    if a.remaining_micro is None or b.remaining_micro is None or a.limit_micro != b.limit_micro:
        return None
    if before.active_pool not in (None, "plan") or after.active_pool not in (None, "plan"):
        return None
    drop = a.remaining_micro - b.remaining_micro
    return drop if drop > 0 else None


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _embedding_shape(value: Any) -> bool:
    """Whether ``value`` looks like one embedding (checked cheaply: decoding is done once, later)."""
    if isinstance(value, str):
        return len(value) % 4 == 0 and _BASE64.fullmatch(value) is not None and (len(value) // 4 * 3) >= 4
    if isinstance(value, list):
        return bool(value) and isinstance(value[0], (int, float)) and not isinstance(value[0], bool)
    return False


def check_body(kind: str | None, data: Any, inputs: int, snapshot: BudgetSnapshot | None) -> None:
    """Raise :class:`NeboUpstreamError` for a 2xx body that cannot be the answer to ``kind``."""
    problem = None
    if kind == "chat":
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list):
            problem = "a chat response without choices"
        elif not all(isinstance(c, dict) for c in choices):
            problem = "a chat response whose choices are not all objects"
    elif kind == "embedding":
        vectors = data.get("data") if isinstance(data, dict) else None
        if not isinstance(vectors, list):
            problem = "an embeddings response without data"
        elif inputs and len(vectors) != inputs:
            problem = f"{len(vectors)} embeddings for {inputs} inputs"
        elif not all(isinstance(v, dict) and _embedding_shape(v.get("embedding")) for v in vectors):
            problem = "an embedding that is neither a list of numbers nor base64 float32"
    if problem is not None:
        body = data if isinstance(data, (dict, list)) else str(data)[:500]
        raise NeboUpstreamError(f"Nebo returned {problem}", status=200, body=body, snapshot=snapshot)


# --- errors --------------------------------------------------------------------------------


def _error_fields(body: Any) -> tuple[str, str | None, str | None]:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        message = err.get("message") or ""
        code = err.get("code")
        etype = err.get("type")
        return str(message), (str(code) if code is not None else None), (str(etype) if etype else None)
    if isinstance(err, str):
        return err, None, None
    if isinstance(body, str):
        return body[:500], None, None
    return "", None, None


def error_from_response(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    snapshot: BudgetSnapshot | None = None,
) -> NeboError:
    """The typed error for a non-2xx response (nebo-api.md section 9)."""
    message, code, etype = _error_fields(body)
    h = _lower(headers)
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id_from(headers),
        "body": body,
        "snapshot": snapshot,
    }
    retry_after = parse_retry_after(h.get("retry-after"))
    low = message.lower()
    if status in (401, 403) or code in ("invalid_api_key", "authentication_error"):
        return NeboAuthenticationError(
            message or "Nebo refused the token; check NEBO_API_KEY (a NeboLoop subscription token)", **common
        )
    if status == 429:
        return budget_or_rate_limit(message, code, etype, snapshot, retry_after, common)
    if code == "context_length_exceeded" or "maximum context length" in low:
        return NeboContextLengthError(message or "the prompt exceeds the model's context window", **common)
    if status in (400, 404, 409, 413, 422):
        return NeboBadRequestError(message or f"Nebo rejected the request (HTTP {status})", **common)
    if status >= 500:
        return NeboUpstreamError(
            message or f"Nebo or its upstream failed (HTTP {status})", retry_after=retry_after, **common
        )
    return NeboError(message or f"unexpected HTTP {status} from Nebo", retry_after=retry_after, **common)


def budget_or_rate_limit(
    message: str,
    code: str | None,
    etype: str | None,
    snapshot: BudgetSnapshot | None,
    retry_after: float | None,
    common: dict[str, Any],
) -> NeboError:
    """Tell a budget 429 (terminal) from a rate limit (transient): the code, then the headers."""
    exhausted = snapshot.exhausted_window if snapshot else None
    if (
        code == USAGE_LIMIT_CODE
        or etype == "insufficient_quota"
        or (exhausted is not None and not retry_after)
    ):
        window = exhausted.name if exhausted else "pools"
        reset_at = exhausted.reset_at if exhausted else None
        hint = f"; the {window} window resets at {reset_at.isoformat()}" if reset_at else ""
        return NeboBudgetExhausted(
            (message or "Nebo budget exhausted") + hint, window=window, reset_at=reset_at, **common
        )
    return NeboRateLimited(message or "rate limited by Nebo", retry_after=retry_after, **common)


def error_from_event_data(
    data: str, snapshot: BudgetSnapshot | None = None, request_id: str | None = None
) -> NeboError:
    """The typed error for an SSE ``event: error``, whether its data is Nebo's error envelope,
    a bare ``{"message": ...}`` object, or plain text (never retried unless it says rate limit)."""
    try:
        obj: Any = json.loads(data)
    except ValueError:
        obj = data
    if isinstance(obj, dict) and "error" in obj:
        return error_from_stream_event(obj["error"], snapshot, request_id)
    if isinstance(obj, dict) and isinstance(obj.get("message"), str):
        message = obj["message"]
    else:
        message = str(obj)[:500]
    return NeboStreamError(
        message or "Nebo sent an error event in the stream",
        body=obj,
        request_id=request_id,
        snapshot=snapshot,
    )


def error_from_stream_event(
    error: Any,
    snapshot: BudgetSnapshot | None = None,
    request_id: str | None = None,
) -> NeboError:
    """The typed error for an ``{"error": ...}`` event inside a 200 stream (nebo-api.md 9.2)."""
    message, code, etype = _error_fields({"error": error})
    common: dict[str, Any] = {
        "status": 200,
        "code": code,
        "request_id": request_id,
        "body": {"error": error},
        "snapshot": snapshot,
    }
    retry = parse_retry_after(error.get("retry_after")) if isinstance(error, dict) else None
    if etype == "rate_limit_error" or code in ("rate_limit_exceeded", USAGE_LIMIT_CODE):
        return budget_or_rate_limit(message, code, etype, snapshot, retry, common)
    if code == "context_length_exceeded":
        return NeboContextLengthError(message, **common)
    return NeboStreamError(message or "Nebo sent an error inside the stream", retry_after=retry, **common)


# --- models --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """One entry of ``GET /v1/models``."""

    id: str
    owned_by: str | None = None
    name: str | None = None
    created: int | None = None


def parse_models_body(body: Any) -> list[ModelInfo]:
    """The model list; entries without an ``id`` are skipped."""
    data = body.get("data") if isinstance(body, dict) else None
    out = []
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            out.append(
                ModelInfo(item["id"], item.get("owned_by"), item.get("name"), parse_int(item.get("created")))
            )
    return out
