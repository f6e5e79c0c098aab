"""Wires the streaming worker: settings → index, embedder, sinks, pipeline, consumer, health.

``python -m ingest.worker [--config FILE] [--embedder module:factory]`` runs the worker in the
foreground (what ``dupwatch serve`` runs, and what the crash tests start as a subprocess).
SIGTERM/SIGINT: finish or release the batch, commit what is done, exit 0. A dead-letter storm
(``limits.dlq_max_consecutive``) or a bug exits non-zero so that Kubernetes restarts the pod.

The embedder comes from a factory ``factory(settings) -> Embedder``; the default is
``inference.served:build_embedder``. The object must have ``embed`` (and may have
``embed_batch``) and an ``index_dims`` attribute (:class:`index.schema.IndexDims`); its optional
``version`` string is stored as the bundle version of each indexed video.

Test hook: ``DUPWATCH_FAULT_KILL_AT=PHASE:N`` (``ingest.pipeline.FAULT_KILL_ENV``), read once when
the :class:`Worker` is built, makes the process SIGKILL itself the N-th time it enters PHASE
(decode, embed, index_write, alert_send, pre_commit, post_commit); the crash tests use it to kill
at chosen points. Unset, nothing is wrapped and each phase costs one ``is None`` test.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dupwatch.config import KafkaConfig, Settings
from dupwatch.errors import DupwatchError, TransientError
from ingest.consumer import CommitPolicy, UploadConsumer
from ingest.health import HealthServer, HealthState
from ingest.metrics import WorkerMetrics
from ingest.pipeline import (
    AlertSink,
    CompositeAlertSink,
    Detector,
    FileDecoder,
    Job,
    NoDetector,
    Pipeline,
    arm_fault_hook,
    dead_letter_headers,
    dead_letter_record,
    fault_point,
)

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "inference.served:build_embedder"
KAFKA_SEND_TIMEOUT_S = 30.0


def load_factory(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` → the function."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected module:function, got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


class BundleRefused(Exception):
    """The configured model bundle cannot be served (missing, altered, unsafe or malformed): a
    start-up error the command line prints as one line, never a traceback."""


_REFUSAL_TYPES = (("inference.bundle", "BundleError"), ("inference.checkpoints", "CheckpointError"))


def _is_bundle_refusal(exc: BaseException) -> bool:
    # Only modules already imported can have raised it: no torch import for other embedders.
    types = [getattr(sys.modules[m], name) for m, name in _REFUSAL_TYPES if m in sys.modules]
    return bool(types) and isinstance(exc, tuple(types))


def one_line(text: str) -> str:
    """A multi-line message folded onto one line (``; `` between the lines)."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def build_embedder_checked(settings: Settings, embedder_factory: str = DEFAULT_EMBEDDER) -> Any:
    """``factory(settings)``; a bundle the loader refuses (``BundleError``, ``CheckpointError``)
    becomes :class:`BundleRefused` with a one-line message naming the bundle."""
    factory = load_factory(embedder_factory)
    try:
        return factory(settings)
    except Exception as exc:
        if _is_bundle_refusal(exc):
            raise BundleRefused(f"model bundle {settings.model.bundle} refused: {one_line(str(exc))}") from exc
        raise


