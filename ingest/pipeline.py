"""The processing chain of one upload: parse → decode → embed → detect → alert → index.

Steps are pluggable objects behind small protocols (:class:`Decoder`, :class:`Embedder`,
:class:`Detector`, :class:`AlertSink`, :class:`DeadLetterSink`); the same :class:`Pipeline` runs
under the Kafka loop (``ingest.consumer``) and under ``dupwatch scan`` (a folder).

Every upload travels in a :class:`Job` envelope that keeps its Kafka coordinates (topic,
partition, offset), so the loop can commit exactly what is finished (arroyo's ``Message`` +
``replace``). A job ends in one of three states: ``indexed`` (alerts sent, rows upserted),
``dead`` (dead-lettered with a reason, its DLQ write acknowledged) or ``aborted`` (shutdown or
partition revoked while waiting; not committed, processed again by whoever owns it next).

Failure handling (dupwatch/errors.py): ``PermanentError`` → dead letter; input-related
``TransientError`` → retried up to ``limits.max_attempts`` then dead letter
``retries_exhausted``; dependency outages → wait without limit (see ``ingest.retry``); anything
else propagates and crashes the worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from dupwatch.config import DecodeConfig, LimitsConfig, SourceConfig
from dupwatch.errors import DupwatchError, PermanentError, TransientError
from dupwatch.records import DecodedVideo, VideoRepresentation
from ingest.metrics import WorkerMetrics
from ingest.retry import Aborted, RetriesExhausted, RetryPolicy, call_with_retry

log = logging.getLogger(__name__)

RETRIES_EXHAUSTED = "retries_exhausted"


# -- fault injection (a test hook, never set in production) -----------------------------------
FAULT_KILL_ENV = "DUPWATCH_FAULT_KILL_AT"
"""``PHASE:N``: the worker SIGKILLs its own process the N-th time (N ≥ 1) it enters PHASE.

A test hook for the crash tests (issue #11: kills during decode, inference, Milvus write, webhook
send, before and after the offset commit), read once when a :class:`ingest.worker.Worker` is
built (:func:`arm_fault_hook`). Unset (the only production setting) it costs one ``is None``
test per phase entry. Phases (:data:`FAULT_PHASES`):

- ``decode``: before fetching + decoding one upload (each attempt);
- ``embed``: before one embedder call (a batch of uploads, or one upload);
- ``index_write``: before one Milvus row-write call of the upsert (frames, clips, then the
  coarse row, each ≥ 1 call), so ``index_write:2`` dies after the frame rows of the first upload
  were written and before its clip and coarse rows: a half-written video;
