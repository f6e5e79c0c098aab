"""Every Prometheus metric of the worker, declared once (style.md rule 6, anchors.md §3).

Names follow Prometheus practice: ``dupwatch_`` prefix, base units with a plural suffix
(``_seconds``), counters end in ``_total``, no high-cardinality labels (no video or tenant ids).
Each :class:`WorkerMetrics` owns its own ``CollectorRegistry`` so that several workers (tests)
in one process do not collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_FRAMES = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

METRIC_DOCS: dict[str, str] = {
    "dupwatch_events_consumed_total": "Upload events read from Kafka (including ones later dead-lettered).",
    "dupwatch_videos_indexed_total": "Uploads whose vectors were upserted into Milvus.",
    "dupwatch_dead_letters_total": "Events sent to the dead-letter topic, by reason.",
    "dupwatch_retries_total": "Transient failures that were retried (one per retry; not the failure that exhausts the attempts), by reason.",
    "dupwatch_alerts_sent_total": "Alerts handed to the alert sink, by level.",
    "dupwatch_replays_skipped_total": "Events whose exact upload was already indexed (replays after a crash or rebalance).",
    "dupwatch_commits_total": "Offset commits that succeeded.",
    "dupwatch_decode_seconds": "Fetch + decode time of one upload.",
    "dupwatch_inference_seconds": "Embedding time of one batch of uploads.",
    "dupwatch_detect_seconds": "Candidate search + re-ranking time of one upload.",
    "dupwatch_index_seconds": "Milvus upsert time of one upload.",
    "dupwatch_batch_frames": "Frames per embedder batch (across uploads).",
    "dupwatch_in_flight_videos": "Uploads polled but not yet committed.",
    "dupwatch_consumer_lag": "High watermark minus position, per assigned partition.",
    "dupwatch_dependency_up": "1 when the dependency answered at its last use, else 0.",
    "dupwatch_last_progress_timestamp_seconds": "Unix time of the last loop iteration (liveness).",
}


class WorkerMetrics:
    """The worker's metrics on a dedicated registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, d = self.registry, METRIC_DOCS
        self.events_consumed = Counter("dupwatch_events_consumed", d["dupwatch_events_consumed_total"], registry=r)
        self.videos_indexed = Counter("dupwatch_videos_indexed", d["dupwatch_videos_indexed_total"], registry=r)
        self.dead_letters = Counter("dupwatch_dead_letters", d["dupwatch_dead_letters_total"], ["reason"], registry=r)
        self.retries = Counter("dupwatch_retries", d["dupwatch_retries_total"], ["reason"], registry=r)
        self.alerts_sent = Counter("dupwatch_alerts_sent", d["dupwatch_alerts_sent_total"], ["level"], registry=r)
        self.replays_skipped = Counter("dupwatch_replays_skipped", d["dupwatch_replays_skipped_total"], registry=r)
        self.commits = Counter("dupwatch_commits", d["dupwatch_commits_total"], registry=r)
        self.decode_seconds = Histogram("dupwatch_decode_seconds", d["dupwatch_decode_seconds"], buckets=_SECONDS, registry=r)
        self.inference_seconds = Histogram(
            "dupwatch_inference_seconds", d["dupwatch_inference_seconds"], buckets=_SECONDS, registry=r
        )
        self.detect_seconds = Histogram("dupwatch_detect_seconds", d["dupwatch_detect_seconds"], buckets=_SECONDS, registry=r)
        self.index_seconds = Histogram("dupwatch_index_seconds", d["dupwatch_index_seconds"], buckets=_SECONDS, registry=r)
        self.batch_frames = Histogram("dupwatch_batch_frames", d["dupwatch_batch_frames"], buckets=_FRAMES, registry=r)
        self.in_flight_videos = Gauge("dupwatch_in_flight_videos", d["dupwatch_in_flight_videos"], registry=r)
        self.consumer_lag = Gauge("dupwatch_consumer_lag", d["dupwatch_consumer_lag"], ["topic", "partition"], registry=r)
        self.dependency_up = Gauge("dupwatch_dependency_up", d["dupwatch_dependency_up"], ["dependency"], registry=r)
        self.last_progress = Gauge(
            "dupwatch_last_progress_timestamp_seconds", d["dupwatch_last_progress_timestamp_seconds"], registry=r
        )
        for dep in ("kafka", "milvus"):
            self.dependency_up.labels(dependency=dep).set(0)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
