"""Every Prometheus metric of the worker, declared once (style.md rule 6, anchors.md §3).

Names follow Prometheus practice: ``dupwatch_`` prefix, base units as a plural suffix
(``_seconds``, ``_messages``, ``_frames``, ``_videos``), counters end in ``_total``, no
high-cardinality labels (no video or tenant ids; webhook receivers are the configured names).
Each :class:`WorkerMetrics` owns its own ``CollectorRegistry`` so that several workers (tests)
in one process do not collide; each registry also carries the client's process, platform and
garbage-collector collectors (``process_*``, ``python_*``). The ``*_created`` samples
prometheus-client adds next to counters and histograms are turned off for the process.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

disable_created_metrics()

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_END_TO_END_SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
_FRAMES = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

DEPENDENCIES = ("kafka", "milvus")
END_TO_END_SINCE = ("polled", "produced")
WEBHOOK_STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "timeout", "connection", "invalid_request", "other_error")

METRIC_DOCS: dict[str, str] = {
    "dupwatch_events_consumed_total": "Upload events read from Kafka (including ones later dead-lettered).",
    "dupwatch_videos_indexed_total": "Uploads whose vectors were upserted into Milvus.",
    "dupwatch_dead_letters_total": "Events sent to the dead-letter topic, by reason.",
    "dupwatch_retries_total": "Transient failures that were retried (one per retry; not the failure that exhausts the attempts), by reason.",
    "dupwatch_alerts_sent_total": "Alerts handed to the alert sink, by level.",
    "dupwatch_replays_skipped_total": "Events whose exact upload was already indexed (replays after a crash or rebalance).",
    "dupwatch_commits_total": "Offset commits that succeeded.",
    "dupwatch_kafka_calls_released_total": "Blocking Kafka client calls released by the stuck-call guard, by call.",
    "dupwatch_kafka_consumer_replacements_total": "Kafka consumers closed and replaced because a rebalance never gave them an assignment.",
    "dupwatch_decode_seconds": "Fetch + decode time of one upload.",
    "dupwatch_inference_seconds": "Embedding time of one batch of uploads.",
    "dupwatch_detect_seconds": "Detection time of one upload: candidate search + re-ranking + decision.",
    "dupwatch_search_seconds": "Milvus read time (candidate search, stored vectors) within the detection of one upload.",
    "dupwatch_index_seconds": "Milvus upsert time of one upload.",
    "dupwatch_end_to_end_seconds": (
        "Time from an upload's start (since=polled: read from Kafka; since=produced: the Kafka record timestamp) "
        "until it was decided (indexed, dead-lettered or skipped as a replay)."
    ),
    "dupwatch_batch_frames": "Frames per embedder batch (across uploads).",
    "dupwatch_in_flight_videos": "Uploads polled but not yet committed.",
    "dupwatch_consumer_lag_messages": "High watermark minus position, per assigned partition.",
    "dupwatch_dependency_up": "1 when the dependency answered its last call (probe or work), else 0; 0 until the first call.",
    "dupwatch_last_progress_timestamp_seconds": "Unix time of the last loop iteration (liveness).",
    "dupwatch_webhook_requests_total": (
        "Webhook POST attempts by receiver and result class (2xx, 3xx, 4xx, 5xx, timeout, connection, invalid_request, other_error)."
    ),
    "dupwatch_webhook_deliveries_total": "Alerts acknowledged (2xx) by a webhook receiver.",
    "dupwatch_webhook_retries_total": "Webhook attempts repeated after a retryable failure (5xx, 408, 429, timeout, connection or other request error).",
    "dupwatch_webhook_dead_letters_total": (
        "Final webhook failures by receiver and dead-letter reason (webhook_rejected, webhook_retries_exhausted, "
        "webhook_request_error)."
    ),
    "dupwatch_webhook_rounds_exhausted_total": (
        "Delivery rounds that used up max_attempts without an answer (not final: the upload waits and sends again)."
    ),
}


class WorkerMetrics:
    """The worker's metrics on a dedicated registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *, runtime_collectors: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, d = self.registry, METRIC_DOCS
        self.events_consumed = Counter("dupwatch_events_consumed", d["dupwatch_events_consumed_total"], registry=r)
        self.videos_indexed = Counter("dupwatch_videos_indexed", d["dupwatch_videos_indexed_total"], registry=r)
        self.dead_letters = Counter("dupwatch_dead_letters", d["dupwatch_dead_letters_total"], ["reason"], registry=r)
        self.retries = Counter("dupwatch_retries", d["dupwatch_retries_total"], ["reason"], registry=r)
        self.alerts_sent = Counter("dupwatch_alerts_sent", d["dupwatch_alerts_sent_total"], ["level"], registry=r)
        self.replays_skipped = Counter("dupwatch_replays_skipped", d["dupwatch_replays_skipped_total"], registry=r)
        self.commits = Counter("dupwatch_commits", d["dupwatch_commits_total"], registry=r)
        self.kafka_calls_released = Counter(
            "dupwatch_kafka_calls_released", d["dupwatch_kafka_calls_released_total"], ["call"], registry=r
        )
        self.kafka_consumer_replacements = Counter(
            "dupwatch_kafka_consumer_replacements", d["dupwatch_kafka_consumer_replacements_total"], registry=r
        )
        self.decode_seconds = Histogram("dupwatch_decode_seconds", d["dupwatch_decode_seconds"], buckets=_SECONDS, registry=r)
        self.inference_seconds = Histogram(
            "dupwatch_inference_seconds", d["dupwatch_inference_seconds"], buckets=_SECONDS, registry=r
        )
        self.detect_seconds = Histogram("dupwatch_detect_seconds", d["dupwatch_detect_seconds"], buckets=_SECONDS, registry=r)
        self.search_seconds = Histogram("dupwatch_search_seconds", d["dupwatch_search_seconds"], buckets=_SECONDS, registry=r)
        self.index_seconds = Histogram("dupwatch_index_seconds", d["dupwatch_index_seconds"], buckets=_SECONDS, registry=r)
        self.end_to_end_seconds = Histogram(
            "dupwatch_end_to_end_seconds", d["dupwatch_end_to_end_seconds"], ["since"], buckets=_END_TO_END_SECONDS, registry=r
        )
        self.batch_frames = Histogram("dupwatch_batch_frames", d["dupwatch_batch_frames"], buckets=_FRAMES, registry=r)
        self.in_flight_videos = Gauge("dupwatch_in_flight_videos", d["dupwatch_in_flight_videos"], registry=r)
        self.consumer_lag = Gauge(
            "dupwatch_consumer_lag_messages", d["dupwatch_consumer_lag_messages"], ["topic", "partition"], registry=r
        )
        self.dependency_up = Gauge("dupwatch_dependency_up", d["dupwatch_dependency_up"], ["dependency"], registry=r)
        self.last_progress = Gauge(
            "dupwatch_last_progress_timestamp_seconds", d["dupwatch_last_progress_timestamp_seconds"], registry=r
        )
        self.webhook_requests = Counter(
            "dupwatch_webhook_requests", d["dupwatch_webhook_requests_total"], ["receiver", "status_class"], registry=r
        )
        self.webhook_deliveries = Counter(
            "dupwatch_webhook_deliveries", d["dupwatch_webhook_deliveries_total"], ["receiver"], registry=r
        )
        self.webhook_retries = Counter("dupwatch_webhook_retries", d["dupwatch_webhook_retries_total"], ["receiver"], registry=r)
        self.webhook_dead_letters = Counter(
            "dupwatch_webhook_dead_letters", d["dupwatch_webhook_dead_letters_total"], ["receiver", "reason"], registry=r
        )
        self.webhook_rounds_exhausted = Counter(
            "dupwatch_webhook_rounds_exhausted", d["dupwatch_webhook_rounds_exhausted_total"], ["receiver"], registry=r
        )
        for dep in DEPENDENCIES:
            self.dependency_up.labels(dependency=dep).set(0)
        if runtime_collectors:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    def set_dependency(self, dependency: str, up: bool) -> None:
        """``dupwatch_dependency_up{dependency}``: what the last call to it said."""
        self.dependency_up.labels(dependency=dependency).set(1 if up else 0)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def metrics_table() -> str:
    """The README's metric table (Markdown), generated from the declarations above."""
    from prometheus_client.metrics import MetricWrapperBase

    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    worker = WorkerMetrics(runtime_collectors=False)
    declared = [m for m in vars(worker).values() if isinstance(m, MetricWrapperBase)]
    by_name = {(m._name + "_total" if m._type == "counter" else m._name): m for m in declared}
    for name, doc in METRIC_DOCS.items():
        metric = by_name[name]
        labels = ", ".join(f"`{label}`" for label in metric._labelnames)
        rows.append(f"| `{name}` | {metric._type} | {labels} | {doc} |")
    return "\n".join(rows)
