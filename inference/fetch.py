"""Download published weight files: HTTP Range resume, ``.part`` files, sha256, size limit, timeouts.

:func:`fetch` is the one entry point; :func:`fetch_model_files` downloads every published file of a
registry entry (URLs from anchors.md), optionally rewriting the host with ``base_url`` (mirrors, tests).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dupwatch.errors import PermanentError, TransientError

__all__ = ["FetchError", "ChecksumError", "fetch", "fetch_model_files", "rewrite_base_url", "sha256_file",
           "DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read (seconds between bytes)
CHUNK = 1 << 20
NET_CHUNK = 1 << 16  # small reads: a dropped connection loses at most this much


class FetchError(TransientError):
    reason = "fetch_failed"


class ChecksumError(PermanentError):
    reason = "checksum_mismatch"


class TooLargeError(PermanentError):
    reason = "download_too_large"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def rewrite_base_url(url: str, base_url: str | None) -> str:
    """Replace scheme and host of ``url`` by those of ``base_url`` (its path is prefixed)."""
    if not base_url:
        return url
    src, base = urlsplit(url), urlsplit(base_url)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ValueError(f"--base-url must be an http(s) URL with a host, got {base_url!r}")
    path = base.path.rstrip("/") + src.path
    return urlunsplit((base.scheme, base.netloc, path, src.query, ""))


def fetch(url: str, dest: str | Path, sha256: str | None = None, resume: bool = True, *,
          max_bytes: int = DEFAULT_MAX_BYTES, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
          retries: int = 3) -> Path:
    """Download ``url`` to ``dest`` (a file, or a directory to put the URL's basename in).

    Data goes to ``dest + '.part'``; with ``resume`` an existing part is continued with an HTTP
    Range request (a server that ignores Range restarts it), and a dropped connection is resumed
    up to ``retries`` times. The file is renamed into place only once complete and, when
    ``sha256`` is given, verified (a mismatch deletes the part and raises :class:`ChecksumError`).
    An existing ``dest`` with a matching checksum (or any existing ``dest`` without one) is kept.
    """
    import requests

    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise PermanentError(f"refusing to fetch {url!r}: only http(s) URLs", reason="bad_url")
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / Path(urlsplit(url).path).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    want = sha256.lower() if sha256 else None
    if dest.is_file() and (want is None or sha256_file(dest) == want):
        log.info("%s already present", dest)
        return dest
    part = dest.with_name(dest.name + ".part")
    if not resume and part.exists():
        part.unlink()

    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=True) as r:
                if r.status_code == 416 and offset:
                    part.unlink()  # part is larger than the file or unusable: start again
                    continue
                if r.status_code not in (200, 206):
                    err = f"GET {url}: HTTP {r.status_code}"
                    if 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                        raise PermanentError(err, reason="http_error")
                    raise FetchError(err)
                if r.status_code == 200 or not offset:
                    offset, mode = 0, "wb"
                else:
                    start = _content_range_start(r.headers.get("Content-Range"))
                    if start != offset:
                        part.unlink()
                        raise FetchError(f"GET {url}: server resumed at {start}, expected {offset}; restarting")
                    mode = "ab"
                length = r.headers.get("Content-Length")
                total = offset + int(length) if length is not None and length.isdigit() else None
                if total is not None and total > max_bytes:
                    raise TooLargeError(f"{url}: {total} bytes exceeds the limit of {max_bytes}")
                written = offset
                with open(part, mode) as f:
                    for block in r.iter_content(NET_CHUNK):
                        written += len(block)
                        if written > max_bytes:
                            f.close()
                            part.unlink()
                            raise TooLargeError(f"{url}: more than {max_bytes} bytes, aborted")
                        f.write(block)
                if total is not None and written != total:
                    raise FetchError(f"{url}: connection closed at {written} of {total} bytes")
            break
        except (requests.RequestException, FetchError) as exc:
            attempt += 1
            if attempt > retries:
                raise FetchError(f"GET {url} failed after {retries} retries: {exc}") from exc
            log.warning("download of %s interrupted (%s); resuming (%d/%d)", url, exc, attempt, retries)
            if not resume and part.exists():
                part.unlink()

    if want is not None:
        got = sha256_file(part)
        if got != want:
            part.unlink()
            raise ChecksumError(f"{url}: sha256 {got} does not match the expected {want}; file removed")
    os.replace(part, dest)
    return dest


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def fetch_model_files(name: str, dest: str | Path, base_url: str | None = None, **kwargs: object) -> list[Path]:
    """Download the published files of registry entry ``name`` (or of one file named ``name``)."""
    from inference.registry import get_spec, list_models

    files = []
    if name in list_models():
        files = [f for f in get_spec(name).files if f.url]
        if not files:
            raise ValueError(f"model {name!r} has no published files to download (weights ship offline or are user-supplied)")
    else:
        for m in list_models():
            files += [f for f in get_spec(m).files if f.url and f.name == name]
        if not files:
            raise ValueError(f"unknown model or file {name!r}; models: {', '.join(list_models())}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    return [fetch(rewrite_base_url(f.url, base_url), dest / f.name, f.sha256, **kwargs)  # type: ignore[arg-type]
            for f in files if f.url]
