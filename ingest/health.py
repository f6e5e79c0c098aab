"""``/healthz``, ``/readyz`` and ``/metrics`` on one port (``ServerConfig``).

- ``/healthz`` (liveness): the consumer loop made progress within ``stall_s`` (a watchdog that
  the loop feeds on every turn, including while it waits out a dependency outage). A stuck loop
  turns it 503 and Kubernetes restarts the pod.
- ``/readyz`` (readiness): model loaded, Kafka connected, Milvus reachable. Each is a named check;
  Milvus is probed by a background thread (``probe_interval_s``) so a request never blocks.
- ``/metrics``: Prometheus text exposition of the worker's own registry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ingest.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class HealthState:
    """Liveness watchdog + named readiness checks, shared between the loop and the HTTP server."""

    def __init__(self, *, stall_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self._clock = clock
        self._last_beat = clock()
        self._checks: dict[str, bool] = {}
        self._probes: dict[str, Callable[[], bool]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self._last_beat = self._clock()

    def set(self, name: str, ok: bool) -> None:
        with self._lock:
            self._checks[name] = ok

    def add_probe(self, name: str, probe: Callable[[], bool]) -> None:
        """``probe`` runs on the background thread; its result becomes check ``name``."""
        self._probes[name] = probe
        self.set(name, False)

    def live(self) -> tuple[bool, dict[str, float]]:
        age = self._clock() - self._last_beat
        return age <= self.stall_s, {"seconds_since_progress": round(age, 3), "stall_s": self.stall_s}

    def ready(self) -> tuple[bool, dict[str, bool]]:
        with self._lock:
            checks = dict(self._checks)
        return bool(checks) and all(checks.values()), checks

    def run_probes_once(self) -> None:
        for name, probe in list(self._probes.items()):
            try:
                ok = bool(probe())
            except Exception:  # noqa: BLE001 - a failing probe means "not ready", never a crash
                log.debug("probe %s failed", name, exc_info=True)
                ok = False
            self.set(name, ok)

    def start_probes(self, interval_s: float = 2.0) -> None:
        if self._thread is not None or not self._probes:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self.run_probes_once()
                self._stop.wait(interval_s)

        self._thread = threading.Thread(target=loop, name="dupwatch-probes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class HealthServer:
    """A tiny threaded HTTP server; ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(self, host: str, port: int, state: HealthState, metrics: WorkerMetrics) -> None:
        self.state = state
        self.metrics = metrics
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype = outer.metrics.exposition()
                    self._send(200, body, ctype)
                elif path == "/healthz":
                    ok, info = outer.state.live()
                    self._send(200 if ok else 503, json.dumps({"ok": ok, **info}).encode(), "application/json")
                elif path == "/readyz":
                    ok, checks = outer.state.ready()
                    self._send(200 if ok else 503, json.dumps({"ok": ok, "checks": checks}).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("health: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="dupwatch-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> "HealthServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
