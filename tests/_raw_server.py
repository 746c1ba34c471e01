"""A scriptable raw HTTP/1.1 server on loopback, shared by every suite that needs one (the fault
matrix, the LangChain and LlamaIndex adapters, the tracing fakes); not the emulator.

Each request the server reads is recorded (method, path, headers, body) and answered by the
next *reply* of its script: a list of steps written straight to the socket (bytes, pauses, a
cut connection, or a hang that never answers), a whole :class:`Reply`, or a function of the
recorded request that returns either (to echo a header back). When the script is empty, the
server's ``default`` answers (or, without one, an "unexpected" 500). Every response closes its
connection, so no test depends on connection reuse. The server runs in background threads;
``close()`` stops them.

Load it through ``tests/conftest.py``, which registers it as ``nebo_test_raw_server`` (test
modules and conftests are imported with ``--import-mode=importlib`` and cannot import siblings).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

# --- what the server saw ------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as read from the socket (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body as JSON (``None`` for an empty body)."""
        return json.loads(self.body) if self.body else None

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string, parsed (``parse_qs``)."""
        return parse_qs(urlsplit(self.path).query)


# --- the steps of a reply ------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """Write these bytes to the socket."""

    data: bytes


@dataclass(frozen=True)
class Pause:
    """Wait before the next step."""

    seconds: float


@dataclass(frozen=True)
class Cut:
    """Close the connection now; ``reset`` sends a TCP RST instead of a FIN."""

    reset: bool = False


@dataclass(frozen=True)
class Hang:
    """Never answer: hold the connection until the client gives up (or the server stops)."""


Step = Write | Pause | Cut | Hang
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def head(status: int, headers: Headers = ()) -> bytes:
    """A status line and headers (plus ``Connection: close``), up to the blank line."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if not any(k.lower() == "connection" for k, _ in items):
        items.append(("Connection", "close"))
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    lines += [f"{k}: {v}" for k, v in items]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def respond(
    status: int,
    body: bytes | str = b"",
    headers: Headers | None = None,
    content_type: str | None = "application/json",
) -> list[Step]:
    """A complete response with a ``Content-Length``."""
    content = body.encode() if isinstance(body, str) else body
    h = dict(headers or {})
    if content_type is not None:
        h.setdefault("Content-Type", content_type)
    h["Content-Length"] = str(len(content))
    return [Write(head(status, h) + content)]


def respond_json(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> list[Step]:
    return respond(status, json.dumps(obj), headers)


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


def sse(
    events: Sequence[bytes | str],
    headers: Mapping[str, str] | None = None,
    *,
    delay: float = 0.0,
    end: bool = True,
) -> list[Step]:
    """An event stream, chunked (so a cut is visible to the client), one chunk per event, with
    ``delay`` seconds between events; ``end=False`` leaves the body unterminated (cut it yourself)."""
    h = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **(headers or {})}
    h["Transfer-Encoding"] = "chunked"
    steps: list[Step] = [Write(head(200, h))]
    for i, event in enumerate(events):
        if i and delay:
            steps.append(Pause(delay))
        steps.append(Write(chunk(event.encode() if isinstance(event, str) else event)))
    if end:
        steps.append(Write(LAST_CHUNK))
    return steps


@dataclass(frozen=True)
class Reply:
    """A whole response, for tests that script answers rather than socket steps: a status, a body
    (bytes and text as is, anything else as JSON), a content type and extra headers, sent after
    ``delay`` seconds (to make a client time out)."""

    body: Any = None
    status: int = 200
    content_type: str = "application/json"
    headers: Headers = ()
    delay: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return self.body.encode() if isinstance(self.body, str) else json.dumps(self.body).encode()

    def steps(self) -> list[Step]:
        pause: list[Step] = [Pause(self.delay)] if self.delay else []
        return [*pause, *respond(self.status, self.payload(), self.headers, self.content_type)]


Answer = Sequence[Step] | Reply
Script = Answer | Callable[[Seen], Answer]


def empty_json(*methods: str) -> Callable[[Seen], Reply]:
    """A ``default`` for a fake endpoint: ``{}`` to these methods, a 501 to any other."""

    def answer(seen: Seen) -> Reply:
        if seen.method in methods:
            return Reply(b"{}")
        return Reply(b"Unsupported method", status=501, content_type="text/plain")

    return answer


# --- the server ---------------------------------------------------------------------------------


class RawServer:
    """A loopback HTTP server answering each request with the next reply of its script, then
    with ``default`` (a function of the request), or without one an "unexpected" 500."""

    def __init__(self, name: str = "nebo", default: Callable[[Seen], Answer] | None = None) -> None:
        self.name = name
        self.requests: list[Seen] = []
        self.unexpected: list[Seen] = []
        self._default = default
        self._script: list[Script] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name=f"raw-{name}", daemon=True)
        self._acceptor.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    @property
    def count(self) -> int:
        """Requests read so far (each fully, before any answer was written)."""
        with self._lock:
            return len(self.requests)

    def script(self, *replies: Script) -> RawServer:
        """Answer the next requests with these replies, in order (then with the default)."""
        with self._lock:
            self._script = list(replies)
        return self

    def repeat(self, reply: Script, times: int) -> RawServer:
        return self.script(*([reply] * times))

    def answer(self, *replies: Script) -> RawServer:
        """Queue these replies after those already scripted."""
        with self._lock:
            self._script.extend(replies)
        return self

    # -- threads ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name=f"raw-{self.name}-conn", daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            seen = self._read_request(conn)
            if seen is None:
                return
            with self._lock:
                self.requests.append(seen)
                reply = self._script.pop(0) if self._script else self._default
                if reply is None:
                    self.unexpected.append(seen)
            if reply is None:
                answer: Answer = respond_json(
                    500, {"error": {"message": f"unexpected request to the {self.name} server"}}
                )
            else:
                answer = reply(seen) if callable(reply) else reply
            self._play(conn, answer.steps() if isinstance(answer, Reply) else answer)
        except OSError:
            pass  # the client went away: what it saw is the test's business
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _play(self, conn: socket.socket, steps: Sequence[Step]) -> None:
        for step in steps:
            if self._stop.is_set():
                return
            if isinstance(step, Write):
                conn.sendall(step.data)
            elif isinstance(step, Pause):
                self._stop.wait(step.seconds)
            elif isinstance(step, Cut):
                if step.reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            elif isinstance(step, Hang):
                self._hang(conn)
                return
        try:
            conn.shutdown(socket.SHUT_WR)  # a clean end of the (Connection: close) response
        except OSError:
            pass

    def _hang(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        while not self._stop.is_set():
            try:
                if conn.recv(4096) == b"":
                    return  # the client gave up and closed
            except TimeoutError:
                continue

    def _read_request(self, conn: socket.socket) -> Seen | None:
        conn.settimeout(5.0)
        data = b""
        while b"\r\n\r\n" not in data:
            part = conn.recv(65536)
            if not part:
                return None
            data += part
        raw_head, _, rest = data.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = rest
        while len(body) < length:
            part = conn.recv(65536)
            if not part:
                break
            body += part
        return Seen(method, path, headers, body[:length])

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() at once (Linux)
        except OSError:
            pass
        self._listener.close()
        self._acceptor.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
