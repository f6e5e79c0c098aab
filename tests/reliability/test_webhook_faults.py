"""Webhook receivers that fail: 500s, timeouts, connection resets, then recovery; 410 and 400.

The worker is the real one (``tests.reliability.harness``) with the real ``WebhookSender`` and a
SQLite delivery log; reused video files under new ids raise real ``copy`` alerts.

- flaky receiver (500 → hang past the timeout → TCP reset → 200): every alert id is acknowledged
  exactly once at the receiver (dedupe by ``webhook-id``), signatures verify, nothing lost.
- an outage longer than one alert's retry budget: the upload waits (not committed, not
  dead-lettered) and the alert is delivered once the receiver is back.
- 410 and 400: one attempt per alert (no retry), a ``dead_letter`` record ``http_410`` /
  ``http_400`` in the delivery log, the uploads still indexed and committed.
- the webhook secret never shows in logs (caplog, DEBUG, across failing deliveries) nor on /metrics.
"""

from __future__ import annotations

import base64
import logging

from collections import Counter

import pytest

from tests.reliability.harness import (
    VIDEO_FILES,
    InProcessWorker,
    WebhookReceiver,
    drained,
    http_get,
    make_settings,
    produce,
    start_worker,
    tally,
    unique,
    upload_event,
    wait_for,
    webhook_dead_letters,
    webhook_settings,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
RAW_KEY = b"reliability-webhook-key-0002"
SECRET = "whsec_" + base64.b64encode(RAW_KEY).decode()
COPIES = [VIDEO_FILES[0], VIDEO_FILES[2]]  # the same file twice: the second upload is a copy


def _events(prefix: str, n: int) -> tuple[list[str], list[bytes]]:
    ids = [f"{prefix}-{i:03d}" for i in range(n)]
    return ids, [upload_event(v, COPIES[i % 2]) for i, v in enumerate(ids)]


def test_flaky_receiver_then_recovery_delivers_each_alert_once(kafka_broker, milvus_lite_uri, tmp_path):
    topic = kafka_broker.create_topic(unique("hooks"), 1)
    # the request timeout is well above the receiver's answer time on a loaded machine: a 200 that
    # arrives after the timeout is rightly retried, and the receiver would ack that alert twice
    receiver = WebhookReceiver(SECRET, mode=500, hang_s=4.0)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri)
    settings = webhook_settings(settings, receiver, SECRET, max_attempts=30, timeout_s=2.0)
    ids, payloads = _events("flaky", 6)
    produce(kafka_broker.bootstrap_servers, topic, payloads)
    worker = start_worker(settings, tmp_path)
    try:
        wait_for(lambda: worker.alive() and len(receiver.attempts) >= 3, 60, "three 500s")
        receiver.mode = "hang"
        wait_for(lambda: worker.alive() and sum(m == "hang" for _, m in receiver.attempts) >= 2, 30, "two timeouts")
        receiver.mode = "reset"
        wait_for(lambda: worker.alive() and sum(m == "reset" for _, m in receiver.attempts) >= 2, 30, "two resets")
        assert not drained(settings)  # the alerting upload waits for the receiver
        receiver.mode = "ok"
        wait_for(lambda: worker.alive() and drained(settings), 90, "everything committed after recovery")
    finally:
        code = worker.stop()
        receiver.close()
    assert code == 0
    result = tally(settings, ids, receiver)
    print(f"\nRELIABILITY webhook-flaky: {result.row()} attempts={len(receiver.attempts)}")
    assert result.lost == 0 and result.indexed == len(ids) and result.duplicate_rows == 0, result.row()
    assert result.alert_ids > 0 and result.webhook_ids == result.alert_ids, result.row()
    assert result.duplicate_webhook_acks == 0, Counter(receiver.acked).most_common(3)
    assert receiver.bad_signatures == 0
    log_text = worker.log_path.read_text()
    assert SECRET not in log_text and base64.b64encode(RAW_KEY).decode() not in log_text


def test_receiver_outage_longer_than_the_retry_budget_waits_then_delivers(kafka_broker, milvus_lite_uri, tmp_path):
    topic = kafka_broker.create_topic(unique("hooks"), 1)
    receiver = WebhookReceiver(SECRET, mode=503)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri)
    settings = webhook_settings(settings, receiver, SECRET, max_attempts=2)
    ids, payloads = _events("outage", 4)
    produce(kafka_broker.bootstrap_servers, topic, payloads)
    worker = start_worker(settings, tmp_path)
    try:
        wait_for(lambda: worker.alive() and len(receiver.attempts) >= 8, 60, "several exhausted retry rounds")
        assert not drained(settings)
        receiver.mode = "ok"
        wait_for(lambda: worker.alive() and drained(settings), 90, "everything committed after recovery")
    finally:
        code = worker.stop()
        receiver.close()
    assert code == 0
    result = tally(settings, ids, receiver)
    print(f"\nRELIABILITY webhook-outage: {result.row()} attempts={len(receiver.attempts)}")
    assert result.lost == 0 and result.indexed == len(ids) and result.dead_lettered == 0, result.row()
    assert result.alert_ids > 0 and result.webhook_ids == result.alert_ids, result.row()
    assert result.duplicate_webhook_acks == 0


