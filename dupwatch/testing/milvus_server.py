"""A real Milvus standalone server (from the PyPI package ``milvus``) for tests and demos.

The ``milvus`` package (2.3.x) ships the server binary and its libraries lzma-compressed, plus
a ``milvus.yaml`` template. This module unpacks them once into
``cache_dir()/milvus-server-<version>/bin``, renders the template into the server's data folder
with free ports and 127.0.0.1 as every component's registered address, and runs
``milvus run standalone`` directly (not through the package's ``milvus-server`` wrapper, whose
stop leaves the real server running). The embedded etcd gets its own ports too (by default it
takes 2379/2380, which would clash between two servers on one machine).

Limits of this Milvus version that callers should know: one vector field per collection;
DISKANN index builds hang; the gRPC and metrics ports are bound on all interfaces (2.3 has no
listen-address setting), although every address it registers and hands out is 127.0.0.1.

    with MilvusServer() as server:
        client = MilvusClient(uri=server.uri)
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.metadata
import importlib.util
import logging
import lzma
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dupwatch.paths import cache_dir as default_cache_dir
from dupwatch.testing._process import ServiceLifecycle, ManagedProcess, free_ports, port_is_free, tail
from dupwatch.testing.errors import ServiceStartError, ServiceUnavailable

__all__ = ["MilvusServer", "ensure_milvus_binary", "milvus_package_version"]

log = logging.getLogger(__name__)

_COMPLETE_MARKER = ".complete"
SESSION_TTL_S = 10
_INSTALL_HINT = "install the server package, e.g. `pip install milvus==2.3.5`"

# Template port keys of the package's config.yaml.template (each gets its own free port).
_TEMPLATE_PORT_KEYS = (
    "proxy_port",
    "proxy_internal_port",
    "root_coord_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
    "etcd_port",
)
# Ports outside the template: the HTTP metrics/health server and the embedded etcd.
_OTHER_PORT_KEYS = ("metrics_port", "etcd_client_port", "etcd_peer_port")
# Components whose registered address must be loopback (else Milvus picks the first
# non-loopback interface and clients are sent there).
_COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


def milvus_package_version() -> str:
    """Version of the installed ``milvus`` server package; ServiceUnavailable if absent."""
    try:
        return importlib.metadata.version("milvus")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ServiceUnavailable(f"Milvus server package `milvus` not installed: {_INSTALL_HINT}") from exc


def _package_data_dir() -> Path:
    spec = importlib.util.find_spec("milvus")
    if spec is None or spec.origin is None:
        raise ServiceUnavailable(f"Milvus server package `milvus` not installed: {_INSTALL_HINT}")
    data = Path(spec.origin).parent / "data"
    if not (data / "bin" / "milvus.lzma").is_file():
        raise ServiceUnavailable(f"the installed `milvus` package has no server binary under {data}/bin: {_INSTALL_HINT}")
    return data


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_milvus_binary(cache: Path | None = None) -> Path:
    """Unpack the server binary and its libraries once; returns the ``bin`` folder.

    Unpacking (about 250 MB) takes tens of seconds, so it is shared by every server and
    guarded by a lock and a completion marker.
    """
    if sys.platform != "linux":
        raise ServiceUnavailable(f"the Milvus test server runs on Linux only, not {sys.platform}")
    version = milvus_package_version()
    home = (cache or default_cache_dir()) / f"milvus-server-{version}"
    bin_dir = home / "bin"
    if (bin_dir / _COMPLETE_MARKER).is_file():
        return bin_dir
    source = _package_data_dir() / "bin"
    with _file_lock(home / ".lock"):
        if (bin_dir / _COMPLETE_MARKER).is_file():
            return bin_dir
        staging = Path(tempfile.mkdtemp(prefix="bin-", dir=home))
        try:
            for packed in sorted(source.glob("*.lzma")):
                target = staging / packed.name[: -len(".lzma")]
                with lzma.open(packed, "rb") as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 20)
                target.chmod(0o755)
            (staging / _COMPLETE_MARKER).write_text(version + "\n")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(bin_dir, ignore_errors=True)
        staging.rename(bin_dir)
    return bin_dir


_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*(?:\(\s*\w+\s*\))?\s*(?::\s*([^}]*?))?\s*\}\}")


def _render_template(template: str, values: Mapping[str, object]) -> str:
    """Fill ``{{ key(type): default }}`` placeholders of the package's milvus.yaml template."""

    def fill(match: re.Match[str]) -> str:
        key, default = match.group(1), match.group(2)
        if key in values:
            value = values[key]
            return ("true" if value else "false") if isinstance(value, bool) else str(value)
        if default is None:
            raise ValueError(f"milvus.yaml template placeholder {key!r} has no default and no value")
        return default

    return _PLACEHOLDER.sub(fill, template)


