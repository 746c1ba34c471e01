"""Construction of the ``nebo_core`` clients behind ``Nebo`` and ``NeboEmbedding``.

Both adapters hold one of these as a private attribute, so the token (inside
``NeboSettings``) never becomes a pydantic field and never reaches ``to_dict()``, repr or
instrumentation payloads. The async client is built per event loop: httpx's async pool is
bound to the loop that opened it, and LlamaIndex users often call ``asyncio.run`` repeatedly.
Usage records are published here too, to the instrumentation dispatcher and to any
``NeboBudgetCallbackHandler`` on the component's callback manager. Pickling keeps only
base_url, timeout and max_retries: the token never pickles, so an unpickled copy (say, in an
``IngestionPipeline`` worker) rebuilds its clients on first use from ``NEBO_API_KEY``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.callbacks import CallbackManager
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]

from llama_index_nebo._events import NeboUsageEvent
from nebo_core import AsyncNeboClient, BudgetPolicy, BudgetTracker, NeboClient, NeboSettings, UsageRecord
from nebo_core.errors import NeboConfigurationError
from nebo_core.settings import ENV_API_KEY

dispatcher = get_dispatcher("llama_index_nebo")


class NeboClients:
    """A sync client (built on first use) and one async client per running event loop.

    Deep copies share this object (token, connection pools, tracker). Pickles keep no secret,
    tracker, policy or caller's own client: an unpickled instance resolves its settings on first
    use from the pickled base_url, timeout and max_retries and from ``NEBO_API_KEY``, and records
    into the process-wide default tracker under the default policy (a tracker cannot be shared
    across processes).
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float | None,
        max_retries: int | None,
        provider_api_key: str | None = None,
        tracker: BudgetTracker | None = None,
        policy: BudgetPolicy | None = None,
        client: NeboClient | None = None,
        async_client: AsyncNeboClient | None = None,
    ) -> None:
        given = client or async_client
        self._settings: NeboSettings | None
        self._pickled: dict[str, Any] = {}
        if given is not None:
            self._settings = given.settings
            tracker = tracker if tracker is not None else given.tracker
            policy = policy if policy is not None else given.policy
        else:
            self._settings = NeboSettings.resolve(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=max_retries,
                provider_api_key=provider_api_key,
            )
        self._tracker = tracker
        self._policy = policy
        self._sync = client
        self._async: dict[int, tuple[asyncio.AbstractEventLoop | None, AsyncNeboClient]] = {}
        if async_client is not None:
            self._async[0] = (None, async_client)
        self._lock = threading.RLock()

    def __deepcopy__(self, memo: dict[int, Any]) -> NeboClients:
        # A copied component keeps its token, connection pools and tracker: share them.
        return self

    def __getstate__(self) -> dict[str, Any]:
        if self._settings is None:
            return dict(self._pickled)
        s = self._settings
        return {"base_url": s.base_url, "timeout": s.timeout, "max_retries": s.max_retries}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._settings = None
        self._pickled = dict(state)
        self._tracker = self._policy = None
        self._sync = None
        self._async = {}
        self._lock = threading.RLock()

    @property
    def settings(self) -> NeboSettings:
        """The resolved settings (after unpickling: resolved now, with the key from the environment)."""
        if self._settings is None:
            with self._lock:
                if self._settings is None:
                    self._settings = self._resolve_unpickled()
        return self._settings

    def _resolve_unpickled(self) -> NeboSettings:
        if not os.environ.get(ENV_API_KEY, "").strip():
            raise NeboConfigurationError(
                "this Nebo component was unpickled (e.g. in a worker process) and the Nebo token is "
                f"not pickled, by design; set {ENV_API_KEY} in the worker's environment"
            )
        return NeboSettings.resolve(api_key=None, **self._pickled)

    @property
    def sync(self) -> NeboClient:
        """The sync client."""
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = NeboClient(
                        settings=self.settings, tracker=self._tracker, policy=self._policy
                    )
                    self._tracker, self._policy = self._sync.tracker, self._sync.policy
        return self._sync

    @property
    def tracker(self) -> BudgetTracker:
        """The tracker every call of this component records into."""
        return self.sync.tracker

    @property
    def policy(self) -> BudgetPolicy:
        """The budget policy every call of this component runs under."""
        return self.sync.policy

    def aio(self) -> AsyncNeboClient:
        """The async client for the running event loop."""
        given = self._async.get(0)
        if given is not None:
            return given[1]
        loop = asyncio.get_running_loop()
        entry = self._async.get(id(loop))
        if entry is None or entry[0] is not loop:
            sync = self.sync  # shares the tracker and policy with the sync side
            # Clients of loops that have since closed cannot be closed cleanly; let them go.
            self._async = {k: v for k, v in self._async.items() if v[0] is not None and not v[0].is_closed()}
            entry = (
                loop,
                AsyncNeboClient(settings=self.settings, tracker=sync.tracker, policy=sync.policy),
            )
            self._async[id(loop)] = entry
        return entry[1]


def connect(
    cls: type[Any],
    kwargs: dict[str, Any],
    *,
    base_url: str | None,
    api_base: str | None,
    **connection: Any,
) -> tuple[NeboClients, dict[str, Any]]:
    """What ``Nebo`` and ``NeboEmbedding`` do first: check their keywords, resolve the settings,
    and return the clients plus the pydantic fields (the resolved URL, timeout, retries)."""
    reject_unknown(cls, kwargs)
    if base_url and api_base and base_url.rstrip("/") != api_base.rstrip("/"):
        raise NeboConfigurationError(
            f"base_url={base_url!r} and api_base={api_base!r} disagree; pass only one"
        )
    clients = NeboClients(base_url=base_url or api_base, **connection)
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
