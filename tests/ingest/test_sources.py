"""Hostile and happy-path sources: SSRF guard, redirects, local roots, size limits, temp storage."""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evaluation.sources import FIXTURE_VIDEOS
from dupwatch.config import SourceConfig
from dupwatch.errors import PermanentError, TransientError
from ingest.netguard import address_problem, host_allowed, vet_url
from ingest.sources import VideoSource

VIDEO = FIXTURE_VIDEOS / "s2vs_example_video1.mp4"
PAYLOAD = VIDEO.read_bytes()[:200_000]


class _Handler(BaseHTTPRequestHandler):
    hosts_seen: list[str] = []

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up on purpose (size limit, timeout)

    def log_message(self, *args: object) -> None:
        pass

    def _redirect(self, location: str, code: int = 302) -> None:
        self.send_response(code)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        port = self.server.server_address[1]
        path = self.path
        _Handler.hosts_seen.append(self.headers.get("Host", ""))
        if path == "/video.mp4":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif path == "/no-length":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"\0" * 65536)
        elif path == "/huge-length":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            self._redirect("/video.mp4" if left == 0 else f"/hop/{left - 1}")
        elif path == "/to-evil":
            self._redirect("http://evil.example/video.mp4")
        elif path == "/to-localhost":
            self._redirect(f"http://localhost:{port}/video.mp4")
        elif path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/to-metadata-name":
            self._redirect(f"http://meta.test:{port}/")
        elif path == "/to-file":
            self._redirect("file:///etc/passwd")
        elif path == "/to-gopher":
            self._redirect("gopher://127.0.0.1:70/")
        elif path == "/500":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/slow":
            time.sleep(1.5)
            self.send_response(200)
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(b"x")
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _resolver(host: str, port: int) -> list[str]:
    table = {"meta.test": ["169.254.169.254"], "media.test": ["127.0.0.1"], "rebind.test": ["93.184.216.34", "10.0.0.5"], "public.test": ["93.184.216.34"]}
    if host in table:
        return table[host]
    from ingest.netguard import default_resolver

    return default_resolver(host, port)


def _source(tmp_path: Path, **overrides: object) -> VideoSource:
    base: dict[str, object] = dict(
        http_allow_hosts=["127.0.0.1", "meta.test", "evil.example"],
        allow_private_addresses=True,
        temp_dir=tmp_path,
        read_timeout_s=0.5,
        connect_timeout_s=0.5,
    )
    base.update(overrides)
    return VideoSource(SourceConfig(**base), resolver=_resolver)  # type: ignore[arg-type]


def _reason(source: VideoSource, uri: str) -> str:
    with pytest.raises((PermanentError, TransientError)) as info:
        source.open(uri)
    return info.value.reason


# -- happy path -----------------------------------------------------------------------------------


def test_download_from_local_server(server: int, tmp_path: Path) -> None:
    source = _source(tmp_path)
    with source.open(f"http://127.0.0.1:{server}/video.mp4") as local:
        assert local.is_temp and local.path.parent == tmp_path
        assert local.path.read_bytes() == PAYLOAD and local.size_bytes == len(PAYLOAD)
    assert not local.path.exists()
    assert list(tmp_path.iterdir()) == []


def test_redirects_within_limit_are_followed(server: int, tmp_path: Path) -> None:
    with _source(tmp_path).open(f"http://127.0.0.1:{server}/hop/2") as local:
        assert local.size_bytes == len(PAYLOAD)
    assert _reason(_source(tmp_path, max_redirects=2), f"http://127.0.0.1:{server}/hop/3") == "too_many_redirects"


def test_connects_to_the_vetted_address_with_the_real_host_header(server: int, tmp_path: Path) -> None:
    """``media.test`` exists only in the injected resolver: the fetch works only if the socket goes
    to the vetted IP (no second lookup a rebinding DNS server could answer differently)."""
    _Handler.hosts_seen.clear()
    with _source(tmp_path, http_allow_hosts=["media.test"]).open(f"http://media.test:{server}/video.mp4") as local:
        assert local.size_bytes == len(PAYLOAD)
    assert _Handler.hosts_seen == [f"media.test:{server}"]


def test_tls_certificate_is_checked_against_the_host_name(tmp_path: Path) -> None:
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=media.test"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        source = _source(tmp_path / "dl", http_allow_hosts=["media.test"])
        (tmp_path / "dl").mkdir()
        assert _reason(source, f"https://media.test:{port}/video.mp4") == "source_tls_invalid"
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- hostile URLs -----------------------------------------------------------------------------------

