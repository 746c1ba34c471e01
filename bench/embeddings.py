"""Benchmark 3, embedding throughput: texts per second on a latency-bound workload, and peak memory.

One emulator process adds 50 ms to every request (and memoizes its hashed embeddings, warmed up
before timing, so the server's own Python is not the bottleneck). Each configuration runs in a
fresh worker process, so peak RSS is its own: ``NeboEmbedding`` vs ``OpenAILikeEmbedding``
(LlamaIndex) and ``NeboEmbeddings`` vs ``OpenAIEmbeddings`` (LangChain), each at its defaults
and at its best settings (the fastest of a few batch-size/concurrency candidates, all within
the server's 2,048-inputs-per-request limit). Vectors are 256 wide (``dimensions=256``) for
every side, to keep 20,000 of them in memory cheaply.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench._common import EMBED_MODEL, ROOT, EmulatorProcess, Table, fmt, ratio

N_TEXTS = 20_000
DIMS = 256
SLOW_N = 2_000
"""Texts for a configuration that sends 10 texts per request serially (2,000 requests at 50 ms each)."""


def texts(n: int) -> list[str]:
    """``n`` distinct short texts (about a dozen tokens each)."""
    return [f"note {i}: a short remark on topic {i % 97} and item {i * 7 % 1013}" for i in range(n)]


@dataclass(frozen=True)
class Config:
    """One way to run one side: ``params`` go to the constructor; ``mode`` picks sync or async calls."""

    side: str
    label: str
    mode: str = "sync"
    params: dict[str, Any] = field(default_factory=dict)
    n: int = N_TEXTS


def _build(cfg: Config, base_url: str, token: str) -> Any:
    if cfg.side == "NeboEmbeddings":
        from langchain_nebo import NeboEmbeddings

        return NeboEmbeddings(
            model=EMBED_MODEL, api_key=token, base_url=base_url, dimensions=DIMS, **cfg.params
        )
    if cfg.side == "OpenAIEmbeddings":
        from langchain_openai import OpenAIEmbeddings

        # No tiktoken: it would download its tables (no network here); the inputs are short anyway.
        return OpenAIEmbeddings(
            model=EMBED_MODEL,
            api_key=token,
            base_url=base_url,
            dimensions=DIMS,
            check_embedding_ctx_length=False,
            tiktoken_enabled=False,
            **cfg.params,
        )
    if cfg.side == "NeboEmbedding":
        from llama_index_nebo import NeboEmbedding

        return NeboEmbedding(EMBED_MODEL, api_key=token, base_url=base_url, dimensions=DIMS, **cfg.params)
    if cfg.side == "OpenAILikeEmbedding":
        from llama_index.embeddings.openai_like import OpenAILikeEmbedding

        return OpenAILikeEmbedding(
            model_name=EMBED_MODEL, api_key=token, api_base=base_url, dimensions=DIMS, **cfg.params
        )
    raise ValueError(f"unknown side {cfg.side!r}")


def _embed(model: Any, cfg: Config, inputs: list[str]) -> list[list[float]]:
    langchain = cfg.side.endswith("Embeddings")
    if cfg.mode == "async":
        if langchain:
            return asyncio.run(model.aembed_documents(inputs))  # type: ignore[no-any-return]
        return asyncio.run(model.aget_text_embedding_batch(inputs))  # type: ignore[no-any-return]
    if langchain:
        return model.embed_documents(inputs)  # type: ignore[no-any-return]
    return model.get_text_embedding_batch(inputs)  # type: ignore[no-any-return]


class _RssPeak:
    """Samples this process's resident set every 2 ms: the peak growth over the start, in MiB."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self.start = self.peak = self._rss()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _loop(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def growth_mib(self) -> float:
        self._stop.set()
        self._thread.join()
        return (max(self.peak, self._rss()) - self.start) / 2**20


