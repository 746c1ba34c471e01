"""The ``openai`` SDK, made Nebo-safe: ``openai_client()`` and ``async_openai_client()``.

They return a plain ``openai.OpenAI`` / ``openai.AsyncOpenAI`` pointed at Nebo (settings from
:class:`~nebo_core.settings.NeboSettings`, never ``OPENAI_*``), with the SDK's own retries off
and :class:`~nebo_core.transport.NeboTransport` underneath: the same exchange engine as
``NeboClient`` (budget policy, the one retry layer, usage records, stream repair).
Works with openai 2.x (on ``httpx``) and 3.x (on ``httpx2``); ``openai`` is imported only
when a client is built, so ``import nebo_core`` stays cheap.
"""

from __future__ import annotations

import asyncio
import importlib
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from nebo_core.caps import Scope
from nebo_core.errors import NeboConfigurationError
from nebo_core.policy import BudgetPolicy
from nebo_core.retry import RetryPolicy
from nebo_core.settings import SETTINGS_FIELDS, NeboSettings
from nebo_core.tracker import BudgetTracker
from nebo_core.transport import transport_classes

if TYPE_CHECKING:
    import openai

__all__ = ["async_openai_client", "openai_client"]


def _import_openai() -> ModuleType:
    try:
        import openai
    except ImportError as exc:
        raise NeboConfigurationError(
            "the openai SDK is not installed; install it with: pip install 'nebo-integrations[openai]'"
        ) from exc
    return openai


def http_module(openai_module: ModuleType) -> ModuleType:
    """The HTTP library the installed SDK is built on: ``httpx2`` (openai 3.x) or ``httpx`` (2.x)."""
    default_client = getattr(openai_module, "DefaultHttpxClient", None)
    for base in getattr(default_client, "__mro__", ()):
        root = str(getattr(base, "__module__", "")).split(".")[0]
        if root in ("httpx2", "httpx"):
            return importlib.import_module(root)
    return importlib.import_module("httpx")


SDK_KEY_PLACEHOLDER = "nebo-token-set-by-transport"
"""The API key the SDK is given: the transport replaces its Authorization with Nebo's token."""


def _sdk_kwargs(settings: NeboSettings, openai_kwargs: Mapping[str, Any], http_client: Any) -> dict[str, Any]:
    """Keyword arguments for ``openai.OpenAI`` / ``AsyncOpenAI`` (pure)."""
    if "http_client" in openai_kwargs:
        raise NeboConfigurationError(
            "http_client= cannot be passed through: the Nebo client owns the SDK's HTTP client (its "
            "transport records budgets and retries); pass transport= instead (your own inner transport "
            "for proxies, certificates or tests)"
        )
    return {
        **openai_kwargs,
        # A placeholder: the transport sets the real Authorization on the wire, so the token never
        # sits in the SDK's request objects (which its errors carry, pickles included).
        "api_key": SDK_KEY_PLACEHOLDER,
        "base_url": settings.base_url,
        "timeout": settings.timeout,
        # Exactly one retry layer: the transport's, which never retries a budget 429.
        "max_retries": 0,
        "http_client": http_client,
    }


def _parts(settings: NeboSettings | None, kwargs: dict[str, Any]) -> tuple[NeboSettings, dict[str, Any]]:
    """The Nebo settings and the SDK's own keywords, from one keyword set (pure)."""
    fields = {k: kwargs.pop(k) for k in SETTINGS_FIELDS if k in kwargs}
    if settings is not None and any(v is not None for v in fields.values()):
        raise NeboConfigurationError(f"pass either settings= or the fields {sorted(fields)}, not both")
    return (settings if settings is not None else NeboSettings.resolve(**fields)), kwargs


def openai_client(
    *,
    settings: NeboSettings | None = None,
    tracker: BudgetTracker | None = None,
    policy: BudgetPolicy | None = None,
    scope: Scope = None,
    retry: RetryPolicy | None = None,
    transport: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> openai.OpenAI:
    """An ``openai.OpenAI`` pointed at Nebo, with the same budget behaviour as ``NeboClient``.

    Nebo settings come as keywords (``api_key``, ``base_url``, ``timeout``, ``max_retries``,
    ``provider_api_key``, ``bot_id``, ``lane``, ``purpose``; else the ``NEBO_*`` variables)
    or as ``settings=``; every other keyword (``default_headers``, ``organization``...) goes
    to ``openai.OpenAI``. Every request runs through :class:`~nebo_core.transport.NeboTransport`:
    the budget ``policy`` (caps, waits, fallback; a refusal reaches the SDK as a 429), the one
    retry layer, usage records in ``tracker``, stream repair. A call's scope is ``scope=``, or
    the ``X-Nebo-Scope`` header (``extra_headers=`` per call). ``transport`` is the inner
    transport of the SDK's HTTP library (``httpx.HTTPTransport`` on openai 2.x,
    ``httpx2.HTTPTransport`` on 3.x; a ``MockTransport`` in tests).
    """
    openai_mod = _import_openai()
    resolved, openai_kwargs = _parts(settings, kwargs)
    sync_cls, _ = transport_classes(http_module(openai_mod))
    nebo_transport = sync_cls(
        transport, sleep=sleep, settings=resolved, tracker=tracker, policy=policy, retry=retry, scope=scope
    )
    http_client = openai_mod.DefaultHttpxClient(transport=nebo_transport, follow_redirects=False)
    client: openai.OpenAI = openai_mod.OpenAI(**_sdk_kwargs(resolved, openai_kwargs, http_client))
    # Like NeboClient: a client dropped without close() still closes its connections.
    weakref.finalize(client, http_client.close)
    return client


def async_openai_client(
    *,
    settings: NeboSettings | None = None,
    tracker: BudgetTracker | None = None,
    policy: BudgetPolicy | None = None,
    scope: Scope = None,
    retry: RetryPolicy | None = None,
    transport: Any = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    **kwargs: Any,
) -> openai.AsyncOpenAI:
    """The async twin of :func:`openai_client`: an ``openai.AsyncOpenAI`` pointed at Nebo."""
    openai_mod = _import_openai()
    resolved, openai_kwargs = _parts(settings, kwargs)
    _, async_cls = transport_classes(http_module(openai_mod))
    nebo_transport = async_cls(
        transport, sleep=sleep, settings=resolved, tracker=tracker, policy=policy, retry=retry, scope=scope
    )
    http_client = openai_mod.DefaultAsyncHttpxClient(transport=nebo_transport, follow_redirects=False)
    client: openai.AsyncOpenAI = openai_mod.AsyncOpenAI(**_sdk_kwargs(resolved, openai_kwargs, http_client))
    return client