def _set_yaml_values(text: str, values: Mapping[str, str]) -> str:
    """Replace the values of existing ``a.b.c`` keys in a block-style YAML text, keeping comments.

    Every key must occur; a missing one raises, so a template change cannot silently drop a
    setting (for example the loopback ``ip`` of a component).
    """
    out: list[str] = []
    path: list[str] = []
    found: set[str] = set()
    line_re = re.compile(r"^( *)([A-Za-z0-9_]+):(.*)$")
    for line in text.splitlines():
        match = line_re.match(line)
        if match is None or line.lstrip().startswith("#"):
            out.append(line)
            continue
        indent, key = len(match.group(1)), match.group(2)
        path = path[: indent // 2] + [key]
        dotted = ".".join(path)
        if dotted in values:
            comment = ""
            rest = match.group(3)
            if "#" in rest:
                comment = " #" + rest.split("#", 1)[1]
            line = f"{match.group(1)}{key}: {values[dotted]}{comment}"
            found.add(dotted)
        out.append(line)
    missing = set(values) - found
    if missing:
        raise ValueError(f"keys not found in milvus.yaml template: {sorted(missing)}")
    return "\n".join(out) + "\n"


class MilvusServer(ServiceLifecycle):
    """One ``milvus run standalone`` process on 127.0.0.1 with its data in ``data_dir``.

    ``start()`` waits until the health endpoint answers and pymilvus can list collections.
    ``restart()`` keeps the ports and the data (collections survive; ``hard=True`` kills first).

    Args:
        data_dir: folder for configs, data and logs; a fresh temporary one if not given
            (removed by ``cleanup()`` / leaving the ``with`` without an error).
        cache_dir: where the unpacked binary is cached; defaults to ``dupwatch.paths.cache_dir()``.
        startup_timeout: seconds to wait for readiness.
        stop_timeout: seconds a graceful stop may take before SIGKILL.
        config: extra ``a.b.c`` keys of milvus.yaml to set (the key must exist in the template).
        die_with_parent: SIGKILL the server if the Python thread that started it dies.
    """

    def __init__(
        self,
        *,
        data_dir: Path | str | None = None,
        cache_dir: Path | str | None = None,
        startup_timeout: float = 180.0,
        stop_timeout: float = 3.0,
        config: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self._owns_data_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="dupwatch-milvus-"))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.extra_config = dict(config or {})
        self.die_with_parent = die_with_parent
        self.host = "127.0.0.1"
        self.ports: dict[str, int] = {}
        self.startup_seconds: float | None = None
        self.version: str | None = None
        self._proc: ManagedProcess | None = None

    # ---- properties -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The proxy (client) port."""
        if "proxy_port" not in self.ports:
            raise RuntimeError("MilvusServer has not been started")
        return self.ports["proxy_port"]

    @property
    def uri(self) -> str:
        """``http://127.0.0.1:<proxy port>`` for ``pymilvus.MilvusClient(uri=...)``."""
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's stdout/stderr (appended across restarts)."""
        return self.data_dir / "logs" / "milvus.log"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "configs" / "milvus.yaml"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ---- life cycle -------------------------------------------------------------------------

    def start(self) -> MilvusServer:
        """Start the server and wait until it serves requests; returns ``self``."""
        if self.is_running:
            return self
        self.version = milvus_package_version()
        bin_dir = ensure_milvus_binary(self.cache_dir)
        first_start = not self.ports
        attempts = 3 if first_start else 1
        for attempt in range(1, attempts + 1):
            if first_start:
                self._choose_ports()
            else:
                busy = [f"{k}={p}" for k, p in self.ports.items() if not port_is_free(p, self.host)]
                if busy:
                    raise ServiceStartError(f"cannot restart Milvus on the same ports, now taken: {', '.join(busy)}")
            self._write_config()
            began = time.monotonic()
            self._proc = ManagedProcess(
                [str(bin_dir / "milvus"), "run", "standalone"],
                log_path=self.log_path,
                cwd=self.data_dir,
                env=self._env(bin_dir),
                die_with_parent=self.die_with_parent,
            )
            try:
                self._wait_ready(began)
            except ServiceStartError:
                self.kill()
                if attempt < attempts and "address already in use" in tail(self.log_path, 200).lower():
                    log.warning("Milvus lost a port race, retrying on new ports")
                    continue
                raise
            except BaseException:
                self.kill()
                raise
            self.startup_seconds = time.monotonic() - began
            log.info("Milvus %s ready at %s in %.1f s", self.version, self.uri, self.startup_seconds)
            return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout`` (default ``stop_timeout``)."""
        if self._proc is not None:
            self._proc.stop(self.stop_timeout if timeout is None else timeout)
            self._proc = None


    # ---- internals --------------------------------------------------------------------------

    def _choose_ports(self) -> None:
        keys = _TEMPLATE_PORT_KEYS + _OTHER_PORT_KEYS
        self.ports = dict(zip(keys, free_ports(len(keys), self.host), strict=True))

    def _env(self, bin_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["DEPLOY_MODE"] = "STANDALONE"
        env["METRICS_PORT"] = str(self.ports["metrics_port"])
        env["MILVUS_RUN_DIR"] = str(self.data_dir / "run")
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(bin_dir), env.get("LD_LIBRARY_PATH", "")]))
        env.pop("MILVUSCONF", None)  # configs/ under the working directory is read instead
        return env

    def _write_config(self) -> None:
        configs, data, logs = (self.data_dir / sub for sub in ("configs", "data", "logs"))
        for folder in (configs, data, logs, self.data_dir / "run"):
            folder.mkdir(parents=True, exist_ok=True)
        package_data = _package_data_dir()
        template = (package_data / "config.yaml.template").read_text(encoding="utf-8")
        values: dict[str, object] = {key: self.ports[key] for key in _TEMPLATE_PORT_KEYS}
        values.update(
            etcd_log_path=logs / "etcd.log",
            etcd_data_dir=data / "etcd.data",
            local_storage_dir=data,
            rocksmq_data_dir=data / "rocksmq",
            system_log_path="",  # log to stdout only, which goes to log_path
        )
        text = _render_template(template, values)
        overrides = {f"{component}.ip": self.host for component in _COMPONENTS}
        # A killed server's sessions stay registered until their lease ends; the restarted
        # one waits for that before it loads collections (30 s by default).
        overrides["common.session.ttl"] = str(SESSION_TTL_S)
        overrides.update(self.extra_config)
        text = _set_yaml_values(text, overrides)
        # Point the embedded etcd at its own config so it does not take 2379/2380.
        etcd_config = configs / "embedEtcd.yaml"
        client, peer = self.ports["etcd_client_port"], self.ports["etcd_peer_port"]
        etcd_config.write_text(
            "name: default\n"
            f"listen-client-urls: http://{self.host}:{client}\n"
            f"advertise-client-urls: http://{self.host}:{client}\n"
            f"listen-peer-urls: http://{self.host}:{peer}\n"
            f"initial-advertise-peer-urls: http://{self.host}:{peer}\n"
            f"initial-cluster: default=http://{self.host}:{peer}\n",
            encoding="utf-8",
        )
        text, count = re.subn(r"^etcd:\n", f"etcd:\n  config:\n    path: {etcd_config}\n", text, count=1, flags=re.M)
        if count != 1:
            raise ValueError("no top-level `etcd:` section in the milvus.yaml template")
        self.config_path.write_text(text, encoding="utf-8")
        shutil.copy(package_data / "glog.conf", configs / "glog.conf")

    def _healthy(self) -> bool:
        url = f"http://{self.host}:{self.ports['metrics_port']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return b"OK" in resp.read()
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self, began: float) -> None:
        """Health endpoint says OK, then a pymilvus round trip works."""
        from pymilvus import MilvusClient

        deadline = began + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if not self._proc.is_alive():
                raise ServiceStartError(
                    f"Milvus exited with code {self._proc.returncode} during start-up; "
                    f"log {self.log_path}:\n{tail(self.log_path, 40)}"
                )
            if self._healthy():
                try:
                    client = MilvusClient(uri=self.uri, timeout=10)
                    try:
                        client.list_collections(timeout=10)
                        return
                    finally:
                        client.close()
                except Exception as exc:  # pymilvus raises several unrelated types while starting
                    last_error = exc
            time.sleep(0.25)
        raise ServiceStartError(
            f"Milvus not ready at {self.uri} after {self.startup_timeout:.0f} s (last error: {last_error!r}); "
            f"log {self.log_path}:\n{tail(self.log_path, 40)}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run a server in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m dupwatch.testing.milvus_server",
        description="Run a Milvus standalone server on 127.0.0.1 in the foreground.",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="data folder (kept); default: a temporary one")
    args = parser.parse_args(argv)
    server = MilvusServer(data_dir=args.data_dir)
    try:
        server.start()
    except (ServiceUnavailable, ServiceStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"Milvus {server.version} standalone ready in {server.startup_seconds:.1f} s", flush=True)
        print(f"uri={server.uri}", flush=True)
        print(f"log: {server.log_path}   (Ctrl-C to stop)", flush=True)
        while server.is_running:
            time.sleep(0.5)
        print(f"server exited; see {server.log_path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if args.data_dir is None:
            server.cleanup()
        else:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