PRIVATE_URLS = [
    "http://10.0.0.1/v.mp4",
    "http://10.255.255.255/v.mp4",
    "http://172.16.0.1/v.mp4",
    "http://172.31.255.1/v.mp4",
    "http://192.168.1.1/v.mp4",
    "http://127.0.0.1/v.mp4",
    "http://127.8.9.10/v.mp4",
    "http://[::1]/v.mp4",
    "http://169.254.1.1/v.mp4",
    "http://[fe80::1]/v.mp4",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/v.mp4",
    "http://[::ffff:7f00:1]/v.mp4",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://0.0.0.0/v.mp4",
    "http://[::]/v.mp4",
    "http://224.0.0.1/v.mp4",
    "http://100.64.0.1/v.mp4",  # carrier-grade NAT
    "http://2130706433/v.mp4",
    "http://0x7f.1/v.mp4",
    "http://0177.0.0.1/v.mp4",
    "http://127.1/v.mp4",
    "http://localhost/v.mp4",
    "http://rebind.test/v.mp4",  # one public and one private answer
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_and_odd_addresses_are_refused(url: str) -> None:
    host = url.split("//", 1)[1].split("/", 1)[0]
    allow = [host.strip("[]").rsplit(":", 0)[0], "localhost", "rebind.test"]
    with pytest.raises(PermanentError) as info:
        vet_url(url, allow_hosts=allow, allow_private=False, resolver=_resolver)
    assert info.value.reason in {"address_not_allowed"}, str(info.value)


def test_metadata_refused_even_when_private_allowed() -> None:
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://meta.test/"):
        host = url.split("//", 1)[1].split("/", 1)[0].strip("[]")
        with pytest.raises(PermanentError) as info:
            vet_url(url, allow_hosts=[host], allow_private=True, resolver=_resolver)
        assert info.value.reason == "address_not_allowed"


def test_public_allow_listed_host_passes_and_pins_the_address() -> None:
    target = vet_url("https://public.test/a/b.mp4?x=1", allow_hosts=["*.test"], allow_private=False, resolver=_resolver)
    assert target.ip == "93.184.216.34" and target.port == 443 and target.path == "/a/b.mp4?x=1"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("ftp://127.0.0.1/v.mp4", "url_scheme_not_allowed"),
        ("gopher://127.0.0.1:70/_x", "url_scheme_not_allowed"),
        ("data:video/mp4;base64,AAAA", "url_scheme_not_allowed"),
        ("javascript:alert(1)", "url_scheme_not_allowed"),
        ("http://user:pw@127.0.0.1/v.mp4", "url_invalid"),
        ("http://127.0.0.1:99999/v.mp4", "url_invalid"),
        ("http://unknown.example/v.mp4", "host_not_allowed"),
        ("http://127.0.0.1.evil.example/v.mp4", "host_not_allowed"),
        ("http:///v.mp4", "url_invalid"),
        ("http://127.0.0.1/a b", "url_invalid"),
        ("file:///etc/passwd", "path_not_allowed"),
        ("/etc/passwd", "path_not_allowed"),
    ],
)
def test_refused_uris(uri: str, reason: str, tmp_path: Path) -> None:
    assert _reason(_source(tmp_path, local_roots=[tmp_path]), uri) == reason


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/to-evil", "host_not_allowed"),
        ("/to-localhost", "host_not_allowed"),
        ("/to-metadata", "host_not_allowed"),
        ("/to-metadata-name", "address_not_allowed"),
        ("/to-file", "url_scheme_not_allowed"),
        ("/to-gopher", "url_scheme_not_allowed"),
    ],
)
def test_every_redirect_hop_is_vetted(server: int, path: str, reason: str, tmp_path: Path) -> None:
    source = _source(tmp_path, http_allow_hosts=["127.0.0.1", "meta.test"])
    assert _reason(source, f"http://127.0.0.1:{server}{path}") == reason
    assert list(tmp_path.iterdir()) == []


def test_private_first_hop_refused_without_flag(server: int, tmp_path: Path) -> None:
    assert _reason(_source(tmp_path, allow_private_addresses=False), f"http://127.0.0.1:{server}/video.mp4") == "address_not_allowed"