def worker(cfg: Config, base_url: str, token: str) -> dict[str, Any]:
    """Run one configuration in this process: throughput, RSS growth, and a fingerprint of the vectors."""
    model = _build(cfg, base_url, token)
    _embed(model, cfg, texts(3))  # imports, connections, lazy set-up: not part of the timing
    inputs = texts(cfg.n)
    rss = _RssPeak()
    start = time.perf_counter()
    vectors = _embed(model, cfg, inputs)
    elapsed = time.perf_counter() - start
    growth = rss.growth_mib()
    if len(vectors) != cfg.n or any(len(v) != DIMS for v in (vectors[0], vectors[-1])):
        raise AssertionError(f"got {len(vectors)} vectors of width {len(vectors[0])}")
    return {
        "texts_per_s": cfg.n / elapsed,
        "seconds": elapsed,
        "peak_rss_growth_mb": growth,
        # texts 0 and 99 exist in every run: equal fingerprints mean every side got the same vectors
        "fingerprint": [round(x, 4) for x in (*vectors[0][:3], *vectors[99][:3])],
    }


def _run_worker(cfg: Config, base_url: str, token: str) -> dict[str, Any]:
    job = json.dumps({"cfg": cfg.__dict__, "base_url": base_url, "token": token})
    proc = subprocess.run(
        [sys.executable, "-m", "bench.embeddings", "--worker"],
        cwd=ROOT,
        input=job,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:160]}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


DEFAULTS = [
    Config("OpenAILikeEmbedding", "defaults (10 per request, serial)", n=SLOW_N),
    Config("NeboEmbedding", "defaults"),
    Config("OpenAIEmbeddings", "defaults (1,000 per request, serial)"),
    Config("NeboEmbeddings", "defaults"),
]
CANDIDATES = {
    "OpenAILikeEmbedding": [
        Config(
            "OpenAILikeEmbedding",
            "async, 2,048/req, 10 workers",
            "async",
            {"embed_batch_size": 2048, "num_workers": 10},
        ),
        Config(
            "OpenAILikeEmbedding",
            "async, 500/req, 40 workers",
            "async",
            {"embed_batch_size": 500, "num_workers": 40},
        ),
    ],
    "NeboEmbedding": [
        Config(
            "NeboEmbedding",
            "async, 2,048/req, 10 workers",
            "async",
            {"embed_batch_size": 2048, "num_workers": 10},
        ),
        Config(
            "NeboEmbedding", "sync, 500/req, 40 workers", "sync", {"embed_batch_size": 500, "num_workers": 40}
        ),
        Config(
            "NeboEmbedding",
            "async, 500/req, 40 workers",
            "async",
            {"embed_batch_size": 500, "num_workers": 40},
        ),
    ],
    "OpenAIEmbeddings": [
        Config("OpenAIEmbeddings", "sync, 2,048/req", "sync", {"chunk_size": 2048}),
        Config("OpenAIEmbeddings", "async, 2,048/req", "async", {"chunk_size": 2048}),
    ],
    "NeboEmbeddings": [
        Config(
            "NeboEmbeddings",
            "sync, 2,048/req, 10 concurrent",
            "sync",
            {"chunk_size": 2048, "max_concurrency": 10},
        ),
        Config(
            "NeboEmbeddings",
            "sync, 500/req, 40 concurrent",
            "sync",
            {"chunk_size": 500, "max_concurrency": 40},
        ),
        Config(
            "NeboEmbeddings",
            "async, 500/req, 40 concurrent",
            "async",
            {"chunk_size": 500, "max_concurrency": 40},
        ),
    ],
}
PAIRS = [("NeboEmbedding", "OpenAILikeEmbedding"), ("NeboEmbeddings", "OpenAIEmbeddings")]


