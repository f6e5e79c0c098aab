"""Video bytes from an allow-listed source, as a local file (architecture.md step 2).

``VideoSource(config).open(uri)`` returns a :class:`LocalVideo`; use it as a context manager so
that a downloaded temp file is removed. Local files are used in place (never copied).

HTTP is done with :mod:`http.client` on a socket connected to the address that
:func:`ingest.netguard.vet_url` vetted (no second DNS lookup, so no rebinding window); TLS still
verifies the certificate against the host name. Redirects are followed by hand, each hop vetted.

``sources.download_timeout_s`` is a wall-clock deadline for the whole download: connecting,
sending, waiting for and reading the headers, every redirect and the body. Per-read socket
timeouts cannot enforce it (a server dripping one byte a second never trips a 60 s read timeout),
so a watchdog timer shuts the socket down at the deadline, which wakes any blocked read.
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urljoin

from dupwatch.config import SourceConfig
from dupwatch.errors import PermanentError, TransientError
from ingest.netguard import Resolver, VettedTarget, default_resolver, resolve_local_path, vet_url

CHUNK_BYTES = 1 << 20
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "dupwatch-fetch/1"


@dataclass
class LocalVideo:
    """A readable local file holding the video; ``is_temp`` files are deleted by :meth:`close`."""

    path: Path
    uri: str
    size_bytes: int
    is_temp: bool = False

    def close(self) -> None:
        if self.is_temp:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "LocalVideo":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _attach_watchdog(conn: http.client.HTTPConnection) -> None:
    watchdog = getattr(conn, "watchdog", None)
    if watchdog is not None and conn.sock is not None:
        watchdog.attach(conn.sock)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a fixed IP while sending the real Host header."""

    def __init__(self, target: VettedTarget, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=connect_timeout)
        self._ip = target.ip
        self._read_timeout = read_timeout

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), timeout=self.timeout)
        self.sock.settimeout(self._read_timeout)
        _attach_watchdog(self)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a fixed IP; SNI and certificate checks use the URL's host name."""

    def __init__(self, target: VettedTarget, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=connect_timeout, context=ssl.create_default_context())
        self._ip = target.ip
        self._read_timeout = read_timeout

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), timeout=self.timeout)
        watchdog = getattr(self, "watchdog", None)
        if watchdog is not None:
            watchdog.attach(sock)  # the TLS handshake is under the deadline too
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
        self.sock.settimeout(self._read_timeout)
        _attach_watchdog(self)


class _Watchdog:
    """Shuts a connection's socket down at ``deadline`` (monotonic), waking a blocked read."""

    def __init__(self, conn: http.client.HTTPConnection, deadline: float) -> None:
        self.fired = False
        self._conn = conn
        self._sock: socket.socket | None = None
        conn.watchdog = self  # type: ignore[attr-defined]
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock: socket.socket) -> None:
        """The connection's socket, kept here: ``http.client`` drops ``conn.sock`` once a response
        that ends with the connection takes it over, but reads still block on this socket."""
        self._sock = sock
        if self.fired:
            self._shutdown()

    def _fire(self) -> None:
        self.fired = True
        self._shutdown()

    def _shutdown(self) -> None:
        sock = self._sock or self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


