"""Consumer-group rebalances with the pinned kafka-python (real broker, two in-process workers).

kafka-python 3 runs the rebalance listener on its IO thread, so the listener must not block
there (``ingest/consumer.py``). These tests pin what a rebalance must do, with no sleeps as
synchronization: every step waits on a condition (an embedder gate, a worker's assignment,
committed offsets) with a generous bound.

- mid-batch: worker A holds a batch in flight (its embedder is gated) with finished but
  uncommitted uploads before it; worker B joins. The revoke must commit exactly A's finished
  offsets and nothing of the batch in flight; after the gates open every upload is indexed once.
- scale 1 → 2 → 1: B joins, takes partitions, leaves again; A takes everything back. Nothing is
  lost, no index row or alert id is duplicated.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

import pytest

from dupwatch.errors import TransientError
from index.store import VideoIndex
from ingest.consumer import IMMEDIATE, CommitPolicy, CommitPolicyState
from tests.ingest.embedders import CopyDetector, ThumbnailEmbedder
from tests.ingest.test_worker import RunningWorker, _drained
from tests.ingest.test_worker_helpers import (
    VIDEO_FILES,
    committed_offsets,
    make_settings,
    read_topic,
    scrape,
    unique,
    upload_event,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

PARTITIONS = 4
NEVER = CommitPolicy(min_interval_s=None, min_messages=10**9)  # commits only on revoke and shutdown


class GatedEmbedder(ThumbnailEmbedder):
    """Embeds ``allow`` videos, then fails with a dependency outage until :meth:`open` is called.

    A dependency outage is retried without limit while the consumer serves the group from its
    wait: the batch stays in flight, exactly as behind a slow GPU or a Milvus outage.
    """

    def __init__(self, allow: int) -> None:
        super().__init__()
        self.allow = allow
        self.passed: list[str] = []
        self.blocked = 0
        self._open = threading.Event()
        self._lock = threading.Lock()

    def open(self) -> None:
        self._open.set()

    def _gate(self, videos: Sequence) -> None:
        with self._lock:
            if not self._open.is_set() and len(self.passed) + len(videos) > self.allow:
                self.blocked += 1
                raise TransientError("gated by the test", reason="model_unavailable")
            self.passed.extend(v.video_id for v in videos)

    def embed(self, decoded, tenant):
        self._gate([decoded])
        return super().embed(decoded, tenant)

    def embed_batch(self, videos, tenants):
        self._gate(videos)
        return [ThumbnailEmbedder.embed(self, d, t) for d, t in zip(videos, tenants, strict=True)]


def _produce(bootstrap: str, topic: str, events: dict[str, bytes]) -> dict[str, tuple[int, int]]:
    """Produce keyed by video id; ``{video_id: (partition, offset)}``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = {vid: producer.send(topic, key=vid.encode(), value=body) for vid, body in events.items()}
        producer.flush(timeout=30)
        return {vid: (f.get(timeout=30).partition, f.get(timeout=30).offset) for vid, f in futures.items()}
    finally:
        producer.close()


def _events(prefix: str, n: int, start: int = 0) -> dict[str, bytes]:
    return {f"{prefix}-{i:03d}": upload_event(f"{prefix}-{i:03d}", VIDEO_FILES[i % len(VIDEO_FILES)]) for i in range(start, start + n)}


def _partitions(run: RunningWorker) -> set[int]:
    return {p for _, p in run.worker.consumer.assignment}


def _split_between(a: RunningWorker, b: RunningWorker) -> bool:
    """Both own partitions, none twice, all owned: the rebalance round completed on both."""
    pa, pb = _partitions(a), _partitions(b)
    return bool(pa) and bool(pb) and not (pa & pb) and pa | pb == set(range(PARTITIONS))


def _assert_each_once(settings, ids: list[str]) -> None:
    index = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        assert set(index.video_info(ids)) == set(ids)
        assert [v for v in ids if index.count(v).coarse != 1] == []
    finally:
        index.close()


def test_rebalance_mid_batch_commits_finished_offsets_only(kafka_broker, milvus_lite_uri):
    topic = kafka_broker.create_topic(unique("uploads"), PARTITIONS)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=2)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"session_timeout_ms": 15000})})
    events = _events("mid", 32)
    placed = _produce(kafka_broker.bootstrap_servers, topic, events)

    gate_a, gate_b = GatedEmbedder(allow=4), GatedEmbedder(allow=0)
    with RunningWorker(settings, embedder=gate_a, commit_policy=NEVER) as a:
        # One embed call per batch here (two short clips fit in batch_frames), so a batch either
        # passed the gate whole (and was indexed before the next poll) or is the one in flight.
        wait_for(
            lambda: gate_a.blocked >= 2 and scrape(a.port).get("dupwatch_videos_indexed_total") == len(gate_a.passed),
            120,
            "worker A holding a batch in flight after its finished uploads",
        )
        finished = list(gate_a.passed)
        assert 1 <= len(finished) <= 4
        assert committed_offsets(kafka_broker.bootstrap_servers, settings.kafka.group_id, topic) == {}

        with RunningWorker(settings, embedder=gate_b, commit_policy=NEVER) as b:
            wait_for(lambda: _split_between(a, b), 120, "the rebalance to complete on both workers")
            # A committed on revoke what it had finished, and nothing of the batch in flight
            # (B finished nothing yet: its gate is closed).
            expected: dict[int, int] = {}
            for vid in finished:
                part, off = placed[vid]
                expected[part] = max(expected.get(part, 0), off + 1)
            assert committed_offsets(kafka_broker.bootstrap_servers, settings.kafka.group_id, topic) == expected

            for run in (a, b):
                run.worker.consumer.commit_policy = CommitPolicyState(IMMEDIATE)
            gate_a.open()
            gate_b.open()
            wait_for(lambda: _drained(settings), 180, "both workers committing every partition")
            consumed_b = scrape(b.port).get("dupwatch_events_consumed_total", 0)
        consumed_a = scrape(a.port).get("dupwatch_events_consumed_total", 0)

    assert consumed_a + consumed_b >= len(events)
    assert consumed_b > 0, "worker B never got an upload"
    # Nobody indexed an upload the other one also indexed (the in-flight batch moved or was
    # finished by its owner, never both).
    later = gate_a.passed[len(finished):] + gate_b.passed
    assert sorted(later) == sorted(set(later))
    _assert_each_once(settings, list(events))


