"""The ``nebo`` command against the emulator: every subcommand, JSON output, and the error paths."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from nebo_cli._main import EXIT_AUTH, EXIT_BUDGET, EXIT_CONFIG, EXIT_CONNECTION, build_parser, main
from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.client import NeboClient
from nebo_core.tracker import BudgetTracker
from nebo_demo import render
from nebo_emulator import NeboEmulator

COMMANDS = ["usage", "top", "models", "chat", "emulator", "demo"]


@pytest.fixture
def emu() -> Iterator[NeboEmulator]:
    with NeboEmulator() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NEBO_API_KEY", "NEBO_BASE_URL", "NEBO_MAX_RETRIES", "NEBO_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def conn(emu: NeboEmulator) -> list[str]:
    return ["--api-key", emu.token, "--base-url", emu.base_url]


# -- help -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nebo" + (f" {command}" if command else ""))
    assert "--api-key" in out
    assert "NEBO_API_KEY" in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_CONFIG
    assert "usage: nebo" in capsys.readouterr().err


def test_global_options_work_after_the_subcommand() -> None:
    args = build_parser().parse_args(["usage", "--base-url", "http://x/v1", "--json"])
    assert args.base_url == "http://x/v1"
    assert args.json is True
    args = build_parser().parse_args(["--api-key", "k", "models"])
    assert args.api_key == "k"
    assert args.debug is False


# -- usage ------------------------------------------------------------------------------


def test_usage_shows_both_windows_pools_and_resets(emu: NeboEmulator, capsys) -> None:
    emu.set_budget(session_remaining_micro=2_500_000, gift_micro=750_000)
    assert main(["usage", *conn(emu)]) == 0
    out = capsys.readouterr().out
    assert "plan: plus" in out
    session = next(line for line in out.splitlines() if "session (5 h)" in line)
    assert "75.0%" in session
    assert "$7.50 of $10.00 used" in session
    assert "resets in 4h" in session
    weekly = next(line for line in out.splitlines() if "weekly (7 d)" in line)
    assert "resets in 6d" in weekly
    assert "gift $0.7500" in out


def test_usage_json_parses(emu: NeboEmulator, capsys) -> None:
    emu.set_budget(session_remaining_micro=4_000_000)
    assert main(["usage", "--json", *conn(emu)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["plan"] == "plus"
    assert data["session"]["limit_micro"] == 10_000_000
    assert data["session"]["remaining_micro"] == 4_000_000
    assert data["session"]["used_fraction"] == pytest.approx(0.6)
    assert data["weekly"]["limit_micro"] == 50_000_000
    assert data["binding_window"] == "session"


def test_usage_json_includes_a_forecast(emu: NeboEmulator, capsys) -> None:
    emu.set_budget(session_remaining_micro=4_000_000)
    assert main(["usage", "--json", *conn(emu)]) == 0
    forecast = json.loads(capsys.readouterr().out)["forecast"]
    assert set(forecast) == {"account", "at", "session", "weekly", "binding"}
    assert forecast["session"]["remaining_micro"] == 4_000_000
    assert forecast["session"]["limit_micro"] == 10_000_000
    assert forecast["session"]["samples"] == 1  # one poll: one reading, no rate yet
    assert forecast["session"]["burn_rate_micro_per_s"] is None
    assert forecast["binding"] == "session"


def test_usage_says_the_forecast_is_collecting_after_one_poll(emu: NeboEmulator, capsys) -> None:
    assert main(["usage", *conn(emu)]) == 0
    assert "forecast: collecting (1 reading; a burn rate needs two" in capsys.readouterr().out


def test_usage_watch_redraws_a_bounded_number_of_frames(emu: NeboEmulator, capsys) -> None:
    assert main(["usage", "--watch", "0.01", "--frames", "3", *conn(emu)]) == 0
    out = capsys.readouterr().out
    assert out.count("Nebo usage (plan: plus)") == 3
    assert "\x1b[" not in out  # not a terminal: frames follow each other, no escape codes
    frames = out.split("\n\nNebo usage")
    assert "forecast: collecting" in frames[0]
    assert "forecast (2 readings)" in frames[1]
    assert "burn $0.00/s ($0.00/h)   no spend seen" in frames[2]


def test_usage_watch_json_measures_the_burn_rate(emu: NeboEmulator, capsys) -> None:
    """A spender in another thread (another process would do the same: the rate comes from the
    server's own counter) makes the watched burn rate positive."""
    stop = threading.Event()

    def spend() -> None:
        body = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "Spend a little."}]}
        with NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker()) as client:
            while not stop.is_set():
                client.chat(body)

    spender = threading.Thread(target=spend)
    spender.start()
    try:
        assert main(["usage", "--watch", "0.05", "--frames", "4", "--json", *conn(emu)]) == 0
    finally:
        stop.set()
        spender.join()
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(frames) == 4
    session = [f["forecast"]["session"] for f in frames]
    assert [s["samples"] for s in session] == [1, 2, 3, 4]
    assert session[0]["burn_rate_micro_per_s"] is None
    assert session[-1]["remaining_micro"] < session[0]["remaining_micro"]
    assert session[-1]["burn_rate_micro_per_s"] > 0
    assert session[-1]["seconds_to_exhaustion"] > 0


