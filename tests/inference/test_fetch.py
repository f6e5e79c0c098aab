"""fetch(): local http.server on 127.0.0.1 with Range support, dropped connections, sha256 checks."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inference.fetch import ChecksumError, TooLargeError, fetch, rewrite_base_url

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class State:
    files: dict[str, bytes] = {}
    drop_first: bool = False
    honour_range: bool = True
    requests: list[tuple[str, str | None]] = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        name = self.path.rsplit("/", 1)[-1]
        rng = self.headers.get("Range")
        State.requests.append((self.path, rng))
        data = State.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if rng and State.honour_range:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if State.drop_first:
            State.drop_first = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server() -> Iterator[str]:
    State.files = {"blob.bin": PAYLOAD}
    State.drop_first, State.honour_range, State.requests = False, True, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_plain_download_and_checksum(server: str, tmp_path: Path) -> None:
    out = fetch(f"{server}/x/blob.bin", tmp_path, sha256=SHA)
    assert out == tmp_path / "blob.bin" and out.read_bytes() == PAYLOAD
    assert not (tmp_path / "blob.bin.part").exists()
    n = len(State.requests)
    fetch(f"{server}/x/blob.bin", tmp_path, sha256=SHA)  # already there: no request
    assert len(State.requests) == n


def test_dropped_connection_is_resumed_with_range(server: str, tmp_path: Path) -> None:
    State.drop_first = True
    out = fetch(f"{server}/blob.bin", tmp_path / "b.bin", sha256=SHA)
    assert out.read_bytes() == PAYLOAD
    assert State.requests[0][1] is None
    assert State.requests[1][1] == f"bytes={len(PAYLOAD) // 2}-"


def test_existing_part_file_is_continued(server: str, tmp_path: Path) -> None:
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:1000])
    out = fetch(f"{server}/blob.bin", tmp_path, sha256=SHA)
    assert out.read_bytes() == PAYLOAD
    assert State.requests == [("/blob.bin", "bytes=1000-")]


def test_server_ignoring_range_restarts(server: str, tmp_path: Path) -> None:
    State.honour_range = False
    (tmp_path / "blob.bin.part").write_bytes(b"garbage" * 10)
    assert fetch(f"{server}/blob.bin", tmp_path, sha256=SHA).read_bytes() == PAYLOAD


def test_sha256_mismatch_refused(server: str, tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match="does not match"):
        fetch(f"{server}/blob.bin", tmp_path, sha256="0" * 64)
    assert not (tmp_path / "blob.bin").exists() and not (tmp_path / "blob.bin.part").exists()


def test_size_limit(server: str, tmp_path: Path) -> None:
    with pytest.raises(TooLargeError):
        fetch(f"{server}/blob.bin", tmp_path, max_bytes=1000)
    assert not (tmp_path / "blob.bin").exists()


def test_only_http_urls(tmp_path: Path) -> None:
    from dupwatch.errors import PermanentError

    with pytest.raises(PermanentError):
        fetch("file:///etc/passwd", tmp_path)


def test_rewrite_base_url() -> None:
    url = "https://mever.iti.gr/distill-and-select/models/dns_cg_student.pth"
    assert rewrite_base_url(url, "http://127.0.0.1:8000/mirror/") == \
        "http://127.0.0.1:8000/mirror/distill-and-select/models/dns_cg_student.pth"


def test_cli_models_fetch_with_base_url(server: str, tmp_path: Path) -> None:
    from dupwatch.cli import app
    from inference.parity import default_parity_dir

    parity = default_parity_dir()
    State.files = {"dns_fg_att_student.pth": (parity / "dns_fg_att_student.pth").read_bytes()}
    result = CliRunner().invoke(app, ["models", "fetch", "dns_fg_att_student", "--dest", str(tmp_path),
                                      "--base-url", server])
    assert result.exit_code == 0, result.output
    got = tmp_path / "dns_fg_att_student.pth"
    assert got.read_bytes() == State.files["dns_fg_att_student.pth"]
    assert State.requests[-1][0] == "/distill-and-select/models/dns_fg_att_student.pth"
    from inference.registry import get_model

    get_model("dns_fg_att_student", checkpoint=got)
    bad = CliRunner().invoke(app, ["models", "fetch", "no_such_model", "--dest", str(tmp_path)])
    assert bad.exit_code == 2