def run(quick: bool = False) -> tuple[list[Table], dict[str, Any]]:
    """The throughput table and, per side, the default and best results (for the targets)."""
    from bench._common import try_import

    available = {
        "NeboEmbedding": try_import("llama_index_nebo") is not None,
        "OpenAILikeEmbedding": try_import("llama_index.embeddings.openai_like") is not None,
        "NeboEmbeddings": try_import("langchain_nebo") is not None,
        "OpenAIEmbeddings": try_import("langchain_openai") is not None,
    }
    scale = 10 if quick else 1
    rows: list[tuple[Config, dict[str, Any]]] = []
    with EmulatorProcess(latency=0.05, memo_embeddings=True) as emu:
        from nebo_core import BudgetTracker, NeboClient

        with NeboClient(api_key=emu.token, base_url=emu.base_url, tracker=BudgetTracker()) as warm:
            warm.embed(texts(N_TEXTS // scale), model=EMBED_MODEL, dimensions=DIMS, concurrency=10)
        for cfg in [*DEFAULTS, *(c for cs in CANDIDATES.values() for c in cs)]:
            cfg = Config(cfg.side, cfg.label, cfg.mode, cfg.params, max(cfg.n // scale, 100))
            if not available[cfg.side]:
                rows.append((cfg, {"error": "not importable in this environment"}))
                continue
            rows.append((cfg, _run_worker(cfg, emu.base_url, emu.token)))
    summary: dict[str, Any] = {}
    for side in available:
        mine = [(c, r) for c, r in rows if c.side == side and "error" not in r]
        default = next((r for c, r in mine if c.label.startswith("defaults")), None)
        best = max(mine, key=lambda cr: cr[1]["texts_per_s"], default=None)
        summary[side] = {
            "default": default,
            "best": best[1] if best else None,
            "best_label": best[0].label if best else None,
        }
    table = Table(
        f"Embedding throughput: short texts, 50 ms per request, dimensions={DIMS}",
        ["side", "settings", "texts", "texts/s", "peak RSS growth (MiB)", "vs anchor (same kind)"],
    )
    anchor_of = {n: a for n, a in PAIRS}
    fingerprints = {json.dumps(r["fingerprint"]) for _, r in rows if "fingerprint" in r}
    for cfg, res in rows:
        if "error" in res:
            table.add(cfg.side, cfg.label, f"{cfg.n:,}", "n/a", "-", res["error"])
            continue
        vs = "-"
        anchor = summary.get(anchor_of.get(cfg.side, ""))
        if anchor:
            kind = "default" if cfg.label.startswith("defaults") else "best"
            if anchor[kind]:
                vs = ratio(res["texts_per_s"], anchor[kind]["texts_per_s"]) + f" (vs its {kind})"
        mark = " **(best)**" if summary[cfg.side]["best"] is res else ""
        table.add(
            cfg.side,
            cfg.label + mark,
            f"{cfg.n:,}",
            fmt(res["texts_per_s"]),
            fmt(res["peak_rss_growth_mb"], 1),
            vs,
        )
    table.notes += [
        f"Each row is one fresh process; 'best' is the fastest of the candidate rows for that side. "
        f"OpenAILikeEmbedding at defaults embeds {max(SLOW_N // scale, 100):,} texts (10 per request, "
        "serially, would take ~2 minutes for 20,000); its rate is per text, so it compares directly.",
        "OpenAIEmbeddings runs with check_embedding_ctx_length=False and tiktoken_enabled=False (tiktoken "
        "downloads its tables on first use, and there is no network); everything else is at its defaults.",
        "All vectors agree across sides: "
        + ("yes." if len(fingerprints) <= 1 else f"NO ({len(fingerprints)} different fingerprints)."),
    ]
    return [table], summary


def target_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for >= 5x at defaults and >= 1.3x at best, per framework."""
    out = []
    for mine, anchor in PAIRS:
        for kind, goal in (("default", 5.0), ("best", 1.3)):
            target = f"{mine} throughput >= {goal}x {anchor} at {kind} settings"
            m, a = summary.get(mine, {}).get(kind), summary.get(anchor, {}).get(kind)
            if not (m and a):
                out.append((target, "not measured", "-"))
                continue
            value = m["texts_per_s"] / a["texts_per_s"]
            out.append((target, f"{value:.2f}x", "met" if value >= goal else "MISSED"))
    return out


if __name__ == "__main__" and "--worker" in sys.argv:
    job = json.loads(sys.stdin.read())
    os.environ.pop("OPENAI_API_KEY", None)
    result = worker(Config(**job["cfg"]), job["base_url"], job["token"])
    sys.stdout.write(json.dumps(result) + "\n")
