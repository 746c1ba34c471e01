"""The token and the provider key never show: not in reprs, logs, errors or serialised records."""

from __future__ import annotations

import logging
import pickle
from types import SimpleNamespace

import httpx
import pytest

from nebo_core import NeboClient, NeboSettings

BODY = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}


def secrets(nb: SimpleNamespace) -> tuple[str, str]:
    return nb.TOKEN, nb.PROVIDER_KEY


def assert_clean(text: str, nb: SimpleNamespace) -> None:
    for secret in secrets(nb):
        assert secret not in text
        assert secret[-8:] not in text  # not even a tail of it


def test_settings_and_client_reprs(nb: SimpleNamespace) -> None:
    settings = NeboSettings.resolve(api_key=nb.TOKEN, provider_api_key=nb.PROVIDER_KEY, environ={})
    client = nb.client(nb.FakeNebo(), provider_api_key=nb.PROVIDER_KEY)
    aclient = nb.async_client(nb.FakeNebo(), provider_api_key=nb.PROVIDER_KEY)
    for obj in (settings, client, aclient, client.settings, settings.api_key, settings.provider_api_key):
        assert_clean(repr(obj), nb)
        assert_clean(str(obj), nb)
    with pytest.raises(TypeError):
        pickle.dumps(settings)  # the secret refuses to travel


def test_logs_during_calls_never_show_secrets(nb: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "nebo_core", "nebo_core.budget"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    fake = nb.FakeNebo(
        nb.error(502),
        nb.ok(
            headers=nb.budget_headers(session_remaining=100_000, session_limit=10_000_000)
        ),  # 99% used: warns
        nb.stream_response(nb.sse(nb.chunk("x", finish="stop", usage=nb.usage())), nb.budget_headers()),
    )
    client = nb.client(fake, provider_api_key=nb.PROVIDER_KEY)
    client.chat(BODY)
    with client.stream_chat(BODY) as stream:
        list(stream)
    assert caplog.records, "expected some log output (httpx request lines, budget warnings)"
    assert any("budget" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert_clean(record.getMessage(), nb)
        assert_clean(repr(record.args), nb)
    assert fake.requests[0].headers["authorization"].endswith(nb.TOKEN)  # it was really sent


@pytest.mark.parametrize(("status", "code"), [(401, "invalid_api_key"), (403, None)])
def test_auth_failure_messages(status: int, code: str | None, nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.error(status, code, "Incorrect API key provided"))
    client = nb.client(fake, provider_api_key=nb.PROVIDER_KEY)
    with pytest.raises(Exception) as info:
        client.chat(BODY)
    err = info.value
    for text in (str(err), repr(err), repr(err.__dict__), repr(pickle.loads(pickle.dumps(err)).__dict__)):
        assert_clean(text, nb)


def test_connection_error_message(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(httpx.ConnectError(f"cannot connect to {nb.BASE_URL}"))
    with pytest.raises(Exception) as info:
        nb.client(fake, max_retries=0).chat(BODY)
    assert_clean(str(info.value), nb)
    assert_clean(repr(info.value.__cause__), nb)


def test_records_and_snapshots_serialise_clean(nb: SimpleNamespace) -> None:
    fake = nb.FakeNebo(nb.ok(headers=nb.budget_headers()))
    client = nb.client(fake, provider_api_key=nb.PROVIDER_KEY)
    res = client.chat(BODY)
    assert_clean(repr(res), nb)
    assert_clean(repr(res.usage.to_dict()), nb)
    assert_clean(repr(client.tracker.totals().to_dict()), nb)


def test_missing_key_error_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEBO_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-should-not-be-used")
    with pytest.raises(Exception, match="NEBO_API_KEY"):
        NeboClient(base_url="https://x.test")
