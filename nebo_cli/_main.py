"""The ``nebo`` command: budget, a live budget view, models, a streamed chat, an emulator, the demo.

``main(argv)`` parses arguments with argparse, runs one subcommand over :class:`NeboClient`
and returns an exit code. Every ``NeboError`` becomes one ``error:`` line and one ``hint:``
line on stderr (no traceback unless ``--debug``), with an exit code per error class, and the
token is scrubbed from anything printed. Rendering lives in :mod:`nebo_demo.render` and
:mod:`nebo_cli._view`, the live views (``nebo top``, ``nebo usage --watch``) in
:mod:`nebo_cli._top`, the demo in :mod:`nebo_demo` (which needs both frameworks, so it is
imported only by ``nebo demo``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import nebo_core
from nebo_cli._top import is_terminal, live, run_top
from nebo_cli._view import render_forecast
from nebo_core.errors import (
    NeboAuthenticationError,
    NeboBadRequestError,
    NeboBudgetExhausted,
    NeboConfigurationError,
    NeboConnectionError,
    NeboError,
    NeboRateLimited,
    NeboStoreError,
    NeboStreamError,
    NeboUpstreamError,
)
from nebo_core.settings import DEFAULT_BASE_URL, ENV_API_KEY, ENV_BASE_URL
from nebo_demo import render

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_AUTH = 3
EXIT_CONNECTION = 4
EXIT_BUDGET = 5
EXIT_INTERRUPTED = 130

_EPILOG = f"""\
configuration: {ENV_API_KEY} (your NeboLoop subscription token), {ENV_BASE_URL} (default {DEFAULT_BASE_URL}),
  NEBO_TIMEOUT, NEBO_MAX_RETRIES; --api-key/--base-url override them.
exit codes: 0 ok, 1 error, 2 configuration, 3 authentication, 4 connection, 5 budget exhausted,
  130 interrupted.
"""


@dataclass(frozen=True)
class _Failure:
    exit_code: int
    headline: str
    hint: str


def _failure(err: NeboError, base_url: str) -> _Failure:
    """What to tell the user about ``err``: one line, one hint, an exit code (most specific first)."""
    # Core messages name the Python argument; at the command line the flag is what to change.
    msg = err.message.replace("api_key=", "--api-key").replace("base_url=", "--base-url")
    if isinstance(err, NeboConfigurationError):
        return _Failure(EXIT_CONFIG, msg, _config_hint(err))
    if isinstance(err, NeboAuthenticationError):
        status = f" (HTTP {err.status})" if err.status else ""
        return _Failure(
            EXIT_AUTH,
            f"Nebo refused the API key{status}: {msg}",
            f"get a fresh token from the NeboLoop dashboard and set {ENV_API_KEY} (or pass --api-key)",
        )
    if isinstance(err, NeboConnectionError):
        return _Failure(
            EXIT_CONNECTION,
            f"could not reach Nebo at {base_url}: {msg}",
            f"check --base-url / {ENV_BASE_URL} and your network; retries: --max-retries",
        )
    if isinstance(err, NeboStoreError):
        return _Failure(
            EXIT_CONNECTION,
            msg,
            "check --redis (redis://host:port/db), that Redis is up, and --cluster for a Redis Cluster",
        )
    if isinstance(err, NeboBudgetExhausted):
        when = f"it resets at {err.reset_at.isoformat()}" if err.reset_at else "wait for a window reset"
        return _Failure(
            EXIT_BUDGET, f"budget exhausted: {msg}", f"{when}, or top up credits; see `nebo usage`"
        )
    if isinstance(err, NeboRateLimited):
        after = f" in {err.retry_after:.0f}s" if err.retry_after is not None else " shortly"
        return _Failure(EXIT_ERROR, f"rate limited by Nebo: {msg}", f"try again{after}")
    if isinstance(err, NeboBadRequestError):
        return _Failure(
            EXIT_ERROR, f"Nebo rejected the request: {msg}", "check the model id with `nebo models`"
        )
    if isinstance(err, (NeboUpstreamError, NeboStreamError)):
        return _Failure(
            EXIT_ERROR, f"Nebo or its upstream failed: {msg}", "try again; add --debug for details"
        )
    return _Failure(EXIT_ERROR, str(err), "add --debug for details")


def _port(text: str) -> int:
    """An argparse type: a TCP port number, 0 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0-65535; 0 picks a free one)")
    return port


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(text: str) -> float:
    """An argparse type: a positive duration in seconds, as ``90``, ``60s``, ``10m``, ``5h`` or ``7d``."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (a number of seconds, or with s, m, h or d: 60s, 10m, 5h, 7d)"
        ) from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"duration {text!r} must be positive and finite")
    return seconds


def _count(text: str) -> int:
    """An argparse type: a positive whole number."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _config_hint(err: NeboConfigurationError) -> str:
    text = err.message.lower()
    if "base url" in text or "plain http" in text:
        return f"use an https:// URL in --base-url / {ENV_BASE_URL} (plain http only to 127.0.0.1)"
    if "no nebo api key" in text or "api_key" in text:
        return f"set {ENV_API_KEY} or pass --api-key; `nebo emulator` serves a local Nebo"
    return "fix the setting the message names; see `nebo --help`"


