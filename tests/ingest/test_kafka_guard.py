"""The stuck-call guard: a kafka-python call whose IO task is never run is released, and the
worker goes on with nothing lost or indexed twice.

The hang is reproduced the way it happens: the task that ``NetworkSelector.run`` hands to the IO
thread for one ``poll`` is dropped (never scheduled, no wake-up), so the caller waits on its event
with nothing left to set it.
"""

from __future__ import annotations

import threading
import time

import pytest

from ingest.kafka_guard import StuckCallGuard
from tests.ingest.test_consumer_rebalance import _assert_each_once, _events, _produce
from tests.ingest.test_worker import RunningWorker
from tests.ingest.test_worker_helpers import committed_offsets, make_settings, scrape, unique, wait_for


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Net:
    def __init__(self) -> None:
        self.failed: list[BaseException] = []
        self.wakeups = 0

    def _fail_pending_waiters(self, exc: BaseException) -> None:
        self.failed.append(exc)

    def wakeup(self) -> None:
        self.wakeups += 1


class _Client:
    def __init__(self) -> None:
        self._net = _Net()


def test_a_call_past_its_deadline_is_released_once():
    from kafka.errors import KafkaTimeoutError

    clock, client, released = _Clock(), _Client(), []
    guard = StuckCallGuard(lambda: client, 2.0, on_release=lambda what, s: released.append((what, s)), clock=clock)
    assert not guard.check()  # nothing watched
    with guard.watch("poll", 500):
        clock.now += 2.4  # 0.5 s of the poll's own timeout + 1.9 s: not yet
        assert not guard.check()
        clock.now += 0.2
        assert guard.check()
        assert not guard.check()  # released once per call
    assert [type(e) for e in client._net.failed] == [KafkaTimeoutError] and client._net.wakeups == 1
    assert released == [("poll", pytest.approx(2.1))] and guard.released == 1
    clock.now += 60
    assert not guard.check()  # the call returned: nothing watched any more


def test_a_call_that_returns_in_time_is_left_alone():
    clock, client = _Clock(), _Client()
    guard = StuckCallGuard(lambda: client, 1.0, clock=clock)
    for _ in range(3):
        with guard.watch("commit", 30_000):
            clock.now += 29.0
            assert not guard.check()
    assert client._net.failed == [] and guard.released == 0


def test_a_client_without_an_io_loop_is_never_released():
    clock = _Clock()
    guard = StuckCallGuard(lambda: object(), 1.0, clock=clock)
    with guard.watch("poll", 0):
        clock.now += 5
        assert not guard.check()
    assert guard.released == 0


def _drop_next_waiter(consumer) -> threading.Event:
    """Make the next cross-thread task of ``consumer``'s IO loop vanish; the event is set once it did."""
    net = consumer._net
    original = net.call_soon_threadsafe
    dropped = threading.Event()

    def call_soon_threadsafe(callback):
        if not dropped.is_set() and getattr(callback, "__name__", "") == "waiter":
            dropped.set()
            return None
        return original(callback)

    net.call_soon_threadsafe = call_soon_threadsafe
    return dropped


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_a_real_poll_whose_task_is_lost_is_released_and_the_next_poll_works(kafka_broker):
    from kafka import KafkaConsumer
    from kafka.errors import KafkaTimeoutError

    topic = kafka_broker.create_topic(unique("guard"), 1)
    _produce(kafka_broker.bootstrap_servers, topic, _events("guard", 3))
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap_servers, group_id=unique("g"),
                             auto_offset_reset="earliest", enable_auto_commit=False)
    guard = StuckCallGuard(lambda: consumer, 1.0, check_every_s=0.05).start()
    try:
        dropped = _drop_next_waiter(consumer)
        started = time.monotonic()
        try:  # kafka-python's poll takes the timeout as "no records"; other calls raise it
            with guard.watch("poll", 100):
                assert consumer.poll(timeout_ms=100) == {}
        except KafkaTimeoutError as exc:
            assert "blocked" in str(exc)
        assert dropped.is_set() and guard.released == 1
        assert time.monotonic() - started < 10
        got: list = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            with guard.watch("poll", 500):
                got += [r for records in consumer.poll(timeout_ms=500).values() for r in records]
        assert len(got) == 3 and guard.released == 1
    finally:
        guard.stop()
        consumer.close()


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_the_worker_goes_on_after_a_stuck_poll_with_nothing_lost_or_twice(kafka_broker, milvus_lite_uri):
    topic = kafka_broker.create_topic(unique("uploads"), 1)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=2)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"stuck_call_s": 1.0})})
    first, second = _events("before", 3), _events("after", 3, 3)
    _produce(kafka_broker.bootstrap_servers, topic, first)
    bootstrap, group = kafka_broker.bootstrap_servers, settings.kafka.group_id
    with RunningWorker(settings) as run:
        wait_for(lambda: committed_offsets(bootstrap, group, topic) == {0: 3}, 90, "the first uploads committed")
        dropped = _drop_next_waiter(run.worker.consumer._consumer)
        wait_for(dropped.is_set, 30, "a poll whose IO task was lost")
        _produce(bootstrap, topic, second)
        wait_for(lambda: committed_offsets(bootstrap, group, topic) == {0: 6}, 90, "every upload committed after the release")
        metrics = scrape(run.port)
    assert metrics["dupwatch_kafka_calls_released_total{call=poll}"] == 1
    _assert_each_once(settings, [*first, *second])
