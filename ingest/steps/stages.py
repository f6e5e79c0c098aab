"""The concrete steps: Parse → SkipReplay → Decode → Embed → Decide (detect, alert, index) → Done.

Each step does one thing and calls into the :class:`ingest.pipeline.Pipeline` for the work itself
(retry policy, dead letters, metrics, the per-upload log line), so a step is only about *when* and
*where* the work runs. Decode (on a pool) and the first embedder call of each batch (on one
embed thread) run off the calling thread; every retry wait, dead letter and
Milvus write happens on the calling thread (the Kafka loop's, which must serve the group while it
waits). Decide runs uploads strictly in the order they were submitted, so detection of an upload
sees every earlier upload of the stream indexed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dupwatch.records import DecodedVideo
from ingest.steps.base import Envelope, Forwarding, MessageRejected, ProcessingStep
from ingest.steps.budget import DecodedBytes

if TYPE_CHECKING:
    from ingest.pipeline import Job, Pipeline

IDLE_BATCH_FRAMES = 16
"""Frames an idle embed thread takes without waiting for more (at least; a quarter batch if that
is more): fewer make feature-extractor calls that cost more per frame."""

JOIN_POLL_S = 0.002
"""While a join waits for a decode, how often it polls the steps after it."""


class _PipelineStep(Forwarding):
    """A step whose work is a method of the :class:`~ingest.pipeline.Pipeline` it serves (``rt``)."""

    def __init__(self, next_step: ProcessingStep, rt: "Pipeline") -> None:
        super().__init__(next_step)
        self.rt = rt


class Parse(_PipelineStep):
    """Raw record → upload event (a malformed one is dead-lettered)."""

    def submit(self, envelope: Envelope) -> None:
        job = envelope.job
        if job.event is None and job.status == "pending":  # a resubmit after MessageRejected parses once
            self.rt.parse_job(job)
        self.next.submit(envelope)


class SkipReplay(_PipelineStep):
    """An event the index already holds, embedded by this very model version, is decided here."""

    def submit(self, envelope: Envelope) -> None:
        job = envelope.job
        if not job.replay_checked:
            job.replay_checked = True
            if job.status == "pending":
                self.rt.skip_replay(job)
        self.next.submit(envelope)


@dataclass
class _Attempt:
    """What one decode attempt on a pool thread gave: a result, or the error it raised."""

    result: Any = None
    error: BaseException | None = None
    seconds: float = 0.0
    revoked: bool = False


class Decode(_PipelineStep):
    """Fetch and decode uploads; with ``threads`` > 0 several run at once on a pool.

    Inline (``threads`` = 0) the whole decode, retries included, runs in ``submit``. On the pool,
    the first attempt runs on a pool thread and hands back its result or error; the calling thread
    then finishes the job (a failed first attempt enters the retry policy there, as if it had
    failed on that thread). Envelopes leave in the order they came. ``submit`` raises
    :class:`MessageRejected` while ``threads`` uploads are decoding and as many wait for a
    thread, or while the decoded-bytes budget is full; so the frames held are at most the budget
    plus one chunk (``decode.chunk_frames`` crops) per upload in flight here.
    """

    def __init__(self, next_step: ProcessingStep, rt: "Pipeline", budget: DecodedBytes, threads: int = 0,
                 queued: int | None = None) -> None:
        super().__init__(next_step, rt)
        self.budget = budget
        self.threads = threads
        self.max_in_flight = threads + (threads if queued is None else queued)
        """Uploads submitted and not handed on: the running ones plus a queue, so the pool keeps
        decoding while the calling thread embeds and decides."""
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="decode") if threads > 0 else None
        self._queue: deque[tuple[Envelope, Future[_Attempt] | None]] = deque()
        self._running = 0

    def submit(self, envelope: Envelope) -> None:
        job = envelope.job
        if self._pool is None:
            if job.status == "pending":
                self._account(job, self.rt.decode_job(job))
            self.next.submit(envelope)
            return
        if job.status != "pending":
            self._queue.append((envelope, None))
            self._forward_done()
            return
        if self._running >= self.max_in_flight or self.budget.full():
            raise MessageRejected()
        self._running += 1
        self._queue.append((envelope, self._pool.submit(self._attempt, job)))

    def _attempt(self, job: "Job") -> _Attempt:  # on a pool thread
        if self.rt.ctx.revoked(job):
            return _Attempt(revoked=True)
        t0 = time.perf_counter()
        try:
            out = _Attempt(result=self.rt.decode_attempt(job))
        except BaseException as exc:  # noqa: BLE001 - judged on the calling thread
            out = _Attempt(error=exc)
        out.seconds = time.perf_counter() - t0
        if isinstance(out.result, DecodedVideo):
            self.budget.add(_held_bytes(out.result))
        return out

    def _account(self, job: "Job", decoded: DecodedVideo | None) -> None:
        if decoded is not None:
            self.budget.add(_held_bytes(decoded))

    def _finish(self, envelope: Envelope, future: Future[_Attempt]) -> None:
        self._running -= 1
        attempt = future.result()
        job = envelope.job
        if attempt.revoked:
            job.status = "aborted"
            return
        if isinstance(attempt.result, DecodedVideo):
            self.budget.release(_held_bytes(attempt.result))  # counted again below, once it is the job's
        decoded = self.rt.finish_decode(job, attempt.result, attempt.error, attempt.seconds)
        self._account(job, decoded)

    def _forward_done(self, wait: bool = False) -> None:
        while self._queue:
            envelope, future = self._queue[0]
            if future is not None and not future.done():
                if not wait:
                    return
                while not future.done():  # embedded batches are decided, and held ones go on, meanwhile
                    self.next.poll()
                    wait_futures([future], timeout=JOIN_POLL_S)
            self._queue.popleft()
            if future is not None:
                self._finish(envelope, future)
            self.next.submit(envelope)

    def poll(self) -> None:
        self._forward_done()
        self.next.poll()

    def join(self, timeout: float | None = None) -> None:
        self._forward_done(wait=True)
        self.next.join(timeout)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.next.close()

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def ready(self) -> bool:
        """The oldest upload is decoded (a ``poll`` would hand it on)."""
        return bool(self._queue) and (self._queue[0][1] is None or self._queue[0][1].done())


class Embed(_PipelineStep):
    """Batches decoded frames across uploads (and across polls) for the feature extractor.

    Holds envelopes until their frames reach ``batch_frames``, the decoded-bytes budget is full,
    the oldest held one waited ``max_wait_s`` (checked on ``poll``), or ``join``; then embeds what
    it holds in as few calls as ``limits.batch_frames`` allows (a failing batch is retried one
    upload at a time to isolate a poison video) and hands the envelopes on in order. Uploads
    already embedded while they decoded (longer than one chunk) and decided ones wait in line.

    ``threaded``: the first embedder call of each batch runs on one embed thread (ONNX Runtime
    releases the GIL), so the calling thread decides earlier uploads meanwhile; ``poll`` hands on
    the batches that finished, in order. With ``max_wait_s`` set, held frames go to the embed
    thread as soon as it is idle once they reach ``IDLE_BATCH_FRAMES`` (or the whole batch size,
    if smaller) or a quarter batch, whichever is more, without waiting for the timer. A failed call
    is retried (or the batch split) on the calling thread, as if it had failed there. The frames of a batch stay counted in the
    decoded-bytes budget until it is handed on, so the decode step stops admitting uploads while
    embedding lags behind.
    """

    def __init__(self, next_step: ProcessingStep, rt: "Pipeline", budget: DecodedBytes, *, batch_frames: int,
                 max_wait_s: float | None, threaded: bool = False) -> None:
        super().__init__(next_step, rt)
        self.budget = budget
        self.batch_frames = batch_frames
        self.max_wait_s = max_wait_s
        self._held: list[Envelope] = []
        self._frames = 0
        self._since = 0.0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="embed") if threaded else None
        self._batches: deque[tuple[list[Envelope], list[list["Job"]], Future[list[Any]] | None]] = deque()
        self.thread_ids: set[int] = set()
        """Threads the embedder calls ran on (what the tests check)."""

    def submit(self, envelope: Envelope) -> None:
        if not self._held:
            self._since = time.monotonic()
        self._held.append(envelope)
        decoded = envelope.job.decoded
        if decoded is not None and envelope.job.status == "pending":
            self._frames += decoded.num_frames
        if self._frames >= self.batch_frames or self.budget.full() or self._idle_thread():
            self.flush()

    def _idle_thread(self) -> bool:
        """Threaded with a wait bound: the embed thread has nothing to do and enough frames are
        held, so they go now (while the thread is busy, uploads decoded meanwhile gather into
        the next batch; fewer frames wait for more, up to ``max_wait_s``)."""
        enough = min(self.batch_frames, max(IDLE_BATCH_FRAMES, self.batch_frames // 4))
        return self._pool is not None and self.max_wait_s is not None and self._frames >= enough and not self.busy

    def flush(self) -> None:
        held, self._held, self._frames = self._held, [], 0
        if not held:
            return
        jobs = [e.job for e in held]
        if self._pool is None:
            if any(j.decoded is not None for j in jobs):
                self.rt.embed_jobs(jobs)
            self._hand_on(held)
            return
        groups = self.rt.embed_groups(jobs) if any(j.decoded is not None for j in jobs) else []
        future = self._pool.submit(self._attempts, groups) if groups else None
        self._batches.append((held, groups, future))
        self._forward_done()

    def _attempts(self, groups: list[list["Job"]]) -> list[Any]:  # on the embed thread
        self.thread_ids.add(threading.get_ident())
        return [self.rt.embed_attempt(group) for group in groups]

    def _hand_on(self, held: list[Envelope]) -> None:
        for envelope in held:
            job = envelope.job
            if job.decoded is not None:
                self.budget.release(_held_bytes(job.decoded))
                if job.rep is not None or job.status != "pending":
                    job.decoded = None  # keep only features from here on
        for envelope in held:
            self.next.submit(envelope)

    def _forward_done(self, wait: bool = False) -> None:
        while self._batches:
            held, groups, future = self._batches[0]
            if future is not None and not future.done():
                if not wait:
                    return
                future.result()
            self._batches.popleft()
            if future is not None:
                self.rt.finish_embed(groups, future.result())
            self._hand_on(held)

    def ready(self) -> bool:
        """The oldest batch is embedded (a ``poll`` would hand it on)."""
        return bool(self._batches) and (self._batches[0][2] is None or self._batches[0][2].done())

    @property
    def busy(self) -> bool:
        """A batch is on the embed thread."""
        return any(f is not None and not f.done() for _, _, f in self._batches)

    def poll(self) -> None:
        self._forward_done()
        waited = self.max_wait_s is not None and time.monotonic() - self._since >= self.max_wait_s
        if self._held and (waited or self.budget.full() or self._idle_thread()):
            self.flush()
        self.next.poll()

    def join(self, timeout: float | None = None) -> None:
        self.flush()
        self._forward_done(wait=True)
        self.next.join(timeout)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.next.close()


class Decide(_PipelineStep):
    """Detect → alert → index, one upload at a time in submission order."""

    def submit(self, envelope: Envelope) -> None:
        if envelope.job.status == "pending":
            self.rt.decide(envelope.job)
        self.next.submit(envelope)


class Done:
    """The end of the chain: envelopes whose upload is decided (or aborted), in order.

    Whoever drives the chain takes them with :meth:`drain` and commits the finished ones; an
    aborted one (shutdown, partition revoked) is never committed past.
    """

    def __init__(self) -> None:
        self._out: list[Envelope] = []
        self.count = 0

    def submit(self, envelope: Envelope) -> None:
        self._out.append(envelope)
        self.count += 1

    def drain(self) -> list[Envelope]:
        out, self._out = self._out, []
        return out

    def poll(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def _held_bytes(video: DecodedVideo) -> int:
    return int(video.frames.nbytes + (video.inset.nbytes if video.inset is not None else 0))
