"""``NeboProvider``: what a framework adapter holds to reach Nebo.

Both adapters (``ChatNebo``/``NeboEmbeddings``, ``Nebo``/``NeboEmbedding``) hold one: the
resolved settings, the tracker and policy every call shares, the sync client (built on
first use), and one async client per event loop. httpx's async connections belong to the
loop that opened them, and framework users often call ``asyncio.run`` again and again, so
each loop gets its own client, closed on that loop when it ends (see ``nebo_core._loops``).
The pickling rule lives here too: the token never pickles,
so an unpickled copy (a worker process) re-reads ``NEBO_API_KEY`` on first use.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any

import httpx

from nebo_core._loops import close_with_loop
from nebo_core.client import AsyncNeboClient, NeboClient
from nebo_core.errors import NeboConfigurationError
from nebo_core.policy import BudgetPolicy, default_policy
from nebo_core.settings import ENV_API_KEY, NeboSettings
from nebo_core.tracker import BudgetTracker, default_tracker

_PICKLED_FIELDS = (
    "base_url",
    "timeout",
    "max_retries",
    "bot_id",
    "lane",
    "purpose",
    "default_headers",
    "default_query",
)
"""Settings a pickle keeps; secrets (the token, the provider key) never pickle. Default headers and
query parameters do: put credentials in ``api_key`` / ``provider_api_key``, never in headers."""


class NeboProvider:
    """Settings, tracker, policy, a sync client and one async client per event loop.

    Pass ``client=`` / ``async_client=`` to use clients you built (then they are never
    closed here), or ``http_client=`` / ``http_async_client=`` for your own httpx clients.
    """

    def __init__(
        self,
        *,
        settings: NeboSettings | None = None,
        tracker: BudgetTracker | None = None,
        policy: BudgetPolicy | None = None,
        http_client: httpx.Client | None = None,
        http_async_client: httpx.AsyncClient | None = None,
        client: NeboClient | None = None,
        async_client: AsyncNeboClient | None = None,
        **settings_kwargs: Any,
    ) -> None:
        given = client or async_client
        if (client is not None and http_client is not None) or (
            async_client is not None and http_async_client is not None
        ):
            raise NeboConfigurationError(
                "pass either a Nebo client (client=/async_client=) or an httpx client for it "
                "(http_client=/http_async_client=), not both: the httpx client would go unused"
            )
        if settings is None and given is not None:
            settings = given.settings
        self._settings: NeboSettings | None = (
            settings if settings is not None else NeboSettings.resolve(**settings_kwargs)
        )
        self._pickled: dict[str, Any] = {}
        if given is not None:
            tracker = tracker if tracker is not None else given.tracker
            policy = policy if policy is not None else given.policy
        self.tracker = tracker if tracker is not None else default_tracker()
        self.policy = policy if policy is not None else default_policy()
        self._http = http_client
        self._http_async = http_async_client
        self._sync = client
        self._given_async = async_client
        self._loops: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], AsyncNeboClient, Any]] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        url = self._settings.base_url if self._settings is not None else self._pickled.get("base_url")
        return f"NeboProvider(base_url={url!r})"

    # -- settings and pickling ------------------------------------------------------------

    @property
    def settings(self) -> NeboSettings:
        """The resolved settings (after unpickling: resolved now, the key read from the environment)."""
        if self._settings is None:
            with self._lock:
                if self._settings is None:
                    if not os.environ.get(ENV_API_KEY, "").strip():
                        raise NeboConfigurationError(
                            "this Nebo component was unpickled (e.g. in a worker process) and the Nebo "
                            f"token is not pickled, by design; set {ENV_API_KEY} in that process"
                        )
                    self._settings = NeboSettings.resolve(api_key=None, **self._pickled)
        return self._settings

    @property
    def account(self) -> str:
        """Whose Nebo budget the calls spend (a hash of URL and key, see ``NeboSettings.account``)."""
        return self.settings.account

    def __deepcopy__(self, memo: dict[int, Any]) -> NeboProvider:
        return self  # a copied component keeps its token, connections and tracker

    def __getstate__(self) -> dict[str, Any]:
        if self._settings is None:
            return dict(self._pickled)
        return {name: getattr(self._settings, name) for name in _PICKLED_FIELDS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A tracker, a policy or a client cannot cross a process: the unpickled copy records into
        # its process's default tracker under the default policy.
        self._settings = None
        self._pickled = dict(state)
        self.tracker = default_tracker()
        self.policy = default_policy()
        self._http = self._http_async = None
        self._sync = self._given_async = None
        self._loops = {}
        self._lock = threading.RLock()

    # -- clients --------------------------------------------------------------------------

    @property
    def sync(self) -> NeboClient:
        """The sync client (built on first use)."""
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = NeboClient(
                        settings=self.settings,
                        tracker=self.tracker,
                        policy=self.policy,
                        http_client=self._http,
                    )
        return self._sync

    def aio(self) -> AsyncNeboClient:
        """The async client for the running event loop (closed when that loop shuts down)."""
        if self._given_async is not None:
            return self._given_async
        loop = asyncio.get_running_loop()
        entry = self._loops.get(id(loop))
        if entry is not None and entry[0]() is loop:
            return entry[1]
        client = AsyncNeboClient(
            settings=self.settings, tracker=self.tracker, policy=self.policy, http_client=self._http_async
        )
        # Closed on its own loop when that loop ends (a client you passed in stays yours).
        closer = close_with_loop(loop, client.aclose) if self._http_async is None else None
        self._loops = {k: v for k, v in self._loops.items() if _alive(v[0])}
        self._loops[id(loop)] = (weakref.ref(loop), client, closer)
        return client

    def close(self) -> None:
        """Close the sync client's connections (the async ones close with their loops)."""
        if self._sync is not None and self._http is None:
            self._sync.close()


def _alive(ref: weakref.ref[asyncio.AbstractEventLoop]) -> bool:
    loop = ref()
    return loop is not None and not loop.is_closed()