def test_host_patterns() -> None:
    assert host_allowed("cdn.example.com", ["*.example.com"])
    assert host_allowed("a.b.example.com", ["*.example.com"])
    assert not host_allowed("example.com", ["*.example.com"])
    assert not host_allowed("badexample.com", ["*.example.com"])
    assert host_allowed("Media.Example.COM.", ["media.example.com"])
    assert address_problem(ipaddress.ip_address("8.8.8.8"), allow_private=False) is None


# -- HTTP failures and limits -------------------------------------------------------------------------


def test_http_status_and_size_outcomes(server: int, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{server}"
    source = _source(tmp_path, max_bytes=100_000)
    assert _reason(source, f"{base}/video.mp4") == "source_too_large"  # Content-Length
    assert _reason(source, f"{base}/no-length") == "source_too_large"  # streamed count
    assert _reason(source, f"{base}/huge-length") == "source_too_large"
    assert _reason(source, f"{base}/missing") == "source_http_4xx"
    with pytest.raises(TransientError) as info:
        source.open(f"{base}/500")
    assert info.value.reason == "source_http_5xx"
    with pytest.raises(TransientError) as info:
        source.open(f"{base}/slow")
    assert info.value.reason == "source_timeout"
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError) as info:
        _source(tmp_path).open(f"http://127.0.0.1:{port}/v.mp4")
    assert info.value.reason == "source_unavailable"


def test_unwritable_temp_dir_is_transient(server: int, tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(TransientError) as info:
        _source(tmp_path, temp_dir=missing).open(f"http://127.0.0.1:{server}/video.mp4")
    assert info.value.reason == "temp_storage_unavailable" and str(missing) in str(info.value)
    if os.geteuid() != 0:  # root ignores directory permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(TransientError) as info:
            _source(tmp_path, temp_dir=locked).open(f"http://127.0.0.1:{server}/video.mp4")
        assert info.value.reason == "temp_storage_unavailable"


def test_full_temp_disk_is_transient(server: int, tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    source = _source(tmp_path)
    source._temp_file = lambda: (os.open("/dev/full", os.O_WRONLY), str(tmp_path / "full.video"))  # type: ignore[method-assign]
    with pytest.raises(TransientError) as info:
        source.open(f"http://127.0.0.1:{server}/video.mp4")
    assert info.value.reason == "temp_storage_unavailable"


# -- local files ---------------------------------------------------------------------------------------


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "v.mp4").write_bytes(b"video")
    (outside / "secret.mp4").write_bytes(b"secret")
    (root / "link_out.mp4").symlink_to(outside / "secret.mp4")
    (root / "dir_link").symlink_to(outside)
    (root / "link_in.mp4").symlink_to(root / "sub" / "v.mp4")
    return root, outside


def test_local_paths(roots: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = roots
    source = VideoSource(SourceConfig(local_roots=[root]))
    with source.open(str(root / "sub" / "v.mp4")) as local:
        assert local.path == (root / "sub" / "v.mp4").resolve() and not local.is_temp
    assert local.path.exists()  # a local file is never deleted
    assert source.open(f"file://{root}/sub/v.mp4").size_bytes == 5
    assert source.open(f"file://localhost{root}/sub/v.mp4").size_bytes == 5
    assert source.open(str(root / "link_in.mp4")).path == (root / "sub" / "v.mp4").resolve()
    refused = [
        (str(root / "sub" / ".." / ".." / "outside" / "secret.mp4"), "path_not_allowed"),
        (f"file://{root}/../outside/secret.mp4", "path_not_allowed"),
        (f"file://{root}/%2e%2e/outside/secret.mp4", "path_not_allowed"),
        (str(root / "link_out.mp4"), "path_not_allowed"),
        (str(root / "dir_link" / "secret.mp4"), "path_not_allowed"),
        ("sub/v.mp4", "path_not_allowed"),
        (f"file://otherhost{root}/sub/v.mp4", "path_not_allowed"),
        (str(root / "sub"), "path_not_allowed"),
        (str(root / "sub" / "v.mp4") + "\x00.txt", "path_not_allowed"),
        (str(root / "missing.mp4"), "source_not_found"),
        (str(outside / "secret.mp4"), "path_not_allowed"),
    ]
    for uri, reason in refused:
        assert _reason(source, uri) == reason, uri
    assert _reason(VideoSource(SourceConfig()), str(root / "sub" / "v.mp4")) == "path_not_allowed"
    assert _reason(VideoSource(SourceConfig(local_roots=[root], max_bytes=2)), str(root / "sub" / "v.mp4")) == "source_too_large"
