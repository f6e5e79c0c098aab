"""Kafka broker killed and restarted mid-stream; a consumer-group rebalance with one worker killed.

- Broker: a private broker (``kafka_broker_factory``) is SIGKILLed while the worker is mid-stream,
  kept down a few seconds (worker stays alive, reports Kafka down on /readyz), restarted on the
  same ports and data; more uploads are produced after the restart. End state: every upload
  indexed exactly once, committed, nothing dead-lettered.
- Rebalance: two workers in one group on a 4-partition topic (Milvus server shared by both); one
  is SIGKILLed mid-stream, the survivor takes over its partitions after the session timeout.
  End state: every upload indexed exactly once, committed, each alert id acknowledged at the
  receiver (re-sends after the kill, if any, carry the same webhook-id).
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from tests.reliability.harness import (
    VIDEO_FILES,
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
    webhook_settings,
)

pytestmark = [pytest.mark.kafka]
SECRET = "whsec_" + base64.b64encode(b"reliability-kafka-secret-0003").decode()


def _indexed(worker) -> float:
    return worker.metrics().get("dupwatch_videos_indexed_total", 0.0)


@pytest.mark.timeout(300)
def test_broker_killed_and_restarted_mid_stream(kafka_broker_factory, milvus_lite_uri, tmp_path):
    broker = kafka_broker_factory()
    topic = broker.create_topic(unique("brokerdown"), 2)
    settings = make_settings(broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=2)
    before = [f"pre-{i:03d}" for i in range(10)]
    after = [f"post-{i:03d}" for i in range(4)]
    produce(broker.bootstrap_servers, topic, [upload_event(v, VIDEO_FILES[i % len(VIDEO_FILES)]) for i, v in enumerate(before)])
    t0 = time.monotonic()
    worker = start_worker(settings, tmp_path)
    try:
        wait_for(lambda: worker.alive() and _indexed(worker) >= 3, 90, "three uploads indexed")
        broker.kill()
        down_at = time.monotonic()
        ready_seen = []

        def not_ready() -> bool:
            status, body = http_get(f"http://127.0.0.1:{worker.port}/readyz")
            ready_seen.append(status)
            return status == 503 and json.loads(body or "{}").get("checks", {}).get("kafka") is False

        wait_for(lambda: worker.alive() and not_ready(), 45, "/readyz 503 with kafka false while the broker is down")
        time.sleep(max(0.0, 5.0 - (time.monotonic() - down_at)))
        worker.alive()
        broker.start()
        produce(broker.bootstrap_servers, topic, [upload_event(v, VIDEO_FILES[i % len(VIDEO_FILES)]) for i, v in enumerate(after)])
        wait_for(lambda: worker.alive() and drained(settings), 150, "everything committed after the broker came back")
        wait_for(lambda: http_get(f"http://127.0.0.1:{worker.port}/readyz")[0] == 200, 30, "/readyz 200 again")
    finally:
        code = worker.stop()
    assert code == 0, worker.log_path.read_text()[-3000:]
    ids = before + after
    result = tally(settings, ids)
    result.extra.update(seconds=round(time.monotonic() - t0, 1), peak_rss_mib=round(worker.peak_rss_kib / 1024))
    print(f"\nRELIABILITY kafka-broker-restart: {result.row()}")
    assert result.lost == 0 and result.indexed == len(ids) and result.dead_lettered == 0, result.row()
    assert result.duplicate_rows == 0, result.row()


@pytest.mark.milvus_server
@pytest.mark.slow  # ~80 s on the shared machine (two worker processes + the Milvus server)
@pytest.mark.timeout(300)
def test_rebalance_two_workers_one_killed(kafka_broker, milvus_server, tmp_path):
    topic = kafka_broker.create_topic(unique("rebalance"), 4)
    receiver = WebhookReceiver(SECRET)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_server.uri, max_in_flight_videos=2)
    settings = webhook_settings(settings, receiver, SECRET)
    ids = [f"rb-{i:03d}" for i in range(32)]
    produce(kafka_broker.bootstrap_servers, topic, [upload_event(v, VIDEO_FILES[i % len(VIDEO_FILES)]) for i, v in enumerate(ids)])
    t0 = time.monotonic()
    a = start_worker(settings, tmp_path, "worker-a", env={"DUPWATCH_DELIVERY_LOG": str(tmp_path / "a.sqlite")})
    b = start_worker(settings, tmp_path, "worker-b", env={"DUPWATCH_DELIVERY_LOG": str(tmp_path / "b.sqlite")})
    try:
        wait_for(lambda: a.alive() and b.alive() and _indexed(a) >= 2 and _indexed(b) >= 2, 120, "both workers indexing")
        a.kill()
        wait_for(lambda: b.alive() and drained(settings), 150, "the survivor committing every partition")
    finally:
        a.kill()
        code = b.stop()
        receiver.close()
    assert code == 0, b.log_path.read_text()[-3000:]
    result = tally(settings, ids, receiver)
    result.extra.update(seconds=round(time.monotonic() - t0, 1))
    print(f"\nRELIABILITY rebalance: {result.row()}")
    assert result.lost == 0 and result.indexed == len(ids) and result.dead_lettered == 0, result.row()
    assert result.duplicate_rows == 0, result.row()
    assert result.alert_ids > 0 and result.webhook_ids == result.alert_ids, result.row()
    assert result.duplicate_webhook_acks <= 1, result.row()  # only the alert in flight at the kill
    assert receiver.bad_signatures == 0
