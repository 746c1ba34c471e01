"""Profiles one benchmark side with pyinstrument, to find where a missed target's time goes.

``python -m bench.profile chat "ChatNebo.invoke" [--calls 300]`` or
``python -m bench.profile stream "ChatNebo.stream"``: the same in-memory transport as the
benchmark, the named side called repeatedly under the profiler, and the call tree printed
(library frames folded, so the project's own functions and their time shares stand out).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench import chat, streaming
from bench._common import CHAT_MODEL, MOCK_BASE_URL, Canned, EmulatorProcess, capture, sse_body


def _side(kind: str, name: str) -> Any:
    with EmulatorProcess() as emu:
        if kind == "chat":
            canned = capture(
                emu.base_url, emu.token, "/chat/completions", {"model": CHAT_MODEL, "messages": chat.MESSAGES}
            )
            sides: dict[str, Any] = chat._sides(MOCK_BASE_URL, emu.token, canned)
        else:
            payload = {"model": CHAT_MODEL, "messages": streaming.MESSAGES, "stream": True}
            headers = capture(emu.base_url, emu.token, "/chat/completions", payload).headers
            sides = streaming._sides(emu.token, Canned(200, headers, sse_body(streaming.CHUNKS)[0]))
    side = sides.get(name)
    if side is None or isinstance(side, str):
        raise SystemExit(f"no runnable side {name!r}: {side or 'choose from ' + json.dumps(list(sides))}")
    return side


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["chat", "stream"])
    parser.add_argument("side", help='a row name from the table, e.g. "ChatNebo.invoke"')
    parser.add_argument("--calls", type=int, default=300, help="calls (chat) or streams/10 (stream)")
    args = parser.parse_args(argv)
    from pyinstrument import Profiler

    side = _side(args.kind, args.side)
    calls = args.calls if args.kind == "chat" else max(args.calls // 10, 3)
    for _ in range(5 if args.kind == "chat" else 1):
        side() if args.kind == "chat" else list(side())
    profiler = Profiler(interval=0.0002)
    profiler.start()
    for _ in range(calls):
        side() if args.kind == "chat" else list(side())
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
