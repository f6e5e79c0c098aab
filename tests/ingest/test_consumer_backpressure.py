"""The Kafka loop pauses its partitions while the chain rejects uploads, and resumes them after."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from kafka import TopicPartition

from dupwatch.config import KafkaConfig, LimitsConfig
from ingest.consumer import UploadConsumer
from ingest.health import HealthState
from ingest.metrics import WorkerMetrics
from ingest.pipeline import StepContext
from tests.ingest.test_steps import FakeDecoder, event, make

TP = TopicPartition("uploads", 0)


class FakeKafka:
    """The first poll returns ``records``; later ones return nothing, recording what was paused.
    The ``open_after``-th poll made while the partition is paused opens the decoder's gate."""

    def __init__(self, records: list[Any], gate: threading.Event, open_after: int = 3, **conf: Any) -> None:
        self.records, self.gate, self.open_after = records, gate, open_after
        self.paused_now: set[Any] = set()
        self.polls: list[frozenset[Any]] = []
        self.commits: list[dict[Any, Any]] = []
        self.pause_calls = self.resume_calls = 0

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        pass

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        self.polls.append(frozenset(self.paused_now))
        if len(self.polls) == 1:
            return {TP: self.records}
        if sum(1 for p in self.polls if TP in p) >= self.open_after:
            self.gate.set()
        return {}

    def pause(self, *tps: Any) -> None:
        self.pause_calls += 1
        self.paused_now |= set(tps)

    def resume(self, *tps: Any) -> None:
        self.resume_calls += 1
        self.paused_now -= set(tps)

    def paused(self) -> set[Any]:
        return set(self.paused_now)

    def seek(self, tp: Any, offset: int) -> None:
        raise AssertionError(f"nothing is rewound here ({tp}, {offset})")

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.commits.append({tp: o.offset for tp, o in offsets.items()})

    def highwater(self, tp: Any) -> None:
        return None

    def close(self, autocommit: bool = False) -> None:
        pass


def test_partitions_are_paused_while_the_chain_rejects_and_resumed_after() -> None:
    gate = threading.Event()
    pipeline, _, index, _, _ = make(decoder=FakeDecoder(gate=gate), threads=1)  # 2 in flight, the 3rd rejected
    from tests.ingest.test_steps import LEVELS

    LEVELS.update({f"v{i}": i for i in range(4)})
    records = [SimpleNamespace(value=event(i, i), offset=i, key=None, timestamp=None) for i in range(4)]
    kafka = FakeKafka(records, gate)
    consumer = UploadConsumer(KafkaConfig(), LimitsConfig(max_in_flight_videos=4, retry_backoff_initial_s=0.01), pipeline,
                              metrics=WorkerMetrics(), health=HealthState(),
                              consumer_factory=lambda **conf: kafka)
    consumer._consumer = consumer._connect()
    consumer._on_assigned({TP})
    consumer._run_once(StepContext(sleep=consumer._wait, should_abort=consumer._should_abort, revoked=consumer._revoked))
    pipeline.close()
    assert index.order == ["v0", "v1", "v2", "v3"]
    rejected_polls = kafka.polls[1:]
    assert rejected_polls and all(TP in paused for paused in rejected_polls), kafka.polls  # polled only while paused
    assert consumer._backpressure.polls == len(rejected_polls) >= 3
    assert not kafka.paused_now  # resumed once the chain accepted again
    consumer._commit(force=True)
    assert kafka.commits == [{TP: 4}]
