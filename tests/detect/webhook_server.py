"""A scripted webhook receiver on 127.0.0.1 (real HTTP server in a thread) for the tests."""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


class LoopbackHttpServer:
    """A real HTTP server on 127.0.0.1, served from a daemon thread. Subclasses answer POSTs in
    :meth:`handle` (``request`` is the ``BaseHTTPRequestHandler``, ``body`` the read body)."""

    path = "/hook"

    def start(self, poll_interval: float = 0.02) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.handle(self, body)

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True)
        self.thread.start()

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError

    @staticmethod
    def reset(request: BaseHTTPRequestHandler) -> None:
        """Abort the TCP connection (RST) without an answer."""
        request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        request.close_connection = True
        request.connection.close()

    @staticmethod
    def reply(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str] | None = None, body: bytes = b"ok") -> None:
        request.send_response(status)
        for k, v in (headers or {}).items():
            request.send_header(k, v)
        request.send_header("content-length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Receiver(LoopbackHttpServer):
    """``script`` holds one action per request; the last one repeats.

    Actions: ``200`` / ``(429, {"Retry-After": "7"})`` (status, headers); ``"hang"`` (sleep past
    the client's timeout, then 200); ``"reset"`` (abort the TCP connection)."""

    script: list = field(default_factory=lambda: [200])
    received: list[Received] = field(default_factory=list)
    hang_s: float = 1.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self.start()

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._lock:
            action = self.script[min(self._calls, len(self.script) - 1)]
            self._calls += 1
            self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
        if action == "reset":
            self.reset(request)
            return
        if action == "hang":
            time.sleep(self.hang_s)
            action = 200
        status, headers = (action, {}) if isinstance(action, int) else action
        self.reply(request, status, headers)
