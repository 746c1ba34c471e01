"""Runs one Nebo emulator in its own process for the benchmarks, so server work never holds the client's GIL.

Started by :class:`bench._common.EmulatorProcess`; prints one JSON line (base URL and token) on
stdout and serves until stdin closes. ``--memo-embeddings`` caches the emulator's hashed
embedding of each text and its base64 form, so a warmed-up server spends its time on the
configured latency and on JSON, and the embedding benchmark measures the client on a
latency-bound workload (the real Nebo computes embeddings on accelerators, not in this
process's one Python thread).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--memo-embeddings", action="store_true")
    parser.add_argument("--strict-openai", action="store_true")
    args = parser.parse_args()

    from nebo_emulator import NeboEmulator

    if args.memo_embeddings:
        from nebo_emulator import _app

        _app.embed = functools.lru_cache(maxsize=None)(_app.embed)  # type: ignore[attr-defined]
        encode = _app.encode_base64  # type: ignore[attr-defined]
        encoded: dict[int, str] = {}  # keyed by id(): the cached vectors live as long as the cache

        def encode_cached(vector: list[float]) -> str:
            key = id(vector)
            if key not in encoded:
                encoded[key] = encode(vector)
            return encoded[key]

        _app.encode_base64 = encode_cached  # type: ignore[attr-defined]

    limit = 10**15  # never the binding constraint: the benchmarks measure speed, not budgets
    with NeboEmulator(
        latency=args.latency,
        strict_openai=args.strict_openai,
        session_limit_micro=limit,
        weekly_limit_micro=limit,
    ) as emu:
        sys.stdout.write(json.dumps({"base_url": emu.base_url, "token": emu.token}) + "\n")
        sys.stdout.flush()
        sys.stdin.read()  # serve until the parent closes the pipe (or exits)


if __name__ == "__main__":
    main()
