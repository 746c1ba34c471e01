"""Everything the sync and async clients share: settings, request building, response shaping.

The two clients differ only in I/O (``httpx.Client`` vs ``httpx.AsyncClient``, ``sleep`` vs
``await sleep``). Every decision (what to send, how to read what came back, which error it
is, whether to retry, what the budget policy says) is made here, once.
"""

from __future__ import annotations

import array
import base64
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx

from nebo_core import wire
from nebo_core.budget import BudgetSnapshot, CallKind, UsageRecord
from nebo_core.errors import NeboConfigurationError, NeboConnectionError, NeboError, NeboUpstreamError
from nebo_core.models import DEFAULT_EMBEDDING_MODEL, check_embedding_model
from nebo_core.policy import BudgetPolicy, CallPlan, Decision
from nebo_core.retry import RetryPolicy
from nebo_core.settings import NeboSettings, Secret
from nebo_core.tracker import BudgetTracker, default_tracker

MAX_EMBEDDING_BATCH = 2048
"""The most inputs one embeddings request may carry (OpenAI's limit, which Nebo relays)."""

_default_policy: BudgetPolicy | None = None


def default_policy() -> BudgetPolicy:
    """The process-wide default policy: warn at 80% and 95%, raise when exhausted."""
    global _default_policy
    if _default_policy is None:
        _default_policy = BudgetPolicy()
    return _default_policy


@dataclass(frozen=True)
class ChatCompletion:
    """A finished chat call: the standard OpenAI body plus what it cost."""

    data: dict[str, Any]
    usage: UsageRecord
    snapshot: BudgetSnapshot | None
    request_id: str | None

    @property
    def message(self) -> dict[str, Any]:
        """The first choice's message."""
        choices = self.data.get("choices") or [{}]
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        return message if isinstance(message, dict) else {"role": "assistant", "content": None}


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors in input order, plus what they cost (one record per request sent)."""

    vectors: list[list[float]]
    model: str | None
    usage: list[UsageRecord]

    @property
    def cost_micro(self) -> int | None:
        """Total cost, or ``None`` if any request's cost is unknown."""
        costs = [u.cost_micro for u in self.usage]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)


Sent = tuple[Any, httpx.Headers, BudgetSnapshot, "BudgetSnapshot | None"]
"""What one exchange gave back: JSON body, headers, the budget it reported, the tracker's budget before it."""
Batch = tuple[list[list[float]], "str | None", UsageRecord]
"""One embeddings request's vectors, the model the server echoed, and its usage."""


@dataclass(frozen=True)
class PreparedCall:
    """One request about to go out, with what is needed to account for it afterwards."""

    kind: CallKind
    requested: str
    request: httpx.Request
    before: BudgetSnapshot | None
    started: float
    scope: str | None
    inputs: int = 0


def join_batches(results: Sequence[Batch]) -> EmbeddingResult:
    """The per-request results of one ``embed()`` call, as one result in input order."""
    return EmbeddingResult(
        [v for r in results for v in r[0]], next((r[1] for r in results), None), [r[2] for r in results]
    )


def decode_embedding(value: Any) -> list[float]:
    """A float list, or an OpenAI base64 little-endian float32 string, as floats."""
    if isinstance(value, str):
        values = array.array("f")
        values.frombytes(base64.b64decode(value))
        if sys.byteorder != "little":
            values.byteswap()
        return values.tolist()
    if isinstance(value, list):
        return [float(v) for v in value]
    raise NeboUpstreamError("Nebo returned an embedding that is neither a list nor base64", status=200)


def batches(texts: Sequence[str] | str, size: int) -> list[tuple[int, list[str]]]:
    """``(offset, batch)`` pairs covering ``texts`` in order (one string counts as one text)."""
    if isinstance(texts, str):
        texts = [texts]  # not one text per character
    if size < 1:
        raise NeboConfigurationError(f"embedding batch size must be >= 1, got {size}")
    size = min(size, MAX_EMBEDDING_BATCH)
    return [(i, list(texts[i : i + size])) for i in range(0, len(texts), size)]