class LazyProducer:
    """The Kafka producer, created on first use or by :meth:`connect`.

    Creating a ``KafkaProducer`` blocks until a broker answers and raises after
    ``kafka.connect_timeout_s``; the worker must not die of that before its health server and
    connect loop run (:meth:`UploadConsumer.run` calls :meth:`connect` in its retry loop). A
    send before a broker is reachable raises the client's ``KafkaError`` (``kafka_unavailable``).
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._producer: Any = None
        self._lock = threading.Lock()

    def connect(self) -> Any:
        with self._lock:
            if self._producer is None:
                self._producer = self._factory()
            return self._producer

    def send(self, *args: Any, **kwargs: Any) -> Any:
        return self.connect().send(*args, **kwargs)

    def flush(self, timeout: float | None = None) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        if self._producer is not None:
            self._producer.close(timeout=timeout)


def _producer(kafka: KafkaConfig) -> LazyProducer:
    return LazyProducer(lambda: _kafka_producer(kafka))


def _kafka_producer(kafka: KafkaConfig) -> Any:
    from kafka import KafkaProducer

    conf: dict[str, Any] = dict(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=f"{kafka.client_id}-producer",
        acks="all",
        retries=5,
        linger_ms=5,
        security_protocol=kafka.security_protocol,
        bootstrap_timeout_ms=int(kafka.connect_timeout_s * 1000),
    )
    if kafka.sasl_mechanism:
        conf.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
        )
    return KafkaProducer(**conf)


def _send_sync(producer: Any, topic: str, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    from kafka.errors import KafkaError

    try:
        producer.send(topic, key=key, value=value, headers=headers).get(timeout=KAFKA_SEND_TIMEOUT_S)
    except KafkaError as exc:
        raise TransientError(f"producing to {topic} failed: {exc}", reason="kafka_unavailable") from exc


class KafkaAlertSink:
    """Alerts topic, keyed by ``alert_id`` (receivers and compaction dedupe replays by it)."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def send(self, alert: Any) -> None:
        _send_sync(
            self.producer,
            self.topic,
            key=alert.alert_id.encode(),
            value=alert.model_dump_json().encode(),
            headers=[("dupwatch.alert_id", alert.alert_id.encode()), ("dupwatch.level", str(alert.level).encode())],
        )


class KafkaDeadLetterSink:
    """``DeadLetterRecord`` JSON as value, error context in headers, original key kept."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def send(self, job: Job, error: DupwatchError) -> None:
        record = dead_letter_record(job, error)
        _send_sync(
            self.producer,
            self.topic,
            key=job.key,
            value=record.model_dump_json().encode(),
            headers=dead_letter_headers(job, error),
        )


class VersionedEmbedder:
    """Stamps ``meta['bundle_version']`` on each representation (stored in the coarse row)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.version = str(getattr(inner, "version", "unknown"))
        if hasattr(inner, "embed_batch"):
            self.embed_batch = self._embed_batch
        if hasattr(inner, "embed_stream"):
            self.embed_stream = self._embed_stream

    def _stamp(self, rep: Any) -> Any:
        if "bundle_version" not in rep.meta:
            rep.meta["bundle_version"] = self.version
        return rep

    def embed(self, decoded: Any, tenant: str) -> Any:
        return self._stamp(self.inner.embed(decoded, tenant))

    def _embed_batch(self, videos: Sequence[Any], tenants: Sequence[str]) -> list[Any]:
        return [self._stamp(r) for r in self.inner.embed_batch(videos, tenants)]

    def _embed_stream(self, stream: Any, tenant: str) -> Any:
        return self._stamp(self.inner.embed_stream(stream, tenant))


def index_dims_of(embedder: Any, crop: int = 224) -> Any:
    """``embedder.index_dims`` if it has one, else measured by embedding 8 grey frames once."""
    import numpy as np

    from dupwatch.records import DecodedVideo
    from index.schema import IndexDims

    dims = getattr(embedder, "index_dims", None)
    if dims is not None:
        return dims
    probe = DecodedVideo(
        video_id="dims-probe",
        frames=np.full((8, crop, crop, 3), 128, np.uint8),
        timestamps=np.arange(8, dtype=np.float32),
        duration_s=8.0,
        source_width=crop,
        source_height=crop,
    )
    rep = embedder.embed(probe, "default")
    fine = rep.fine_index if rep.fine_index is not None else rep.regions
    return IndexDims(coarse=int(rep.coarse.shape[0]), clip=int(rep.clips.shape[1]), regions=int(fine.shape[1]), region_dim=int(fine.shape[2]))