class VideoSource:
    """Opens upload URIs under the policy in :class:`SourceConfig`."""

    def __init__(self, config: SourceConfig, *, resolver: Resolver = default_resolver) -> None:
        self._config = config
        self._resolver = resolver

    def open(self, uri: str) -> LocalVideo:
        """A local file for ``uri``; raises ``PermanentError``/``TransientError`` with a reason."""
        if not isinstance(uri, str) or not uri:
            raise PermanentError("empty URI", reason="url_invalid")
        scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
        if scheme in ("http", "https"):
            return self._download(uri)
        if scheme and "://" in uri and scheme != "file":
            raise PermanentError(f"URI scheme {scheme[:20]!r} is not allowed", reason="url_scheme_not_allowed")
        path = resolve_local_path(uri, self._config.local_roots)
        size = path.stat().st_size
        if size > self._config.max_bytes:
            raise PermanentError(f"file of {size} bytes exceeds sources.max_bytes={self._config.max_bytes}", reason="source_too_large")
        return LocalVideo(path=path, uri=uri, size_bytes=size, is_temp=False)

    # -- http(s) ---------------------------------------------------------------------------------

    def _vet(self, url: str) -> VettedTarget:
        return vet_url(
            url,
            allow_hosts=self._config.http_allow_hosts,
            allow_private=self._config.allow_private_addresses,
            resolver=self._resolver,
        )

    def _download(self, url: str) -> LocalVideo:
        cfg = self._config
        deadline = time.monotonic() + cfg.download_timeout_s
        for _hop in range(cfg.max_redirects + 1):
            target = self._vet(url)
            conn_cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._deadline_error()
            conn = conn_cls(target, min(cfg.connect_timeout_s, left), cfg.read_timeout_s)
            watchdog = _Watchdog(conn, deadline)
            try:
                try:
                    response = self._request(conn, target)
                except TransientError:
                    if watchdog.fired or time.monotonic() >= deadline:
                        raise self._deadline_error() from None
                    raise
                status = response.status
                if status in REDIRECT_CODES:
                    location = response.getheader("Location")
                    if not location:
                        raise PermanentError(f"HTTP {status} without Location from {target.host}", reason="source_http_4xx")
                    url = urljoin(url, location.strip())
                    continue
                if 500 <= status <= 599:
                    raise TransientError(f"HTTP {status} from {target.host}", reason="source_http_5xx")
                if 400 <= status <= 499:
                    raise PermanentError(f"HTTP {status} from {target.host}", reason="source_http_4xx")
                if status != 200:
                    raise PermanentError(f"unexpected HTTP {status} from {target.host}", reason="source_http_unexpected")
                try:
                    return self._save(response, url, deadline)
                except TransientError:
                    if watchdog.fired or time.monotonic() >= deadline:
                        raise self._deadline_error() from None
                    raise
            finally:
                watchdog.cancel()
                conn.close()
        raise PermanentError(f"more than sources.max_redirects={cfg.max_redirects} redirects", reason="too_many_redirects")

    def _deadline_error(self) -> TransientError:
        return TransientError(
            f"download exceeded sources.download_timeout_s={self._config.download_timeout_s} (wall clock, headers included)",
            reason="source_timeout",
        )

    def _request(self, conn: http.client.HTTPConnection, target: VettedTarget) -> http.client.HTTPResponse:
        try:
            conn.request("GET", target.path, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
            return conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"TLS certificate of {target.host} is not valid: {exc.verify_message}", reason="source_tls_invalid") from None
        except (TimeoutError, socket.timeout):
            raise TransientError(f"timeout talking to {target.host}:{target.port}", reason="source_timeout") from None
        except (OSError, http.client.HTTPException) as exc:
            raise TransientError(f"cannot fetch from {target.host}:{target.port}: {exc}", reason="source_unavailable") from None

    def _save(self, response: http.client.HTTPResponse, url: str, deadline: float) -> LocalVideo:
        limit = self._config.max_bytes
        declared = response.getheader("Content-Length")
        if declared is not None:
            try:
                declared_n = int(declared)
            except ValueError:
                raise PermanentError(f"bad Content-Length {declared[:40]!r}", reason="source_http_invalid") from None
            if declared_n < 0:
                raise PermanentError(f"negative Content-Length {declared[:40]!r}", reason="source_http_invalid")
            if declared_n > limit:
                raise PermanentError(f"Content-Length {declared_n} exceeds sources.max_bytes={limit}", reason="source_too_large")
        fd, name = self._temp_file()
        path = Path(name)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    if time.monotonic() > deadline:
                        raise TransientError(
                            f"download exceeded sources.download_timeout_s={self._config.download_timeout_s}", reason="source_timeout"
                        )
                    try:
                        chunk = response.read(CHUNK_BYTES)
                    except (TimeoutError, socket.timeout):
                        raise TransientError(f"read timeout after {written} bytes", reason="source_timeout") from None
                    except (OSError, http.client.HTTPException) as exc:
                        raise TransientError(f"download broke after {written} bytes: {exc}", reason="source_unavailable") from None
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > limit:
                        raise PermanentError(f"download exceeds sources.max_bytes={limit}", reason="source_too_large")
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise self._storage_error(exc) from None
        except OSError as exc:  # flush/close of the temp file (disk full surfaces here too)
            path.unlink(missing_ok=True)
            raise self._storage_error(exc) from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        try:
            if time.monotonic() >= deadline:  # the watchdog ended the body early: not a whole file
                raise TransientError(
                    f"download exceeded sources.download_timeout_s={self._config.download_timeout_s}", reason="source_timeout"
                )
            if declared is not None and written != int(declared):
                raise TransientError(f"connection closed after {written} of {declared} bytes", reason="source_unavailable")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return LocalVideo(path=path, uri=url, size_bytes=written, is_temp=True)

    def _temp_file(self) -> tuple[int, str]:
        directory = self._config.temp_dir
        try:
            if directory is not None and not directory.is_dir():
                raise FileNotFoundError(errno.ENOENT, "no such directory", str(directory))
            return tempfile.mkstemp(prefix="dupwatch-", suffix=".video", dir=str(directory) if directory else None)
        except OSError as exc:
            raise self._storage_error(exc) from None

    def _storage_error(self, exc: OSError) -> TransientError:
        where = self._config.temp_dir or Path(tempfile.gettempdir())
        return TransientError(
            f"cannot write temp file in {where} ({exc.strerror or exc}); check sources.temp_dir space and permissions",
            reason="temp_storage_unavailable",
        )