def _check_chat_body(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise NeboUpstreamError("Nebo returned a chat response without choices", status=200, body=data)
    return data


class BaseClient:
    """Settings, tracker, policy and every pure step of a call; no I/O."""

    def __init__(
        self,
        *,
        settings: NeboSettings | None = None,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        provider_api_key: str | Secret | None = None,
        bot_id: str | None = None,
        lane: str | None = None,
        purpose: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        tracker: BudgetTracker | None = None,
        policy: BudgetPolicy | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if settings is None:
            settings = NeboSettings.resolve(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=max_retries,
                provider_api_key=provider_api_key,
                bot_id=bot_id,
                lane=lane,
                purpose=purpose,
                default_headers=default_headers,
            )
        self.settings = settings
        self.tracker = tracker if tracker is not None else default_tracker()
        self.policy = policy if policy is not None else default_policy()
        self.policy.attach(self.tracker)
        self.retry = retry or RetryPolicy(max_retries=settings.max_retries)
        self._headers = wire.request_headers(settings)
        self.account = settings.account
        self._base = settings.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base!r})"

    # -- requests -------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: Any, timeout: float | None, stream: bool
    ) -> httpx.Request:
        headers = dict(self._headers)
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body, separators=(",", ":")).encode()
        if stream:
            headers["Accept"] = "text/event-stream"
        t = self.settings.timeout if timeout is None else timeout
        return httpx.Request(
            method,
            self._base + path,
            headers=headers,
            content=content,
            extensions={"timeout": httpx.Timeout(t, connect=min(t, 10.0)).as_dict()},
        )

    def _retry_kw(self, max_retries: int | None) -> RetryPolicy:
        return self.retry if max_retries is None else replace(self.retry, max_retries=max_retries)

    # -- responses ------------------------------------------------------------------------

    def _observe(self, headers: Mapping[str, str]) -> tuple[BudgetSnapshot, BudgetSnapshot | None]:
        """Parse and record a response's budget; also returns the tracker's snapshot just before,
        so a caller can tell whether another call's response landed in between."""
        snapshot = wire.parse_budget_headers(headers, account=self.account)
        prior = self.tracker.snapshot_for(self.account)
        self.tracker.observe(snapshot)
        return snapshot, prior

    def _finish(
        self, status: int, content: bytes, headers: Mapping[str, str], snapshot: BudgetSnapshot
    ) -> Any:
        """The JSON body of a complete response, or the typed error it stands for."""
        try:
            body: Any = json.loads(content) if content else None
        except ValueError:
            body = content.decode("utf-8", "replace")
            if status < 400:
                raise NeboUpstreamError(
                    "Nebo returned a body that is not JSON",
                    status=status,
                    body=body[:500],
                    request_id=wire.request_id_from(headers),
                    snapshot=snapshot,
                ) from None
        if status >= 400:
            raise wire.error_from_response(status, body, headers, snapshot)
        return body

    @staticmethod
    def _connection_error(exc: Exception) -> NeboError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return NeboConnectionError(f"the connection to Nebo {kind}: {type(exc).__name__}: {exc}")

    def _chat_record(
        self,
        requested: str,
        body: dict[str, Any],
        snapshot: BudgetSnapshot | None,
        before: BudgetSnapshot | None,
        started: float,
        streamed: bool,
        complete: bool,
        request_id: str | None,
        scope: str | None,
        kind: CallKind = "chat",
    ) -> UsageRecord:
        record = wire.usage_record(
            kind,
            requested,
            body.get("usage"),
            model=body.get("model") or None,
            before=before,
            after=snapshot,
            latency_s=time.perf_counter() - started,
            streamed=streamed,
            complete=complete,
            request_id=request_id,
            scope=scope,
        )
        self.tracker.record(record)
        return record

    def _received(self, response: httpx.Response) -> Sent:
        """Account for a complete response: observe its budget, then decode it or raise."""
        snapshot, prior = self._observe(response.headers)
        body = self._finish(response.status_code, response.content, response.headers, snapshot)
        return body, response.headers, snapshot, prior

    def _prepare_chat(
        self, body: Mapping[str, Any], model: str, requested: str, timeout: float | None, scope: str | None
    ) -> PreparedCall:
        payload = wire.prepare_chat_body({**body, "model": model}, stream=False)
        request = self._request("POST", wire.CHAT_PATH, payload, timeout, False)
        before = self.tracker.snapshot_for(self.account)
        return PreparedCall("chat", requested, request, before, time.perf_counter(), scope)

    def _finish_chat(self, call: PreparedCall, sent: Sent) -> tuple[ChatCompletion, UsageRecord]:
        data, headers, snapshot, prior = sent
        data = _check_chat_body(data)
        rid = wire.request_id_from(headers)
        # The drop in remaining budget is this call's cost only if no other response landed meanwhile.
        before = call.before if prior is call.before else None
        record = self._chat_record(
            call.requested, data, snapshot, before, call.started, False, True, rid, call.scope
        )
        return ChatCompletion(data, record, snapshot, rid), record

    def _prepare_embedding(
        self,
        texts: list[str],
        model: str,
        requested: str,
        dimensions: int | None,
        encoding_format: str,
        timeout: float | None,
        scope: str | None,
    ) -> PreparedCall:
        body = self._embedding_body(texts, model, dimensions, encoding_format)
        request = self._request("POST", wire.EMBEDDINGS_PATH, body, timeout, False)
        return PreparedCall(
            "embedding",
            requested,
            request,
            self.tracker.snapshot_for(self.account),
            time.perf_counter(),
            scope,
            len(texts),
        )

    def _finish_embedding(self, call: PreparedCall, sent: Sent) -> tuple[Batch, UsageRecord]:
        data, headers, snapshot, prior = sent
        vectors = self._embedding_vectors(data, call.inputs)
        before = call.before if prior is call.before else None
        record = self._chat_record(
            call.requested,
            {"usage": data.get("usage"), "model": data.get("model")},
            snapshot,
            before,
            call.started,
            False,
            True,
            wire.request_id_from(headers),
            call.scope,
            kind="embedding",
        )
        return (vectors, data.get("model"), record), record

    # -- embeddings -----------------------------------------------------------------------

    def _embedding_body(
        self, texts: Sequence[str], model: str | None, dimensions: int | None, encoding_format: str
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model or DEFAULT_EMBEDDING_MODEL,
            # OpenAI rejects "" as input; a space embeds as "nothing" without failing the batch.
            "input": [t if t else " " for t in texts],
            "encoding_format": encoding_format,
        }
        check_embedding_model(body["model"], dimensions)
        if dimensions is not None:
            body["dimensions"] = dimensions
        return body

    @staticmethod
    def _embedding_vectors(body: Any, expected: int) -> list[list[float]]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != expected:
            got = len(data) if isinstance(data, list) else "no"
            raise NeboUpstreamError(f"Nebo returned {got} embeddings for {expected} inputs", status=200)
        ordered = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
        return [decode_embedding(d.get("embedding") if isinstance(d, dict) else None) for d in ordered]

    # -- budget policy --------------------------------------------------------------------

    def _decide(self, plan: CallPlan, previous: Decision | None = None, error: Any = None) -> Decision:
        if previous is not None and plan.step > self.policy.max_steps:
            return Decision("refuse", plan.model, error=error)
        if error is not None:
            return self.policy.on_exhausted(plan, error, self.tracker)
        return self.policy.before_call(plan, self.tracker)