@pytest.mark.parametrize("watch", ["0", "-2", "later"])
def test_usage_watch_bad_interval_is_a_usage_error(watch: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["usage", "--watch", watch])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --watch" in err
    assert "Traceback" not in err


# -- models -----------------------------------------------------------------------------


def test_models_table(emu: NeboEmulator, capsys) -> None:
    assert main(["models", *conn(emu)]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert header.split() == ["MODEL", "NAME", "OWNED", "BY", "KIND", "CONTEXT", "IN", "$/1M", "OUT", "$/1M"]
    nebo1 = next(line for line in out.splitlines() if line.startswith("nebo-1 "))
    assert "Nebo 1" in nebo1
    assert "neboai" in nebo1
    assert "200,000" in nebo1


def test_models_json(emu: NeboEmulator, capsys) -> None:
    assert main(["models", "--json", *conn(emu)]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_id = {r["id"]: r for r in rows}
    assert by_id["nebo-1-pro"]["name"] == "Nebo 1 Pro"
    assert by_id["neboloop/nebo-embed-small"]["kind"] == "embedding"
    assert by_id["neboloop/nebo-embed-small"]["dimensions"] == 1536


# -- chat -------------------------------------------------------------------------------


def test_chat_streams_the_answer_then_its_cost(emu: NeboEmulator, capsys) -> None:
    prompt = "Lisbon is the capital of Portugal. What is the capital of Portugal?"
    assert main(["chat", prompt, "--model", "gpt-5-mini", *conn(emu)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Lisbon" in lines[0]
    cost_line = lines[1]
    assert cost_line.startswith("model gpt-5-mini |")
    assert f"({emu.ledger_total_micro()} microdollars), reported by Nebo" in cost_line
    assert emu.ledger_total_micro() > 0
    assert any("session (5 h)" in line for line in lines[2:])


def test_chat_reads_the_prompt_from_stdin(emu: NeboEmulator, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Ana founded the shop. Who founded the shop?"))
    assert main(["chat", "-", *conn(emu)]) == 0
    assert "Ana" in capsys.readouterr().out.splitlines()[0]


def test_chat_empty_prompt_is_a_clear_error(emu: NeboEmulator, capsys) -> None:
    assert main(["chat", "  ", *conn(emu)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("error: the prompt is empty")
    assert emu.requests == 0


def test_chat_budget_exhausted(emu: NeboEmulator, capsys) -> None:
    emu.set_budget(session_remaining_micro=0)
    assert main(["chat", "hello there", "--max-retries", "0", *conn(emu)]) == EXIT_BUDGET
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: budget exhausted")
    assert err[1].startswith("hint:")
    assert "nebo usage" in err[1]


# -- errors -----------------------------------------------------------------------------


def assert_one_clear_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ")
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_no_key_mentions_nebo_api_key(capsys) -> None:
    assert main(["usage"]) == EXIT_CONFIG
    assert_one_clear_error(capsys.readouterr().err, "NEBO_API_KEY", "--api-key")


def test_bad_key_is_a_401(emu: NeboEmulator, capsys) -> None:
    bad = "definitely-not-a-nebo-token"
    assert main(["models", "--api-key", bad, "--base-url", emu.base_url]) == EXIT_AUTH
    captured = capsys.readouterr()
    assert_one_clear_error(captured.err, "401", "NEBO_API_KEY")
    assert bad not in captured.err + captured.out


def test_unreachable_host(capsys) -> None:
    argv = ["usage", "--api-key", "k-123456", "--base-url", "http://127.0.0.1:1/v1", "--max-retries", "0"]
    assert main(argv) == EXIT_CONNECTION
    assert_one_clear_error(capsys.readouterr().err, "could not reach Nebo at http://127.0.0.1:1/v1")


def test_remote_plain_http_is_refused(capsys) -> None:
    assert main(["usage", "--api-key", "k-123456", "--base-url", "http://example.com/v1"]) == EXIT_CONFIG
    assert_one_clear_error(capsys.readouterr().err, "https://")


def test_debug_shows_the_traceback(capsys) -> None:
    argv = ["--debug", "usage", "--api-key", "k", "--base-url", "http://127.0.0.1:1/v1", "--max-retries", "0"]
    assert main(argv) == EXIT_CONNECTION
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "NeboConnectionError" in err


# -- emulator ---------------------------------------------------------------------------


def test_emulator_command_serves_until_interrupted() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEBO_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nebo_cli", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        printed = {}
        for _ in range(4):
            line = proc.stdout.readline()
            if line.startswith("export "):
                key, value = line.strip().removeprefix("export ").split("=", 1)
                printed[key] = value
        assert printed["NEBO_BASE_URL"].startswith("http://127.0.0.1:")
        from nebo_core.client import NeboClient
        from nebo_core.tracker import BudgetTracker

        with NeboClient(
            api_key=printed["NEBO_API_KEY"], base_url=printed["NEBO_BASE_URL"], tracker=BudgetTracker()
        ) as client:
            assert "nebo-1" in {m.id for m in client.models()}
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


# -- rendering (pure) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (0.0, "[..........]"),
        (0.5, "[#####.....]"),
        (1.0, "[##########]"),
        (2.0, "[##########]"),
        (-1.0, "[..........]"),
        (None, "[ unknown  ]"),
    ],
)
def test_bar(fraction: float | None, expected: str) -> None:
    assert render.bar(fraction, 10, ascii=True) == expected


@pytest.mark.parametrize(
    ("micro", "expected"),
    [
        (None, "?"),
        (0, "$0.00"),
        (5, "$0.000005"),
        (12_300, "$0.0123"),
        (428, "$0.000428"),
        (9_999, "$0.009999"),
        (7_500_000, "$7.50"),
        (12_345_678_900, "$12,345.68"),
    ],
)
def test_dollars(micro: int | None, expected: str) -> None:
    assert render.dollars(micro) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, "?"),
        (-5, "0s"),
        (45, "45s"),
        (65, "1m 05s"),
        (4 * 3600 + 300, "4h 05m"),
        (6 * 86400 + 23 * 3600 + 59, "6d 23h"),
    ],
)
def test_duration(seconds: float | None, expected: str) -> None:
    assert render.duration(seconds) == expected


def test_snapshot_with_unknown_windows_says_so() -> None:
    text = render.render_snapshot(BudgetSnapshot(), ascii=True)
    assert "reported no session or weekly window" in text
    assert "credits ?" in text


def test_window_line_with_only_remaining_known() -> None:
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    window = WindowState("weekly", None, 1_000_000, now + timedelta(hours=2))
    line = render.window_line(window, now, ascii=True)
    assert "$1.00 left" in line
    assert "resets in 2h 00m" in line
    assert "?%" in line


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_emulator_port_out_of_range_is_a_usage_error(port: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["emulator", "--port", port])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port" in err
    assert "Traceback" not in err


def test_plain_http_hint_is_about_the_url_not_the_key(capsys) -> None:
    assert main(["--api-key", "k", "--base-url", "http://example.com/v1", "models"]) == EXIT_CONFIG
    hint = capsys.readouterr().err.splitlines()[-1]
    assert hint.startswith("hint: use an https:// URL")
