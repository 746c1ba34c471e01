"""Benchmark 1, chat overhead: microseconds per non-streaming call, this project beside its anchors.

Sides: raw httpx (the floor), the raw openai SDK, ``nebo_core.openai_client()``,
``nebo_core.NeboClient.chat``, ``langchain_openai.ChatOpenAI.invoke``, ``langchain_nebo.ChatNebo.invoke``,
and LangChain's own floor (``FakeListChatModel``). Each runs on an in-memory transport that
replays one emulator reply (so the numbers are pure client overhead), then against the loopback
emulator process (what a call really costs end to end on this machine).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bench._common import (
    CHAT_MODEL,
    MOCK_BASE_URL,
    Canned,
    EmulatorProcess,
    Table,
    capture,
    fmt,
    median,
    mock_client,
    mock_transport,
    openai_http_module,
    per_call_us,
    ratio,
    try_import,
)

PROMPT = "Say hello. Context: the sky is blue."
MESSAGES = [{"role": "user", "content": PROMPT}]
Call = Callable[[], str]


def _sides(base_url: str, token: str, canned: Canned | None) -> dict[str, Call | str]:
    """Name -> a zero-argument call returning the answer text, or a reason the side is unavailable."""
    import httpx

    oa_http = openai_http_module()
    sides: dict[str, Call | str] = {}

    def nebo_http() -> Any:
        return mock_client(httpx, canned) if canned else httpx.Client()

    def oa_http_client() -> Any:
        return mock_client(oa_http, canned) if canned else None

    raw = nebo_http()
    auth = {"Authorization": f"Bearer {token}"}
    body = {"model": CHAT_MODEL, "messages": MESSAGES}
    sides["raw httpx"] = lambda: raw.post(base_url + "/chat/completions", json=body, headers=auth).json()[
        "choices"
    ][0]["message"]["content"]

    import openai

    from nebo_core import BudgetTracker, NeboClient

    sdk = openai.OpenAI(api_key=token, base_url=base_url, http_client=oa_http_client(), max_retries=0)
    sides["openai SDK"] = lambda: (
        sdk.chat.completions.create(
            model=CHAT_MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
        )
        .choices[0]
        .message.content
        or ""
    )

    compat = try_import("nebo_core.openai_compat")
    if compat is None:
        sides["nebo_core.openai_client()"] = "nebo_core.openai_compat is not importable"
    else:
        try:
            kw: dict[str, Any] = {"transport": mock_transport(oa_http, canned)} if canned else {}
            nc = compat.openai_client(api_key=token, base_url=base_url, tracker=BudgetTracker(), **kw)
            sides["nebo_core.openai_client()"] = lambda: (
                nc.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES).choices[0].message.content
            )
        except Exception as exc:  # a side that cannot be built is reported, not fatal
            sides["nebo_core.openai_client()"] = f"{type(exc).__name__}: {exc}"

    core = NeboClient(api_key=token, base_url=base_url, http_client=nebo_http(), tracker=BudgetTracker())
    sides["NeboClient.chat"] = lambda: core.chat(body).data["choices"][0]["message"]["content"]

    from langchain_core.language_models import FakeListChatModel

    fake = FakeListChatModel(responses=["hello"])
    sides["FakeListChatModel (LC floor)"] = lambda: str(fake.invoke(PROMPT).content)

    lco = try_import("langchain_openai")
    if lco is None:
        sides["ChatOpenAI.invoke"] = "langchain_openai is not installed (run in bench/.venv)"
    else:
        kw = {"http_client": oa_http_client()} if canned else {}
        co = lco.ChatOpenAI(model=CHAT_MODEL, api_key=token, base_url=base_url, **kw)
        sides["ChatOpenAI.invoke"] = lambda: str(co.invoke(PROMPT).content)

    lcn = try_import("langchain_nebo")
    if lcn is None or not hasattr(lcn, "ChatNebo"):
        sides["ChatNebo.invoke"] = "langchain_nebo.ChatNebo is not importable yet"
    else:
        try:
            kw = {"http_client": nebo_http()} if canned else {}
            cn = lcn.ChatNebo(model=CHAT_MODEL, api_key=token, base_url=base_url, **kw)
            sides["ChatNebo.invoke"] = lambda: str(cn.invoke(PROMPT).content)
        except Exception as exc:
            sides["ChatNebo.invoke"] = f"{type(exc).__name__}: {exc}"
    return sides


def _measure(sides: dict[str, Call | str], *, calls: int, rounds: int, expect: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, call in sides.items():
        if isinstance(call, str):
            out[name] = call
            continue
        try:
            answer = call()
            if expect is not None and "floor" not in name and answer != expect:
                raise AssertionError(f"answered {answer!r}, expected {expect!r}")
            out[name] = median(per_call_us(call, calls=calls, rounds=rounds, warmup=max(calls // 4, 5)))
        except Exception as exc:
            out[name] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
    return out


def _table(title: str, results: dict[str, Any], floor_key: str = "raw httpx") -> Table:
    header = ["side", "µs/call", "overhead over raw httpx (µs)", "vs ChatOpenAI", "vs openai SDK"]
    table = Table(title, header)
    base = results.get(floor_key)
    anchors = {k: v for k in ("ChatOpenAI.invoke", "openai SDK") if isinstance(v := results.get(k), float)}
    for name, value in results.items():
        if isinstance(value, str):
            table.add(name, "n/a", value, "-", "-")
            continue
        over = value - base if isinstance(base, float) else None
        table.add(
            name,
            fmt(value),
            fmt(over),
            ratio(value, anchors.get("ChatOpenAI.invoke")),
            ratio(value, anchors.get("openai SDK")),
        )
    return table


def target_row(results: dict[str, Any]) -> tuple[str, str, str]:
    """(target, measured, verdict) for ChatNebo overhead <= 0.7x ChatOpenAI's (overhead over raw httpx)."""
    target = "ChatNebo per-call overhead <= 0.7x ChatOpenAI's"
    cn, co, raw = (results.get(k) for k in ("ChatNebo.invoke", "ChatOpenAI.invoke", "raw httpx"))
    if not (isinstance(cn, float) and isinstance(co, float) and isinstance(raw, float)):
        return target, "not measured", "-"
    value = (cn - raw) / (co - raw)
    return target, f"{value:.2f}x", "met" if value <= 0.7 else "MISSED"


def run(quick: bool = False) -> tuple[list[Table], dict[str, Any]]:
    """Both chat tables and the in-memory results (for the targets)."""
    calls, rounds = (50, 3) if quick else (200, 7)
    with EmulatorProcess() as emu:
        canned = capture(
            emu.base_url, emu.token, "/chat/completions", {"model": CHAT_MODEL, "messages": MESSAGES}
        )
        expect = json.loads(canned.body)["choices"][0]["message"]["content"]
        memory = _measure(_sides(MOCK_BASE_URL, emu.token, canned), calls=calls, rounds=rounds, expect=expect)
        loop = _measure(
            _sides(emu.base_url, emu.token, None), calls=max(calls // 4, 10), rounds=rounds, expect=expect
        )
    t1 = _table("Chat overhead, in-memory transport (one replayed emulator reply)", memory)
    t1.notes.append(
        f"Median of {rounds} rounds of {calls} calls. Overhead = µs/call minus raw httpx's. "
        "The target compares overheads: (ChatNebo - raw httpx) / (ChatOpenAI - raw httpx)."
    )
    t2 = _table("Chat overhead, loopback emulator (separate process)", loop)
    t2.notes.append(
        f"Median of {rounds} rounds of {max(calls // 4, 10)} calls; includes the emulator's own work."
    )
    return [t1, t2], memory
