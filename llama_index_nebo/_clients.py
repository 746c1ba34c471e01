"""How ``Nebo`` and ``NeboEmbedding`` connect: keyword checks, and where usage is published.

Both adapters hold a ``nebo_core.NeboProvider`` as a private attribute, so the token (inside
``NeboSettings``) never becomes a pydantic field and never reaches ``to_dict()``, repr or
instrumentation payloads. The provider builds one async client per event loop (LlamaIndex
users often call ``asyncio.run`` repeatedly) and owns the pickling rule: the token never
pickles, so an unpickled copy (say, in an ``IngestionPipeline`` worker) re-reads
``NEBO_API_KEY`` on first use. Usage records are published here, to the instrumentation
dispatcher and to any ``NeboBudgetCallbackHandler`` on the component's callback manager.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.callbacks import CallbackManager
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]

from llama_index_nebo._events import NeboUsageEvent
from nebo_core import NeboConfigurationError, NeboProvider, UsageRecord

dispatcher = get_dispatcher("llama_index_nebo")


def connect(
    cls: type[Any],
    kwargs: dict[str, Any],
    *,
    base_url: str | None,
    api_base: str | None,
    **connection: Any,
) -> tuple[NeboProvider, dict[str, Any]]:
    """What ``Nebo`` and ``NeboEmbedding`` do first: check their keywords, resolve the settings,
    and return the clients plus the pydantic fields (the resolved URL, timeout, retries)."""
    reject_unknown(cls, kwargs)
    if base_url and api_base and base_url.rstrip("/") != api_base.rstrip("/"):
        raise NeboConfigurationError(
            f"base_url={base_url!r} and api_base={api_base!r} disagree; pass only one"
        )
    clients = NeboProvider(base_url=base_url or api_base, **connection)
    s = clients.settings
    return clients, {"base_url": s.base_url, "timeout": s.timeout, "max_retries": s.max_retries, **kwargs}


def reject_unknown(cls: type[Any], kwargs: dict[str, Any]) -> None:
    """Fail loudly on a keyword the component does not know (pydantic would silently drop it)."""
    unknown = sorted(k for k in kwargs if k not in cls.model_fields)
    if not unknown:
        return
    hint = ""
    if "http_client" in unknown or "http_async_client" in unknown:
        hint = "; for a custom transport pass client=NeboClient(http_client=...) (or async_client=)"
    raise TypeError(f"{cls.__name__} got unknown argument(s) {', '.join(unknown)}{hint}")


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
