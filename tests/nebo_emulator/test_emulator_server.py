"""The HTTP surface: lifecycle, routing of paths, errors, headers on every response, keep-alive."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import threading
import time
from datetime import timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest

from nebo_emulator import NeboEmulator

BUDGET_HEADERS = [
    "x-ratelimit-session-limit-credits",
    "x-ratelimit-session-remaining-credits",
    "x-ratelimit-session-reset",
    "x-ratelimit-weekly-limit-credits",
    "x-ratelimit-weekly-remaining-credits",
    "x-ratelimit-weekly-reset",
    "x-budget-free-available",
    "x-budget-gift-available",
    "x-budget-credits-cents",
    "x-budget-active-pool",
    "x-request-id",
    "date",
]
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Hello"}]}
TLS = ssl.create_default_context()  # built once: httpx loads the CA bundle per client otherwise


def client(emu: NeboEmulator, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or emu.token}"}
    return httpx.Client(base_url=emu.base_url, headers=headers, verify=TLS)


def test_starts_fast_on_a_free_loopback_port() -> None:
    began = time.perf_counter()
    with NeboEmulator() as emu:
        assert time.perf_counter() - began < 0.5
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert emu.base_url.endswith("/v1")
        assert emu.port > 0
        with client(emu) as c:
            assert c.get("/models").status_code == 200


def test_start_stop_without_context_manager() -> None:
    emu = NeboEmulator()
    with pytest.raises(RuntimeError):
        _ = emu.base_url
    emu.start()
    try:
        with client(emu) as c:
            assert c.get("/usage").status_code == 200
    finally:
        emu.stop()
    emu.stop()  # idempotent


def test_two_emulators_do_not_share_state() -> None:
    with NeboEmulator() as a, NeboEmulator() as b:
        with client(a) as c:
            c.post("/chat/completions", json=CHAT)
        assert len(a.ledger) == 1
        assert b.ledger == []
        assert a.port != b.port


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/chat/completions", CHAT),
        ("POST", "/chat/completions", {**CHAT, "stream": True}),
        ("POST", "/embeddings", {"model": "neboloop/nebo-embed-small", "input": "hi"}),
        ("GET", "/models", None),
        ("GET", "/models/gpt-5.2", None),
        ("GET", "/usage", None),
        ("GET", "/nope", None),
        ("POST", "/chat/completions", {"messages": []}),
        ("POST", "/chat/completions", {**CHAT, "model": "gpt-9"}),
    ],
)
def test_every_response_carries_the_budget_headers(
    nebo_emulator: NeboEmulator, method: str, path: str, body: object
) -> None:
    with client(nebo_emulator) as c, c.stream(method, path, json=body) as response:
        response.read()
        for name in BUDGET_HEADERS:
            assert name in response.headers, name
        assert response.headers["x-budget-active-pool"] in {"free", "gift", "plan", "credits"}


def test_error_responses_carry_headers_too(nebo_emulator: NeboEmulator) -> None:
    with httpx.Client(verify=TLS) as c:
        response = c.get(nebo_emulator.base_url + "/models")
    assert response.status_code == 401
    for name in BUDGET_HEADERS:
        assert name in response.headers


def test_date_header_follows_the_emulator_clock(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.clock.advance(3 * 86400)
    with client(nebo_emulator) as c:
        response = c.get("/models")
    assert parsedate_to_datetime(response.headers["date"]) == nebo_emulator.clock.now().replace(microsecond=0)
    assert nebo_emulator.clock.now() - timedelta(days=3) < parsedate_to_datetime(response.headers["date"])


def test_unknown_path_is_an_openai_style_404(nebo_emulator: NeboEmulator) -> None:
    with client(nebo_emulator) as c:
        response = c.post("/completions", json={})
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "/v1/completions" in error["message"]


def test_wrong_method_is_405(nebo_emulator: NeboEmulator) -> None:
    with client(nebo_emulator) as c:
        response = c.get("/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_malformed_json_is_400(nebo_emulator: NeboEmulator) -> None:
    with client(nebo_emulator) as c:
        response = c.post(
            "/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "auto"}, "messages"),
        ({"model": "auto", "messages": []}, "messages"),
        ({"model": "auto", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "auto", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({**CHAT, "n": 0}, "n"),
        ({**CHAT, "max_tokens": -5}, "max_tokens"),
        ({**CHAT, "stop": [1, 2]}, "stop"),
        ({**CHAT, "stream": "yes"}, "stream"),
        ({**CHAT, "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({**CHAT, "tool_choice": "required"}, "tool_choice"),
        ({**CHAT, "response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"model": "neboloop/nebo-embed-small"}, "input"),
    ],
)
def test_missing_or_bad_fields_are_400_naming_the_field(
    nebo_emulator: NeboEmulator, body: dict[str, object], param: str
) -> None:
    path = "/embeddings" if body.get("model") == "neboloop/nebo-embed-small" else "/chat/completions"
    with client(nebo_emulator) as c:
        response = c.post(path, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert param in error["message"] or param.split(".")[-1] in error["message"]


def test_keep_alive_serves_many_requests_on_one_connection(nebo_emulator: NeboEmulator) -> None:
    with client(nebo_emulator) as c:
        for _ in range(5):
            assert c.post("/chat/completions", json=CHAT).status_code == 200
            with c.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as s:
                s.read()
        assert c.get("/usage").status_code == 200
    assert nebo_emulator.requests == 11


def test_request_ids_are_unique_and_match_the_ledger(nebo_emulator: NeboEmulator) -> None:
    with client(nebo_emulator) as c:
        ids = [c.post("/chat/completions", json=CHAT).headers["x-request-id"] for _ in range(3)]
    assert len(set(ids)) == 3
    assert [e.request_id for e in nebo_emulator.ledger] == ids


def test_concurrent_streams_are_served_in_parallel(nebo_emulator: NeboEmulator) -> None:
    nebo_emulator.latency = 0.3
    results: list[int] = []

    def one(c: httpx.Client) -> None:
        with c.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as s:
            s.read()
            results.append(s.status_code)

    with client(nebo_emulator) as c:
        threads = [threading.Thread(target=one, args=(c,)) for _ in range(6)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
    assert results == [200] * 6
    assert elapsed < 1.2  # served one by one, 6 x 0.3 s would take 1.8 s


def test_serve_prints_url_and_token_and_stops_on_ctrl_c() -> None:
    code = "from nebo_emulator import serve; serve(port=0)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        base_url = first.rsplit(" ", 1)[-1].strip()
        token = ""
        for _ in range(3):
            line = proc.stdout.readline()
            if line.startswith("export NEBO_API_KEY="):
                token = line.split("=", 1)[1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        with httpx.Client(verify=TLS) as c:
            response = c.get(base_url + "/usage", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert json.loads(response.text)["plan"] == "plus"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
