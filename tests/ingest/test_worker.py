"""The streaming worker in-process against the real Kafka broker and Milvus Lite.

50 real uploads are indexed exactly once; poison events go to the dead-letter topic with their
reason while good ones proceed; /metrics and /readyz behave; nothing is committed while Milvus
is unreachable.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from dupwatch.testing._process import free_ports
from index.store import VideoIndex
from ingest.metrics import WorkerMetrics
from ingest.worker import Worker
from tests.ingest.embedders import CopyDetector, ThumbnailEmbedder
from tests.metrics_lint import promtool  # noqa: F401 - fixture
from tests.ingest.test_worker_helpers import (
    VIDEO_FILES,
    committed_offsets,
    end_offsets,
    http_get,
    make_settings,
    produce,
    read_topic,
    scrape,
    unique,
    upload_event,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


class RunningWorker:
    def __init__(self, settings, embedder=None, detector=None, alert_sinks=(), commit_policy=None, decoder=None):
        self.settings = settings
        self.port = free_ports(1)[0]
        settings = settings.model_copy(update={"server": settings.server.model_copy(update={"port": self.port})})
        self.embedder = embedder or ThumbnailEmbedder()
        self.worker = Worker(settings, embedder=self.embedder, detector=detector, alert_sinks=alert_sinks, metrics=WorkerMetrics(),
                             commit_policy=commit_policy, decoder=decoder)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.worker.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error is not None and exc[0] is None:
            raise self.error


def _drained(settings) -> bool:
    ends = end_offsets(settings.kafka.bootstrap_servers[0], settings.kafka.uploads_topic)
    done = committed_offsets(settings.kafka.bootstrap_servers[0], settings.kafka.group_id, settings.kafka.uploads_topic)
    return bool(ends) and all(done.get(p, 0) == end for p, end in ends.items())


def test_fifty_uploads_indexed_exactly_once_with_metrics(kafka_broker, milvus_lite_uri):
    topic = kafka_broker.create_topic(unique("uploads"), 2)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri)
    ids = [f"vid-{i:03d}" for i in range(50)]
    files = {vid: VIDEO_FILES[i % len(VIDEO_FILES)] for i, vid in enumerate(ids)}
    produce(kafka_broker.bootstrap_servers, topic, [upload_event(v, files[v]) for v in ids])

    with RunningWorker(settings) as run:
        wait_for(lambda: http_get(f"http://127.0.0.1:{run.port}/readyz")[0] == 200, 30, "/readyz 200")
        wait_for(lambda: _drained(settings), 90, "all 50 offsets committed")
        metrics = scrape(run.port)
        assert http_get(f"http://127.0.0.1:{run.port}/healthz")[0] == 200
        ready = json.loads(http_get(f"http://127.0.0.1:{run.port}/readyz")[1])
        assert ready["checks"] == {"model": True, "kafka": True, "milvus": True}

    assert metrics["dupwatch_events_consumed_total"] == 50
    assert metrics["dupwatch_videos_indexed_total"] == 50
    assert metrics["dupwatch_index_seconds_count"] == 50
    assert metrics["dupwatch_decode_seconds_count"] == 50
    assert metrics["dupwatch_batch_frames_count"] >= 1
    assert metrics["dupwatch_in_flight_videos"] == 0
    assert metrics["dupwatch_commits_total"] >= 1
    assert any(k.startswith("dupwatch_consumer_lag_messages{") for k in metrics), sorted(metrics)
    # both dependencies answered: up (Milvus from its first call, not only after an outage)
    assert metrics["dupwatch_dependency_up{dependency=kafka}"] == 1
    assert metrics["dupwatch_dependency_up{dependency=milvus}"] == 1
    # one end-to-end observation per event, from the poll and from the Kafka record timestamp
    assert metrics["dupwatch_end_to_end_seconds_count{since=polled}"] == 50
    assert metrics["dupwatch_end_to_end_seconds_count{since=produced}"] == 50
    assert metrics["dupwatch_search_seconds_count"] == 50  # no detector here: 0 s each, still observed
    assert metrics["process_resident_memory_bytes"] > 0 and any(k.startswith("python_info{") for k in metrics)
    assert not [k for k in metrics if k.split("{")[0].endswith("_created")]
    assert sum(v for k, v in metrics.items() if k.startswith("dupwatch_dead_letters_total")) == 0
    # Frames of several videos went through one embedder batch.
    assert any(b > 15 for b in run.embedder.batches), run.embedder.batches

    index = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        for vid in ids:
            counts = index.count(vid)
            assert counts.coarse == 1, (vid, counts)
            assert counts.frames >= 4 and counts.clips >= 1, (vid, counts)
        info = index.video_info(ids)
        assert len(info) == 50
        assert {row["bundle_version"] for row in info.values()} == {ThumbnailEmbedder.version}
    finally:
        index.close()


def test_poison_events_dead_lettered_good_ones_proceed(kafka_broker, milvus_lite_uri, tmp_path):
    topic = kafka_broker.create_topic(unique("uploads"), 1)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is a text file, not a video\n")
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, extra_roots=[tmp_path])
    payloads = [
        upload_event("good-1", VIDEO_FILES[0]),
        b"{not json",
        json.dumps({"schema_version": 1, "event_id": "e2", "tenant": "default"}).encode(),  # fields missing
        upload_event("textfile", not_video),
        upload_event("good-2", VIDEO_FILES[1]),
    ]
    produce(kafka_broker.bootstrap_servers, topic, payloads)

    with RunningWorker(settings) as run:
        wait_for(lambda: _drained(settings), 60, "all offsets committed")
        metrics = scrape(run.port)

    dead = read_topic(kafka_broker.bootstrap_servers, settings.kafka.dead_letter_topic, expected=3)
    assert len(dead) == 3, [r.value for r in dead]
    reasons = Counter(json.loads(r.value)["reason"] for r in dead)
    assert reasons == Counter({"invalid_json": 1, "invalid_event": 1, "not_a_video": 1})
    for record in dead:
        body = json.loads(record.value)
        headers = dict(record.headers)
        assert headers["dupwatch.errors.reason"].decode() == body["reason"]
        assert headers["dupwatch.errors.class"] == b"PermanentError"
        assert int(headers["dupwatch.errors.offset"]) == body["source_offset"]
        assert body["source_topic"] == topic
    assert json.loads(dead[0].value)["payload_text"] == "{not json"
    assert metrics['dupwatch_dead_letters_total{reason=invalid_json}'] == 1
    assert metrics['dupwatch_dead_letters_total{reason=not_a_video}'] == 1
    assert metrics["dupwatch_videos_indexed_total"] == 2

    index = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        assert index.has_video("good-1") and index.has_video("good-2")
        assert not index.has_video("textfile")
    finally:
        index.close()


def test_not_ready_and_no_commit_while_milvus_unreachable(kafka_broker):
    topic = kafka_broker.create_topic(unique("uploads"), 1)
    closed_port = free_ports(1)[0]
    settings = make_settings(
        kafka_broker.bootstrap_servers, topic, f"http://127.0.0.1:{closed_port}", milvus_timeout_s=2.0, max_attempts=2
    )
    produce(kafka_broker.bootstrap_servers, topic, [upload_event("waits-1", VIDEO_FILES[0]), upload_event("waits-2", VIDEO_FILES[1])])

    with RunningWorker(settings) as run:
        url = f"http://127.0.0.1:{run.port}"
        wait_for(lambda: scrape(run.port).get("dupwatch_events_consumed_total", 0) >= 1, 30, "events consumed")
        wait_for(
            lambda: sum(v for k, v in scrape(run.port).items() if k.startswith("dupwatch_retries_total")) >= 3,
            30,
            "several retries against the dead Milvus",
        )
        status, body = http_get(f"{url}/readyz")
        assert status == 503
        assert json.loads(body)["checks"]["milvus"] is False
        assert http_get(f"{url}/healthz")[0] == 200  # the loop is alive, it is waiting
        metrics = scrape(run.port)
        assert metrics["dupwatch_videos_indexed_total"] == 0
        assert metrics["dupwatch_dependency_up{dependency=milvus}"] == 0
        assert metrics["dupwatch_dependency_up{dependency=kafka}"] == 1
        # A dependency outage is not the upload's fault: never dead-lettered, however long it lasts
        # (max_attempts=2 would have been exceeded long ago for an input-related failure).
        assert sum(v for k, v in metrics.items() if k.startswith("dupwatch_dead_letters_total")) == 0
        assert committed_offsets(kafka_broker.bootstrap_servers, settings.kafka.group_id, topic) == {}
    # Stopped while waiting: it released the batch and still committed nothing.
    assert committed_offsets(kafka_broker.bootstrap_servers, settings.kafka.group_id, topic) == {}


def test_replayed_events_send_no_second_alert_and_write_no_second_row(kafka_broker, milvus_lite_uri):
    topic = kafka_broker.create_topic(unique("uploads"), 1)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri)
    produce(
        kafka_broker.bootstrap_servers,
        topic,
        [upload_event("orig", VIDEO_FILES[1]), upload_event("copy", VIDEO_FILES[1]), upload_event("other", VIDEO_FILES[3])],
    )
    detector_index = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        with RunningWorker(settings, detector=CopyDetector(detector_index)) as run:
            wait_for(lambda: _drained(settings), 60, "first pass committed")
            assert scrape(run.port)['dupwatch_alerts_sent_total{level=copy}'] == 1
        # A crash before the commit means the same events are consumed again: a new group
        # replays all of them from the start.
        replay = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"group_id": settings.kafka.group_id + "-replay"})})
        with RunningWorker(replay, detector=CopyDetector(detector_index)) as run:
            wait_for(lambda: _drained(replay), 60, "replay committed")
            metrics = scrape(run.port)
        assert metrics["dupwatch_replays_skipped_total"] == 3
        assert sum(v for k, v in metrics.items() if k.startswith("dupwatch_alerts_sent_total")) == 0
        alerts = read_topic(kafka_broker.bootstrap_servers, settings.kafka.alerts_topic, expected=1)
        assert len(alerts) == 1
        body = json.loads(alerts[0].value)
        assert (body["video_id"], body["matched_video_id"], body["level"]) == ("copy", "orig", "copy")
        assert alerts[0].key.decode() == body["alert_id"]
        for vid in ("orig", "copy", "other"):
            assert detector_index.count(vid).coarse == 1
    finally:
        detector_index.close()


def test_metrics_after_real_traffic_pass_promtool_and_each_upload_logs_one_line(
    kafka_broker, milvus_lite_uri, tmp_path, caplog, promtool  # noqa: F811
):
    """Alerts, a webhook receiver that accepts and one that rejects, poison events: then
    ``/metrics`` (labelled counters and histograms present) passes ``promtool check metrics``, and
    every event has exactly one ``dupwatch.uploads`` log line whose JSON form parses."""
    import logging

    from dupwatch.config import AlertsConfig, WebhookConfig
    from dupwatch.logs import JsonFormatter
    from ingest.worker import webhook_sinks
    from tests.detect.test_webhooks import SECRET
    from tests.detect.webhook_server import Receiver
    from tests.metrics_lint import assert_exposition_clean

    caplog.set_level(logging.INFO, logger="dupwatch.uploads")
    topic = kafka_broker.create_topic(unique("uploads"), 1)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video\n")
    accepting, rejecting = Receiver(script=[200]), Receiver(script=[400])
    base = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, extra_roots=[tmp_path])
    settings = base.model_copy(update={
        "alerts": AlertsConfig(sqlite_path=tmp_path / "deliveries.sqlite"),
        "webhooks": [WebhookConfig(name="accepting", url=accepting.url, secret=SECRET, backoff_initial_s=0.01),
                     WebhookConfig(name="rejecting", url=rejecting.url, secret=SECRET, backoff_initial_s=0.01)],
    })
    produce(kafka_broker.bootstrap_servers, topic, [
        upload_event("orig", VIDEO_FILES[1]), upload_event("copy", VIDEO_FILES[1]), b"{not json", upload_event("textfile", not_video),
    ])
    detector_index = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        with RunningWorker(settings, detector=CopyDetector(detector_index), alert_sinks=webhook_sinks(settings)) as run:
            wait_for(lambda: _drained(settings), 60, "all offsets committed")
            status, body = http_get(f"http://127.0.0.1:{run.port}/metrics")
            metrics = scrape(run.port)
    finally:
        detector_index.close()
        accepting.close()
        rejecting.close()
    assert status == 200
    assert_exposition_clean(promtool, body)

    assert metrics["dupwatch_alerts_sent_total{level=copy}"] == 1
    assert metrics["dupwatch_webhook_deliveries_total{receiver=accepting}"] == 1
    assert metrics["dupwatch_webhook_requests_total{receiver=accepting,status_class=2xx}"] == 1
    assert metrics["dupwatch_webhook_requests_total{receiver=rejecting,status_class=4xx}"] == 1
    assert metrics["dupwatch_webhook_dead_letters_total{reason=webhook_rejected,receiver=rejecting}"] == 1
    assert metrics["dupwatch_end_to_end_seconds_count{since=polled}"] == 4
    assert metrics["dupwatch_end_to_end_seconds_count{since=produced}"] == 4
    assert metrics["dupwatch_dead_letters_total{reason=invalid_json}"] == 1

    records = [r for r in caplog.records if r.name == "dupwatch.uploads"]
    assert len(records) == 4, [r.getMessage() for r in records]
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    by_offset = {line["offset"]: line for line in lines}
    assert sorted(by_offset) == [0, 1, 2, 3]
    for line in lines:
        assert line["level"] == "INFO" and line["topic"] == topic and line["partition"] == 0
        assert line["produced_to_decided_ms"] >= 0 and line["polled_to_decided_ms"] >= 0
    orig, copy, poison, text = (by_offset[i] for i in range(4))
    assert (orig["video_id"], orig["event_id"], orig["tenant"], orig["outcome"], orig["alert_level"]) == (
        "orig", "evt-orig", "default", "indexed", None)
    assert (copy["video_id"], copy["outcome"], copy["alert_level"], copy["alerts"]) == ("copy", "alerted", "copy", 1)
    for line in (orig, copy):
        assert all(line[f"{step}_ms"] >= 0 for step in ("decode", "embed", "search", "detect", "index")), line
    assert (poison["event_id"], poison["outcome"], poison["reason"]) == (None, "dead_lettered", "invalid_json")
    assert (text["video_id"], text["outcome"], text["reason"], text["index_ms"]) == ("textfile", "dead_lettered", "not_a_video", None)
    assert text["decode_ms"] >= 0 and text["embed_ms"] is None  # the failed decode attempt counts; no later step ran
    assert "outcome=alerted" in records[[r.offset for r in records].index(1)].getMessage()
