"""Shared machinery for the benchmarks: timing, tables, the machine, transports and the emulator process.

Every benchmark measures this project and its anchor in the same run, against the same
in-memory transport or the same emulator process, so ratios compare like with like. The
in-memory transports replay bytes captured from the emulator (or, for the 2,000-chunk stream,
a standard OpenAI SSE body), so no side gets an easier server than another.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MOCK_BASE_URL = "http://127.0.0.1:9/v1"
"""Base URL for in-memory transports: loopback, so no client refuses plain HTTP, and never dialled."""
CHAT_MODEL = "nebo-1"
EMBED_MODEL = "neboloop/nebo-embed-small"
HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}


# -- timing --------------------------------------------------------------------------------------


def per_call_us(fn: Callable[[], object], *, calls: int, rounds: int, warmup: int) -> list[float]:
    """Microseconds per call of ``fn``: one mean per round (``calls`` calls each), after a warm-up."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - start) / calls * 1e6)
    return out


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def ratio(value: float | None, base: float | None) -> str:
    """``value / base`` as ``"0.42x"``, or ``"-"`` when either is missing."""
    if value is None or base is None or base == 0 or value != value or base != base:
        return "-"
    return f"{value / base:.2f}x"


def fmt(value: float | None, digits: int = 0) -> str:
    """A number for a table cell; ``-`` when missing."""
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


# -- tables and results --------------------------------------------------------------------------


@dataclass
class Table:
    """One result table: a title, a header row, rows and notes; printed and written to results.md."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |"]
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        widths = [
            max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
            for i, h in enumerate(self.header)
        ]
        sep = "  "
        out = [self.title, sep.join(h.ljust(w) for h, w in zip(self.header, widths))]
        out.append(sep.join("-" * w for w in widths))
        out += [sep.join(c.ljust(w) for c, w in zip(row, widths)) for row in self.rows]
        out += [f"  * {note}" for note in self.notes]
        return "\n".join(out) + "\n"


def machine() -> dict[str, str]:
    """CPU model, cores, Python and OS of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "OS": platform.platform(),
    }


PACKAGES = (
    "nebo-integrations",
    "openai",
    "httpx",
    "httpx2",
    "langchain-core",
    "langchain-openai",
    "llama-index-core",
    "llama-index-llms-openai",
    "llama-index-llms-openai-like",
    "llama-index-embeddings-openai",
    "llama-index-embeddings-openai-like",
    "pyinstrument",
)


def versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages the benchmarks touch (``-`` when absent)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def try_import(name: str) -> ModuleType | None:
    """``name`` imported, or ``None`` when it (or a dependency) is not importable yet."""
    try:
        return importlib.import_module(name)
    except Exception:
        return None


# -- transports ------------------------------------------------------------------------------------


def openai_http_module() -> ModuleType:
    """The httpx flavour the installed openai SDK is built on (``httpx`` for 2.x, ``httpx2`` for 3.x)."""
    base = importlib.import_module("openai._base_client")
    return importlib.import_module(base.httpx.__name__.split(".")[0])


@dataclass(frozen=True)
class Canned:
    """A captured response: status, headers (hop-by-hop ones removed) and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def capture(base_url: str, token: str, path: str, payload: dict[str, Any]) -> Canned:
    """POST ``payload`` to the emulator once and keep the reply, to replay it in memory."""
    import httpx

    with httpx.Client(timeout=30) as client:
        response = client.post(base_url + path, json=payload, headers={"Authorization": f"Bearer {token}"})
        body = response.read()
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() not in HOP_HEADERS)
    return Canned(response.status_code, headers, body)


def mock_transport(http: ModuleType, canned: Canned) -> Any:
    """An ``http.MockTransport`` that answers every request with ``canned``."""

    def handler(request: Any) -> Any:
        request.read()
        return http.Response(canned.status, headers=list(canned.headers), content=canned.body)

    return http.MockTransport(handler)


def mock_client(http: ModuleType, canned: Canned, *, is_async: bool = False) -> Any:
    """An ``http.Client`` (or ``AsyncClient``) whose transport answers every request with ``canned``."""
    transport = mock_transport(http, canned)
    return http.AsyncClient(transport=transport) if is_async else http.Client(transport=transport)


def load() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews every number."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def sse_body(chunks: int, *, model: str = CHAT_MODEL) -> tuple[bytes, str]:
    """A standard OpenAI SSE body of ``chunks`` content deltas, a stop, a usage chunk and ``[DONE]``."""
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000}
    head["model"] = model
    events = []
    words = []
    for i in range(chunks):
        delta: dict[str, Any] = {"content": f"w{i} "}
        if i == 0:
            delta["role"] = "assistant"
        words.append(delta["content"])
        events.append({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks, "cost_micro": 900}
    events.append({**head, "choices": [], "usage": usage})
    body = "".join(f"data: {json.dumps(e, separators=(',', ':'))}\n\n" for e in events) + "data: [DONE]\n\n"
    return body.encode(), "".join(words)


# -- the emulator in its own process ---------------------------------------------------------------


class EmulatorProcess:
    """A :mod:`bench._server` child process; ``base_url`` and ``token`` once started."""

    def __init__(self, *, latency: float = 0.0, memo_embeddings: bool = False) -> None:
        args = [sys.executable, "-m", "bench._server", "--latency", str(latency)]
        if memo_embeddings:
            args.append("--memo-embeddings")
        pipe = subprocess.PIPE
        # The stdlib server prints a traceback for every connection a client resets: keep them
        # out of the tables, but show them if the server never starts.
        self._log = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(args, cwd=ROOT, stdin=pipe, stdout=pipe, stderr=self._log, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self.close()
            self._log.seek(0)
            raise RuntimeError(f"the emulator process did not start:\n{self._log.read()[-2000:]}")
        info = json.loads(line)
        self.base_url: str = info["base_url"]
        self.token: str = info["token"]

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmulatorProcess(base_url={getattr(self, 'base_url', None)!r})"
