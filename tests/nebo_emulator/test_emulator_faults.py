"""Scripted faults: each kind, counts and order, and the latency setting."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from nebo_emulator import FAULT_KINDS, NeboEmulator

TLS = ssl.create_default_context()
Factory = Callable[..., NeboEmulator]
CHAT = {
    "model": "gpt-5-mini",
    "messages": [
        {"role": "system", "content": "Dragons breathe fire. Cats purr."},
        {"role": "user", "content": "What do dragons breathe?"},
    ],
}


def client(emu: NeboEmulator, **kwargs: Any) -> httpx.Client:
    return httpx.Client(
        base_url=emu.base_url, headers={"Authorization": f"Bearer {emu.token}"}, verify=TLS, **kwargs
    )


def chat(emu: NeboEmulator, **extra: Any) -> httpx.Response:
    with client(emu) as c:
        return c.post("/chat/completions", json={**CHAT, **extra})


@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [("500", 500, "server_error"), ("502", 502, "upstream_error"), ("429", 429, "rate_limit_error")],
)
def test_http_error_faults(nebo_emulator: NeboEmulator, kind: str, status: int, error_type: str) -> None:
    nebo_emulator.inject(kind)
    response = chat(nebo_emulator)
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type
    assert "x-ratelimit-session-remaining-credits" in response.headers
    assert nebo_emulator.ledger == []
    assert chat(nebo_emulator).status_code == 200  # consumed: the next request is served


def test_transient_429_has_retry_after_and_its_code(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.inject("429", retry_after=7)
    response = chat(nebo_emulator)
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_usage_limit_fault_is_the_terminal_429(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.inject("usage_limit")
    response = chat(nebo_emulator)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "USAGE_LIMIT_EXCEEDED"
    assert "retry-after" not in response.headers


def test_faults_apply_to_the_next_count_requests_in_order(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.inject("500", count=2)
    nebo_emulator.inject("502")
    assert nebo_emulator.pending_faults == 3
    assert [chat(nebo_emulator).status_code for _ in range(4)] == [500, 500, 502, 200]
    assert nebo_emulator.requests == 4
    nebo_emulator.inject("500", count=5)
    nebo_emulator.clear_faults()
    assert chat(nebo_emulator).status_code == 200


def test_faults_hit_any_endpoint(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.inject("502")
    with client(nebo_emulator) as c:
        assert c.get("/models").status_code == 502


def test_stream_rate_limit_is_an_error_event_after_a_200(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.inject("stream_rate_limit", retry_after="1.2s")
    with (
        client(nebo_emulator) as c,
        c.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as s,
    ):
        assert s.status_code == 200
        assert "x-ratelimit-session-remaining-credits" in s.headers
        lines = [line for line in s.iter_lines() if line]
    assert len(lines) == 1
    error = json.loads(lines[0][len("data: ") :])["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["retry_after"] == "1.2s"
    assert nebo_emulator.ledger == []


def test_stream_rate_limit_on_a_plain_request_is_a_429(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.inject("stream_rate_limit", retry_after="2m30s")
    response = chat(nebo_emulator)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "150"


@pytest.mark.parametrize("strict", [False, True])
def test_drop_midstream_cuts_the_connection_before_finish_reason(
    nebo_emulator_factory: Factory, strict: bool
) -> None:
    emu = nebo_emulator_factory(strict_openai=strict)
    emu.inject("drop_midstream", after_chunks=2)
    seen: list[dict[str, Any]] = []

    def read_all(s: httpx.Response) -> None:
        for line in s.iter_lines():
            if line:
                seen.append(json.loads(line[len("data: ") :]))

    with client(emu) as c, c.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as s:
        with pytest.raises(httpx.RemoteProtocolError):
            read_all(s)
    assert len(seen) == 2
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in seen)
    (entry,) = emu.ledger
    if not strict:  # what is charged is exactly the last cumulative usage the client saw
        assert entry.cost_micro == seen[-1]["usage"]["cost_micro"]
    assert chat(emu).status_code == 200  # the server survives, the next request is fine


def test_drop_midstream_with_nothing_sent_charges_nothing(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.inject("drop_midstream", after_chunks=0)
    with (
        client(nebo_emulator) as c,
        c.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as s,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            s.read()
    assert nebo_emulator.ledger == []


def test_drop_on_a_plain_response_truncates_the_body(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.inject("drop_midstream")
    with pytest.raises(httpx.RemoteProtocolError):
        chat(nebo_emulator)


def test_malformed_headers(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.inject("malformed_headers")
    response = chat(nebo_emulator)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-session-remaining-credits"] == "not-a-number"
    assert response.headers["x-ratelimit-session-reset"] == "yesterday-ish"
    assert len(response.headers.get_list("x-ratelimit-session-remaining-credits")) == 1
    assert response.json()["usage"]["cost_micro"] == nebo_emulator.ledger[0].cost_micro


@pytest.mark.parametrize("streaming", [False, True])
def test_malformed_body(nebo_emulator: NeboEmulator, streaming: bool) -> None:
    nebo_emulator.inject("malformed_body")
    response = chat(nebo_emulator, stream=streaming)
    assert response.status_code == 200
    payload = response.text[len("data: ") :].strip() if streaming else response.text
    with pytest.raises(json.JSONDecodeError):
        json.loads(payload)
    assert nebo_emulator.ledger == []


def test_delay_fault_trips_a_client_timeout(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.inject("delay", seconds=30)
    with client(nebo_emulator, timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        c.post("/chat/completions", json=CHAT)
    # stop() (fixture teardown) interrupts the 30 s wait at once.


def test_latency_is_added_to_every_request(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.latency = 0.1
    assert nebo_emulator.latency == 0.1
    with client(nebo_emulator) as c:
        began = time.perf_counter()
        c.get("/models")
        assert time.perf_counter() - began >= 0.1


def test_unknown_kinds_and_params_are_refused(nebo_emulator: NeboEmulator) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        nebo_emulator.inject("teapot")
    with pytest.raises(ValueError, match="no parameter"):
        nebo_emulator.inject("500", retry_after=3)
    with pytest.raises(ValueError):
        nebo_emulator.inject("500", count=0)
    assert set(FAULT_KINDS) == {
        "500",
        "502",
        "429",
        "stream_rate_limit",
        "drop_midstream",
        "delay",
        "malformed_headers",
        "malformed_body",
        "usage_limit",
    }
