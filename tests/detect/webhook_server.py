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


@dataclass
class Receiver:
    """``script`` holds one action per request; the last one repeats.

    Actions: ``200`` / ``(429, {"Retry-After": "7"})`` (status, headers); ``"hang"`` (sleep past
    the client's timeout, then 200); ``"reset"`` (abort the TCP connection)."""

    script: list = field(default_factory=lambda: [200])
    received: list[Received] = field(default_factory=list)
    hang_s: float = 1.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    action = receiver.script[min(receiver._calls, len(receiver.script) - 1)]
                    receiver._calls += 1
                    receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                if action == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if action == "hang":
                    time.sleep(receiver.hang_s)
                    action = 200
                status, headers = (action, {}) if isinstance(action, int) else action
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
