"""The ``openai`` SDK, made Nebo-safe: ``openai_client()`` and ``async_openai_client()``.

They return a plain ``openai.OpenAI`` / ``openai.AsyncOpenAI`` pointed at Nebo (settings from
:class:`~nebo_core.settings.NeboSettings`, never ``OPENAI_*``), with the SDK's own retries off
and a transport underneath (:mod:`nebo_core._sdk_transport`) that records every response into
the tracker, retries only transient failures, and repairs Nebo's streams into standard ones.
Works with openai 2.x (on ``httpx``) and 3.x (on ``httpx2``); ``openai`` is imported only
when a client is built, so ``import nebo_core`` stays cheap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from nebo_core import _sdk_transport as sdk
from nebo_core import wire
from nebo_core.errors import NeboConfigurationError
from nebo_core.retry import RetryPolicy
from nebo_core.settings import NeboSettings, Secret
from nebo_core.tracker import BudgetTracker, default_tracker

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


def _sdk_kwargs(settings: NeboSettings, openai_kwargs: Mapping[str, Any], http_client: Any) -> dict[str, Any]:
    """Keyword arguments for ``openai.OpenAI`` / ``AsyncOpenAI`` (pure)."""
    if "http_client" in openai_kwargs:
        raise NeboConfigurationError(
            "http_client= cannot be passed through: the Nebo client owns the SDK's HTTP client (its "
            "transport records budgets and retries); pass transport= instead (your own inner transport "
            "for proxies, certificates or tests)"
        )
    headers = wire.request_headers(settings)
    headers.pop(wire.H_AUTHORIZATION)  # the SDK sends the key it is given
    headers.pop("Accept", None)  # the SDK picks JSON or SSE per call
    headers.update(openai_kwargs.get("default_headers") or {})
    return {
        **openai_kwargs,
        "api_key": settings.api_key.get_secret_value(),
        "base_url": settings.base_url,
        "timeout": settings.timeout,
        "default_headers": headers,
        # Exactly one retry layer: the transport's, which never retries a budget 429.
        "max_retries": 0,
        "http_client": http_client,
    }


def _parts(
    openai_mod: ModuleType,
    settings: NeboSettings | None,
    tracker: BudgetTracker | None,
    retry: RetryPolicy | None,
    fields: dict[str, Any],
) -> tuple[NeboSettings, ModuleType, sdk.TransportCore]:
    """Settings, the SDK's HTTP library and the transport core, shared by both factories."""
    if settings is None:
        settings = NeboSettings.resolve(**fields)
    hx = sdk.http_module(openai_mod)
    policy = retry or RetryPolicy(max_retries=settings.max_retries)
    core = sdk.TransportCore(
        hx, tracker if tracker is not None else default_tracker(), policy, settings.account
    )
    return settings, hx, core


def openai_client(
    *,
    api_key: str | Secret | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    provider_api_key: str | Secret | None = None,
    bot_id: str | None = None,
    lane: str | None = None,
    purpose: str | None = None,
    settings: NeboSettings | None = None,
    tracker: BudgetTracker | None = None,
    retry: RetryPolicy | None = None,
    transport: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    **openai_kwargs: Any,
) -> openai.OpenAI:
    """An ``openai.OpenAI`` pointed at Nebo that feeds ``tracker`` and survives Nebo's quirks.

    ``transport`` is the inner transport of the SDK's HTTP library (``httpx.HTTPTransport`` on
    openai 2.x, ``httpx2.HTTPTransport`` on 3.x; a ``MockTransport`` in tests). Other keyword
    arguments (``default_headers``, ``organization``...) go to ``openai.OpenAI``.
    """
    openai_mod = _import_openai()
    fields = {
        "api_key": api_key,
        "base_url": base_url,
        "timeout": timeout,
        "max_retries": max_retries,
        "provider_api_key": provider_api_key,
        "bot_id": bot_id,
        "lane": lane,
        "purpose": purpose,
    }
    resolved, hx, core = _parts(openai_mod, settings, tracker, retry, fields)
    http_client = openai_mod.DefaultHttpxClient(transport=sdk.sync_transport(hx, core, transport, sleep))
    client: openai.OpenAI = openai_mod.OpenAI(**_sdk_kwargs(resolved, openai_kwargs, http_client))
    return client


def async_openai_client(
    *,
    api_key: str | Secret | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    provider_api_key: str | Secret | None = None,
    bot_id: str | None = None,
    lane: str | None = None,
    purpose: str | None = None,
    settings: NeboSettings | None = None,
    tracker: BudgetTracker | None = None,
    retry: RetryPolicy | None = None,
    transport: Any = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    **openai_kwargs: Any,
) -> openai.AsyncOpenAI:
    """The async twin of :func:`openai_client`: an ``openai.AsyncOpenAI`` pointed at Nebo."""
    openai_mod = _import_openai()
    fields = {
        "api_key": api_key,
        "base_url": base_url,
        "timeout": timeout,
        "max_retries": max_retries,
        "provider_api_key": provider_api_key,
        "bot_id": bot_id,
        "lane": lane,
        "purpose": purpose,
    }
    resolved, hx, core = _parts(openai_mod, settings, tracker, retry, fields)
    http_client = openai_mod.DefaultAsyncHttpxClient(
        transport=sdk.async_transport(hx, core, transport, sleep)
    )
    client: openai.AsyncOpenAI = openai_mod.AsyncOpenAI(**_sdk_kwargs(resolved, openai_kwargs, http_client))
    return client