- ``alert_send``: before handing one alert to the sinks (Kafka alerts topic, then webhooks);
- ``pre_commit`` / ``post_commit``: right before / after one Kafka offset commit.
"""
FAULT_PHASES = ("decode", "embed", "index_write", "alert_send", "pre_commit", "post_commit")


class _KillAt:
    def __init__(self, phase: str, n: int) -> None:
        self.phase, self.n, self.seen = phase, n, 0

    def __call__(self, phase: str) -> None:
        if phase != self.phase:
            return
        self.seen += 1
        if self.seen == self.n:
            log.warning("fault hook %s=%s:%d: SIGKILL now", FAULT_KILL_ENV, phase, self.n)
            for handler in logging.getLogger().handlers:
                try:
                    handler.flush()
                except Exception:  # noqa: BLE001 - dying anyway
                    pass
            os.kill(os.getpid(), signal.SIGKILL)


_kill_at: _KillAt | None = None


def parse_fault_spec(spec: str) -> tuple[str, int]:
    """``"decode:3"`` → ``("decode", 3)``; ValueError on an unknown phase or N < 1."""
    phase, sep, count = spec.strip().partition(":")
    n = int(count) if sep else 1
    if phase not in FAULT_PHASES or n < 1:
        raise ValueError(f"{FAULT_KILL_ENV}={spec!r}: expected PHASE:N with PHASE in {', '.join(FAULT_PHASES)} and N >= 1")
    return phase, n


def arm_fault_hook(spec: str | None = None) -> tuple[str, int] | None:
    """Read :data:`FAULT_KILL_ENV` (or ``spec``) once and arm the hook; returns what was armed."""
    global _kill_at
    spec = os.environ.get(FAULT_KILL_ENV, "") if spec is None else spec
    if not spec.strip():
        _kill_at = None
        return None
    phase, n = parse_fault_spec(spec)
    _kill_at = _KillAt(phase, n)
    log.warning("fault hook armed: SIGKILL on entry %d into phase %s (test hook %s)", n, phase, FAULT_KILL_ENV)
    return phase, n


def fault_point(phase: str) -> None:
    """The worker enters ``phase``: a no-op unless :func:`arm_fault_hook` armed a kill."""
    if _kill_at is not None:
        _kill_at(phase)


# -- protocols ------------------------------------------------------------------------------
class Decoder(Protocol):
    def decode(self, video_id: str, uri: str) -> DecodedVideo: ...


@runtime_checkable
class Embedder(Protocol):
    """Frames → representation. Optionally ``embed_batch(videos, tenants) -> list`` batches frames across videos."""

    def embed(self, decoded: DecodedVideo, tenant: str) -> VideoRepresentation: ...


class Detector(Protocol):
    def detect(self, rep: VideoRepresentation) -> list[Any]: ...


class AlertSink(Protocol):
    """Delivers alerts; must be idempotent by ``alert.alert_id`` (a replay re-sends the same id)."""

    def send(self, alert: Any) -> None: ...


class DeadLetterSink(Protocol):
    def send(self, job: "Job", error: DupwatchError) -> None: ...


class IndexWriter(Protocol):
    def upsert(self, rep: VideoRepresentation) -> Any: ...


# -- ready-made steps -----------------------------------------------------------------------
class FileDecoder:
    """``ingest.sources.VideoSource`` + ``ingest.decode.decode_video`` (imported lazily)."""

    def __init__(self, sources: SourceConfig, decode: DecodeConfig) -> None:
        from ingest.sources import VideoSource

        self._source = VideoSource(sources)
        self._config = decode

    def decode(self, video_id: str, uri: str) -> DecodedVideo:
        from ingest.decode import decode_video

        with self._source.open(uri) as local:
            return decode_video(local.path, self._config, video_id)


class NoDetector:
    """Indexes only (no alerts)."""

    def detect(self, rep: VideoRepresentation) -> list[Any]:
        return []


class CompositeAlertSink:
    def __init__(self, sinks: Sequence[AlertSink]) -> None:
        self.sinks = list(sinks)

    def send(self, alert: Any) -> None:
        for sink in self.sinks:
            sink.send(alert)


class CollectingAlertSink:
    """Keeps alerts in memory, deduplicated by ``alert_id`` (``scan`` and tests)."""

    def __init__(self) -> None:
        self.alerts: dict[str, Any] = {}

    def send(self, alert: Any) -> None:
        self.alerts.setdefault(alert.alert_id, alert)


def make_alert_id(tenant: str, video_id: str, matched_video_id: str, level: str, model_version: str) -> str:
    """Deterministic alert id (the idempotency key of Kafka alerts and webhooks)."""
    digest = hashlib.sha256("\x1f".join((tenant, video_id, matched_video_id, level, model_version)).encode()).hexdigest()
    return f"alr-{digest[:32]}"


# -- the envelope ---------------------------------------------------------------------------
@dataclass
class Job:
    """One upload on its way through the chain, with its source coordinates."""

    value: bytes
    topic: str = ""
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    event: Any = None
    decoded: DecodedVideo | None = None
    rep: VideoRepresentation | None = None
    alerts: list[Any] = field(default_factory=list)
    attempts: int = 0
    first_seen: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    status: str = "pending"  # pending | indexed | dead | aborted
    reason: str | None = None
    message: str | None = None

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @property
    def video_id(self) -> str | None:
        return getattr(self.event, "video_id", None)

    @property
    def finished(self) -> bool:
        return self.status in ("indexed", "dead")


class DlqLimitExceeded(RuntimeError):
    """Too many dead letters in a row: stop consuming rather than dead-letter everything."""


@dataclass
class StepContext:
    """How the pipeline waits (the consumer sleeps by polling paused partitions) and aborts."""

    sleep: Callable[[float], None] = time.sleep
    should_abort: Callable[[Job], bool] = lambda job: False
    revoked: Callable[[Job], bool] = lambda job: False
    """True once the job's partition was taken away by a rebalance: no further step starts
    (the new owner runs the job; ``should_abort`` covers waits, this covers step starts)."""
    on_outage: Callable[[TransientError], None] = lambda e: None
    on_recovered: Callable[[], None] = lambda: None


class Pipeline:
    """Runs a batch of jobs through the chain; sets each job's ``status``."""

    def __init__(
        self,
        *,
        decoder: Decoder,
        embedder: Embedder,
        detector: Detector,
        alert_sink: AlertSink,
        index: IndexWriter,
        dead_letters: DeadLetterSink,
        limits: LimitsConfig,
        metrics: WorkerMetrics,
        retry: RetryPolicy | None = None,
        parse: Callable[[bytes], Any] | None = None,
    ) -> None:
        self.decoder = decoder
        self.embedder = embedder
        self.detector = detector
        self.alert_sink = alert_sink
        self.index = index
        self.dead_letters = dead_letters
        self.limits = limits
        self.metrics = metrics
        self.retry = retry or RetryPolicy.from_limits(limits)
        self._parse = parse or self._default_parse
        self.consecutive_dead = 0

    def _default_parse(self, raw: bytes) -> Any:
        from ingest.events import parse_upload_event

        return parse_upload_event(raw, max_bytes=self.limits.max_event_bytes)

    # -- running one step with the retry policy --------------------------------------------
    def _run(self, job: Job, ctx: StepContext, fn: Callable[[], Any]) -> Any:
        """Returns the result, or ``None`` after the job was dead-lettered or aborted."""
        if job.status != "pending":
            return None
        if ctx.revoked(job):
            job.status = "aborted"
            return None

        def attempt() -> Any:
            try:
                return fn()
            except TransientError as exc:
                log.warning("transient failure (%s) for %s: %s", exc.reason, job.video_id or job.offset, exc)
                raise

        try:
            result, used = call_with_retry(
                attempt,
                self.retry,
                sleep=ctx.sleep,
                should_abort=lambda: ctx.should_abort(job),
                on_outage=ctx.on_outage,
                on_recovered=ctx.on_recovered,
                on_retry=self._count_retry,
                attempts_so_far=job.attempts,
            )
            job.attempts = used - 1
            return result
        except Aborted:
            job.status = "aborted"
        except RetriesExhausted as exc:
            cause = exc.__cause__
            err = TransientError(f"{exc}", reason=RETRIES_EXHAUSTED)
            job.attempts = self.retry.max_attempts
            self._dead_letter(job, err, ctx, cause_reason=getattr(cause, "reason", None))
        except PermanentError as exc:
            self._dead_letter(job, exc, ctx)
        return None

    def _count_retry(self, exc: TransientError) -> None:
        """The only place ``dupwatch_retries_total`` grows: once per retried failure (``on_retry``)."""
        self.metrics.retries.labels(reason=exc.reason).inc()

    def _dead_letter(self, job: Job, error: DupwatchError, ctx: StepContext, cause_reason: str | None = None) -> None:
        job.reason, job.message = error.reason, error.message
        job.attempts = max(job.attempts, 1)
        sent = True

        def send() -> None:
            self.dead_letters.send(job, error)

        try:
            call_with_retry(send, self.retry, sleep=ctx.sleep, should_abort=lambda: ctx.should_abort(job), on_outage=ctx.on_outage,
                            on_retry=self._count_retry)
        except (Aborted, RetriesExhausted):
            sent = False
        if not sent:
            job.status = "aborted"
            return
        job.status = "dead"
        self.metrics.dead_letters.labels(reason=error.reason).inc()
        log.warning(
            "dead-lettered %s/%s@%s: %s (%s)%s",
            job.topic, job.partition, job.offset, error.reason, error.message[:200],
            f" after {cause_reason}" if cause_reason else "",
        )
        self.consecutive_dead += 1
        if self.consecutive_dead >= self.limits.dlq_max_consecutive:
            raise DlqLimitExceeded(f"{self.consecutive_dead} consecutive dead letters (limits.dlq_max_consecutive)")

    # -- the chain -------------------------------------------------------------------------
    def process(self, jobs: Sequence[Job], ctx: StepContext | None = None) -> None:
        ctx = ctx or StepContext()
        for job in jobs:
            job.event = self._run(job, ctx, lambda job=job: self._parse(job.value))
            if job.status == "pending" and self._already_done(job, ctx):
                job.status = "indexed"  # a replay of a completed event: alerts were sent before the index write
                self.metrics.replays_skipped.inc()
                self.consecutive_dead = 0
        for job in jobs:
            if job.status == "pending":
                t0 = time.perf_counter()
                job.decoded = self._run(job, ctx, lambda job=job: self._decode(job))
                self.metrics.decode_seconds.observe(time.perf_counter() - t0)
        self._embed(jobs, ctx)
        for job in jobs:
            if job.status != "pending":
                continue
            assert job.rep is not None
            t0 = time.perf_counter()
            job.alerts = self._run(job, ctx, lambda job=job: list(self.detector.detect(job.rep))) or []
            self.metrics.detect_seconds.observe(time.perf_counter() - t0)
            for alert in job.alerts:
                self._run(job, ctx, lambda alert=alert: self._send_alert(alert))
                if job.status == "pending":
                    self.metrics.alerts_sent.labels(level=str(getattr(alert, "level", "unknown"))).inc()
            if job.status != "pending":
                continue
            t0 = time.perf_counter()
            self._run(job, ctx, lambda job=job: self.index.upsert(job.rep))
            if job.status == "pending":
                self.metrics.index_seconds.observe(time.perf_counter() - t0)
                self.metrics.videos_indexed.inc()
                job.status = "indexed"
                job.decoded = None  # free the frames early
                self.consecutive_dead = 0

    def _decode(self, job: Job) -> DecodedVideo:
        fault_point("decode")
        return self.decoder.decode(job.event.video_id, job.event.uri)

    def _send_alert(self, alert: Any) -> None:
        fault_point("alert_send")
        self.alert_sink.send(alert)

    def _already_done(self, job: Job, ctx: StepContext) -> bool:
        """True when the index holds this very event, embedded by this very model version.

        The coarse row is written last, after the alerts were acknowledged, so its presence means
        the whole chain completed: a replay (crash before commit, rebalance) skips the work and
        sends no second alert. A crash between alert and index re-sends the same alert ids.
        """
        lookup = getattr(self.index, "indexed_event", None)
        version = getattr(self.embedder, "version", None)
        if lookup is None or version is None:
            return False
        found = self._run(job, ctx, lambda: lookup(job.event.video_id))
        return found is not None and found == (job.event.event_id, version)

    def _embed(self, jobs: Sequence[Job], ctx: StepContext) -> None:
        for job in jobs:
            if job.status == "pending" and ctx.revoked(job):
                job.status = "aborted"
        ready = [j for j in jobs if j.status == "pending" and j.decoded is not None]
        batch_fn = getattr(self.embedder, "embed_batch", None)
        groups: list[list[Job]] = []
        frames = 0
        for job in ready:
            n = job.decoded.num_frames if job.decoded is not None else 0
            if groups and batch_fn is not None and frames + n <= self.limits.batch_frames:
                groups[-1].append(job)
                frames += n
            else:
                groups.append([job])
                frames = n
        for group in groups:
            t0 = time.perf_counter()
            self.metrics.batch_frames.observe(sum(j.decoded.num_frames for j in group if j.decoded is not None))
            if batch_fn is not None and len(group) > 1:
                reps = self._try_batch(batch_fn, group, ctx)
                if reps is not None:
                    for job, rep in zip(group, reps, strict=True):
                        job.rep = self._stamp(job, rep)
                    self.metrics.inference_seconds.observe(time.perf_counter() - t0)
                    continue
            for job in group:  # one by one: no batch path, or isolating a poison video
                if job.status == "pending":
                    rep = self._run(job, ctx, lambda job=job: self._embed_one(job))
                    job.rep = self._stamp(job, rep) if rep is not None else None
            self.metrics.inference_seconds.observe(time.perf_counter() - t0)

    def _embed_one(self, job: Job) -> VideoRepresentation:
        fault_point("embed")
        return self.embedder.embed(job.decoded, job.event.tenant)

    @staticmethod
    def _stamp(job: Job, rep: VideoRepresentation) -> VideoRepresentation:
        rep.meta.setdefault("event_id", job.event.event_id)
        rep.meta.setdefault("duration_s", str(job.decoded.duration_s if job.decoded is not None else 0.0))
        return rep

    def _try_batch(self, batch_fn: Callable[..., Any], group: list[Job], ctx: StepContext) -> list[VideoRepresentation] | None:
        videos = [j.decoded for j in group]
        tenants = [j.event.tenant for j in group]
        try:
            def run_batch() -> list[VideoRepresentation]:
                fault_point("embed")
                return list(batch_fn(videos, tenants))

            reps, _ = call_with_retry(
                run_batch,
                self.retry,
                sleep=ctx.sleep,
                should_abort=lambda: all(ctx.should_abort(j) for j in group),
                on_outage=ctx.on_outage,
                on_recovered=ctx.on_recovered,
                on_retry=self._count_retry,
            )
            return reps  # type: ignore[return-value]
        except (PermanentError, RetriesExhausted, Aborted):
            return None


def dead_letter_headers(job: Job, error: DupwatchError) -> list[tuple[str, bytes]]:
    """Kafka Connect style error context in record headers (anchors.md §3 DLQ)."""
    return [
        ("dupwatch.errors.class", type(error).__name__.encode()),
        ("dupwatch.errors.reason", error.reason.encode()),
        ("dupwatch.errors.message", error.message[:1024].encode("utf-8", "replace")),
        ("dupwatch.errors.attempts", str(max(job.attempts, 1)).encode()),
        ("dupwatch.errors.topic", job.topic.encode()),
        ("dupwatch.errors.partition", str(job.partition).encode()),
        ("dupwatch.errors.offset", str(job.offset).encode()),
    ]


def dead_letter_record(job: Job, error: DupwatchError) -> Any:
    from ingest.events import DeadLetterRecord

    return DeadLetterRecord.from_error(
        job.value,
        error,
        attempts=max(job.attempts, 1),
        first_seen=job.first_seen,
        source_topic=job.topic or None,
        source_partition=job.partition if job.topic else None,
        source_offset=job.offset if job.topic else None,
    )