# -- commands ---------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from nebo_core.client import NeboClient
    from nebo_core.policy import BudgetPolicy
    from nebo_core.tracker import BudgetTracker

    return NeboClient(
        api_key=args.api_key,
        base_url=args.base_url,
        timeout=args.timeout,
        max_retries=args.max_retries,
        tracker=BudgetTracker(),
        policy=BudgetPolicy(),
    )


def _ascii(out: TextIO) -> bool:
    encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "")
    return bool(encoding) and encoding not in ("utf8", "utf16", "utf32")


def _cmd_usage(args: argparse.Namespace, out: TextIO) -> int:
    with _client(args) as client:

        def draw() -> str:
            report = client.usage()  # the client's tracker observes the response: the forecast's reading
            forecast = client.tracker.forecast()
            if args.json:
                data = {**report.to_dict(), "forecast": forecast.to_dict()}
                return json.dumps(data, indent=2 if args.watch is None else None)
            return render.render_usage(report, ascii=_ascii(out)) + "\n" + render_forecast(forecast)

        if args.watch is None:
            print(draw(), file=out)
            return EXIT_OK
        redraw = not args.json and is_terminal(out)
        live(draw, out, interval=args.watch, count=args.frames, redraw=redraw)
    return EXIT_OK


def _cmd_top(args: argparse.Namespace, out: TextIO) -> int:
    return run_top(args, out, _client, ascii=_ascii(out))


def _cmd_models(args: argparse.Namespace, out: TextIO) -> int:
    with _client(args) as client:
        models = client.models()
    if args.json:
        print(json.dumps(render.model_rows(models), indent=2), file=out)
    else:
        print(render.render_models(models), file=out)
    return EXIT_OK


def _chat_body(args: argparse.Namespace, prompt: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"model": args.model, "messages": messages}
    if args.max_tokens is not None:
        body["max_completion_tokens"] = args.max_tokens
    if args.temperature is not None:
        body["temperature"] = args.temperature
    return body


def _cmd_chat(args: argparse.Namespace, out: TextIO) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise NeboConfigurationError('the prompt is empty: pass it as an argument, e.g. nebo chat "hello"')
    with _client(args) as client, client.stream_chat(_chat_body(args, prompt)) as stream:
        for chunk in stream:
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    out.write(text)
                    out.flush()
        print(file=out)
        print(render.render_cost(stream.usage), file=out)
        if stream.snapshot is not None and stream.snapshot.known:
            print(render.render_snapshot(stream.snapshot, ascii=_ascii(out)), file=out)
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace, out: TextIO) -> int:
    from nebo_emulator import serve

    windows = {"session_window_s": args.session_window, "weekly_window_s": args.weekly_window}
    serve(host=args.host, port=args.port, **{k: v for k, v in windows.items() if v is not None})
    return EXIT_OK


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    missing = [name for name in ("langchain", "langchain_core", "llama_index.core") if not _importable(name)]
    if missing:
        raise NeboConfigurationError(
            f"`nebo demo` needs LangChain and LlamaIndex ({', '.join(missing)} missing): "
            "pip install 'nebo-integrations[langchain,llama-index]'"
        )
    from nebo_demo import run_demo

    try:
        return run_demo(api_key=args.api_key, base_url=args.base_url, out=out, ascii=_ascii(out))
    except BaseException:
        print(file=sys.stderr)  # end a progress bar the error interrupted, so `error:` starts a line
        raise


# -- parser -----------------------------------------------------------------------------


