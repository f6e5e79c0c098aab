"""The processing chain of one upload: parse → decode → embed → detect → alert → index.

Steps are pluggable objects behind small protocols (:class:`Decoder`, :class:`Embedder`,
:class:`Detector`, :class:`AlertSink`, :class:`DeadLetterSink`); the same :class:`Pipeline` runs
under the Kafka loop (``ingest.consumer``) and under ``dupwatch scan`` (a folder).
The chain of :mod:`ingest.steps` (Parse → SkipReplay → Decode → Embed → Decide → Done) is driven
either without waiting (:meth:`Pipeline.submit`, then :meth:`Pipeline.collect` for the decided
jobs, :meth:`Pipeline.join` to finish what is in flight: the Kafka loop, across polls) or a batch at
a time (:meth:`Pipeline.process`: ``dupwatch scan``); this module holds the work each step calls.

Every upload travels in a :class:`Job` envelope that keeps its Kafka coordinates (topic,
partition, offset), so the loop can commit exactly what is finished (arroyo's ``Message`` +
``replace``). A job ends in one of three states: ``indexed`` (alerts sent, rows upserted),
``dead`` (dead-lettered with a reason, its DLQ write acknowledged) or ``aborted`` (shutdown or
partition revoked while waiting; not committed, processed again by whoever owns it next).

When an upload is decided (indexed, dead-lettered, or skipped as a replay) the pipeline logs one
INFO line for it on the ``dupwatch.uploads`` logger (:func:`upload_log_fields`: event, video,
tenant, outcome, alert level, step milliseconds) and observes ``dupwatch_end_to_end_seconds``.

Failure handling (dupwatch/errors.py): ``PermanentError`` → dead letter; input-related
``TransientError`` → retried up to ``limits.max_attempts`` then dead letter
``retries_exhausted``; dependency outages → wait without limit (see ``ingest.retry``); anything
else propagates and crashes the worker.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar, runtime_checkable

from dupwatch.config import DecodeConfig, LimitsConfig, SourceConfig
from dupwatch.errors import DupwatchError, PermanentError, TransientError
from dupwatch.events import make_alert_id  # noqa: F401 - the alert id lives with the alert records
from dupwatch.records import DecodedVideo, DecodeSummary, FrameChunk, VideoRepresentation
from ingest.metrics import WorkerMetrics
from ingest.retry import Aborted, RetriesExhausted, RetryPolicy, call_with_retry

log = logging.getLogger(__name__)
upload_log = logging.getLogger("dupwatch.uploads")
"""One INFO line per decided upload (fields in ``extra``; see :func:`upload_log_fields`)."""

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
        self._lock = threading.Lock()  # decodes run on a pool: count each entry once

    def __call__(self, phase: str) -> None:
        if phase != self.phase:
            return
        with self._lock:
            self.seen += 1
            seen = self.seen
        if seen == self.n:
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
    """Frames → representation. Optionally ``embed_batch(videos, tenants) -> list`` batches frames
    across videos, and ``embed_stream(stream, tenant)`` embeds a chunked decode (an iterable of
    :class:`FrameChunk` whose ``summary`` is set once it is exhausted) keeping only features."""

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
    """``ingest.sources.VideoSource`` + ``ingest.decode`` (imported lazily).

    ``open_stream`` hands out the chunked decode (``ingest.decode.FrameStream``); the local file
    (a downloaded temp file is deleted) stays open until the stream is closed. FFmpeg reads at
    most ``sources.max_bytes`` of it, whatever it grows to after the size check.
    """

    def __init__(self, sources: SourceConfig, decode: DecodeConfig) -> None:
        from ingest.sources import VideoSource

        self._source = VideoSource(sources)
        self._config = decode
        self._max_bytes = sources.max_bytes

    def decode(self, video_id: str, uri: str) -> DecodedVideo:
        from ingest.decode import decode_video

        with self._source.open(uri) as local:
            return decode_video(local.path, self._config, video_id, max_bytes=self._max_bytes)

    @contextmanager
    def open_stream(self, video_id: str, uri: str) -> Iterator[Any]:
        from ingest.decode import FrameStream

        with self._source.open(uri) as local:
            with FrameStream(local.path, self._config, video_id, max_bytes=self._max_bytes) as stream:
                yield stream


class _ResumedStream:
    """A chunk stream whose first chunk was already read (and copied) by the pipeline."""

    def __init__(self, first: FrameChunk, rest: Iterator[FrameChunk], stream: Any) -> None:
        self._first = first
        self._rest = rest
        self._stream = stream
        self.video_id = stream.video_id
        self.decode_s = 0.0
        """Time spent decoding the chunks the consumer pulled (the rest of its time is its own)."""

    def __iter__(self) -> Iterator[FrameChunk]:
        yield self._first
        while True:
            t0 = time.perf_counter()
            try:
                chunk = next(self._rest)
            except StopIteration:
                return
            finally:
                self.decode_s += time.perf_counter() - t0
            yield chunk

    @property
    def summary(self) -> DecodeSummary | None:
        return self._stream.summary


def _copy_chunk(chunk: FrameChunk) -> FrameChunk:
    return FrameChunk(chunk.frames.copy(), chunk.timestamps.copy(), None if chunk.inset is None else chunk.inset.copy())


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
    produced_at: float | None = None
    """Unix seconds of the Kafka record's timestamp (``None`` outside Kafka)."""
    polled_at: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` when the job was made (right after the poll)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Milliseconds spent per step (``decode``, ``embed``, ``search``, ``detect``, ``index``)."""
    outcome: str | None = None
    """How the job was decided: ``indexed``, ``alerted``, ``dead_lettered`` or ``replay_skipped``."""
    replay_checked: bool = False
    """The replay check ran (a resubmit after backpressure does not look again)."""
    decided_at: float | None = None
    """``time.monotonic()`` when the job was decided (``None`` until then, and when aborted)."""
    generation: int = 0
    """Its partition's generation when it was polled (:meth:`ingest.consumer.OffsetTracker.generation`):
    once the partition is revoked or rewound, the job is stale and aborts at its next step."""

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @property
    def video_id(self) -> str | None:
        return getattr(self.event, "video_id", None)

    @property
    def finished(self) -> bool:
        return self.status in ("indexed", "dead")


@dataclass
class EmbedAttempt:
    """What one embedder call gave (:meth:`Pipeline.embed_attempt`): representations, or the error."""

    reps: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    seconds: float = 0.0


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
    """Runs jobs through the chain; sets each job's ``status``."""

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
        index_busy_seconds: Callable[[], float] | None = None,
        decode_threads: int = 0,
        embed_max_wait_s: float | None = None,
        wrap: Any = None,
    ) -> None:
        """``index_busy_seconds()``: cumulative seconds spent in calls to the index (Milvus), read
        around detection to tell its search time apart (``ingest.worker.MilvusCallMeter``).

        ``decode_threads``, ``embed_max_wait_s`` and ``wrap`` shape the chain
        (:func:`ingest.steps.build_chain`); the defaults run it serially on the calling thread."""
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
        self._index_busy = index_busy_seconds
        self.consecutive_dead = 0
        self.ctx = StepContext()
        self._chain_options = {"decode_threads": decode_threads, "embed_max_wait_s": embed_max_wait_s, "wrap": wrap}
        self._chain: Any = None
        self._collected: list[Job] = []

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
        self._decided(job, "dead_lettered")
        self.consecutive_dead += 1
        if self.consecutive_dead >= self.limits.dlq_max_consecutive:
            raise DlqLimitExceeded(f"{self.consecutive_dead} consecutive dead letters (limits.dlq_max_consecutive)")

    # -- the chain -------------------------------------------------------------------------
    @property
    def chain(self) -> Any:
        """The chain of steps (:mod:`ingest.steps`), built on first use."""
        if self._chain is None:
            from ingest.steps import build_chain

            self._chain = build_chain(self, **self._chain_options)
        return self._chain

    def submit(self, jobs: Sequence[Job], ctx: StepContext | None = None, backpressure: Any = None) -> None:
        """Hands ``jobs`` to the chain without waiting for their decisions (:meth:`collect` takes
        them). ``ctx`` becomes the context of every step from now on, of the jobs already in
        flight too; ``backpressure`` (:class:`ingest.steps.chain.Backpressure`): how to wait while
        the chain rejects uploads (default: a short sleep)."""
        self.ctx = ctx or StepContext()
        with self._abandon_on_error():
            self.chain.submit_all(jobs, backpressure)

    def collect(self, *, idle: bool = False) -> list[Job]:
        """Moves the chain on (decisions run here, on the calling thread) and returns the jobs
        decided or aborted since the last call, in submission order. ``idle``: no more jobs are
        coming for now, so none is held back to batch with later ones (:meth:`Chain.flush`)."""
        if self._chain is not None:
            with self._abandon_on_error():
                if idle:
                    self._chain.flush()
                else:
                    self._chain.poll()
                self._collected += [e.job for e in self._chain.drain()]
        out, self._collected = self._collected, []
        return out

    def join(self) -> None:
        """Finishes everything in flight (each job decided, or aborted by the context's
        ``should_abort``/``revoked``); :meth:`collect` returns them."""
        if self._chain is not None:
            with self._abandon_on_error():
                self._chain.join()
                self._collected += [e.job for e in self._chain.drain()]

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not decided yet."""
        return self._chain.in_flight if self._chain is not None else 0

    def process(self, jobs: Sequence[Job], ctx: StepContext | None = None, backpressure: Any = None) -> list[Job]:
        """Runs ``jobs`` through the chain: :meth:`submit`, :meth:`join`, :meth:`collect`. On
        return each is decided (``indexed``/``dead``) or ``aborted``; returns what was collected."""
        self.submit(jobs, ctx, backpressure)
        self.join()
        return self.collect()

    @contextmanager
    def _abandon_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.close(finish=False)  # a crash (dead-letter storm, bug) leaves no half-run work in the chain
            raise

    def close(self, *, finish: bool = True) -> None:
        """Releases the chain's threads; ``finish``: after finishing what is in flight (:meth:`join`;
        :meth:`collect` still returns those jobs), else in-flight jobs are dropped undecided."""
        if self._chain is None:
            return
        if finish:
            self.join()
            if self._chain is None:
                return
        chain, self._chain = self._chain, None
        chain.close()

    # -- the work of each step (called by ingest.steps) -------------------------------------
    def parse_job(self, job: Job) -> None:
        job.event = self._run(job, self.ctx, lambda: self._parse(job.value))

    def skip_replay(self, job: Job) -> None:
        if self._already_done(job, self.ctx):
            job.status = "indexed"  # a replay of a completed event: alerts were sent before the index write
            self.metrics.replays_skipped.inc()
            self.consecutive_dead = 0
            self._decided(job, "replay_skipped")

    @property
    def streams(self) -> bool:
        """Chunked decode (long uploads embedded as they decode) when both sides support it."""
        return hasattr(self.decoder, "open_stream") and hasattr(self.embedder, "embed_stream")

    def decode_attempt(self, job: Job) -> DecodedVideo | tuple[VideoRepresentation, DecodeSummary]:
        """One attempt (any thread): the decoded upload, or its representation when it was longer
        than one chunk and embedded as it decoded."""
        if self.streams:
            return self._decode_chunked(job)
        return self._decode(job)

    def decode_job(self, job: Job) -> DecodedVideo | None:
        """The decode with its retries on the calling thread; the frames it holds, if any."""
        return self.finish_decode(job, None, None, 0.0, first_attempt_done=False)

    def finish_decode(self, job: Job, result: Any, error: BaseException | None, seconds: float,
                      *, first_attempt_done: bool = True) -> DecodedVideo | None:
        """Completes a decode whose first attempt ran elsewhere (``result`` or ``error``, in
        ``seconds``): a failed one goes through the retry policy here, as its first failure."""
        t0 = time.perf_counter()
        if first_attempt_done and error is None:
            outcome: Any = result
            job.attempts = 0
        else:
            pending_error = [error] if error is not None else []

            def attempt() -> Any:
                if pending_error:
                    raise pending_error.pop()
                return self.decode_attempt(job)

            outcome = self._run(job, self.ctx, attempt)
        streamed = job.timings.get("embed", 0.0) / 1000.0 if not isinstance(outcome, DecodedVideo) else 0.0
        self.metrics.decode_seconds.observe(max(0.0, seconds + time.perf_counter() - t0 - streamed))
        if isinstance(outcome, DecodedVideo):
            job.decoded = outcome
            return outcome
        if isinstance(outcome, tuple):
            rep, summary = outcome
            job.rep = self._stamp(job, rep, summary.duration_s)
        return None

    def embed_jobs(self, jobs: Sequence[Job]) -> None:
        self.finish_embed(self.embed_groups(jobs), None)

    def decide(self, job: Job) -> None:
        """Detect → alerts → index for one upload (its status stays ``pending`` until indexed)."""
        ctx = self.ctx
        if job.status != "pending":
            return
        assert job.rep is not None
        t0 = time.perf_counter()
        job.alerts = self._run(job, ctx, lambda: self._detect(job)) or []
        self.metrics.detect_seconds.observe(time.perf_counter() - t0)
        if "search" in job.timings:
            self.metrics.search_seconds.observe(job.timings["search"] / 1000.0)
        for alert in job.alerts:
            self._run(job, ctx, lambda alert=alert: self._send_alert(alert))
            if job.status == "pending":
                self.metrics.alerts_sent.labels(level=str(getattr(alert, "level", "unknown"))).inc()
        if job.status != "pending":
            return
        t0 = time.perf_counter()
        self._run(job, ctx, lambda: self.index.upsert(job.rep))
        if job.status == "pending":
            elapsed = time.perf_counter() - t0
            self.metrics.index_seconds.observe(elapsed)
            _add_ms(job, "index", elapsed)
            self.metrics.videos_indexed.inc()
            job.status = "indexed"
            job.decoded = None  # free the frames early
            self.consecutive_dead = 0
            self._decided(job, "alerted" if job.alerts else "indexed")

    def _decided(self, job: Job, outcome: str) -> None:
        """The end of a job: its end-to-end latencies and its one log line."""
        job.outcome = outcome
        job.decided_at = time.monotonic()
        self.metrics.end_to_end_seconds.labels(since="polled").observe(max(0.0, time.monotonic() - job.polled_at))
        if job.produced_at is not None:
            self.metrics.end_to_end_seconds.labels(since="produced").observe(max(0.0, time.time() - job.produced_at))
        fields = upload_log_fields(job)
        upload_log.info("upload %s", " ".join(f"{k}={_text(v)}" for k, v in fields.items()), extra=fields)

    def _decode(self, job: Job) -> DecodedVideo:
        fault_point("decode")
        t0 = time.perf_counter()
        try:
            return self.decoder.decode(job.event.video_id, job.event.uri)
        finally:  # failed attempts count too: a dead-lettered upload's line shows what they cost
            _add_ms(job, "decode", time.perf_counter() - t0)

    def _detect(self, job: Job) -> list[Any]:
        t0 = time.perf_counter()
        busy0 = self._index_busy() if self._index_busy is not None else 0.0
        try:
            return list(self.detector.detect(job.rep))
        finally:
            _add_ms(job, "detect", time.perf_counter() - t0)
            if self._index_busy is not None:
                _add_ms(job, "search", max(0.0, self._index_busy() - busy0))

    # -- decode and embed with bounded memory ------------------------------------------------
    # An upload that fits in one decode chunk comes back decoded, and the embed step holds it
    # (for cross-video batching) until the held frames reach ``limits.batch_decoded_bytes``; a
    # longer upload is embedded chunk by chunk as it decodes (``embed_stream``), keeping only
    # its features.
    def _decode_chunked(self, job: Job) -> DecodedVideo | tuple[VideoRepresentation, DecodeSummary]:
        """One upload: a :class:`DecodedVideo` when it fits in one chunk, else its representation."""
        t0, embedded = time.perf_counter(), [0.0]
        try:
            return self._decode_chunked_attempt(job, embedded)
        finally:  # failed attempts count too: a dead-lettered upload's line shows what they cost
            _add_ms(job, "decode", max(0.0, time.perf_counter() - t0 - embedded[0]))
            if embedded[0]:
                _add_ms(job, "embed", embedded[0])

    def _decode_chunked_attempt(self, job: Job, embedded: list[float]) -> DecodedVideo | tuple[VideoRepresentation, DecodeSummary]:
        fault_point("decode")
        with self.decoder.open_stream(job.event.video_id, job.event.uri) as stream:  # type: ignore[attr-defined]
            chunks = iter(stream)
            first = next(chunks, None)
            if first is None:  # the stream raises before it ends without a frame
                raise PermanentError("video stream holds no decodable frame", reason="zero_frames")
            first = _copy_chunk(first)  # the next chunk reuses the decoder's buffer
            second = next(chunks, None)
            if second is None:
                summary = stream.summary
                return DecodedVideo(
                    video_id=job.event.video_id,
                    frames=first.frames,
                    timestamps=first.timestamps,
                    duration_s=summary.duration_s,
                    source_width=summary.source_width,
                    source_height=summary.source_height,
                    source_fps=summary.source_fps,
                    inset=first.inset if summary.inset_box is not None else None,
                    inset_box=summary.inset_box,
                    inset_kind=summary.inset_kind,
                    borders=summary.borders,
                )
            resumed = _ResumedStream(first, itertools.chain([second], chunks), stream)
            fault_point("embed")
            t0 = time.perf_counter()
            try:
                rep = self.embedder.embed_stream(resumed, job.event.tenant)  # type: ignore[attr-defined]
            finally:
                # the chunks decode inside embed_stream: their time is decode, the rest inference
                inference = max(0.0, time.perf_counter() - t0 - resumed.decode_s)
                embedded[0] += inference
            self.metrics.inference_seconds.observe(inference)
            if stream.summary is None:
                raise RuntimeError("embed_stream returned before the decode stream ended")
            return rep, stream.summary

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

    def embed_groups(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """The embedder calls ``jobs`` need (calling thread): the decoded pending ones in groups of
        at most ``limits.batch_frames`` frames (one job per group without a batch path). A job
        whose partition was revoked is aborted here."""
        ctx = self.ctx
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
        return groups

    def embed_attempt(self, group: Sequence[Job]) -> EmbedAttempt:
        """One embedder call for ``group`` (any thread): its representations or the error it
        raised; no retry, no dead letter (:meth:`finish_embed` does those on the calling thread)."""
        batch_fn = getattr(self.embedder, "embed_batch", None)
        out = EmbedAttempt()
        t0 = time.perf_counter()
        try:
            fault_point("embed")
            if batch_fn is not None and len(group) > 1:
                out.reps = list(batch_fn([j.decoded for j in group], [j.event.tenant for j in group]))
            else:
                job = group[0]
                out.reps = [self.embedder.embed(job.decoded, job.event.tenant)]
        except BaseException as exc:  # noqa: BLE001 - judged on the calling thread
            out.error = exc
        out.seconds = time.perf_counter() - t0
        return out

    def finish_embed(self, groups: Sequence[Sequence[Job]], attempts: Sequence[EmbedAttempt] | None) -> None:
        """Embeds ``groups`` (calling thread). ``attempts[i]``: group i's first call, already made
        elsewhere (:meth:`embed_attempt`); a failed one enters the retry policy here as its first
        failure. ``None``: every call is made here."""
        ctx = self.ctx
        batch_fn = getattr(self.embedder, "embed_batch", None)
        for i, group in enumerate(groups):
            first = attempts[i] if attempts is not None else None
            t0 = time.perf_counter() - (first.seconds if first is not None else 0.0)
            self.metrics.batch_frames.observe(sum(j.decoded.num_frames for j in group if j.decoded is not None))
            if batch_fn is not None and len(group) > 1:
                if first is not None and first.error is None:
                    reps: list[VideoRepresentation] | None = first.reps
                else:
                    reps = self._try_batch(batch_fn, list(group), ctx, first.error if first is not None else None)
                if reps is not None:
                    for job, rep in zip(group, reps, strict=True):
                        job.rep = self._stamp(job, rep)
                    elapsed = time.perf_counter() - t0
                    self.metrics.inference_seconds.observe(elapsed)
                    for job in group:  # the batch's wall time: each of its uploads waited for all of it
                        _add_ms(job, "embed", elapsed)
                    continue
                first = None  # the batch failed: one by one from here
            for job in group:  # one by one: no batch path, or isolating a poison video
                if job.status != "pending":
                    continue
                if first is not None and first.error is None:
                    rep = first.reps[0]
                    _add_ms(job, "embed", first.seconds)
                else:
                    first_error = first.error if first is not None else None
                    if first is not None:
                        _add_ms(job, "embed", first.seconds)
                    rep = self._run(job, ctx, _failing_first(first_error, lambda job=job: self._embed_one(job)))
                job.rep = self._stamp(job, rep) if rep is not None else None
            self.metrics.inference_seconds.observe(time.perf_counter() - t0)

    def _embed_one(self, job: Job) -> VideoRepresentation:
        fault_point("embed")
        t0 = time.perf_counter()
        try:
            return self.embedder.embed(job.decoded, job.event.tenant)
        finally:
            _add_ms(job, "embed", time.perf_counter() - t0)

    @staticmethod
    def _stamp(job: Job, rep: VideoRepresentation, duration_s: float | None = None) -> VideoRepresentation:
        rep.meta.setdefault("event_id", job.event.event_id)
        if duration_s is None:
            duration_s = job.decoded.duration_s if job.decoded is not None else 0.0
        rep.meta.setdefault("duration_s", str(duration_s))
        return rep

    def _try_batch(self, batch_fn: Callable[..., Any], group: list[Job], ctx: StepContext,
                   first_error: BaseException | None = None) -> list[VideoRepresentation] | None:
        videos = [j.decoded for j in group]
        tenants = [j.event.tenant for j in group]
        def run_batch() -> list[VideoRepresentation]:
            fault_point("embed")
            return list(batch_fn(videos, tenants))

        try:
            reps, _ = call_with_retry(
                _failing_first(first_error, run_batch),
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


T = TypeVar("T")


def _failing_first(error: BaseException | None, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` for a retry loop whose first attempt was already made elsewhere (the embed thread)
    and raised ``error``: the first call raises it again, so the retry policy judges it as its own
    first failure; later calls run ``fn``. With ``error`` ``None``, ``fn`` itself."""
    if error is None:
        return fn
    pending = [error]

    def call() -> T:
        if pending:
            raise pending.pop()
        return fn()

    return call


STEPS = ("decode", "embed", "search", "detect", "index")
_LEVEL_ORDER = ("copy", "incident")


def _add_ms(job: Job, step: str, seconds: float) -> None:
    job.timings[step] = job.timings.get(step, 0.0) + seconds * 1000.0


def _text(value: Any) -> str:
    """A log field as ``key=value`` text: ``-`` for none, quoted when it holds spaces."""
    if value is None:
        return "-"
    text = str(value)
    return f'"{text}"' if not text or any(c.isspace() or c in '"=' for c in text) else text


def alert_level(alerts: Sequence[Any]) -> str | None:
    """The highest level among ``alerts`` (``copy`` above ``incident``), ``None`` without alerts."""
    levels = {str(getattr(a, "level", "")) for a in alerts}
    return next((lvl for lvl in _LEVEL_ORDER if lvl in levels), next(iter(sorted(levels)), None))


def upload_log_fields(job: Job) -> dict[str, Any]:
    """The per-upload log line's fields, in order.

    ``event_id``, ``video_id``, ``tenant`` (``None`` when the event did not parse); ``outcome``
    (``indexed``, ``alerted``, ``dead_lettered``, ``replay_skipped``); ``reason`` (dead letters);
    ``alert_level`` (highest level of its alerts) and ``alerts`` (how many); ``attempts``; the Kafka
    coordinates; ``decode_ms``, ``embed_ms`` (the wall time of the embedder call that covered it,
    shared by a batch), ``search_ms`` (Milvus reads during detection), ``detect_ms`` (detection
    including its search), ``index_ms``: the time of the step's attempts, failed ones included,
    without the waits between them (``None`` for a step that did not run); then
    ``polled_to_decided_ms`` / ``produced_to_decided_ms``.
    """
    event = job.event
    produced = None if job.produced_at is None else round(max(0.0, time.time() - job.produced_at) * 1000.0, 1)
    fields: dict[str, Any] = {
        "event_id": getattr(event, "event_id", None),
        "video_id": getattr(event, "video_id", None),
        "tenant": getattr(event, "tenant", None),
        "outcome": job.outcome,
        "reason": job.reason if job.status == "dead" else None,
        "alert_level": alert_level(job.alerts),
        "alerts": len(job.alerts),
        "attempts": max(job.attempts, 1),
        "topic": job.topic or None,
        "partition": job.partition if job.topic else None,
        "offset": job.offset,
    }
    for step in STEPS:
        ms = job.timings.get(step)
        fields[f"{step}_ms"] = None if ms is None else round(ms, 1)
    fields["polled_to_decided_ms"] = round(max(0.0, time.monotonic() - job.polled_at) * 1000.0, 1)
    fields["produced_to_decided_ms"] = produced
    return fields


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
