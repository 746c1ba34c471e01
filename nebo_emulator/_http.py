"""The HTTP/1.1 layer: a threading loopback server that reads requests and writes replies.

Plain responses carry ``Content-Length`` and keep the connection alive; SSE streams
use chunked transfer encoding, so they keep it alive too. A dropped-stream fault closes
the socket without the terminating chunk, exactly what a client sees when a proxy
cuts a stream. ``stop()`` wakes the accept loop through a socket pair, so shutting down
takes milliseconds rather than a poll interval.
"""

from __future__ import annotations

import selectors
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nebo_emulator._app import App, HttpRequest, Reply


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nebo-emulator"
    # Headers, body and SSE chunks are separate writes: without TCP_NODELAY each stalls on delayed ACKs.
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are closed, as Nebo's load balancer does (section 11)
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the emulator runs inside test suites."""

    def _dispatch(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.app.handle(HttpRequest(self.command, self.path, headers, body))
        try:
            if reply.events is None:
                self._send_body(reply)
            else:
                self._send_stream(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _start(self, reply: Reply) -> None:
        self.send_response_only(reply.status)
        self.send_header("Server", self.server_version)
        for name, value in reply.headers:
            self.send_header(name, value)

    def _send_body(self, reply: Reply) -> None:
        self._start(reply)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.drop_after is not None:
            self.wfile.write(reply.body[: len(reply.body) // 2])
            self._drop()
            return
        self.wfile.write(reply.body)

    def _send_stream(self, reply: Reply) -> None:
        self._start(reply)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for sent, event in enumerate(reply.events or []):
            if reply.drop_after is not None and sent >= reply.drop_after:
                self._drop()
                return
            data = f"data: {event.data}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        if reply.drop_after is not None:
            self._drop()
            return
        self.wfile.write(b"0\r\n\r\n")

    def _drop(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # the default backlog of 5 stalls bursts of concurrent connects

    def __init__(self, address: tuple[str, int], app: App) -> None:
        super().__init__(address, _Handler)
        self.timeout = 0.5
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its keep-alive connection is normal, not a traceback on stderr.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def close_open_connections(self) -> None:
        with self._open_lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class HttpServer:
    """A started-on-demand loopback server for ``app``, stoppable in milliseconds."""

    def __init__(self, app: App, host: str, port: int) -> None:
        self._server = _Server((host, port), app)
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nebo-emulator", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return (host if isinstance(host, str) else bytes(host).decode(), int(port))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._server.close_open_connections()
        self._server.server_close()
        self._wake_r.close()
        self._wake_w.close()

    def _loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server.socket, selectors.EVENT_READ, "accept")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.data == "accept" and not self._stopping.is_set():
                        self._server.handle_request()
