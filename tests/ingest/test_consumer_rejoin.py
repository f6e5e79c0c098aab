"""A worker whose consumer never gets its assignment back after a rebalance replaces the consumer
(``kafka.rejoin_timeout_s``) and goes on, with nothing lost or indexed twice.

The stuck state is made the way it was seen with kafka-python 3.0.12: the worker re-joins as
group leader when a second member subscribes to another topic, and the join completes without the
assignment ever reaching the client's rebalance listener. Every ``poll`` still returns on time,
so the worker looks alive while it consumes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.ingest.test_consumer_rebalance import GatedEmbedder, _assert_each_once, _events, _partitions, _produce
from tests.ingest.test_worker import RunningWorker
from tests.ingest.test_worker_helpers import committed_offsets, make_settings, scrape, unique, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


def _settings(kafka_broker, milvus_lite_uri):  # type: ignore[no-untyped-def]
    topic = kafka_broker.create_topic(unique("uploads"), 1)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=2)
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"rejoin_timeout_s": 3.0})})


def _stick_and_recover(kafka_broker, run: RunningWorker, then: Callable[[], None], committed: int) -> dict[str, float]:
    """Lose the worker's next assignment, force a rebalance with a member of another topic, wait
    for a new consumer owning the partition, run ``then`` and wait for ``committed`` offsets."""
    from kafka import KafkaConsumer

    settings, bootstrap = run.settings, kafka_broker.bootstrap_servers
    group, topic = settings.kafka.group_id, settings.kafka.uploads_topic
    stuck = run.worker.consumer._consumer

    async def assignment_lost(*args, **kwargs) -> None:  # the join "completes", the listener hears nothing
        return None

    stuck._coordinator._on_join_complete_async = assignment_lost
    member = KafkaConsumer(kafka_broker.create_topic(unique("other"), 1), bootstrap_servers=bootstrap, group_id=group,
                           enable_auto_commit=False, session_timeout_ms=15000, heartbeat_interval_ms=1000)
    try:
        def replaced() -> bool:
            member.poll(timeout_ms=200)
            return run.worker.consumer._consumer is not stuck and _partitions(run) == {0}

        wait_for(replaced, 120, "a new consumer owning the partition")
        then()

        def drained() -> bool:
            member.poll(timeout_ms=200)
            return committed_offsets(bootstrap, group, topic) == {0: committed}

        wait_for(drained, 90, f"{committed} offsets committed after the replacement")
        return scrape(run.port)
    finally:
        member.close()


def test_a_consumer_left_without_its_assignment_is_replaced(kafka_broker, milvus_lite_uri):
    settings = _settings(kafka_broker, milvus_lite_uri)
    bootstrap, group, topic = kafka_broker.bootstrap_servers, settings.kafka.group_id, settings.kafka.uploads_topic
    first, second = _events("first", 3), _events("second", 3, 3)
    _produce(bootstrap, topic, first)
    with RunningWorker(settings) as a:
        wait_for(lambda: committed_offsets(bootstrap, group, topic) == {0: 3}, 90, "the first uploads committed")
        metrics = _stick_and_recover(kafka_broker, a, lambda: _produce(bootstrap, topic, second), 6)
    assert metrics["dupwatch_kafka_consumer_replacements_total"] == 1
    _assert_each_once(settings, [*first, *second])


def test_a_stuck_rejoin_during_an_outage_wait_is_not_waited_out_forever(kafka_broker, milvus_lite_uri):
    """The worker waits out a dependency outage inside ``poll`` (its batch in flight) and, while a
    rebalance is in progress, until the rebalance ends: one that never ends must not hold it."""
    settings = _settings(kafka_broker, milvus_lite_uri)
    bootstrap, group, topic = kafka_broker.bootstrap_servers, settings.kafka.group_id, settings.kafka.uploads_topic
    events = _events("outage", 4)
    _produce(bootstrap, topic, events)
    gate = GatedEmbedder(allow=2)
    with RunningWorker(settings, embedder=gate) as a:
        wait_for(lambda: gate.blocked >= 2 and committed_offsets(bootstrap, group, topic) == {0: 2}, 90,
                 "the first two uploads committed, the last two held by the outage")
        metrics = _stick_and_recover(kafka_broker, a, gate.open, 4)
    assert metrics["dupwatch_kafka_consumer_replacements_total"] == 1
    _assert_each_once(settings, list(events))