class AlertingDetector:
    """``detect.detector.Detector`` (returns decided pairs) → the pipeline's ``AlertEvent`` list."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def detect(self, rep: Any) -> list[Any]:
        return list(self.detector.alerts(rep, self.detector.detect(rep)))


class WebhookAlertSink:
    """``detect.webhooks.WebhookSender`` as an :class:`AlertSink`.

    The sender retries each receiver with its own policy and dedupes by ``alert_id`` in its
    delivery log; a receiver still failing transiently makes the upload wait (not committed).
    """

    def __init__(self, sender: Any) -> None:
        self.sender = sender

    def send(self, alert: Any) -> None:
        import json

        results = self.sender.send(alert.alert_id, json.loads(alert.model_dump_json()), level=alert.level)
        # 5xx/timeouts/resets past the receiver's retry budget (``attempts_exhausted``) are an
        # outage, not a verdict: wait and send again (same webhook-id). 4xx stays a dead letter.
        failed = [r for r in results if not r.ok and (not r.dead_letter or r.reason == "attempts_exhausted")]
        if failed:
            names = ", ".join(f"{r.receiver}:{r.reason or r.outcome}" for r in failed)
            raise TransientError(f"webhook delivery failed: {names}", reason="webhook_unavailable")


class IndexWriteFault:
    """Milvus call wrapper (:meth:`index.store.VideoIndex.add_call_wrapper`) entering the
    ``index_write`` fault point before every row write (``upsert``/``insert`` calls); added only
    when the hook is armed for that phase."""

    def __init__(self, hook: Callable[[str], None] = fault_point) -> None:
        self.hook = hook

    def __call__(self, what: str, proceed: Callable[[], Any]) -> Any:
        if what.startswith(("upsert ", "insert ")):
            self.hook("index_write")
        return proceed()


def kill_on_index_writes(index: Any) -> None:
    """Route the ``index_write`` fault point through every Milvus row write of ``index``."""
    index.add_call_wrapper(IndexWriteFault())


class MilvusCallMeter:
    """A Milvus call wrapper for a :class:`index.store.VideoIndex`:
    ``dupwatch_dependency_up{dependency="milvus"}`` follows each call's outcome (1 on an answer, 0
    on ``TransientError``: Milvus unreachable), and :meth:`busy_seconds` sums the time spent in
    calls, which the pipeline reads around detection to report its search time."""

    def __init__(self, metrics: WorkerMetrics, dependency: str = "milvus") -> None:
        self.metrics = metrics
        self.dependency = dependency
        self._busy = 0.0
        self._lock = threading.Lock()

    def install(self, index: Any) -> Any:
        index.add_call_wrapper(self)
        return index

    def __call__(self, what: str, proceed: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            result = proceed()
        except TransientError:
            self.metrics.set_dependency(self.dependency, False)
            raise
        finally:
            with self._lock:
                self._busy += time.perf_counter() - t0
        self.metrics.set_dependency(self.dependency, True)
        return result

    def busy_seconds(self) -> float:
        with self._lock:
            return self._busy


def decode_config(settings: Settings, mode: str = "pipelined") -> Any:
    """The decode settings of ``mode``: pipelined, several uploads decode at once on the pool, so
    each gets one FFmpeg thread unless ``decode.threads`` says otherwise (FFmpeg's own frame
    threads would compete with the pool and the embedder for the same cores)."""
    if mode == "pipelined" and settings.limits.decode_threads > 0 and settings.decode.threads == 0:
        return settings.decode.model_copy(update={"threads": 1})
    return settings.decode


def make_pipeline(
    settings: Settings,
    *,
    decoder: Any,
    embedder: Any,
    detector: Detector,
    alert_sink: AlertSink,
    index: Any,
    dead_letters: Any,
    metrics: WorkerMetrics,
    index_busy_seconds: Callable[[], float] | None = None,
    mode: str = "pipelined",
    wrap: Any = None,
) -> Pipeline:
    """The one factory of the processing chain (``serve``, ``scan`` and the benchmarks).

    ``mode`` ``pipelined``: ``limits.decode_threads`` uploads decode on a pool while the calling
    thread embeds (batches across uploads, waiting at most ``limits.embed_max_wait_s``) and
    decides; ``serial``: every step on the calling thread. ``wrap(step name, step)`` puts wrapper
    steps (:class:`ingest.steps.Timed`, :class:`ingest.steps.FaultInjection`) around steps.
    """
    if mode not in ("pipelined", "serial"):
        raise ValueError(f"mode must be pipelined or serial, not {mode!r}")
    limits = settings.limits
    pipelined = mode == "pipelined"
    return Pipeline(
        decoder=decoder,
        embedder=embedder,
        detector=detector,
        alert_sink=alert_sink,
        index=index,
        dead_letters=dead_letters,
        limits=limits,
        metrics=metrics,
        index_busy_seconds=index_busy_seconds,
        decode_threads=limits.decode_threads if pipelined else 0,
        embed_max_wait_s=limits.embed_max_wait_s if pipelined else None,
        wrap=wrap,
    )


def _wire_webhook_metrics(alert_sinks: Sequence[Any], metrics: WorkerMetrics) -> None:
    """Webhook senders built without metrics count their requests, deliveries, retries and dead
    letters on the worker's registry."""
    for sink in alert_sinks:
        sender = getattr(sink, "sender", None)
        if sender is not None and hasattr(sender, "metrics") and sender.metrics is None:
            sender.metrics = metrics


