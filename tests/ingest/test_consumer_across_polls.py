"""The Kafka loop keeps the chain running across polls (issue #21).

- Without Kafka: the offset tracker's generations; the pipeline's submit/collect batching uploads
  of two submits; the loop (a fake consumer) committing nothing past an upload in flight across
  polls, and a partition revoked and given back with uploads in flight deciding each upload once.
- Real broker: one embedder call covers uploads of several polls; commits stop below an upload in
  flight while later polls go on; a partition revoked and given back while one of its uploads is
  in flight across polls sends no alert twice and loses nothing.

No sleeps as synchronization: every step waits on a condition with a generous bound.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition

from dupwatch.config import KafkaConfig, LimitsConfig
from index.store import VideoIndex
from ingest.consumer import IMMEDIATE, CommitPolicy, CommitPolicyState, OffsetTracker, UploadConsumer
from ingest.health import HealthState
from ingest.metrics import WorkerMetrics
from ingest.pipeline import FileDecoder
from tests.ingest.embedders import CopyDetector, ThumbnailEmbedder
from tests.ingest.test_steps import LEVELS, FakeDecoder, event, jobs_for, make
from tests.ingest.test_consumer_rebalance import _assert_each_once
from tests.ingest.test_worker import RunningWorker, _drained
from tests.ingest.test_worker_helpers import (
    VIDEO_FILES,
    committed_offsets,
    make_settings,
    produce,
    read_topic,
    scrape,
    unique,
    upload_event,
    wait_for,
)

TP = TopicPartition("uploads", 0)
NEVER = CommitPolicy(min_interval_s=None, min_messages=10**9)  # commits only on revoke and shutdown


# -- without Kafka ------------------------------------------------------------------------------
def test_offset_tracker_generations_make_earlier_copies_stale() -> None:
    t = OffsetTracker()
    tp = ("uploads", 0)
    assert [t.add(tp, off) for off in (0, 1, 2)] == [0, 0, 0]
    t.finish(tp, 0, 0)
    assert t.restart(tp) == 1  # a rewind: polled again from the first unfinished offset
    assert t.generation(tp) == 1
    t.finish(tp, 1, 0)  # the copy in flight before the rewind: stale
    assert t.committable() == {tp: 1}
    assert t.add(tp, 1) == 1  # polled again
    t.finish(tp, 1, 1)
    assert t.committable() == {tp: 2}
    t.forget(tp)  # revoked (and perhaps given back)
    assert t.generation(tp) == 2
    assert t.add(tp, 2) == 2
    t.finish(tp, 2, 1)
    assert t.first_unfinished(tp) == 2


def test_uploads_of_two_submits_share_one_embed_call() -> None:
    pipeline, embedder, index, _, _ = make(threads=0, limits=LimitsConfig(batch_frames=8))  # two 4-frame uploads
    first, second, third = jobs_for([1, 2, 3])
    pipeline.submit([first])
    assert pipeline.collect() == [] and pipeline.in_flight == 1  # held for a batch
    pipeline.submit([second])
    assert pipeline.collect() == [first, second]
    assert embedder.calls == [["v0", "v1"]]
    assert index.order == ["v0", "v1"] and pipeline.in_flight == 0
    pipeline.submit([third])
    assert pipeline.collect(idle=True) == [third]  # nothing more coming: not held back
    pipeline.close()


class OneRecordPerPoll:
    """A fake ``KafkaConsumer``: each unpaused poll returns the next record of partition 0 (at
    most ``max_records``); ``seek`` rewinds. Records what was committed and sought."""

    def __init__(self, n: int) -> None:
        self.records = [SimpleNamespace(value=event(i, i), offset=i, key=None, timestamp=None) for i in range(n)]
        self.position = 0
        self.paused_now: set[Any] = set()
        self.polls = 0
        self.commits: list[dict[Any, int]] = []
        self.seeks: list[int] = []

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        pass

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        self.polls += 1
        if TP in self.paused_now or self.position >= len(self.records) or max_records == 0:
            time.sleep(min(timeout_ms, 5) / 1000.0)
            return {}
        self.position += 1
        return {TP: [self.records[self.position - 1]]}

    def pause(self, *tps: Any) -> None:
        self.paused_now |= set(tps)

    def resume(self, *tps: Any) -> None:
        self.paused_now -= set(tps)

    def paused(self) -> set[Any]:
        return set(self.paused_now)

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append(offset)
        self.position = offset

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.commits.append({tp: o.offset for tp, o in offsets.items()})

    async def commit_async(self, offsets: dict[Any, Any]) -> None:
        self.commit(offsets)

    def highwater(self, tp: Any) -> None:
        return None

    def close(self, autocommit: bool = False) -> None:
        pass


class GateOne(FakeDecoder):
    """Holds every decode of ``video_id`` until :meth:`open`; counts those waiting."""

    def __init__(self, video_id: str) -> None:
        super().__init__()
        self.video_id = video_id
        self.opened = threading.Event()
        self.waiting = 0

    def decode(self, video_id: str, uri: str) -> Any:
        if video_id == self.video_id:
            with self.lock:
                self.waiting += 1
            assert self.opened.wait(30)
        return super().decode(video_id, uri)


def _consumer(pipeline: Any, kafka: OneRecordPerPoll, max_in_flight: int) -> tuple[UploadConsumer, Any]:
    consumer = UploadConsumer(KafkaConfig(), LimitsConfig(max_in_flight_videos=max_in_flight, retry_backoff_initial_s=0.01),
                              pipeline, metrics=WorkerMetrics(), health=HealthState(), commit_policy=IMMEDIATE,
                              consumer_factory=lambda **conf: kafka)
    consumer._consumer = consumer._connect()
    consumer._on_assigned({TP})
    from ingest.pipeline import StepContext

    ctx = StepContext(sleep=consumer._wait, should_abort=consumer._should_abort, revoked=consumer._revoked)
    return consumer, ctx


def _turns(consumer: UploadConsumer, ctx: Any, until: Any, bound_s: float = 30.0) -> None:
    deadline = time.monotonic() + bound_s
    while not until():
        assert time.monotonic() < deadline, "the loop never got there"
        consumer._run_once(ctx)


def test_nothing_is_committed_past_an_upload_in_flight_across_polls() -> None:
    decoder = GateOne("v1")
    pipeline, _, index, _, _ = make(decoder=decoder, threads=2, wait=0.01)
    LEVELS.update({f"v{i}": i for i in range(6)})
    kafka = OneRecordPerPoll(6)
    consumer, ctx = _consumer(pipeline, kafka, max_in_flight=4)
    try:
        _turns(consumer, ctx, lambda: kafka.position == 5)  # v1 held while v2..v4 came in later polls
        assert decoder.waiting == 1 and pipeline.in_flight == 4  # the loop is full: v5 waits
        assert index.order == ["v0"]
        _turns(consumer, ctx, lambda: kafka.polls > 50)  # the loop goes on (paused) while full
        assert kafka.position == 5 and pipeline.in_flight == 4
        assert kafka.commits and all(c == {TP: 1} for c in kafka.commits)  # v0 only, never past v1
        decoder.opened.set()
        _turns(consumer, ctx, lambda: kafka.position == 6 and pipeline.in_flight == 0)
        consumer._commit(force=True)
        assert kafka.commits[-1] == {TP: 6}
        assert index.order == [f"v{i}" for i in range(6)]
    finally:
        decoder.opened.set()
        pipeline.close(finish=False)


def test_partition_given_back_with_uploads_in_flight_decides_each_upload_once() -> None:
    """A rebalance revokes partition 0 and gives it back while v1 (decoding) and v2 are in flight:
    the loop rewinds to offset 1 and polls v1, v2 again while their first copies are still in the
    chain. Those copies are stale (older generation) and abort; the new ones are decided once.
    (Three records: the old and new copies fit in the decode step together, 2 threads + 2 queued.)"""
    decoder = GateOne("v1")
    pipeline, _, index, alerts, _ = make(decoder=decoder, threads=2, wait=0.01)
    LEVELS.update({"v0": 7, "v1": 7, "v2": 8})  # v1 copies v0
    kafka = OneRecordPerPoll(3)
    consumer, ctx = _consumer(pipeline, kafka, max_in_flight=4)
    try:
        _turns(consumer, ctx, lambda: kafka.position == 3 and decoder.waiting == 1 and index.order == ["v0"])
        assert pipeline.in_flight == 2
        asyncio.run(consumer._on_revoked({TP}))  # what the IO thread runs inside a poll
        consumer._on_assigned({TP})
        assert kafka.commits == [{TP: 1}] and kafka.seeks == [1]
        _turns(consumer, ctx, lambda: decoder.waiting == 2 and kafka.position == 3)  # v1, v2 polled again
        assert pipeline.in_flight == 4  # their first copies still in the chain
        decoder.opened.set()
        _turns(consumer, ctx, lambda: index.order[-1:] == ["v2"] and pipeline.in_flight == 0)
        consumer._commit(force=True)
    finally:
        decoder.opened.set()
        pipeline.close(finish=False)
    assert index.order == ["v0", "v1", "v2"]  # each decided once
    assert [(a.video_id, a.matched_video_id) for a in alerts.alerts.values()] == [("v1", "v0")]
    assert kafka.commits[-1] == {TP: 3}


# -- real broker --------------------------------------------------------------------------------
class RecordingEmbedder(ThumbnailEmbedder):
    """Records the video ids of every embedder call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def embed(self, decoded, tenant):  # type: ignore[override]
        with self._lock:
            self.calls.append([decoded.video_id])
        return super().embed(decoded, tenant)

    def embed_batch(self, videos, tenants):  # type: ignore[override]
        with self._lock:
            self.calls.append([v.video_id for v in videos])
        return [ThumbnailEmbedder.embed(self, v, t) for v, t in zip(videos, tenants, strict=True)]


