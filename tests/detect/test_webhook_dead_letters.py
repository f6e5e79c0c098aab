"""Bounded webhook retries (issue #8, item 4): a receiver failing with 5xx/timeouts for
``dead_letter_after_s`` gets the alert dead-lettered (``webhook_retries_exhausted``) in the
delivery log and on the dead-letter sink, and the upload stops waiting; 4xx dead-letters at once,
also with a dead-letter record. Real HTTP receivers on 127.0.0.1, fake clock; the Kafka publisher
against the real broker."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from detect.delivery_log import InMemoryDeliveryLog
from detect.webhooks import CollectingWebhookDeadLetters, KafkaWebhookDeadLetters, RetryPolicy, WebhookSender, encode_body
from dupwatch.config import WebhookConfig
from dupwatch.errors import TransientError
from ingest.events import DeadLetterRecord
from tests.detect.test_webhooks import ALERT, SECRET, FakeTime, config, receivers  # noqa: F401 - fixture


class _Alert:
    """What ``WebhookAlertSink`` reads from an ``AlertEvent``."""

    def __init__(self, alert_id: str) -> None:
        self.alert_id = alert_id
        self.level = "copy"

    def model_dump_json(self) -> str:
        return json.dumps({**ALERT, "alert_id": self.alert_id})


def _sender(cfgs, log, dead, ft):
    return WebhookSender(cfgs, log, clock=ft.clock, sleep=ft.sleep, rng=random.Random(3), dead_letters=dead)


def test_5xx_past_the_window_is_dead_lettered_and_published(receivers):  # noqa: F811
    from ingest.worker import WebhookAlertSink

    rcv = receivers([500])
    log, dead, ft = InMemoryDeliveryLog(), CollectingWebhookDeadLetters(), FakeTime()
    s = _sender([config(rcv.url, max_attempts=2, dead_letter_after_s=100.0)], log, dead, ft)
    sink = WebhookAlertSink(s)
    start = ft.now
    # within the window: not final, the upload waits (transient), nothing on the dead-letter sink
    for _ in range(2):
        with pytest.raises(TransientError) as info:
            sink.send(_Alert("alr_w"))
        assert info.value.reason == "webhook_unavailable"
        rec = log.get("alr_w", "mod")
        assert rec.state == "dead_letter" and rec.reason == "attempts_exhausted"
        assert dead.records == [] and s.failing_since("alr_w", "mod") == start
        ft.now += 60.0  # the pipeline's own backoff between upload retries
    # past the window: final, the sink returns (the upload is committed), one dead-letter record
    sink.send(_Alert("alr_w"))
    assert len(rcv.received) == 6
    rec = log.get("alr_w", "mod")
    assert (rec.state, rec.reason, rec.status_code, rec.attempts) == ("dead_letter", "webhook_retries_exhausted", 500, 6)
    [d] = dead.records
    assert (d.receiver, d.alert_id, d.reason, d.status_code, d.attempts) == ("mod", "alr_w", "webhook_retries_exhausted", 500, 6)
    assert d.first_failure_at == start and d.at - d.first_failure_at >= 100.0
    record = DeadLetterRecord.model_validate_json(d.record().model_dump_json())
    assert record.reason == "webhook_retries_exhausted" and record.error_class == "PermanentError"
    assert record.payload() == rcv.received[-1].body == encode_body(json.loads(_Alert("alr_w").model_dump_json()))
    assert record.attempts == 6 and "mod" in record.message and "alr_w" in record.message
    assert s.failing_since("alr_w", "mod") is None


def test_default_window_keeps_short_outages_waiting(receivers):  # noqa: F811
    rcv = receivers([503, 503, 503, 503, 200])
    log, dead, ft = InMemoryDeliveryLog(), CollectingWebhookDeadLetters(), FakeTime()
    cfg = config(rcv.url, max_attempts=2)
    assert cfg.dead_letter_after_s == 3600.0 and RetryPolicy.from_config(cfg).dead_letter_after_s == 3600.0
    s = _sender([cfg], log, dead, ft)
    for _ in range(2):
        assert s.send("alr_s", ALERT)[0].reason == "attempts_exhausted"
        ft.now += 600.0
    [res] = s.send("alr_s", ALERT)
    assert res.outcome == "delivered" and dead.records == [] and log.get("alr_s", "mod").state == "delivered"
    assert s.failing_since("alr_s", "mod") is None


def test_timeouts_count_toward_the_window_and_zero_means_first_round(receivers):  # noqa: F811
    rcv = receivers(["hang"], hang_s=0.6)
    dead, ft = CollectingWebhookDeadLetters(), FakeTime()
    s = _sender([config(rcv.url, max_attempts=1, timeout_s=0.2, dead_letter_after_s=0.0)], InMemoryDeliveryLog(), dead, ft)
    [res] = s.send("alr_t", ALERT)
    assert (res.outcome, res.reason, res.status_code) == ("dead_letter", "webhook_retries_exhausted", None)
    assert [d.reason for d in dead.records] == ["webhook_retries_exhausted"] and dead.records[0].detail == "timeout"


@pytest.mark.parametrize("status", [400, 410])
def test_4xx_dead_letters_at_once_with_a_record(receivers, status):  # noqa: F811
    from ingest.worker import WebhookAlertSink

    rcv = receivers([status])
    log, dead, ft = InMemoryDeliveryLog(), CollectingWebhookDeadLetters(), FakeTime()
    sink = WebhookAlertSink(_sender([config(rcv.url, max_attempts=5)], log, dead, ft))
    sink.send(_Alert("alr_4"))  # no wait: committed
    assert len(rcv.received) == 1 and ft.sleeps == []
    assert log.get("alr_4", "mod").reason == f"http_{status}"
    [d] = dead.records
    assert (d.reason, d.delivery_reason, d.status_code, d.attempts) == ("webhook_rejected", f"http_{status}", status, 1)
    assert d.record().reason == "webhook_rejected"


def test_dead_letter_sink_outage_leaves_the_alert_to_retry(receivers):  # noqa: F811
    rcv = receivers([410])
    log, ft = InMemoryDeliveryLog(), FakeTime()

    def down(_dead) -> None:
        raise TransientError("dlq down", reason="kafka_unavailable")

    s = _sender([config(rcv.url)], log, down, ft)
    with pytest.raises(TransientError):
        s.send("alr_k", ALERT)
    assert log.get("alr_k", "mod") is None  # published first, logged after


def test_window_setting_validated():
    with pytest.raises(ValueError):
        WebhookConfig(name="x", url="http://127.0.0.1/x", secret=SECRET, dead_letter_after_s=-1)
    with pytest.raises(ValueError):
        RetryPolicy(dead_letter_after_s=float("inf"))


@pytest.mark.timeout(180)
def test_kafka_publisher_writes_the_dead_letter_topic(kafka_broker, receivers):  # noqa: F811
    from kafka import KafkaProducer

    from tests.ingest.test_worker_helpers import read_topic

    topic = kafka_broker.create_topic(f"webhook-dlq-{uuid.uuid4().hex[:8]}", 1)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
    try:
        rcv = receivers([500])
        ft = FakeTime()
        s = _sender([config(rcv.url, max_attempts=1, dead_letter_after_s=0.0)], InMemoryDeliveryLog(),
                    KafkaWebhookDeadLetters(producer, topic), ft)
        assert s.send("alr_kafka", ALERT)[0].reason == "webhook_retries_exhausted"
    finally:
        producer.close(timeout=10)
    [msg] = read_topic(kafka_broker.bootstrap_servers, topic, 1)
    assert msg.key == b"alr_kafka"
    record = DeadLetterRecord.model_validate_json(msg.value)
    assert record.reason == "webhook_retries_exhausted" and record.payload() == encode_body(ALERT)
    headers = dict(msg.headers)
    assert headers["dupwatch.errors.reason"] == b"webhook_retries_exhausted"
    assert headers["dupwatch.webhook.receiver"] == b"mod" and headers["dupwatch.alert_id"] == b"alr_kafka"
