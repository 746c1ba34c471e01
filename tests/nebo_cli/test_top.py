"""``nebo top``: the frame matches the store number for number, the text frame is pinned by a
snapshot, the live loop draws what it is asked to, and bad input is one clear error."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import asdict, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nebo_cli._main import EXIT_CONFIG, EXIT_CONNECTION, main
from nebo_cli._top import CLEAR_SCREEN, HOME_AND_CLEAR, lanes_from, live
from nebo_cli._view import KeyParts, TopFrame, render_top, split_key
from nebo_core.budget import BudgetSnapshot, WindowState
from nebo_core.caps import Cap
from nebo_core.client import NeboClient
from nebo_core.forecast import BudgetForecast, WindowForecast
from nebo_core.policy import BudgetPolicy
from nebo_core.stores import InMemoryBudgetStore, LineUsage, RedisBudgetStore
from nebo_core.tracker import BudgetTracker

SNAPSHOTS = Path(__file__).parent / "snapshots"
LINE_FIELDS = [f.name for f in fields(LineUsage)]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NEBO_API_KEY", "NEBO_BASE_URL", "NEBO_MAX_RETRIES", "NEBO_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def conn(emu: Any) -> list[str]:
    return ["--api-key", emu.token, "--base-url", emu.base_url]


# -- line keys read back ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("job-42", KeyParts("job-42", "scope", "job-42", None, 0)),
        ("*", KeyParts("*", "scope", "*", None, 0)),
        ("*@day:2026-12-02", KeyParts("*", "scope", "*", "day:2026-12-02", 0)),
        ("org=acme", KeyParts("org=acme", "org", "acme", None, 0)),
        (
            "org=acme/tenant=t1@day:2026-12-02",
            KeyParts("org=acme/tenant=t1", "tenant", "t1", "day:2026-12-02", 1),
        ),
        (
            "org=acme/tenant=t1/user=u42@last:3600",
            KeyParts("org=acme/tenant=t1/user=u42", "user", "u42", "last:3600", 2),
        ),
        ("org=acme@week:2026-W49", KeyParts("org=acme", "org", "acme", "week:2026-W49", 0)),
        ("user=a=b", KeyParts("user=a=b", "user", "a=b", None, 0)),
        # garbage never raises
        ("", KeyParts("", "scope", "", None, 0)),
        ("@", KeyParts("@", "scope", "@", None, 0)),
        ("a@b", KeyParts("a@b", "scope", "a@b", None, 0)),
        ("mail@example.com", KeyParts("mail@example.com", "scope", "mail@example.com", None, 0)),
        ("//", KeyParts("//", "scope", "//", None, 0)),
        ("org=", KeyParts("org=", "org", "", None, 0)),
    ],
)
def test_split_key(key: str, expected: KeyParts) -> None:
    assert split_key(key) == expected


# -- the text frame, pinned ---------------------------------------------------------------

AT = datetime(2026, 12, 2, 14, 0, 0, tzinfo=timezone.utc)


def fixed_frame(lanes: dict[str, dict[str, int]] | None) -> TopFrame:
    snapshot = BudgetSnapshot(
        session=WindowState("session", 10_000_000, 2_500_000, AT + timedelta(minutes=42)),
        weekly=WindowState("weekly", 50_000_000, 31_000_000, AT + timedelta(days=3, hours=5)),
        observed_at=AT,
        account="acct-1",
    )
    forecast = BudgetForecast(
        account="acct-1",
        session=WindowForecast(
            "session", 10_000_000, 2_500_000, 42 * 60.0, 1_250.0, 900.0, 12, {"chat": 250}
        ),
        weekly=WindowForecast("weekly", 50_000_000, 31_000_000, 277_200.0, 40.0, 35.5, 12),
        at=AT,
    )
    lines = (
        LineUsage("org=acme", 1_200_000, 30_000, 2, 0, 5_000_000),
        LineUsage("org=acme/tenant=t1@day:2026-12-02", 900_000, 30_000, 2, 12_000, 1_000_000),
        LineUsage("org=acme/tenant=t1/user=u42@last:3600", 450_000, 10_000, 1, 0, 500_000),
        LineUsage("org=acme/tenant=t2@day:2026-12-02", 300_000, 0, 0, 0, 1_000_000),
        LineUsage("*", 5_000, 0, 0, 0, None),
    )
    return TopFrame(AT, "redis namespace fleet", "acct-1", snapshot, forecast, lines, lanes)


def test_rendered_frame_matches_the_snapshot() -> None:
    lanes = {"heartbeat": {"held": 7, "booked": 3}, "main": {"held": 0, "booked": 40}, "x": {}}
    text = render_top(fixed_frame(lanes), ascii=True)
    expected = (SNAPSHOTS / "top_frame.txt").read_text(encoding="utf-8")
    assert text + "\n" == expected


def test_frame_without_lanes_or_store_omits_those_sections() -> None:
    frame = fixed_frame(None)
    text = render_top(TopFrame(frame.at, "local", None, frame.snapshot, frame.forecast, None), ascii=True)
    assert "LANE" not in text
    assert "no budget store" in text
    assert "account -" in text
    empty = render_top(TopFrame(AT, "local", None, None, None, ()), ascii=True)
    assert "no budget snapshot for this account yet" in empty
    assert "forecast: unknown" in empty
    assert "no lines in the store yet" in empty


def test_lanes_come_from_a_lanes_callable_when_there_is_one() -> None:
    class Paced:
        def lanes(self) -> dict[str, dict[str, Any]]:
            return {"main": {"held": 1, "booked": 2}, "events": "garbage", "comm": {"held": True}}

    assert lanes_from(object(), Paced()) == {
        "main": {"held": 1, "booked": 2},
        "comm": {"held": 0, "booked": 0},
    }
    assert lanes_from(InMemoryBudgetStore(), object()) is None


# -- the live loop ------------------------------------------------------------------------


class FakeClock:
    """Time that moves only when slept (and by a fixed cost per frame)."""

    def __init__(self, frame_cost: float = 0.0) -> None:
        self.now = 100.0
        self.frame_cost = frame_cost
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_live_draws_count_frames_on_ticks_from_the_start() -> None:
    t = FakeClock()
    out = io.StringIO()
    n = 0

    def draw() -> str:
        nonlocal n
        n += 1
        t.now += 0.2  # a frame that takes 0.2 s: the next sleep is shorter, the ticks stay on time
        return f"frame {n}"

    assert live(draw, out, interval=0.5, count=3, redraw=False, sleep=t.sleep, clock=t.clock) == 3
    assert out.getvalue() == "frame 1\nframe 2\nframe 3\n"
    assert t.sleeps == [0.3, 0.3]


def test_live_redraws_in_place_on_a_terminal_and_stops_at_ctrl_c() -> None:
    t = FakeClock()
    out = io.StringIO()
    frames = iter(["a\nb", "c\nd"])

    def draw() -> str:
        try:
            return next(frames)
        except StopIteration:
            raise KeyboardInterrupt from None

    assert live(draw, out, interval=0.5, count=None, redraw=True, sleep=t.sleep, clock=t.clock) == 2
    assert out.getvalue() == (CLEAR_SCREEN + HOME_AND_CLEAR + "a\nb\n" + HOME_AND_CLEAR + "c\nd\n" + "\n")


# -- against a real Redis store and the emulator ------------------------------------------

SCOPES = [
    {"org": "acme", "tenant": "t1", "user": "u1"},
    {"org": "acme", "tenant": "t1", "user": "u2"},
    {"org": "acme", "tenant": "t2", "user": "u3"},
]


@pytest.mark.redis
def test_top_json_shows_exactly_what_the_store_holds(emu: Any, redis_url: str, capsys) -> None:
    namespace = f"top-{uuid.uuid4().hex[:8]}"
    caps = [
        Cap("org", 5_000_000),
        Cap("tenant", 2_000_000, "day"),
        Cap("user", 1_000_000, timedelta(hours=1)),
    ]
    store = RedisBudgetStore.from_url(redis_url, namespace=namespace)
    try:
        policy = BudgetPolicy(caps=caps, store=store)
        body = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "Say hello to the fleet."}]}
        with NeboClient(
            api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker(), policy=policy
        ) as client:
            for scope in SCOPES + SCOPES[:1]:
                client.chat(body, scope=scope)
            account = client.settings.account
        # a call in flight: held on every level of its scope, not yet settled
        held = store.reserve_lines(policy.lines(SCOPES[2]), "gpt-5-mini", 4_321, 60.0, account)
        assert held.reservation is not None

        argv = ["top", "--once", "--json", "--redis", redis_url, "--namespace", namespace, *conn(emu)]
        assert main(argv) == 0
        frame = json.loads(capsys.readouterr().out)

        lines = store.lines()
        snapshot = store.snapshot(account)
    finally:
        store.close()

    assert snapshot is not None
    assert frame["account"] == account
    assert frame["source"] == f"redis namespace {namespace}"
    assert frame["snapshot"] == snapshot.to_dict()
    assert [{k: line[k] for k in LINE_FIELDS} for line in frame["lines"]] == [asdict(line) for line in lines]
    # every level of the nested caps is a line, with spend, the hold in flight and its cap
    by_level = {(line["level"], line["id"]): line for line in frame["lines"]}
    assert set(by_level) == {("org", "acme"), ("tenant", "t1"), ("tenant", "t2")} | {
        ("user", u) for u in ("u1", "u2", "u3")
    }
    assert by_level[("org", "acme")]["cap_micro"] == 5_000_000
    assert by_level[("org", "acme")]["spent_micro"] == emu.ledger_total_micro()
    assert by_level[("tenant", "t2")]["in_flight"] == 1
    assert by_level[("tenant", "t2")]["reserved_micro"] == 4_321
    assert by_level[("user", "u3")]["period"] == "last:3600"
    assert by_level[("tenant", "t1")]["period"].startswith("day:")
    org = by_level[("org", "acme")]
    assert org["remaining_micro"] == 5_000_000 - org["spent_micro"] - org["reserved_micro"]
    # one frame: one reading, so the forecast is still collecting
    assert frame["forecast"]["session"]["samples"] == 1
    assert frame["forecast"]["session"]["burn_rate_micro_per_s"] is None
    assert frame["lanes"] is None

    argv = ["top", "--once", "--redis", redis_url, "--namespace", namespace, "--account", account]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"nebo top | redis namespace {namespace} | account {account} |")
    assert "  org=acme " in text
    assert "      user=u3 " in text
    assert "forecast: collecting (1 reading;" in text


def test_top_without_a_store_polls_usage(emu: Any, capsys) -> None:
    assert main(["top", "--once", *conn(emu)]) == 0
    text = capsys.readouterr().out
    assert "local tracker (polling /v1/usage)" in text
    assert "session (5 h)" in text
    assert "no budget store" in text

    argv = ["top", "--json", "--frames", "3", "--interval", "0.01", *conn(emu)]
    assert main(argv) == 0
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["forecast"]["session"]["samples"] for f in frames] == [1, 2, 3]
    assert frames[-1]["forecast"]["session"]["burn_rate_micro_per_s"] == 0.0
    assert frames[-1]["lines"] is None


# -- bad input: one clear line, no traceback ----------------------------------------------


def assert_one_clear_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ")
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_bad_redis_url_is_a_configuration_error(capsys) -> None:
    assert main(["top", "--once", "--redis", "http://user:secret@127.0.0.1:6379"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert_one_clear_error(err, "--redis must be a URL starting with redis://")
    assert "secret" not in err


def test_unreachable_redis_is_a_connection_error(capsys) -> None:
    assert main(["top", "--once", "--redis", "redis://127.0.0.1:1/0"]) == EXIT_CONNECTION
    assert_one_clear_error(capsys.readouterr().err, "Redis budget store failed", "--redis")


def test_bad_redis_namespace_is_a_configuration_error(capsys) -> None:
    argv = ["top", "--once", "--redis", "redis://127.0.0.1:1/0", "--namespace", "a b"]
    assert main(argv) == EXIT_CONFIG
    assert_one_clear_error(capsys.readouterr().err, "namespace")


@pytest.mark.parametrize("interval", ["0", "-1", "soon", "nan", "inf"])
def test_bad_interval_is_a_usage_error(interval: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["top", "--interval", interval])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --interval" in err
    assert "Traceback" not in err


def test_unreachable_redis_cluster_is_a_connection_error(capsys) -> None:
    argv = ["top", "--once", "--redis", "redis://127.0.0.1:1/0", "--cluster"]
    assert main(argv) == EXIT_CONNECTION
    assert_one_clear_error(capsys.readouterr().err, "Redis budget store failed", "--cluster")


@pytest.mark.redis
def test_top_reads_a_redis_cluster(redis_cluster: str, capsys) -> None:
    namespace = f"top-{uuid.uuid4().hex[:8]}"
    argv = ["top", "--once", "--json", "--redis", redis_cluster, "--cluster", "--namespace", namespace]
    assert main(argv) == 0
    frame = json.loads(capsys.readouterr().out)
    assert frame["lines"] == []
    assert frame["snapshot"] is None
    assert frame["account"] is None