class GatedFiles(FileDecoder):
    """Real decodes; every decode of ``video_id`` waits until :meth:`open` (on a pool thread)."""

    def __init__(self, settings: Any, video_id: str) -> None:
        from ingest.worker import decode_config

        super().__init__(settings.sources, decode_config(settings, "pipelined"))
        self.video_id = video_id
        self.opened = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def _gate(self, video_id: str) -> None:
        if video_id == self.video_id:
            with self._lock:
                self.waiting += 1
            self.opened.wait(120)

    def decode(self, video_id: str, uri: str) -> Any:
        self._gate(video_id)
        return super().decode(video_id, uri)

    def open_stream(self, video_id: str, uri: str) -> Any:
        self._gate(video_id)
        return super().open_stream(video_id, uri)


def _settings(kafka_broker: Any, milvus_lite_uri: str, topic: str, *, max_poll_records: int = 16, **limits: Any) -> Any:
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, **limits)
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(
        update={"session_timeout_ms": 15000, "max_poll_records": max_poll_records})})


def _events(prefix: str, n: int) -> dict[str, bytes]:
    return {f"{prefix}-{i:03d}": upload_event(f"{prefix}-{i:03d}", VIDEO_FILES[i % len(VIDEO_FILES)]) for i in range(n)}


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_one_embed_call_covers_uploads_of_several_polls(kafka_broker, milvus_lite_uri):
    """One record per poll (``max_poll_records`` 1) and an embed step that waits long for a batch:
    the uploads of several polls reach the embedder together."""
    topic = kafka_broker.create_topic(unique("uploads"), 1)
    settings = _settings(kafka_broker, milvus_lite_uri, topic, max_poll_records=1, max_in_flight_videos=3,
                         batch_frames=4096, embed_max_wait_s=2.0)
    events = _events("span", 6)
    produce(kafka_broker.bootstrap_servers, topic, list(events.values()))
    embedder = RecordingEmbedder()
    with RunningWorker(settings, embedder=embedder, commit_policy=IMMEDIATE):
        wait_for(lambda: _drained(settings), 120, "every upload committed")
    assert sorted(v for call in embedder.calls for v in call) == sorted(events)
    assert max(len(call) for call in embedder.calls) >= 2, embedder.calls
    _assert_each_once(settings, list(events))


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_commits_stop_below_an_upload_in_flight_across_polls(kafka_broker, milvus_lite_uri):
    topic = kafka_broker.create_topic(unique("uploads"), 1)
    settings = _settings(kafka_broker, milvus_lite_uri, topic, max_poll_records=1, max_in_flight_videos=4)
    events = _events("hold", 8)
    produce(kafka_broker.bootstrap_servers, topic, list(events.values()))
    bootstrap, group = kafka_broker.bootstrap_servers, settings.kafka.group_id
    decoder = GatedFiles(settings, "hold-002")
    try:
        with RunningWorker(settings, embedder=ThumbnailEmbedder(), decoder=decoder, commit_policy=IMMEDIATE) as run:
            # offsets 0, 1 decided and committed; 2 held; 3..5 polled in later polls; the chain full
            wait_for(lambda: decoder.waiting == 1 and scrape(run.port).get("dupwatch_events_consumed_total") == 6
                     and committed_offsets(bootstrap, group, topic) == {0: 2}, 120, "offset 2 held, later ones polled")
            metrics = scrape(run.port)
            assert metrics["dupwatch_videos_indexed_total"] == 2 and metrics["dupwatch_in_flight_videos"] == 4
            assert committed_offsets(bootstrap, group, topic) == {0: 2}
            decoder.opened.set()
            wait_for(lambda: _drained(settings), 120, "every upload committed once offset 2 is decided")
    finally:
        decoder.opened.set()
    _assert_each_once(settings, list(events))


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_partition_given_back_with_an_upload_in_flight_across_polls_alerts_once(kafka_broker, milvus_lite_uri):
    """An eager rebalance revokes the partition and gives it straight back (a second group member
    subscribed to another topic) while upload 2, a copy of upload 0, decodes on the pool and 3
    waits behind it. The worker rewinds to offset 2 and polls 2 and 3 again while their first
    copies are still in the chain: those copies must not be decided too (a second alert)."""
    from kafka import KafkaConsumer

    topic = kafka_broker.create_topic(unique("uploads"), 1)
    other = kafka_broker.create_topic(unique("other"), 1)
    settings = _settings(kafka_broker, milvus_lite_uri, topic, max_in_flight_videos=4)
    events = _events("back", 4)  # VIDEO_FILES: upload 2 is a copy of upload 0
    produce(kafka_broker.bootstrap_servers, topic, list(events.values()))
    bootstrap, group = kafka_broker.bootstrap_servers, settings.kafka.group_id
    decoder = GatedFiles(settings, "back-002")
    index = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        with RunningWorker(settings, embedder=ThumbnailEmbedder(), decoder=decoder, detector=CopyDetector(index),
                     commit_policy=NEVER) as run:
            wait_for(lambda: decoder.waiting == 1 and scrape(run.port).get("dupwatch_videos_indexed_total") == 2,
                     120, "upload 2 held in the decode pool after 0 and 1 were decided")
            assert committed_offsets(bootstrap, group, topic) == {}
            member = KafkaConsumer(other, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                   session_timeout_ms=15000, heartbeat_interval_ms=1000)
            try:
                def rebalanced() -> bool:
                    member.poll(timeout_ms=200)
                    return (bool(member.assignment()) and run.worker.consumer.assignment == {(topic, 0)}
                            and committed_offsets(bootstrap, group, topic) == {0: 2})

                wait_for(rebalanced, 120, "the rebalance: offsets 0, 1 committed on revoke, the partition given back")

                def polled_again() -> bool:
                    member.poll(timeout_ms=200)
                    return decoder.waiting == 2 and scrape(run.port).get("dupwatch_events_consumed_total") == 6

                wait_for(polled_again, 120, "uploads 2 and 3 polled again while their first copies are in flight")
                run.worker.consumer.commit_policy = CommitPolicyState(IMMEDIATE)
                decoder.opened.set()

                def drained() -> bool:
                    member.poll(timeout_ms=200)
                    return committed_offsets(bootstrap, group, topic) == {0: len(events)}

                wait_for(drained, 120, "every upload committed")
                metrics = scrape(run.port)
            finally:
                member.close()
    finally:
        decoder.opened.set()
        index.close()
    assert metrics["dupwatch_videos_indexed_total"] == len(events)  # 0, 1, then the new copies of 2, 3
    _assert_each_once(settings, list(events))
    records = read_topic(bootstrap, settings.kafka.alerts_topic, expected=10**6, timeout=5)
    alerts = Counter(r.key.decode() for r in records)
    assert {k: n for k, n in alerts.items() if n > 1} == {}
    assert "back-002" in {json.loads(r.value)["video_id"] for r in records}  # upload 2's alert was sent
