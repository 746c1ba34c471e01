"""How ``Nebo`` and ``NeboEmbedding`` connect: keyword checks, and where usage is published.

Both adapters hold a ``nebo_core.NeboProvider`` as a private attribute, so the token (inside
``NeboSettings``) never becomes a pydantic field and never reaches ``to_dict()``, repr or
instrumentation payloads. The provider builds one async client per event loop (LlamaIndex
users often call ``asyncio.run`` repeatedly) and owns the pickling rule: the token never
pickles, so an unpickled copy (say, in an ``IngestionPipeline`` worker) re-reads
``NEBO_API_KEY`` on first use. Usage records are published here, to the instrumentation
dispatcher and to any ``NeboBudgetCallbackHandler`` on the component's callback manager.

Nothing a user passes is dropped: an unknown keyword is a ``TypeError`` naming it, and a
keyword of the anchors (``OpenAILike``, ``OpenAIEmbedding``) that Nebo has no use for is
accepted only with a value that asks for what Nebo does anyway, else refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.callbacks import CallbackManager
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]

from llama_index_nebo._events import NeboUsageEvent
from nebo_core import (
    AsyncNeboClient,
    BudgetPolicy,
    BudgetTracker,
    NeboClient,
    NeboConfigurationError,
    NeboProvider,
    UsageRecord,
)

dispatcher = get_dispatcher("llama_index_nebo")


Refusal = tuple[Callable[[Any], bool], str]
"""When a foreign keyword's value is harmless (it asks for what Nebo does anyway), and why not otherwise."""

OPENAI_SHARED: dict[str, Refusal] = {
    "api_version": (lambda v: not v, "API versions are Azure OpenAI's; Nebo has none"),
    "reuse_client": (lambda v: v is True, "Nebo always reuses its connections (one pool per client)"),
}
"""Keywords that ``OpenAILike`` and ``OpenAIEmbedding`` take and Nebo has no use for."""


def check_foreign(cls: type[Any], kwargs: dict[str, Any], refusals: dict[str, Refusal]) -> None:
    """Drop an anchor's keyword whose value asks for what Nebo does anyway; refuse any other value
    with a ``TypeError`` naming it (a user moving from ``OpenAILike`` must not lose it silently)."""
    for name in sorted(set(kwargs) & set(refusals)):
        harmless, why = refusals[name]
        value = kwargs.pop(name)
        if not harmless(value):
            raise TypeError(f"{cls.__name__} does not support {name}={value!r}: {why}")


def connect(
    cls: type[Any],
    kwargs: dict[str, Any],
    *,
    refusals: dict[str, Refusal],
    base_url: str | None,
    api_base: str | None,
    tracker: BudgetTracker | None,
    policy: BudgetPolicy | None,
    client: NeboClient | None,
    async_client: AsyncNeboClient | None,
    http_client: Any,
    async_http_client: Any,
    **settings: Any,
) -> tuple[NeboProvider, dict[str, Any]]:
    """What ``Nebo`` and ``NeboEmbedding`` do first: check their keywords, resolve the settings,
    and return the clients plus the pydantic fields (the resolved URL, timeout, retries).

    ``settings`` are ``NeboSettings.resolve`` keywords (``api_key``, ``timeout``,
    ``default_headers``...). With ``client=``/``async_client=`` the settings are that client's,
    so passing settings too is refused rather than ignored."""
    check_foreign(cls, kwargs, refusals)
    reject_unknown(cls, kwargs)
    if base_url and api_base and base_url.rstrip("/") != api_base.rstrip("/"):
        raise NeboConfigurationError(
            f"base_url={base_url!r} and api_base={api_base!r} disagree; pass only one"
        )
    given = sorted(
        k for k, v in {**settings, "base_url": base_url or api_base}.items() if v not in (None, {})
    )
    if (client is not None or async_client is not None) and given:
        raise NeboConfigurationError(
            f"{cls.__name__} got client=/async_client= and {', '.join(given)}: a Nebo client brings its "
            "own settings, so these would be ignored; set them on the NeboClient you pass"
        )
    for name, value, kind in (
        ("http_client", http_client, httpx.Client),
        ("async_http_client", async_http_client, httpx.AsyncClient),
    ):
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"{name} must be an httpx.{kind.__name__}, got {type(value).__name__}")
    clients = NeboProvider(
        base_url=base_url or api_base,
        tracker=tracker,
        policy=policy,
        client=client,
        async_client=async_client,
        http_client=http_client,
        http_async_client=async_http_client,
        **settings,
    )
    s = clients.settings
    return clients, {"base_url": s.base_url, "timeout": s.timeout, "max_retries": s.max_retries, **kwargs}


def reject_unknown(cls: type[Any], kwargs: dict[str, Any]) -> None:
    """Fail loudly on a keyword the component does not know (pydantic would silently drop it)."""
    unknown = sorted(k for k in kwargs if k not in cls.model_fields)
    if unknown:
        raise TypeError(f"{cls.__name__} got unknown argument(s) {', '.join(unknown)}")


def publish(records: list[UsageRecord], callback_manager: CallbackManager | None) -> None:
    """Announce finished calls: one ``NeboUsageEvent`` each, and to legacy Nebo callback handlers."""
    from llama_index_nebo._handlers import NeboBudgetCallbackHandler

    handlers: list[Any] = list(callback_manager.handlers) if callback_manager is not None else []
    for record in records:
        dispatcher.event(NeboUsageEvent.from_record(record))
        for handler in handlers:
            if isinstance(handler, NeboBudgetCallbackHandler):
                handler.record(record)


def restore_state(component: BaseModel, state: dict[str, Any]) -> None:
    """Unpickle a component as pickled, without re-running ``__init__`` (which needs a token)."""
    BaseModel.__setstate__(component, state)