def _add_globals(parser: argparse.ArgumentParser, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("connection")
    g.add_argument("--api-key", default=default(None), help=f"Nebo token (default: ${ENV_API_KEY})")
    g.add_argument("--base-url", default=default(None), help=f"API root (default: ${ENV_BASE_URL} or Nebo's)")
    g.add_argument("--timeout", type=float, default=default(None), help="seconds per request")
    g.add_argument("--max-retries", type=int, default=default(None), help="retries of transient failures")
    g.add_argument(
        "--debug", action="store_true", default=default(False), help="show tracebacks and debug logs"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``nebo`` argument parser (global options work before or after the subcommand)."""
    parser = argparse.ArgumentParser(
        prog="nebo",
        description="Nebo from the command line: budget, a live view, models, chat, an emulator, the demo.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nebo-integrations {nebo_core.__version__}")
    _add_globals(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, run: Callable[[argparse.Namespace, TextIO], int]) -> Any:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_globals(p, suppress=True)
        p.set_defaults(run=run)
        return p

    p = command(
        "usage", "show both budget windows (bars, reset times), the forecast and the spend pools", _cmd_usage
    )
    p.add_argument("--json", action="store_true", help="print the usage report and forecast as JSON")
    p.add_argument(
        "--watch",
        type=_duration,
        nargs="?",
        const=1.0,
        default=None,
        metavar="SECONDS",
        help="poll every SECONDS (default 1) and redraw until Ctrl-C; the burn rate shows from the 2nd poll",
    )
    p.add_argument("--frames", type=_count, default=None, help=argparse.SUPPRESS)  # tests: stop after N
    p = command(
        "top",
        "live budget view: windows, burn rate, time to exhaustion, spend per scope and cap, in-flight holds",
        _cmd_top,
    )
    p.add_argument("--redis", metavar="URL", default=None, help="read a fleet's Redis budget store")
    p.add_argument("--cluster", action="store_true", help="the --redis URL is a node of a Redis Cluster")
    p.add_argument("--namespace", default="nebo-budget", help="the store's namespace (default: nebo-budget)")
    p.add_argument(
        "--account", default=None, help="whose snapshot to read from the store (default: the key's account)"
    )
    p.add_argument("--interval", type=_duration, default=0.5, help="seconds between frames (default 0.5)")
    p.add_argument("--once", action="store_true", help="draw one frame and exit")
    p.add_argument("--json", action="store_true", help="one JSON object per frame (JSON Lines)")
    p.add_argument("--frames", type=_count, default=None, help=argparse.SUPPRESS)
    p = command("models", "list the models Nebo serves to this token", _cmd_models)
    p.add_argument("--json", action="store_true", help="print the model list as JSON")
    p = command("chat", "stream one answer, then print what it cost", _cmd_chat)
    p.add_argument("prompt", help='the prompt ("-" reads it from stdin)')
    p.add_argument("--model", default="auto", help="model id (default: auto, Nebo routes)")
    p.add_argument("--system", default=None, help="a system prompt")
    p.add_argument("--max-tokens", type=int, default=None, help="cap on completion tokens")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature")
    p = command("emulator", "serve a local Nebo emulator until Ctrl-C (for your own tests)", _cmd_emulator)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default: 8080; 0 picks a free one)")
    p.add_argument(
        "--session-window", type=_duration, default=None, help="session window length, e.g. 60s (default: 5h)"
    )
    p.add_argument(
        "--weekly-window", type=_duration, default=None, help="weekly window length, e.g. 10m (default: 7d)"
    )
    command(
        "demo",
        "RAG, an agent, the budget and a budget guard, on the live API if NEBO_API_KEY is set, "
        "else on an emulator",
        _cmd_demo,
    )
    return parser


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret and len(secret) >= 4 else text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nebo`` command; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    if args.debug:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("nebo_core").setLevel(logging.DEBUG)

    secret = args.api_key or os.environ.get(ENV_API_KEY)
    try:
        code: int = args.run(args, sys.stdout)
        return code
    except NeboError as err:
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        failure = _failure(err, args.base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL)
        print(_scrub(f"error: {failure.headline}", secret), file=sys.stderr)
        print(_scrub(f"hint: {failure.hint}", secret), file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or a missing optional dependency: still one line, no traceback
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        print(_scrub(f"error: unexpected {type(exc).__name__}: {exc}", secret), file=sys.stderr)
        print("hint: rerun with --debug for the traceback, and please report it", file=sys.stderr)
        return EXIT_ERROR
