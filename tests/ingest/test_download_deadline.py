"""``sources.download_timeout_s`` is a wall-clock deadline for the whole download, headers included.

A loopback server drips bytes slower than any sane upload but faster than the per-read socket
timeout (so only the whole-download deadline can stop it), in the status line and headers, in a
body with a length and in a body without one; another lies with ``Content-Length: -1``. The
time bounds are generous guards against a hang, not performance checks.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dupwatch.config import SourceConfig
from dupwatch.errors import PermanentError, TransientError
from ingest.sources import VideoSource

DEADLINE_S = 2.0
DRIP_EVERY_S = 0.1
GUARD_S = 10.0


class _Dripper(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(30)
        request = b""
        while b"\r\n\r\n" not in request:
            data = conn.recv(4096)
            if not data:
                return
            request += data
        path = request.split(b" ", 2)[1].decode()
        try:
            if path == "/drip-headers":
                self._drip(conn, b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 10_000)
            elif path == "/drip-body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                self._drip(conn, b"\0" * 100_000)
            elif path == "/drip-body-no-length":
                conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                self._drip(conn, b"\0" * 100_000)
            elif path == "/negative-length":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\nConnection: close\r\n\r\nabc")
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass  # the client hung up (its deadline)

    @staticmethod
    def _drip(conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            conn.sendall(data[i : i + 1])
            time.sleep(DRIP_EVERY_S)


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Dripper)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _source(tmp_path: Path) -> VideoSource:
    return VideoSource(SourceConfig(
        http_allow_hosts=["127.0.0.1"], allow_private_addresses=True, temp_dir=tmp_path,
        connect_timeout_s=1.0, read_timeout_s=1.0, download_timeout_s=DEADLINE_S,
    ))


@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body", "/drip-body-no-length"])
def test_dripping_server_is_cut_at_the_download_deadline(server: int, path: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        _source(tmp_path).open(f"http://127.0.0.1:{server}{path}")
    elapsed = time.monotonic() - started
    assert info.value.reason == "source_timeout", info.value
    assert "download_timeout_s" in str(info.value)
    assert DEADLINE_S * 0.9 <= elapsed < DEADLINE_S + GUARD_S
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_negative_content_length_is_a_permanent_error(server: int, tmp_path: Path) -> None:
    with pytest.raises(PermanentError) as info:
        _source(tmp_path).open(f"http://127.0.0.1:{server}/negative-length")
    assert info.value.reason == "source_http_invalid"