def test_partition_given_back_in_a_rebalance_finishes_its_in_flight_uploads(kafka_broker, milvus_lite_uri):
    """An eager rebalance revokes every partition and may give one straight back, with the fetch
    position kept past the batch in flight (here: the partition's last records). The worker must
    rewind to the first unfinished offset, or those offsets are never committed.

    The rebalance is made deterministic with a second group member subscribed to another topic:
    worker A is always given its partition back."""
    from kafka import KafkaConsumer

    topic = kafka_broker.create_topic(unique("uploads"), 1)
    other = kafka_broker.create_topic(unique("other"), 1)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=2)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"session_timeout_ms": 15000})})
    events = _events("back", 4)
    _produce(kafka_broker.bootstrap_servers, topic, events)
    group, bootstrap = settings.kafka.group_id, kafka_broker.bootstrap_servers

    gate = GatedEmbedder(allow=2)
    with RunningWorker(settings, embedder=gate, commit_policy=NEVER) as a:
        wait_for(
            lambda: gate.blocked >= 2 and scrape(a.port).get("dupwatch_videos_indexed_total") == len(gate.passed),
            120,
            "worker A holding its last batch in flight",
        )
        assert len(gate.passed) == 2 and committed_offsets(bootstrap, group, topic) == {}
        member = KafkaConsumer(other, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                               session_timeout_ms=15000, heartbeat_interval_ms=1000)
        try:
            def rebalanced() -> bool:
                member.poll(timeout_ms=200)
                return bool(member.assignment()) and _partitions(a) == {0} and committed_offsets(bootstrap, group, topic) == {0: 2}

            wait_for(rebalanced, 120, "the rebalance: A's finished offsets committed on revoke, its partition given back")
            a.worker.consumer.commit_policy = CommitPolicyState(IMMEDIATE)
            gate.open()

            def drained() -> bool:
                member.poll(timeout_ms=200)
                return committed_offsets(bootstrap, group, topic) == {0: len(events)}

            wait_for(drained, 120, "the in-flight uploads committed after the partition came back")
        finally:
            member.close()
    _assert_each_once(settings, list(events))


def test_scale_out_and_in_loses_and_duplicates_nothing(kafka_broker, milvus_lite_uri):
    topic = kafka_broker.create_topic(unique("uploads"), PARTITIONS)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=2)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"session_timeout_ms": 15000})})
    bootstrap = kafka_broker.bootstrap_servers
    waves = [_events("scale", 16, 0), _events("scale", 16, 16), _events("scale", 16, 32)]
    ids = [vid for wave in waves for vid in wave]

    index_a = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    index_b = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        with RunningWorker(settings, detector=CopyDetector(index_a)) as a:
            _produce(bootstrap, topic, waves[0])
            wait_for(lambda: _partitions(a) == set(range(PARTITIONS)), 120, "worker A owning every partition")
            wait_for(lambda: _drained(settings), 120, "worker A committing the first wave")

            with RunningWorker(settings, detector=CopyDetector(index_b)) as b:  # scale out: 1 → 2
                wait_for(lambda: _split_between(a, b), 120, "the scale-out rebalance")
                placed = _produce(bootstrap, topic, waves[1])
                assert {p for p, _ in placed.values()} == set(range(PARTITIONS)), "the wave must reach every partition"
                wait_for(lambda: _drained(settings), 120, "both workers committing the second wave")
                consumed_b = scrape(b.port).get("dupwatch_events_consumed_total", 0)
            # scale in: 2 → 1 (B left the group on its way out)
            wait_for(lambda: _partitions(a) == set(range(PARTITIONS)), 120, "worker A taking every partition back")
            _produce(bootstrap, topic, waves[2])
            wait_for(lambda: _drained(settings), 120, "worker A committing the third wave")
            consumed_a = scrape(a.port).get("dupwatch_events_consumed_total", 0)
    finally:
        index_a.close()
        index_b.close()

    assert consumed_b > 0, "worker B never got an upload"
    assert consumed_a + consumed_b >= len(ids)
    _assert_each_once(settings, ids)
    alerts = Counter(r.key.decode() for r in read_topic(bootstrap, settings.kafka.alerts_topic, expected=10**6, timeout=5))
    assert alerts, "the copies among the uploads raised no alert"
    assert {k: n for k, n in alerts.items() if n > 1} == {}
    dlq = read_topic(bootstrap, settings.kafka.dead_letter_topic, expected=10**6, timeout=3)
    assert dlq == []