def _wire_webhook_dead_letters(alert_sinks: Sequence[Any], producer: Any, topic: str) -> None:
    """Webhook senders that were built without a dead-letter publisher publish their final failures
    (4xx, or 5xx/timeouts past ``dead_letter_after_s``) to the worker's dead-letter topic."""
    from detect.webhooks import KafkaWebhookDeadLetters

    for sink in alert_sinks:
        sender = getattr(sink, "sender", None)
        if sender is not None and hasattr(sender, "dead_letters") and sender.dead_letters is None:
            sender.dead_letters = KafkaWebhookDeadLetters(producer, topic)


class Worker:
    """The whole streaming worker for one process."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Any,
        detector: Detector | None = None,
        detector_factory: Callable[[Any], Detector] | None = None,
        alert_sinks: Sequence[AlertSink] = (),
        decoder: Any = None,
        metrics: WorkerMetrics | None = None,
        commit_policy: CommitPolicy | None = None,
        serve_http: bool = True,
        mode: str = "pipelined",
        wrap: Any = None,
    ) -> None:
        """``mode`` and ``wrap``: see :func:`make_pipeline`."""
        from index.store import VideoIndex

        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.health = HealthState(stall_s=max(60.0, settings.kafka.max_poll_interval_ms / 1000.0))
        self.embedder = VersionedEmbedder(embedder)
        dims = index_dims_of(embedder, settings.decode.crop)
        self.index = VideoIndex(settings.milvus, dims)
        self.milvus_meter = MilvusCallMeter(self.metrics)
        self.milvus_meter.install(self.index)
        armed = arm_fault_hook()  # DUPWATCH_FAULT_KILL_AT (a test hook; unset in production)
        if armed is not None and armed[0] == "index_write":
            kill_on_index_writes(self.index)
        if detector is None and detector_factory is not None:
            detector = detector_factory(self.index)
        self._probe_index = VideoIndex(settings.milvus, dims)
        self.producer = _producer(settings.kafka)
        _wire_webhook_dead_letters(alert_sinks, self.producer, settings.kafka.dead_letter_topic)
        _wire_webhook_metrics(alert_sinks, self.metrics)
        sinks: list[AlertSink] = [KafkaAlertSink(self.producer, settings.kafka.alerts_topic), *alert_sinks]
        self.pipeline = make_pipeline(
            settings,
            decoder=decoder or FileDecoder(settings.sources, decode_config(settings, mode)),
            embedder=self.embedder,
            detector=detector or NoDetector(),
            alert_sink=CompositeAlertSink(sinks),
            index=self.index,
            dead_letters=KafkaDeadLetterSink(self.producer, settings.kafka.dead_letter_topic),
            metrics=self.metrics,
            index_busy_seconds=self.milvus_meter.busy_seconds,
            mode=mode,
            wrap=wrap,
        )
        self.consumer = UploadConsumer(
            settings.kafka,
            settings.limits,
            self.pipeline,
            metrics=self.metrics,
            health=self.health,
            commit_policy=commit_policy,
            connect_hooks=(self.producer.connect,),
        )
        self.health.set("model", True)
        self.health.add_probe("milvus", self._probe_milvus)
        self.server = HealthServer(settings.server.host, settings.server.port, self.health, self.metrics) if serve_http else None

    def _probe_milvus(self) -> bool:
        """The readiness probe; its answer also sets ``dupwatch_dependency_up{dependency="milvus"}``."""
        ok = self._probe_index.ping()
        self.metrics.set_dependency("milvus", ok)
        return ok

    def stop(self) -> None:
        self.consumer.stop()

    def run(self) -> None:
        """Until :meth:`stop`; raises on a bug or a dead-letter storm."""
        if self.server is not None:
            self.server.start()
            log.info("health and metrics on %s:%d", self.settings.server.host, self.server.port)
        self.health.start_probes()
        try:
            try:
                self.index.ensure_collections()
            except TransientError as exc:
                log.warning("Milvus not reachable at start (%s); the loop will wait for it", exc)
            self.consumer.run()
        finally:
            self.pipeline.close()
            self.health.stop()
            try:
                self.producer.flush(timeout=10)
                self.producer.close(timeout=10)
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the producer: %s", exc)
            self.index.close()
            self._probe_index.close()
            if self.server is not None:
                self.server.stop()


def install_signal_handlers(stop: Callable[[], None]) -> None:
    def handler(signum: int, frame: Any) -> None:
        log.info("signal %d: draining", signum)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def webhook_sinks(settings: Settings) -> list[AlertSink]:
    """One sink delivering every alert to the configured receivers (empty without receivers)."""
    if not settings.webhooks:
        return []
    from detect.delivery_log import MilvusDeliveryLog, SqliteDeliveryLog
    from detect.webhooks import WebhookSender

    kind = settings.alerts.delivery_log
    if kind == "auto":
        kind = "sqlite" if settings.milvus.is_lite else "milvus"
    if kind == "milvus":
        from pymilvus import MilvusClient

        token = settings.milvus.token.get_secret_value() if settings.milvus.token else ""
        client = MilvusClient(uri=settings.milvus.uri, token=token, db_name=settings.milvus.db_name)
        delivery_log: Any = MilvusDeliveryLog(client, settings.alerts.milvus_collection, timeout_s=settings.milvus.timeout_s)
    else:
        delivery_log = SqliteDeliveryLog(settings.alerts.sqlite_path)
    return [WebhookAlertSink(WebhookSender(settings.webhooks, delivery_log))]


def serve(settings: Settings, *, embedder_factory: str = DEFAULT_EMBEDDER) -> int:
    """Build and run the worker in this process; the exit code."""
    embedder = build_embedder_checked(settings, embedder_factory)
    worker = Worker(
        settings, embedder=embedder, detector_factory=detector_factory_for(settings, embedder), alert_sinks=webhook_sinks(settings)
    )
    install_signal_handlers(worker.stop)
    worker.run()
    log.info("worker stopped cleanly")
    return 0


def detector_factory_for(settings: Settings, embedder: Any) -> Callable[[Any], Detector] | None:
    """``index -> detector``: the detect package's cascade when the embedder carries the bundle's
    models (``embedder.models``), else ``None`` (index only, no alerts)."""
    models = getattr(embedder, "models", None)
    if models is None:
        return None
    try:
        from detect.detector import Detector as CascadeDetector
    except ImportError:
        return None
    return lambda index: AlertingDetector(CascadeDetector(models, index, settings.detection))


def main(argv: Sequence[str] | None = None) -> int:
    from dupwatch.logs import configure_logging
    from dupwatch.config import ConfigError, load_settings

    parser = argparse.ArgumentParser(prog="python -m ingest.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--config", "-c", type=Path, default=None)
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="module:factory building the embedder")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"dupwatch: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        return serve(settings, embedder_factory=args.embedder)
    except BundleRefused as exc:
        print(f"dupwatch: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


# -- dupwatch scan: a folder instead of Kafka ------------------------------------------------
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".3gp")


class CollectingDeadLetterSink:
    def __init__(self) -> None:
        self.records: list[tuple[Job, DupwatchError]] = []

    def send(self, job: Job, error: DupwatchError) -> None:
        self.records.append((job, error))


def _scan_video_id(path: Path, used: set[str]) -> str:
    import re

    base = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem).lstrip("._-")[:100] or "video"
    vid, n = base, 1
    while vid in used:
        n += 1
        vid = f"{base}-{n}"
    used.add(vid)
    return vid


def _file_fingerprint(path: Path) -> str:
    """12 hex digits of (size, mtime in ns): a changed file gets a new scan event id."""
    import hashlib

    st = path.stat()
    return hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def scan_directory(
    settings: Settings,
    directory: Path,
    *,
    tenant: str = "default",
    embedder_factory: str = DEFAULT_EMBEDDER,
    embedder: Any = None,
    detector: Detector | None = None,
    detector_factory: Callable[[Any], Detector] | None = None,
    recursive: bool = False,
) -> Any:
    """Run the pipeline over the video files of ``directory``; yields JSON-able records.

    One record per file (``type`` ``indexed`` or ``dead_letter``), then one per alert.

    Re-running over the same folder into the same Milvus database is safe: each file's event id
    is ``scan-{video_id}-{fingerprint}`` (size and modification time of the file), so a file that
    was already indexed by an earlier scan is recognised by the pipeline's replay check and not
    processed again: its record says ``"already_indexed": true`` with the frame and clip counts of
    the stored rows and ``alerts: 0`` (its detections were reported by the scan that indexed it;
    no rows are rewritten and no alert is raised twice). A file whose content changed since
    (new size or mtime) gets a new event id and is decoded, checked and re-indexed (its rows
    overwritten).
    """
    import json
    from datetime import datetime, timezone

    from index.store import VideoIndex
    from ingest.pipeline import CollectingAlertSink

    directory = directory.resolve()
    files = sorted(p for p in (directory.rglob("*") if recursive else directory.iterdir()) if p.is_file() and not p.name.startswith("."))
    inner = embedder if embedder is not None else build_embedder_checked(settings, embedder_factory)
    embedder = VersionedEmbedder(inner)
    index = VideoIndex(settings.milvus, index_dims_of(inner, settings.decode.crop))
    metrics = WorkerMetrics(runtime_collectors=False)
    meter = MilvusCallMeter(metrics)
    meter.install(index)
    index.ensure_collections()
    if detector is None:
        factory = detector_factory or detector_factory_for(settings, inner)
        detector = factory(index) if factory is not None else NoDetector()
    alerts = CollectingAlertSink()
    dead = CollectingDeadLetterSink()
    pipeline = make_pipeline(
        settings,
        decoder=FileDecoder(settings.sources.model_copy(update={"local_roots": [directory]}), decode_config(settings)),
        embedder=embedder,
        detector=detector,
        alert_sink=alerts,
        index=index,
        dead_letters=dead,
        metrics=metrics,
        index_busy_seconds=meter.busy_seconds,
    )
    used: set[str] = set()
    now = datetime.now(timezone.utc).isoformat()
    jobs = []
    for offset, path in enumerate(files):
        vid = _scan_video_id(path, used)
        event_id = f"scan-{vid}-{_file_fingerprint(path)}"[:128]
        event = {"schema_version": 1, "event_id": event_id, "video_id": vid, "tenant": tenant, "uri": str(path), "uploaded_at": now}
        jobs.append((path, Job(value=json.dumps(event).encode(), offset=offset)))
    step = settings.limits.max_in_flight_videos
    try:
        for start in range(0, len(jobs), step):
            chunk = jobs[start : start + step]
            pipeline.process([j for _, j in chunk])
            replays = [j.video_id for _, j in chunk if j.status == "indexed" and j.rep is None]
            stored = index.video_info(replays) if replays else {}
            for path, job in chunk:
                if job.status == "indexed" and job.rep is None:  # indexed by an earlier scan
                    info = stored.get(job.video_id or "", {})
                    yield {
                        "type": "indexed",
                        "already_indexed": True,
                        "file": str(path),
                        "video_id": job.video_id,
                        "frames": int(info.get("num_frames", 0)),
                        "clips": int(info.get("num_clips", 0)),
                        "alerts": 0,
                    }
                elif job.status == "indexed":
                    assert job.rep is not None
                    yield {
                        "type": "indexed",
                        "already_indexed": False,
                        "file": str(path),
                        "video_id": job.video_id,
                        "frames": int(job.rep.regions.shape[0]),
                        "clips": int(job.rep.clips.shape[0]),
                        "alerts": len(job.alerts),
                    }
                else:
                    yield {"type": "dead_letter", "file": str(path), "video_id": job.video_id, "reason": job.reason, "message": job.message}
        for alert in alerts.alerts.values():
            yield {"type": "alert", **json.loads(alert.model_dump_json())}
    finally:
        pipeline.close()
        index.close()
