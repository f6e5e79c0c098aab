"""A worker whose consumer never gets its assignment back after a rebalance replaces the consumer
(``kafka.rejoin_timeout_s``) and goes on, with nothing lost or indexed twice.

The stuck state is made the way it was seen with kafka-python 3.0.12: the worker re-joins as
group leader when a second member subscribes to another topic, and the join completes without the
assignment ever reaching the client's rebalance listener. Every ``poll`` still returns on time,
so the worker looks alive while it consumes nothing.
"""

from __future__ import annotations

import pytest

from tests.ingest.test_consumer_rebalance import _assert_each_once, _events, _partitions, _produce
from tests.ingest.test_worker import RunningWorker
from tests.ingest.test_worker_helpers import committed_offsets, make_settings, scrape, unique, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


def test_a_consumer_left_without_its_assignment_is_replaced(kafka_broker, milvus_lite_uri):
    from kafka import KafkaConsumer

    topic = kafka_broker.create_topic(unique("uploads"), 1)
    other = kafka_broker.create_topic(unique("other"), 1)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=2)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"rejoin_timeout_s": 3.0})})
    first, second = _events("first", 3), _events("second", 3, 3)
    _produce(kafka_broker.bootstrap_servers, topic, first)
    bootstrap, group = kafka_broker.bootstrap_servers, settings.kafka.group_id
    with RunningWorker(settings) as a:
        wait_for(lambda: committed_offsets(bootstrap, group, topic) == {0: 3}, 90, "the first uploads committed")
        stuck = a.worker.consumer._consumer

        async def assignment_lost(*args, **kwargs) -> None:  # the join "completes", the listener hears nothing
            return None

        stuck._coordinator._on_join_complete_async = assignment_lost
        member = KafkaConsumer(other, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                               session_timeout_ms=15000, heartbeat_interval_ms=1000)
        try:
            def replaced() -> bool:
                member.poll(timeout_ms=200)
                return a.worker.consumer._consumer is not stuck and _partitions(a) == {0}

            wait_for(replaced, 120, "a new consumer owning the partition")
            _produce(bootstrap, topic, second)

            def drained() -> bool:
                member.poll(timeout_ms=200)
                return committed_offsets(bootstrap, group, topic) == {0: 6}

            wait_for(drained, 90, "the uploads after the replacement committed")
            metrics = scrape(a.port)
        finally:
            member.close()
    assert metrics["dupwatch_kafka_consumer_replacements_total"] == 1
    _assert_each_once(settings, [*first, *second])


def test_a_stuck_rejoin_during_an_outage_wait_is_not_waited_out_forever(kafka_broker, milvus_lite_uri):
    """The worker waits out a dependency outage inside ``poll`` (its batch in flight) and, while a
    rebalance is in progress, until the rebalance ends: one that never ends must not hold it."""
    from kafka import KafkaConsumer

    from tests.ingest.test_consumer_rebalance import GatedEmbedder

    topic = kafka_broker.create_topic(unique("uploads"), 1)
    other = kafka_broker.create_topic(unique("other"), 1)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=2)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"rejoin_timeout_s": 3.0})})
    events = _events("outage", 4)
    _produce(kafka_broker.bootstrap_servers, topic, events)
    bootstrap, group = kafka_broker.bootstrap_servers, settings.kafka.group_id
    gate = GatedEmbedder(allow=2)
    with RunningWorker(settings, embedder=gate) as a:
        wait_for(lambda: gate.blocked >= 2 and committed_offsets(bootstrap, group, topic) == {0: 2}, 90,
                 "the first two uploads committed, the last two held by the outage")
        stuck = a.worker.consumer._consumer

        async def assignment_lost(*args, **kwargs) -> None:
            return None

        stuck._coordinator._on_join_complete_async = assignment_lost
        member = KafkaConsumer(other, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                               session_timeout_ms=15000, heartbeat_interval_ms=1000)
        try:
            def replaced() -> bool:
                member.poll(timeout_ms=200)
                return a.worker.consumer._consumer is not stuck and _partitions(a) == {0}

            wait_for(replaced, 120, "a new consumer owning the partition while the outage lasts")
            gate.open()

            def drained() -> bool:
                member.poll(timeout_ms=200)
                return committed_offsets(bootstrap, group, topic) == {0: 4}

            wait_for(drained, 90, "the held uploads committed once the outage is over")
            metrics = scrape(a.port)
        finally:
            member.close()
    assert metrics["dupwatch_kafka_consumer_replacements_total"] == 1
    _assert_each_once(settings, list(events))
