"""The Kafka loop: poll → submit → collect → commit, at-least-once with manual commits (anchors.md §3).

- ``KafkaConsumer`` in a consumer group with ``enable_auto_commit=False``. The chain of
  :class:`ingest.pipeline.Pipeline` keeps running across polls: each turn polls for at most the
  room left in it (``limits.max_in_flight_videos`` minus the uploads in flight), submits those
  records (:meth:`Pipeline.submit`, which does not wait for decisions), takes the uploads decided
  since the last turn (:meth:`Pipeline.collect`; decisions run there, on the polling thread) and
  marks the finished ones in an :class:`OffsetTracker`. So decodes continue and one embedder call
  can batch uploads of several polls. While uploads are in flight a poll waits a few ms
  (``IN_FLIGHT_POLL_MS``) so decisions are not held up; with none, ``POLL_TIMEOUT_MS``. With the
  chain full, no record is taken: every assigned partition is paused and the consumer keeps
  polling (the group stays served). Offsets are committed (``next offset = first unfinished``,
  contiguous per partition, never past an upload still in flight) when the :class:`CommitPolicy`
  says so, always on shutdown and on partition revoke.
- Waiting (retry backoff, dependency outage) happens *inside* ``consumer.poll`` with every
  assigned partition paused, so the group membership stays alive (``max.poll.interval.ms``),
  rebalances are served, and no new records arrive. So does backpressure: while the chain
  rejects an upload (:class:`ingest.steps.MessageRejected`: decodes or decoded frames at their
  bound), the loop pauses its partitions and polls until the chain accepts, then resumes them.
- Rebalance: kafka-python 3 calls the rebalance listener on its IO thread, inside the
  ``consumer.poll``/``close`` of the polling thread (which is blocked meanwhile), and a blocking
  consumer call there raises ``Cannot block on net.run() from the IO thread``. The listener is
  therefore an ``AsyncConsumerRebalanceListener``: on revoke it *awaits* ``commit_async`` of the
  finished offsets of the revoked partitions (the client's documented way to commit from the
  listener), then drops their tracker state. From the revoke until the assignment the loop only
  polls, with the full timeout: kafka-python 3 completes a group join only inside a poll that is
  waiting for it. In-flight jobs of a revoked partition are aborted (never committed) before their
  next step or at their next wait, and re-processed by the new owner (idempotent upserts; a
  completed replay is skipped, so no second alert). An eager rebalance revokes everything and may
  give a partition straight back: kafka-python keeps its fetch position (past the jobs in flight)
  and paused flag, so it is sought back to its first unfinished offset and resumed. Each revoke (or
  loss) starts a new *generation* of the partition (:meth:`OffsetTracker.generation`, recorded in
  each :class:`ingest.pipeline.Job`): jobs polled before it are stale even when the partition is
  ours again, so they abort at their next step and count for nothing when collected, while their
  offsets are polled again; an upload is never in the chain twice. An aborted job of a partition
  still ours (shutdown, a dead letter that could not be written) restarts the partition the same
  way. Partitions *lost* (the member was evicted) are dropped without a commit attempt.
- Connecting: the brokers unreachable (at start) is not an error: :meth:`UploadConsumer.run`
  retries every ``kafka.connect_retry_s`` (each attempt bounded by ``kafka.connect_timeout_s``),
  reports ``kafka`` not ready, logs one line per attempt and starts consuming once they answer.
- Shutdown (:meth:`UploadConsumer.stop`, wired to SIGTERM): no more records are taken, the uploads
  in flight are finished (:meth:`Pipeline.join`; one stuck waiting on a dependency is released),
  what is done is committed, the consumer closes, and :meth:`run` returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dupwatch.config import KafkaConfig, LimitsConfig
from dupwatch.errors import TransientError
from ingest.health import HealthState
from ingest.kafka_guard import StuckCallGuard
from ingest.metrics import WorkerMetrics
from ingest.pipeline import Job, Pipeline, StepContext, fault_point

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
"""How long a poll waits for records while nothing is in flight."""
IN_FLIGHT_POLL_MS = 5
"""How long a poll waits for records while uploads are in flight: their decisions run on the
polling thread between polls, so a long poll would delay them."""
REJECTED_POLL_MS = 5
"""How long one poll of the paused consumer waits while it takes no new record (the chain
rejects uploads, or ``limits.max_in_flight_videos`` are in flight)."""
CLOSE_TIMEOUT_MS = 10_000
"""How long closing a consumer that is being replaced may take."""
KAFKA_REQUEST_TIMEOUT_MS = 30_000
"""kafka-python's ``request_timeout_ms`` (its default, which the worker keeps): what a commit may take."""
LAG_INTERVAL_S = 5.0


