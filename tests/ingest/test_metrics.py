"""Metric naming conventions and the health endpoints (no Kafka needed)."""

from __future__ import annotations

import json
import re

from prometheus_client.parser import text_string_to_metric_families

from ingest.health import HealthServer, HealthState
from ingest.metrics import METRIC_DOCS, WorkerMetrics
from tests.ingest.test_worker_helpers import http_get

REQUIRED = {
    "dupwatch_events_consumed_total",
    "dupwatch_videos_indexed_total",
    "dupwatch_dead_letters_total",
    "dupwatch_decode_seconds",
    "dupwatch_inference_seconds",
    "dupwatch_index_seconds",
    "dupwatch_batch_frames",
    "dupwatch_in_flight_videos",
    "dupwatch_consumer_lag",
    "dupwatch_alerts_sent_total",
}


def _families(metrics: WorkerMetrics) -> dict[str, object]:
    body, _ = metrics.exposition()
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def test_every_metric_is_declared_once_with_prometheus_naming():
    assert REQUIRED <= set(METRIC_DOCS)
    a, b = WorkerMetrics(), WorkerMetrics()  # separate registries: no "Duplicated timeseries"
    a.events_consumed.inc(3)
    assert b.events_consumed._value.get() == 0
    fams = _families(a)
    for name in METRIC_DOCS:
        assert re.fullmatch(r"dupwatch_[a-z_]+", name)
        base = name.removesuffix("_total")
        fam = fams[base]
        assert fam.documentation
        if fam.type == "counter":
            assert name.endswith("_total")
        if "seconds" in name:
            assert fam.type in ("histogram", "gauge")


def test_health_endpoints_follow_the_watchdog_and_the_checks():
    now = [100.0]
    state = HealthState(stall_s=10.0, clock=lambda: now[0])
    metrics = WorkerMetrics()
    server = HealthServer("127.0.0.1", 0, state, metrics).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert http_get(f"{url}/readyz")[0] == 503  # no checks yet: not ready
        state.set("model", True)
        state.set("kafka", True)
        state.add_probe("milvus", lambda: False)
        state.run_probes_once()
        status, body = http_get(f"{url}/readyz")
        assert status == 503 and json.loads(body)["checks"]["milvus"] is False
        state.add_probe("milvus", lambda: True)
        state.run_probes_once()
        assert http_get(f"{url}/readyz")[0] == 200
        assert http_get(f"{url}/healthz")[0] == 200
        now[0] += 11.0  # the loop stopped making progress
        assert http_get(f"{url}/healthz")[0] == 503
        state.beat()
        assert http_get(f"{url}/healthz")[0] == 200
        metrics.dead_letters.labels(reason="not_a_video").inc()
        status, body = http_get(f"{url}/metrics")
        assert status == 200
        samples = {s.name + str(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(body) for s in f.samples}
        assert samples["dupwatch_dead_letters_total[('reason', 'not_a_video')]"] == 1
        assert http_get(f"{url}/nope")[0] == 404
    finally:
        server.stop()
