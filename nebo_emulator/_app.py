"""The emulator's request handling, free of sockets: a request in, a reply out.

``App.handle`` runs the pipeline every request goes through: count it, add latency,
take the next scripted fault, route the path, authenticate, validate, generate, charge
atomically, and shape the reply. Every reply, errors included, leaves here with the
budget headers, ``X-Request-ID`` and ``Date``. The HTTP layer only reads and writes bytes.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import unquote

from nebo_core.models import get_model
from nebo_emulator._accounting import Accountant, BudgetView, Charged, Endpoint, UsageLimitExceeded
from nebo_emulator._auth import AuthFailure, Caller, authenticate
from nebo_emulator._clock import Clock
from nebo_emulator._embed import embed, encode_base64, input_tokens
from nebo_emulator._errors import ApiError, bad_request, model_not_found, usage_limit_exceeded
from nebo_emulator._faults import (
    GARBLED_HEADERS,
    MALFORMED_JSON,
    Fault,
    FaultQueue,
    immediate_error,
    stream_error_event,
)
from nebo_emulator._generate import generate, prompt_text
from nebo_emulator._requests import parse_chat, parse_embedding
from nebo_emulator._responses import (
    budget_headers,
    completion_body,
    embedding_body,
    model_entry,
    models_body,
    usage_body,
)
from nebo_emulator._routing import route
from nebo_emulator._stream import StreamEvent, stream_events

JSON_TYPE = "application/json"
SSE_HEADERS = [("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache")]
ROUTES: Mapping[str, str] = {
    "/v1/chat/completions": "POST",
    "/v1/embeddings": "POST",
    "/v1/models": "GET",
    "/v1/usage": "GET",
}


@dataclass(frozen=True)
class HttpRequest:
    """What the HTTP layer read: method, path, lower-cased headers, raw body."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass
