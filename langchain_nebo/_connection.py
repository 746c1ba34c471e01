"""Connection settings shared by ``ChatNebo`` and ``NeboEmbeddings``, and their cached core clients.

Settings are resolved once, at construction, through ``nebo_core.NeboSettings`` (so a bad
key or URL fails early with a message naming the fix). The clients live in one
``nebo_core.NeboProvider`` (built with the settings): the sync client on first use, one async
client per event loop, each closed with its loop. Per call, the adapter pays a dict build.

Keywords are sorted before pydantic sees them (:func:`langchain_nebo._params.sort_init_kwargs`):
ChatOpenAI's keywords work or are refused by name, and nothing is silently ignored. A pickle
never holds a key: one read from ``NEBO_API_KEY`` is read again where the copy is loaded, and a
model given ``api_key=`` refuses to pickle, saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
from langchain_core.utils import from_env, secret_from_env
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, SecretStr
from typing_extensions import Self

from langchain_nebo import _params
from nebo_core import (
    AsyncNeboClient,
    BudgetPolicy,
    BudgetTracker,
    NeboClient,
    NeboConfigurationError,
    NeboProvider,
    NeboSettings,
)
from nebo_core.settings import ENV_API_KEY, ENV_PROVIDER_API_KEY, SETTINGS_FIELDS

_CONNECTION_FIELDS = {
    *SETTINGS_FIELDS,
    "default_headers",
    "default_query",
    "tracker",
    "policy",
    "http_client",
    "http_async_client",
}
_SECRETS = {"api_key": ENV_API_KEY, "provider_api_key": ENV_PROVIDER_API_KEY}
_PROCESS_LOCAL = ("tracker", "policy", "http_client", "http_async_client")
"""Fields a pickle leaves out: they cannot cross a process (as in ``NeboProvider``)."""


class NeboConnection(BaseModel):
    """How to reach Nebo: key, URL, BYOK, attribution headers, budget tracker and policy."""

    model_config = ConfigDict(
        populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=(), extra="forbid"
    )

    _refused: ClassVar[Mapping[str, _params.Refusal]] = {}
    """ChatOpenAI / OpenAIEmbeddings keywords this class refuses, with the Nebo way to do it."""

    api_key: SecretStr | None = Field(default_factory=secret_from_env("NEBO_API_KEY", default=None))
    """The NeboLoop subscription token (else ``NEBO_API_KEY``)."""
    base_url: str | None = Field(default_factory=from_env("NEBO_BASE_URL", default=None))
    """Base URL ending in ``/v1`` (else ``NEBO_BASE_URL``, else the public endpoint)."""
    timeout: float | None = Field(default=None, validation_alias=AliasChoices("timeout", "request_timeout"))
    """Seconds per request (default 300: upstreams may go silent while buffering tool calls);
    ``request_timeout=`` is the same (ChatOpenAI's name)."""
    max_retries: int | None = None
    """Retries of transient failures, done once, in ``nebo_core`` (budget errors are never retried)."""
    provider_api_key: SecretStr | None = Field(
        default_factory=secret_from_env("NEBO_PROVIDER_API_KEY", default=None)
    )
    """BYOK: your provider's key, sent as ``X-Provider-API-Key`` (else ``NEBO_PROVIDER_API_KEY``)."""
    bot_id: str | None = None
    lane: str | None = None
    purpose: str | None = None
    default_headers: dict[str, str] | None = Field(
        default=None, validation_alias=AliasChoices("default_headers", "headers")
    )
    """HTTP headers sent with every request (``headers=`` is the same, OpenAIEmbeddings' name);
    they never replace the ``Authorization``, BYOK or bot/lane/purpose headers."""
    default_query: dict[str, str] | None = None
    """Query parameters sent with every request."""
    tracker: BudgetTracker | None = Field(default=None, exclude=True)
    """Where usage is recorded (default: ``nebo_core.default_tracker()``)."""
    policy: BudgetPolicy | None = Field(default=None, exclude=True)
    """Budget policy applied before every call (default: warn, refuse when exhausted)."""
    http_client: httpx.Client | None = Field(default=None, exclude=True)
    """Your own ``httpx.Client`` (proxies, certificates, test transports)."""
    http_async_client: httpx.AsyncClient | None = Field(default=None, exclude=True)

    _provider: NeboProvider = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**_params.sort_init_kwargs(type(self), kwargs, self._refused))
        # Resolved here, not in a pydantic validator, so a bad key or URL surfaces as the typed
        # NeboConfigurationError (a validator would wrap it in pydantic's ValidationError).
        self._provider = self._connect()
        self._configure()

    def _configure(self) -> None:
        """Check and derive what the subclass needs from its fields (after every change)."""

    def _connect(self) -> NeboProvider:
        provider = NeboProvider(
            settings=self._resolve(),
            tracker=self.tracker,
            policy=self.policy,
            http_client=self.http_client,
            http_async_client=self.http_async_client,
        )
        _hook(provider.tracker)
        return provider

    def _resolve(self) -> NeboSettings:
        extra: dict[str, Any] = {}
        if self.default_query:
            if not _params.CORE_DEFAULT_QUERY:
                raise NeboConfigurationError(
                    f"{type(self).__name__}: default_query={sorted(self.default_query)} cannot be sent yet: "
                    "this nebo_core has no default query; pass http_client=httpx.Client(params=...)"
                )
            extra["default_query"] = self.default_query
        return NeboSettings.resolve(
            api_key=self.api_key.get_secret_value() if self.api_key is not None else None,
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            provider_api_key=(
                self.provider_api_key.get_secret_value() if self.provider_api_key is not None else None
            ),
            bot_id=self.bot_id,
            lane=self.lane,
            purpose=self.purpose,
            default_headers=self.default_headers,
            **extra,
        )

    # -- pickling: never a key ------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        for name, env in _SECRETS.items():
            if name in self.model_fields_set and getattr(self, name) is not None:
                raise TypeError(
                    f"this {type(self).__name__} was given {name}=, and a Nebo key is never pickled; build "
                    f"it without {name}= and set {env} instead: a pickled copy reads {env} again where it is "
                    "loaded (e.g. in a worker process)"
                )
        state = super().__getstate__()
        fields = dict(state["__dict__"])
        for name in (*_SECRETS, *_PROCESS_LOCAL):
            fields[name] = None
        return {**state, "__dict__": fields}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for name, env in _SECRETS.items():
            self.__dict__[name] = secret_from_env(env, default=None)()
        try:
            self._provider = self._connect()
        except NeboConfigurationError:
            pass  # no key here yet: the unpickled provider says so, naming NEBO_API_KEY, on first use

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update`` applied, re-validated where it matters (settings, request body)."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._refresh(set(update))
        return copy

    def _refresh(self, changed: set[str]) -> None:
        """Rebuild what depends on changed fields (pydantic's ``model_copy`` runs no validator)."""
        if changed & _CONNECTION_FIELDS:
            self._provider = self._connect()
        self._configure()

    @property
    def account(self) -> str:
        """This model's ``nebo_core`` account id (a hash of URL and key): whose budget it spends."""
        return self._provider.account

    def _sync_client(self) -> NeboClient:
        return self._provider.sync

    def _async_client(self) -> AsyncNeboClient:
        return self._provider.aio()


def _hook(tracker: BudgetTracker) -> None:
    from langchain_nebo._callbacks import hook_tracker

    hook_tracker(tracker)
