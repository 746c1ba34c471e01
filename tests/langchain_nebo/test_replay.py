"""Replay: ChatNebo and NeboEmbeddings run from vcrpy cassettes with sockets disabled.

By default (``--record-mode=none``) no server runs and every socket is blocked; the
cassettes in ``cassettes/langchain`` answer. ``make record`` (``--record-mode=rewrite``)
re-records them against the emulator, or against the live API when ``NEBO_API_KEY`` is
set. Requests match on method, path and body, so the
emulator's random port never matters; secrets are filtered out before anything is written.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_socket
import yaml

from langchain_nebo import ChatNebo, NeboEmbeddings

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes" / "langchain"
SECRET_HEADERS = {"authorization", "x-provider-api-key", "x-bot-id"}
PROVIDER_KEY = "sk-provider-SECRET-replay"
BOT_ID = "6b1f4d0e-0000-4000-8000-replaybot001"


@pytest.fixture
def replay_model_args(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Emulator-backed arguments when recording; a dead loopback URL and no sockets when replaying."""
    from nebo_core import BudgetPolicy, BudgetTracker

    common = {
        "provider_api_key": PROVIDER_KEY,
        "bot_id": BOT_ID,
        "tracker": BudgetTracker(),
        "policy": BudgetPolicy(),
        "max_retries": 0,
    }
    if (request.config.getoption("--record-mode") or "none") == "none":
        pytest_socket.disable_socket(allow_unix_socket=True)  # asyncio loops use socketpair()
        try:
            yield {"api_key": "replay-token", "base_url": "http://127.0.0.1:9/v1", **common}
        finally:
            pytest_socket.enable_socket()
        return
    if os.environ.get("NEBO_API_KEY"):
        # Recording against the live API: key and URL from NEBO_*; no fake BYOK key upstream.
        common.pop("provider_api_key")
        yield common
        return
    from nebo_emulator import NeboEmulator

    with NeboEmulator(quirks=True, strict_openai=False, latency=0.0) as emu:
        yield {"api_key": emu.token, "base_url": emu.base_url, **common}


@pytest.mark.vcr
def test_replay_invoke(replay_model_args: dict[str, Any]) -> None:
    msg = ChatNebo(model="gpt-5-mini", **replay_model_args).invoke(
        "Context: the lake is cold. Question: is the lake cold?"
    )
    assert "cold" in msg.content
    assert msg.response_metadata["nebo"]["cost_micro"] > 0
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["total_tokens"] > 0


@pytest.mark.vcr
def test_replay_stream(replay_model_args: dict[str, Any]) -> None:
    chunks = list(ChatNebo(model="gpt-5-mini", **replay_model_args).stream("Say something about trees"))
    assert sum(1 for c in chunks if c.content) > 1
    assert [c for c in chunks if c.usage_metadata] == [chunks[-1]]
    assert chunks[-1].response_metadata["nebo"]["snapshot"]["session"]["remaining_micro"] is not None


@pytest.mark.vcr
def test_replay_tool_call(replay_model_args: dict[str, Any]) -> None:
    def get_mayor(city: str) -> str:
        """Return the mayor of a city."""
        return city

    model = ChatNebo(model="gpt-5-mini", **replay_model_args).bind_tools([get_mayor], tool_choice="get_mayor")
    msg = model.invoke("Who is the mayor of Rome?")
    assert msg.tool_calls[0]["name"] == "get_mayor"
    assert "Rome" in msg.tool_calls[0]["args"]["city"]


@pytest.mark.vcr
def test_replay_async_and_embeddings(replay_model_args: dict[str, Any]) -> None:
    async def run() -> tuple[Any, list[list[float]]]:
        msg = await ChatNebo(model="gpt-5-mini", **replay_model_args).ainvoke("Name a colour of the sky")
        vectors = await NeboEmbeddings(**replay_model_args).aembed_documents(["sky", "sea"])
        return msg, vectors

    msg, vectors = asyncio.run(run())
    assert msg.content
    assert len(vectors) == 2
    assert len(vectors[0]) == 1536


def test_cassettes_hold_no_secrets() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert len(files) >= 4, "cassettes are missing: run `make record`"
    for path in files:
        text = path.read_text()
        assert PROVIDER_KEY not in text
        assert BOT_ID not in text
        assert not re.search(r"Bearer\s+(?!REDACTED)\S", text), path.name
        for interaction in yaml.safe_load(text)["interactions"]:
            headers = {k.lower(): v for k, v in interaction["request"]["headers"].items()}
            for name in SECRET_HEADERS & headers.keys():
                assert headers[name] == ["REDACTED"], f"{path.name}: {name} not scrubbed"
            assert "authorization" in headers  # it was sent, and then scrubbed