class Reply:
    """What the HTTP layer must write: a JSON body, or SSE events, possibly cut off by a fault."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    events: list[StreamEvent] | None = None
    drop_after: int | None = None
    """Streams: events sent before the connection is dropped. Bodies: drop halfway when set."""


@dataclass(frozen=True)
class AppConfig:
    """Settings fixed at construction."""

    plan: str
    quirks: bool
    accepted: frozenset[str]
    accept_any_jwt: bool


class App:
    """Handles one request at a time per thread; shared state lives in the accountant and fault queue."""

    def __init__(
        self,
        config: AppConfig,
        clock: Clock,
        accountant: Accountant,
        faults: FaultQueue,
        sleep: Callable[[float], None],
    ) -> None:
        self.config = config
        self.clock = clock
        self.accountant = accountant
        self.faults = faults
        self.latency = 0.0
        self.requests = 0
        self.in_flight = 0
        """Requests being served now (a delayed one may still bill after its client left)."""
        self._sleep = sleep
        self._lock = threading.Lock()

    def accept(self, token: str) -> None:
        """Accept ``token`` from now on (tokens the emulator mints)."""
        with self._lock:
            self.config = AppConfig(
                self.config.plan,
                self.config.quirks,
                self.config.accepted | {token},
                self.config.accept_any_jwt,
            )

    def handle(self, request: HttpRequest) -> Reply:
        """Serve one request; never raises."""
        request_id = "req_" + uuid.uuid4().hex
        with self._lock:
            self.requests += 1
            self.in_flight += 1
        try:
            if self.latency > 0:
                self._sleep(self.latency)
            fault = self.faults.pop()
            try:
                reply = self._serve(request, request_id, fault)
            except Exception as exc:
                if not isinstance(exc, ApiError):
                    # An emulator bug must surface as a readable 500, not as a hung or reset connection.
                    exc = ApiError(500, f"Nebo emulator internal error: {exc!r}", type="server_error")
                headers = [*budget_headers(self.accountant.view()), *exc.headers]
                reply = Reply(exc.status, headers, _json(exc.body()))
            return self._finish(reply, request_id, fault)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _serve(self, request: HttpRequest, request_id: str, fault: Fault | None) -> Reply:
        body = _json_body(request.body)
        streaming = isinstance(body, dict) and body.get("stream") is True
        if fault is not None:
            if fault.kind == "delay":
                self._sleep(float(fault.params["seconds"]))
            error = immediate_error(fault, streaming=streaming)
            if error is not None:
                raise error
        path = unquote(request.path.split("?", 1)[0]).rstrip("/") or "/"
        is_model = path.startswith("/v1/models/")
        method = "GET" if is_model else ROUTES.get(path)
        if method is None:
            message = f"Unknown request URL: {request.method} {path}. Please check the URL for typos."
            raise ApiError(404, message, code="unknown_url")
        if request.method != method:
            message = f"Invalid method for URL ({request.method} {path})."
            raise ApiError(405, message, code="method_not_allowed")
        caller = authenticate(
            request.headers.get("authorization"),
            now=self.clock.now(),
            accepted=self.config.accepted,
            accept_any_jwt=self.config.accept_any_jwt,
        )
        if isinstance(caller, AuthFailure):
            raise ApiError(401, caller.message, type=caller.type, code="invalid_api_key")
        if fault is not None and fault.kind == "malformed_body":
            return _malformed(streaming, self.accountant.view())
        if path == "/v1/models":
            return self._ok(models_body())
        if is_model:
            spec = get_model(path[len("/v1/models/") :])
            if spec is None:
                raise model_not_found(path[len("/v1/models/") :])
            return self._ok(model_entry(spec))
        if path == "/v1/usage":
            return self._ok(usage_body(self.accountant.view(), caller.plan or self.config.plan))
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request. The body must be a JSON object."
            raise bad_request(message, None, "invalid_json")
        if path == "/v1/embeddings":
            return self._embeddings(body, request_id, fault)
        return self._chat(body, caller, request_id, fault)

    def _ok(self, payload: Mapping[str, Any]) -> Reply:
        return Reply(200, [*budget_headers(self.accountant.view())], _json(payload))

    def _charge(
        self,
        endpoint: Endpoint,
        request_id: str,
        requested: str,
        model: str,
        prompt: int,
        completion: int,
        cost: int,
        streamed: bool,
    ) -> Charged:
        try:
            return self.accountant.charge(
                request_id=request_id,
                endpoint=endpoint,
                requested_model=requested,
                model=model,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_micro=cost,
                streamed=streamed,
            )
        except UsageLimitExceeded as exc:
            raise usage_limit_exceeded() from exc

    def _chat(self, body: Mapping[str, Any], caller: Caller, request_id: str, fault: Fault | None) -> Reply:
        req = parse_chat(body, quirks=self.config.quirks)
        spec = route(req.model, prompt_text(req.messages), caller.plan or self.config.plan)
        if spec is None:
            known = get_model(req.model)
            if known is not None:
                raise bad_request(
                    f"`{req.model}` is an embedding model and cannot be used with /v1/chat/completions.",
                    "model",
                    "model_not_supported",
                )
            raise model_not_found(req.model)
        gen = generate(req)
        created = int(self.clock.now().timestamp())
        chat_id = "chatcmpl-" + request_id[4:]
        if not req.stream:
            cost = spec.cost_micro(gen.prompt_tokens, gen.completion_tokens)
            charged = self._charge(
                "chat", request_id, req.model, spec.id, gen.prompt_tokens, gen.completion_tokens, cost, False
            )
            payload = completion_body(gen, id=chat_id, created=created, model=spec.id, cost_micro=cost)
            drop = 0 if fault is not None and fault.kind == "drop_midstream" else None
            return Reply(200, budget_headers(charged.after), _json(payload), drop_after=drop)
        if fault is not None and fault.kind == "stream_rate_limit":
            # Janus sends 200 and SSE headers before its rate-limit check (nebo-api.md section 9.2).
            view = self.accountant.view()
            event = StreamEvent(json.dumps(stream_error_event(fault)), 0)
            return Reply(200, [*SSE_HEADERS, *budget_headers(view)], events=[event])
        events = stream_events(
            gen,
            id=chat_id,
            created=created,
            model=spec.id,
            cost=spec.cost_micro,
            quirks=self.config.quirks,
            include_usage=req.include_usage,
        )
        drop, completion = None, gen.completion_tokens
        if fault is not None and fault.kind == "drop_midstream":
            finish = next(i for i, e in enumerate(events) if e.finishes)
            drop = max(min(int(fault.params["after_chunks"]), finish), 0)
            completion = events[drop - 1].completion_tokens if drop else 0
        if drop == 0:
            view = self.accountant.view()  # Nothing was sent, so nothing is charged.
            if not view.fundable:
                raise usage_limit_exceeded()
            return Reply(200, [*SSE_HEADERS, *budget_headers(view)], events=events, drop_after=0)
        cost = spec.cost_micro(gen.prompt_tokens, completion)
        charged = self._charge(
            "chat", request_id, req.model, spec.id, gen.prompt_tokens, completion, cost, True
        )
        # Stream headers precede the body, so they show the budget before this charge.
        return Reply(200, [*SSE_HEADERS, *budget_headers(charged.before)], events=events, drop_after=drop)

    def _embeddings(self, body: Mapping[str, Any], request_id: str, fault: Fault | None) -> Reply:
        req = parse_embedding(body)
        spec = get_model(req.model)
        if spec is None:
            raise model_not_found(req.model)
        if spec.kind != "embedding" or spec.dimensions is None:
            raise bad_request(f"`{req.model}` is not an embedding model.", "model", "model_not_supported")
        dims = spec.dimensions
        if req.dimensions is not None:
            if not spec.supports_dimensions or req.dimensions > spec.dimensions:
                raise bad_request(
                    f"Invalid 'dimensions': `{req.model}` supports 1 to {spec.dimensions}.", "dimensions"
                )
            dims = req.dimensions
        vectors = [embed(text, dims) for text in req.inputs]
        encoded: list[list[float] | str] = (
            [encode_base64(v) for v in vectors] if req.encoding_format == "base64" else list(vectors)
        )
        tokens = sum(input_tokens(text) for text in req.inputs)
        cost = spec.cost_micro(tokens)
        echoed = spec.upstream or spec.id  # The real API echoes the upstream OpenAI name (section 6).
        charged = self._charge("embedding", request_id, req.model, echoed, tokens, 0, cost, False)
        payload = embedding_body(encoded, model=echoed, prompt_tokens=tokens, cost_micro=cost)
        drop = 0 if fault is not None and fault.kind == "drop_midstream" else None
        return Reply(200, budget_headers(charged.after), _json(payload), drop_after=drop)

    def _finish(self, reply: Reply, request_id: str, fault: Fault | None) -> Reply:
        if reply.events is None and not any(k == "Content-Type" for k, _ in reply.headers):
            reply.headers.append(("Content-Type", JSON_TYPE))
        if fault is not None and fault.kind == "malformed_headers":
            garbled = {k.lower() for k in GARBLED_HEADERS}
            reply.headers = [(k, v) for k, v in reply.headers if k.lower() not in garbled]
            reply.headers.extend(GARBLED_HEADERS.items())
        reply.headers.append(("X-Request-ID", request_id))
        reply.headers.append(("Date", format_datetime(self.clock.now(), usegmt=True)))
        return reply


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def _json_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _malformed(streaming: bool, view: BudgetView) -> Reply:
    if streaming:
        event = StreamEvent(MALFORMED_JSON.decode(), 0)
        return Reply(200, [*SSE_HEADERS, *budget_headers(view)], events=[event])
    return Reply(200, budget_headers(view), MALFORMED_JSON)