@dataclass(frozen=True)
class CommitPolicy:
    """Commit when ``min_interval_s`` elapsed *or* ``min_messages`` were finished (arroyo)."""

    min_interval_s: float | None = 1.0
    min_messages: int | None = None

    def __post_init__(self) -> None:
        if self.min_interval_s is None and self.min_messages is None:
            raise ValueError("a commit policy needs min_interval_s or min_messages")


IMMEDIATE = CommitPolicy(min_interval_s=0.0)
ONCE_PER_SECOND = CommitPolicy(min_interval_s=1.0)


class CommitPolicyState:
    def __init__(self, policy: CommitPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._last = clock()
        self._since = 0

    def finished(self, count: int) -> None:
        self._since += count

    def should_commit(self) -> bool:
        if self._since == 0:
            return False
        p = self.policy
        if p.min_messages is not None and self._since >= p.min_messages:
            return True
        return p.min_interval_s is not None and self._clock() - self._last >= p.min_interval_s

    def did_commit(self) -> None:
        self._last = self._clock()
        self._since = 0


class OffsetTracker:
    """In-flight and finished offsets per partition; yields contiguous commit points.

    The commit point of a partition is its lowest unfinished offset (or one past the highest
    polled offset when all are finished): an aborted or still-running job blocks the offsets
    after it, so nothing is ever committed past unfinished work.
    """

    def __init__(self) -> None:
        self._pending: dict[Any, set[int]] = {}
        self._finished: dict[Any, set[int]] = {}
        self._ready: dict[Any, int] = {}
        self._committed: dict[Any, int] = {}
        self._generation: dict[Any, int] = {}

    def generation(self, tp: Any) -> int:
        """How many times ``tp`` was forgotten (revoked, lost) or restarted (rewound). A job
        records it when polled; one from an older generation is stale: its offset will be (or
        was) polled again, and only that copy counts."""
        return self._generation.get(tp, 0)

    def add(self, tp: Any, offset: int) -> int:
        """Track a polled offset; returns the generation the job polled from it belongs to."""
        self._pending.setdefault(tp, set()).add(offset)
        return self.generation(tp)

    def finish(self, tp: Any, offset: int, generation: int | None = None) -> None:
        """Mark ``offset`` finished, unless it is untracked (revoked meanwhile) or ``generation``
        (the job's) is stale."""
        if generation is not None and generation != self.generation(tp):
            return
        pending = self._pending.get(tp)
        if pending is None or offset not in pending:
            return  # the partition was revoked meanwhile
        self._finished.setdefault(tp, set()).add(offset)

    def restart(self, tp: Any) -> int | None:
        """Start a new generation of ``tp`` keeping what is tracked: its jobs in flight become
        stale and are polled again from the returned offset (the first unfinished one; ``None``:
        nothing in flight)."""
        self._generation[tp] = self.generation(tp) + 1
        return self.first_unfinished(tp)

    def in_flight(self) -> int:
        return sum(len(p) - len(self._finished.get(tp, ())) for tp, p in self._pending.items())

    def committable(self, tps: Iterable[Any] | None = None) -> dict[Any, int]:
        """``{tp: next offset to commit}`` for partitions that moved since their last commit."""
        out = {}
        for tp in list(tps) if tps is not None else list(self._pending):
            pending = self._pending.get(tp)
            if pending:
                finished = self._finished.setdefault(tp, set())
                unfinished = pending - finished
                nxt = min(unfinished) if unfinished else max(pending) + 1
                done_below = {o for o in finished if o < nxt}
                if done_below:
                    pending -= done_below
                    finished -= done_below
                    self._ready[tp] = nxt
            ready = self._ready.get(tp)
            if ready is not None and self._committed.get(tp) != ready:
                out[tp] = ready
        return out

    def first_unfinished(self, tp: Any) -> int | None:
        """The lowest polled offset of ``tp`` not finished yet (``None``: nothing in flight)."""
        unfinished = self._pending.get(tp, set()) - self._finished.get(tp, set())
        return min(unfinished) if unfinished else None

    def committed(self, offsets: dict[Any, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tp: Any) -> None:
        """Drop ``tp`` (revoked, lost) and start its next generation: its jobs in flight are stale."""
        for d in (self._pending, self._finished, self._ready, self._committed):
            d.pop(tp, None)
        self._generation[tp] = self.generation(tp) + 1


def _record_seconds(record: Any) -> float | None:
    """The record's timestamp (producer create time, or log append time) in Unix seconds."""
    ts = getattr(record, "timestamp", None)
    return ts / 1000.0 if isinstance(ts, int) and ts > 0 else None


_BOOTSTRAP_LOGGERS = ("kafka.net.manager", "kafka.net.connection", "kafka.conn", "kafka.client_async")


class _QuietBootstrap(logging.Filter):
    """Drops kafka-python's per-connection lines (several ERRORs per refused attempt) while the
    worker tries to reach the brokers: its own one line per attempt says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL

    def __enter__(self) -> "_QuietBootstrap":
        for name in _BOOTSTRAP_LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in _BOOTSTRAP_LOGGERS:
            logging.getLogger(name).removeFilter(self)


def _rebalance_listener(owner: "UploadConsumer") -> Any:
    """An ``AsyncConsumerRebalanceListener`` (kafka-python checks the type) delegating to ``owner``.

    The coordinator awaits these coroutines on its IO thread; nothing here may call a blocking
    consumer API (``commit``, ``position``, ``committed``...).
    """
    from kafka import AsyncConsumerRebalanceListener

    class _Rebalance(AsyncConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await owner._on_revoked(set(revoked))

        async def on_partitions_assigned(self, assigned: Any) -> None:
            owner._on_assigned(set(assigned))

        async def on_partitions_lost(self, lost: Any) -> None:
            owner._on_lost(set(lost))

    return _Rebalance()


class _PauseWhileBlocked:
    """While the loop takes no new record (backpressure from the chain,
    :class:`ingest.steps.MessageRejected`; or ``limits.max_in_flight_videos`` in flight), every
    assigned partition is paused and the consumer keeps polling (the group stays served, nothing
    new arrives); once it takes records again, they are resumed."""

    def __init__(self, owner: "UploadConsumer") -> None:
        self.owner = owner
        self.paused = False
        self.polls = 0
        """Polls made while rejected (what the tests check)."""

    def rejected(self) -> None:
        owner, consumer = self.owner, self.owner._consumer
        owner.health.beat()
        try:
            self.paused = True
            owner._waiting = True  # partitions assigned meanwhile start paused
            consumer.pause(*owner._assigned)
            self.polls += 1
            got = owner._poll(owner._poll_timeout_ms(REJECTED_POLL_MS))
            for tp, records in got.items():  # assigned during this poll, before it was paused
                if records:
                    owner._rewind(tp, min(r.offset for r in records))
            consumer.pause(*owner._assigned)
        except Exception as exc:  # noqa: BLE001 - Kafka trouble while waiting: just sleep
            log.debug("poll while taking no record failed: %s", exc)
            time.sleep(REJECTED_POLL_MS / 1000.0)

    def accepted(self) -> None:
        if not self.paused:
            return
        self.paused = False
        self.owner._waiting = False
        try:
            # everything paused, as in UploadConsumer._wait: a revoked partition keeps its flag
            self.owner._consumer.resume(*self.owner._consumer.paused())
        except Exception:  # noqa: BLE001
            pass


class UploadConsumer:
    """Consumes the uploads topic and drives the pipeline. ``run()`` returns after ``stop()``."""

    def __init__(
        self,
        kafka: KafkaConfig,
        limits: LimitsConfig,
        pipeline: Pipeline,
        *,
        metrics: WorkerMetrics,
        health: HealthState,
        commit_policy: CommitPolicy | None = None,
        consumer_factory: Callable[..., Any] | None = None,
        connect_hooks: Sequence[Callable[[], Any]] = (),
    ) -> None:
        self.kafka = kafka
        self.limits = limits
        self.pipeline = pipeline
        self.metrics = metrics
        self.health = health
        self.commit_policy = CommitPolicyState(commit_policy or CommitPolicy(min_interval_s=kafka.commit_interval_s))
        self._consumer_factory = consumer_factory
        self._connect_hooks = tuple(connect_hooks)
        self.health.set("kafka", False)  # not ready until the first connection
        self._consumer: Any = None
        self._stop = threading.Event()
        self._tracker = OffsetTracker()
        self._assigned: set[Any] = set()
        self._resume_at: dict[Any, int] = {}  # revoked partitions' first unfinished offsets
        self._waiting = False
        self._rebalancing = False
        self._rebalance_since: float | None = None
        self._rejoin_timeout_s = kafka.rejoin_timeout_s or kafka.max_poll_interval_ms / 1000.0
        self._last_lag = 0.0
        self._outage_checks: set[str] = set()
        self._backpressure = _PauseWhileBlocked(self)
        """Paused while the loop takes no record: the chain rejects, or it is full."""
        self._guard = StuckCallGuard(
            lambda: self._consumer, min(kafka.stuck_call_s, kafka.session_timeout_ms / 2000.0), on_release=self._released
        )
        """Releases a blocking client call whose IO task never runs (:mod:`ingest.kafka_guard`)."""

    # -- lifecycle --------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop taking records, finish what is in flight, commit and return
        (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def assignment(self) -> frozenset[tuple[str, int]]:
        """``(topic, partition)`` pairs this consumer owns now (a copy; readable from any thread)."""
        return frozenset((tp.topic, tp.partition) for tp in list(self._assigned))

    def _connect(self) -> Any:
        from kafka import KafkaConsumer

        k = self.kafka
        conf: dict[str, Any] = dict(
            bootstrap_servers=k.bootstrap_servers,
            group_id=k.group_id,
            client_id=k.client_id,
            enable_auto_commit=False,
            auto_offset_reset=k.auto_offset_reset,
            max_poll_records=min(k.max_poll_records, self.limits.max_in_flight_videos),
            max_poll_interval_ms=k.max_poll_interval_ms,
            session_timeout_ms=k.session_timeout_ms,
            heartbeat_interval_ms=max(1000, k.session_timeout_ms // 3),
            security_protocol=k.security_protocol,
            isolation_level="read_committed",
            bootstrap_timeout_ms=int(k.connect_timeout_s * 1000),
        )
        if k.sasl_mechanism:
            conf.update(
                sasl_mechanism=k.sasl_mechanism,
                sasl_plain_username=k.sasl_username,
                sasl_plain_password=k.sasl_password.get_secret_value() if k.sasl_password else None,
            )
        factory = self._consumer_factory or KafkaConsumer
        consumer = factory(**conf)
        consumer.subscribe([k.uploads_topic], listener=_rebalance_listener(self))
        return consumer

    def _connect_until_stopped(self) -> None:
        """Connect (and subscribe), retrying every ``kafka.connect_retry_s`` until it works or the
        consumer is stopped (then ``_consumer`` stays ``None``)."""
        from kafka.errors import KafkaError

        attempt = 0
        while self._consumer is None and not self._stop.is_set():
            self.health.beat()
            try:
                with _QuietBootstrap():
                    for hook in self._connect_hooks:  # the producer: alerts and dead letters need it
                        hook()
                    self._consumer = self._connect()
            except KafkaError as exc:
                attempt += 1
                self._set_kafka(False)
                log.warning(
                    "Kafka not reachable at %s (attempt %d, %s: %s); not ready, next attempt in %.0f s",
                    ",".join(self.kafka.bootstrap_servers), attempt, type(exc).__name__, exc, self.kafka.connect_retry_s,
                )
                self.health.beat()
                self._stop.wait(self.kafka.connect_retry_s)
        if self._consumer is None:
            return
        if attempt:
            log.info("Kafka reachable at %s after %d failed attempt(s)", ",".join(self.kafka.bootstrap_servers), attempt)
        self.health.set("kafka", True)
        self.metrics.dependency_up.labels(dependency="kafka").set(1)

    def run(self) -> None:
        self._connect_until_stopped()
        if self._consumer is None:
            return
        self._guard.start()
        ctx = StepContext(
            sleep=self._wait,
            should_abort=self._should_abort,
            revoked=self._revoked,
            on_outage=self._on_outage,
            on_recovered=self._on_recovered,
        )
        try:
            while not self._stop.is_set():
                self._run_once(ctx)
            self.pipeline.join()  # in-flight uploads decided; those stuck waiting are released
            self._take_decided(self.pipeline.collect())
            self._commit(force=True)
        except BaseException:
            self.pipeline.close(finish=False)  # nothing more runs on a consumer going away
            raise
        finally:
            self._guard.stop()
            self._close()

    def _run_once(self, ctx: StepContext) -> None:
        """One turn of the loop: poll for as many records as there is room for in the chain
        (none when it is full: the partitions stay paused while the consumer polls), submit them,
        take the decided uploads, commit per policy."""
        from kafka.errors import KafkaError

        self.health.beat()
        self.metrics.last_progress.set(time.time())
        if not self._rejoined_if_overdue():
            return  # stopping
        room = self.limits.max_in_flight_videos - self.pipeline.in_flight
        jobs: list[Job] = []
        if room > 0:
            self._backpressure.accepted()
            timeout = self._poll_timeout_ms(IN_FLIGHT_POLL_MS if self.pipeline.in_flight else POLL_TIMEOUT_MS)
            try:
                batch = self._poll(timeout, max_records=room)
                self._set_kafka(True)
            except KafkaError as exc:
                log.warning("poll failed: %s", exc)
                self._set_kafka(False)
                if not self.pipeline.in_flight:
                    return
                batch = {}
            jobs = self._jobs(batch)
        else:
            self._backpressure.rejected()
        if self._rebalancing and not jobs:
            return  # straight back into poll: the rebalance completes there
        if jobs:
            self.metrics.events_consumed.inc(len(jobs))
            self.metrics.in_flight_videos.set(self._tracker.in_flight())
            self.pipeline.submit(jobs, ctx, self._backpressure)
        self._take_decided(self.pipeline.collect(idle=not jobs))
        if self.commit_policy.should_commit():
            self._commit()
        self._update_lag()

    def _poll(self, timeout_ms: int, **kwargs: Any) -> Any:
        """``consumer.poll`` watched by the stuck-call guard (polling thread)."""
        with self._guard.watch("poll", timeout_ms):
            return self._consumer.poll(timeout_ms=timeout_ms, **kwargs)

    def _released(self, what: str, waited_s: float) -> None:
        self.metrics.kafka_calls_released.labels(call=what).inc()

    def _poll_timeout_ms(self, short_ms: int) -> int:
        """``short_ms``, or ``POLL_TIMEOUT_MS`` while a rebalance is in progress (revoked, not
        assigned yet). kafka-python 3 completes a group join only inside a ``poll`` that is waiting
        for it when the coordinator answers: one finished between two short polls is started again
        (or, for a leader rejoining on a metadata change, never completed, and the member is
        evicted once its session times out)."""
        return POLL_TIMEOUT_MS if self._rebalancing else short_ms

    def _jobs(self, batch: dict[Any, list[Any]]) -> list[Job]:
        """Jobs of the polled records, tracked, each stamped with its partition's generation."""
        jobs = []
        for tp, records in batch.items():
            for rec in records:
                generation = self._tracker.add(tp, rec.offset)
                jobs.append(
                    Job(value=rec.value or b"", topic=tp.topic, partition=tp.partition, offset=rec.offset, key=rec.key,
                        produced_at=_record_seconds(rec), generation=generation)
                )
        return jobs

    def _take_decided(self, jobs: Sequence[Job]) -> None:
        """Marks decided jobs finished; an aborted one still ours (shutdown, a dead letter that could
        not be written) restarts its partition from the first unfinished offset. A stale job
        (its partition revoked, or restarted, since it was polled) counts for nothing: its offset
        is polled again, by this worker or the new owner."""
        finished = 0
        restart: set[Any] = set()
        for job in jobs:
            if self._revoked(job):
                continue
            tp = self._tp(job)
            if job.finished:
                self._tracker.finish(tp, job.offset, job.generation)
                finished += 1
            elif job.status == "aborted":
                restart.add(tp)
        for tp in restart:
            # Its later jobs may still be in flight: they turn stale, so the polls that see them
            # again never put a second copy of an upload in the chain.
            first = self._tracker.restart(tp)
            if first is not None:
                self._rewind(tp, first)
        self.commit_policy.finished(finished)
        self.metrics.in_flight_videos.set(self._tracker.in_flight())

    # -- waiting, aborting ------------------------------------------------------------------
    def _tp(self, job: Job) -> Any:
        from kafka import TopicPartition

        return TopicPartition(job.topic, job.partition)

    def _revoked(self, job: Job) -> bool:
        """The job's partition is not ours anymore, or was revoked (or restarted) and given back
        since the job was polled: its offset is polled again, so this copy must not go on."""
        if not job.topic:
            return False
        tp = self._tp(job)
        return tp not in self._assigned or job.generation != self._tracker.generation(tp)

    def _should_abort(self, job: Job) -> bool:
        return self._stop.is_set() or self._revoked(job)

    def _wait(self, seconds: float) -> None:
        """Sleep while serving the group: pause everything, poll, resume. A rebalance in progress
        at the end is waited out too, so its join completes inside a poll."""
        deadline = time.monotonic() + seconds
        self._waiting = True
        try:
            self._consumer.pause(*self._assigned)
            while not self._stop.is_set():
                self.health.beat()
                left = deadline - time.monotonic()
                if left <= 0 and not self._rebalancing:
                    break
                if not self._rejoined_if_overdue():  # a rebalance that never ends is not waited out forever
                    break  # stopping
                # a rebalance in progress is waited out inside poll (see _poll_timeout_ms)
                got = self._poll(self._poll_timeout_ms(int(min(max(left, 0.0), 1.0) * 1000) + 1))
                for tp, records in got.items():  # newly assigned partitions were not paused yet
                    if records:
                        self._rewind(tp, min(r.offset for r in records))
                self._consumer.pause(*self._assigned)
        except Exception as exc:  # noqa: BLE001 - Kafka trouble while waiting: just sleep
            log.debug("poll while waiting failed: %s", exc)
            self._stop.wait(max(0.0, deadline - time.monotonic()))
        finally:
            self._waiting = False
            try:
                # Everything paused, not just what is assigned now: kafka-python keeps a
                # partition's paused flag when a rebalance revokes it and gives it back.
                self._consumer.resume(*self._consumer.paused())
            except Exception:  # noqa: BLE001
                pass

    def _rewind(self, tp: Any, offset: int) -> None:
        try:
            self._consumer.seek(tp, offset)
        except Exception as exc:  # noqa: BLE001 - not ours anymore; the next owner reads it
            log.debug("seek %s to %s failed: %s", tp, offset, exc)

    def _on_outage(self, exc: TransientError) -> None:
        dep = "milvus" if exc.reason.startswith("milvus") else "kafka" if exc.reason.startswith("kafka") else exc.reason
        self.health.set(dep, False)
        self._outage_checks.add(dep)
        if dep in ("milvus", "kafka"):
            self.metrics.dependency_up.labels(dependency=dep).set(0)

    def _on_recovered(self) -> None:
        for dep in self._outage_checks:  # e.g. temp_storage_unavailable: nothing else resets it
            self.health.set(dep, True)
        self._outage_checks.clear()
        for dep in ("milvus", "kafka"):
            self.metrics.dependency_up.labels(dependency=dep).set(1)

    def _set_kafka(self, ok: bool) -> None:
        self.health.set("kafka", ok)
        self.metrics.dependency_up.labels(dependency="kafka").set(1 if ok else 0)

    # -- rebalance --------------------------------------------------------------------------
    def _on_assigned(self, assigned: set[Any]) -> None:
        """Own ``assigned`` (IO thread). A partition revoked with unfinished work and given back
        in the same rebalance keeps its fetch position in kafka-python, past the records that
        were in flight and are no longer tracked: it is sought back to its first unfinished
        offset (completed ones come back as replays and are skipped)."""
        log.info("assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))
        self._rebalancing = False
        self._rebalance_since = None
        self._assigned |= assigned
        for tp in assigned:
            if tp in self._resume_at:
                self._rewind(tp, self._resume_at[tp])
        self._resume_at.clear()
        if assigned:
            try:  # paused while waiting; else resumed (a revoked partition keeps its paused flag)
                (self._consumer.pause if self._waiting else self._consumer.resume)(*assigned)
            except Exception:  # noqa: BLE001
                pass

    async def _on_revoked(self, revoked: set[Any]) -> None:
        """Commit what is finished on the revoked partitions, then forget them (IO thread)."""
        log.info("revoked %s", sorted((tp.topic, tp.partition) for tp in revoked))
        self._start_rebalance()  # a join starts: ended by the assignment
        offsets = self._tracker.committable(revoked) if self._consumer is not None else {}
        if offsets:
            fault_point("pre_commit")
            try:
                await self._consumer.commit_async(self._payload(offsets))
            except Exception as exc:  # noqa: BLE001 - any failure: the new owner re-processes
                log.warning("commit of revoked partitions failed (their records will be re-processed): %s", exc)
            else:
                self._did_commit(offsets)
        for tp in revoked:
            first = self._tracker.first_unfinished(tp)
            if first is not None:
                self._resume_at[tp] = first
        self._drop(revoked)

    def _on_lost(self, lost: set[Any]) -> None:
        """The member was evicted: its partitions already have new owners, nothing can be committed."""
        log.warning("lost %s (evicted from the group); their uncommitted records will be re-processed",
                    sorted((tp.topic, tp.partition) for tp in lost))
        self._start_rebalance()  # the member joins again: ended by the assignment
        for tp in lost:
            self._resume_at.pop(tp, None)
        self._drop(lost)

    def _start_rebalance(self) -> None:
        self._rebalancing = True
        if self._rebalance_since is None:
            self._rebalance_since = time.monotonic()

    def _rejoined_if_overdue(self) -> bool:
        """Replace the consumer when a rebalance began (revoke or loss) and no assignment followed
        within ``rejoin_timeout_s``; False when there is no consumer left to poll (stopping)."""
        since = self._rebalance_since
        if self._rebalancing and since is not None and time.monotonic() - since > self._rejoin_timeout_s:
            self._replace_consumer()
        return self._consumer is not None

    def _replace_consumer(self) -> None:
        """Close the consumer stuck outside the group and join with a new one (polling thread).

        kafka-python 3.0.12 can leave a member that re-joined as group leader without its
        assignment: it stops heartbeating, is evicted and never joins again, while every ``poll``
        returns on time, so neither the stuck-call guard nor ``/healthz`` sees anything. Nothing is
        assigned at that point (the revoke or loss dropped it, the uploads in flight are of an old
        generation and abort), so a new consumer starts from the committed offsets like any new
        member."""
        waited = time.monotonic() - (self._rebalance_since or time.monotonic())
        log.warning("no partition assignment %.0f s after the last revoke; replacing the Kafka consumer", waited)
        self.metrics.kafka_consumer_replacements.inc()
        old, self._consumer = self._consumer, None
        try:
            with self._guard.watch("close", CLOSE_TIMEOUT_MS):
                old.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
        except Exception as exc:  # noqa: BLE001 - the old client is dropped either way
            log.warning("closing the stuck consumer: %s", exc)
        self._rebalance_since = time.monotonic()  # the new member's join gets the full timeout
        self._connect_until_stopped()

    def _drop(self, tps: set[Any]) -> None:
        self._assigned -= tps
        for tp in tps:
            self._tracker.forget(tp)
            try:
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass

    # -- commits ----------------------------------------------------------------------------
    def _commit(self, *, force: bool = False, tps: Iterable[Any] | None = None) -> None:
        """Commit the finished offsets of ``tps`` (default: all assigned); polling thread only."""
        from kafka.errors import CommitFailedError, KafkaError

        if self._consumer is None:
            return
        self._take_decided(self.pipeline.collect())  # what the chain decided so far counts too
        offsets = self._tracker.committable(tps if tps is not None else self._assigned)
        if not offsets:
            self.commit_policy.did_commit()
            return
        fault_point("pre_commit")
        try:
            with self._guard.watch("commit", KAFKA_REQUEST_TIMEOUT_MS):
                self._consumer.commit(self._payload(offsets))
        except CommitFailedError as exc:
            log.warning("commit failed after a rebalance (records will be re-processed): %s", exc)
            return
        except KafkaError as exc:
            log.warning("commit failed (will retry): %s", exc)
            self._set_kafka(False)
            return
        self._did_commit(offsets)

    @staticmethod
    def _payload(offsets: dict[Any, int]) -> dict[Any, Any]:
        from kafka.structs import OffsetAndMetadata

        return {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()}

    def _did_commit(self, offsets: dict[Any, int]) -> None:
        fault_point("post_commit")
        self._tracker.committed(offsets)
        self.commit_policy.did_commit()
        self.metrics.commits.inc()
        log.debug("committed %s", {f"{tp.topic}-{tp.partition}": o for tp, o in offsets.items()})

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < LAG_INTERVAL_S and self._last_lag:
            return
        self._last_lag = now
        for tp in list(self._assigned):
            try:
                high = self._consumer.highwater(tp)
                with self._guard.watch("position", 1000):
                    pos = self._consumer.position(tp, timeout_ms=1000) if high is not None else None
            except Exception:  # noqa: BLE001 - lag is best effort
                continue
            if high is not None and pos is not None:
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, high - pos))

    def _close(self) -> None:
        if self._consumer is None:
            return
        try:
            self._consumer.close(autocommit=False)
        except Exception as exc:  # noqa: BLE001
            log.warning("closing the consumer: %s", exc)
        self._consumer = None
        self.health.set("kafka", False)