def test_gone_and_bad_request_receivers_are_dead_lettered_without_retry(kafka_broker, milvus_lite_uri, tmp_path):
    from detect.delivery_log import SqliteDeliveryLog

    topic = kafka_broker.create_topic(unique("hooks"), 1)
    gone, bad = WebhookReceiver(SECRET, mode=410), WebhookReceiver(SECRET, mode=400)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri)
    # a timeout is retried by design; a generous one keeps a loaded machine from turning the single
    # 410/400 answer this test is about into a timeout and a legitimate second attempt
    settings = webhook_settings(settings, gone, SECRET, name="gone", max_attempts=5, timeout_s=15.0)
    settings = webhook_settings(settings, bad, SECRET, name="bad", max_attempts=5, timeout_s=15.0)
    ids, payloads = _events("gone", 4)
    produce(kafka_broker.bootstrap_servers, topic, payloads)
    worker = start_worker(settings, tmp_path)
    try:
        wait_for(lambda: worker.alive() and drained(settings), 90, "everything committed")
    finally:
        code = worker.stop()
        gone.close()
        bad.close()
    assert code == 0
    result = tally(settings, ids)
    print(f"\nRELIABILITY webhook-410-400: {result.row()} attempts={len(gone.attempts)}+{len(bad.attempts)}")
    assert result.lost == 0 and result.indexed == len(ids) and result.dead_lettered == 0, result.row()
    assert result.alert_ids > 0
    log = SqliteDeliveryLog(tmp_path / "deliveries.sqlite")
    try:
        for receiver, name, status in ((gone, "gone", 410), (bad, "bad", 400)):
            per_id = Counter(wid for wid, _ in receiver.attempts)
            assert len(per_id) == result.alert_ids and set(per_id.values()) == {1}, per_id  # no retry
            for wid in per_id:
                rec = log.get(wid, name)
                assert rec is not None and rec.state == "dead_letter" and rec.reason == f"http_{status}", rec
    finally:
        log.close()
    # and each refused alert is a dead-letter record on the DLQ topic, once per receiver
    dead = webhook_dead_letters(settings, expected=2 * result.alert_ids)
    got = Counter((d["alert_id"], d["receiver"]) for d in dead)
    assert set(got.values()) == {1} and len(got) == 2 * result.alert_ids, got
    assert {d["reason"] for d in dead} == {"webhook_rejected"}
    assert {d["receiver"] for d in dead} == {"gone", "bad"}


def test_webhook_secret_never_in_logs_or_metrics(kafka_broker, milvus_lite_uri, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    topic = kafka_broker.create_topic(unique("hooks"), 1)
    receiver = WebhookReceiver(SECRET, mode=500, hang_s=1.0)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri)
    settings = webhook_settings(settings, receiver, SECRET, max_attempts=20, timeout_s=0.4)
    ids, payloads = _events("secret", 4)
    produce(kafka_broker.bootstrap_servers, topic, payloads)
    with InProcessWorker(settings, tmp_path / "deliveries.sqlite") as run:
        wait_for(lambda: run.alive() and len(receiver.attempts) >= 2, 60, "failing deliveries")
        receiver.mode = "reset"
        wait_for(lambda: run.alive() and len(receiver.attempts) >= 3, 30, "a reset")
        receiver.mode = "hang"
        wait_for(lambda: run.alive() and len(receiver.attempts) >= 4, 30, "a timeout")
        receiver.mode = "ok"
        wait_for(lambda: run.alive() and drained(settings), 60, "everything committed")
        status, body = http_get(f"http://127.0.0.1:{run.port}/metrics")
        assert status == 200
        texts = [body, repr(run.worker.pipeline.alert_sink.sinks), repr(settings), str(settings.model_dump())]
    receiver.close()
    texts.append(caplog.text)
    texts.extend(str(r.args) for r in caplog.records)
    assert receiver.acked and any("webhook" in r.getMessage() for r in caplog.records)
    forbidden = [SECRET, base64.b64encode(RAW_KEY).decode(), RAW_KEY.decode(), RAW_KEY.hex()]
    for text in texts:
        for secret in forbidden:
            assert secret not in text


def test_delivery_log_locked_waits_instead_of_dead_lettering(kafka_broker, milvus_lite_uri, tmp_path):
    """The delivery log's storage is unavailable (SQLite locked by another writer): the upload
    waits like for any dependency outage; it is not dead-lettered as ``retries_exhausted``."""
    import sqlite3

    from detect.delivery_log import SqliteDeliveryLog

    topic = kafka_broker.create_topic(unique("hooks"), 1)
    receiver = WebhookReceiver(SECRET)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_attempts=3)
    settings = webhook_settings(settings, receiver, SECRET)
    ids, payloads = _events("locked", 4)
    path = tmp_path / "deliveries.sqlite"
    log = SqliteDeliveryLog(path, timeout_s=0.1)
    blocker = sqlite3.connect(str(path), isolation_level=None, timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")
    produce(kafka_broker.bootstrap_servers, topic, payloads)
    with InProcessWorker(settings, log) as run:
        metrics = lambda: run.worker.metrics.registry.get_sample_value  # noqa: E731
        wait_for(
            lambda: run.alive() and (metrics()("dupwatch_retries_total", {"reason": "delivery_log_unavailable"}) or 0) >= 5,
            60,
            "retries on the locked delivery log",
        )
        assert not drained(settings)
        dead = sum(metrics()("dupwatch_dead_letters_total", {"reason": r}) or 0 for r in ("retries_exhausted",))
        blocker.execute("ROLLBACK")
        blocker.close()
        wait_for(lambda: run.alive() and drained(settings), 60, "everything committed once the log is writable")
    receiver.close()
    result = tally(settings, ids, receiver)
    print(f"\nRELIABILITY delivery-log-locked: {result.row()}")
    assert dead == 0 and result.dead_lettered == 0 and result.indexed == len(ids), result.row()
    # The receiver answered 200 but the sender could not record it: each retry re-sends the same
    # webhook-id (at-least-once; the receiver dedupes on it). Every alert id got through.
    assert result.webhook_ids == result.alert_ids, result.row()
