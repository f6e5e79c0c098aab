"""Find or fetch ``promtool`` for the metrics-exposition tests (``promtool check metrics``).

Where it comes from, first hit wins:

1. ``$DUPWATCH_PROMTOOL`` (an executable);
2. ``promtool`` on ``PATH`` (e.g. Debian's ``prometheus`` package installed);
3. the copy cached under ``cache_dir()/tools/promtool-deb/``;
4. Debian's ``prometheus`` package fetched with ``apt-get download`` (no installation, no root
   needed) and unpacked with ``dpkg-deb -x``; only ``usr/bin/promtool`` is kept, in the cache.

Anything else raises :class:`ServiceUnavailable` with one line saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from dupwatch.paths import cache_dir
from dupwatch.testing.errors import ServiceUnavailable

PROMTOOL_ENV = "DUPWATCH_PROMTOOL"
DEBIAN_PACKAGE = "prometheus"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def cached_promtool() -> Path:
    return cache_dir() / "tools" / "promtool-deb" / "promtool"


def ensure_promtool() -> Path:
    """Path of a working ``promtool`` (see the module doc for the order)."""
    env = os.environ.get(PROMTOOL_ENV)
    if env:
        if not _executable(Path(env)):
            raise ServiceUnavailable(f"${PROMTOOL_ENV}={env} is not an executable file")
        return Path(env)
    found = shutil.which("promtool")
    if found:
        return Path(found)
    target = cached_promtool()
    if _executable(target):
        return target
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise ServiceUnavailable(f"no promtool on PATH and no {tool} to fetch Debian's {DEBIAN_PACKAGE} package; "
                                     f"install promtool or set ${PROMTOOL_ENV}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="promtool-dl-", dir=target.parent) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # apt's download user may need to write here
        _run(["apt-get", "download", "-q", DEBIAN_PACKAGE], work, "apt-get download")
        debs = sorted(work.glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if not debs:
            raise ServiceUnavailable(f"apt-get download {DEBIAN_PACKAGE} produced no .deb")
        _run(["dpkg-deb", "-x", str(debs[0]), str(work / "root")], work, "dpkg-deb -x")
        binary = work / "root" / "usr" / "bin" / "promtool"
        if not _executable(binary):
            raise ServiceUnavailable(f"{debs[0].name} holds no usr/bin/promtool")
        os.replace(binary, target)  # atomic: a parallel run never sees half a binary
    return target


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailable(f"{what} failed: {exc}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and not ln.startswith("W:")]
        raise ServiceUnavailable(f"{what} {DEBIAN_PACKAGE} failed: {(lines or ['(no output)'])[-1].strip()}")


def check_metrics(promtool: Path, exposition: bytes | str) -> tuple[int, str]:
    """``promtool check metrics`` on an exposition body: (exit code, its output)."""
    data = exposition.encode() if isinstance(exposition, str) else exposition
    proc = subprocess.run([str(promtool), "check", "metrics"], input=data, capture_output=True, timeout=60)
    return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
