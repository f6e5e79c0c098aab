"""Milvus server killed mid-stream and restarted (private server via ``milvus_server_factory``).

The worker process waits and retries: same pid all along (no crash loop), /healthz 200, /readyz
503 with ``milvus: false``, nothing committed past the first waiting upload, nothing
dead-lettered; after the restart everything is indexed exactly once and committed. Slow (a private
Milvus server, ~1-2 min on the shared machine): run with ``--runslow``.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.reliability.harness import (
    VIDEO_FILES,
    committed_offsets,
    drained,
    http_get,
    make_settings,
    produce,
    start_worker,
    tally,
    unique,
    upload_event,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.milvus_server, pytest.mark.slow, pytest.mark.timeout(420)]


def test_milvus_killed_mid_stream_worker_waits_then_completes(kafka_broker, milvus_server_factory, tmp_path):
    server = milvus_server_factory()
    topic = kafka_broker.create_topic(unique("milvusdown"), 2)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, server.uri, milvus_timeout_s=3.0, max_in_flight_videos=2)
    group = settings.kafka.group_id
    ids = [f"mv-{i:03d}" for i in range(20)]
    produce(kafka_broker.bootstrap_servers, topic, [upload_event(v, VIDEO_FILES[i % len(VIDEO_FILES)]) for i, v in enumerate(ids[:10])])
    t0 = time.monotonic()
    worker = start_worker(settings, tmp_path)
    url = f"http://127.0.0.1:{worker.port}"
    try:
        wait_for(lambda: worker.alive() and worker.metrics().get("dupwatch_videos_indexed_total", 0) >= 3, 90, "three uploads indexed")
        pid = worker.proc.pid
        server.kill()
        produce(kafka_broker.bootstrap_servers, topic, [upload_event(v, VIDEO_FILES[i % len(VIDEO_FILES)]) for i, v in enumerate(ids[10:])])
        wait_for(lambda: worker.alive() and http_get(f"{url}/readyz")[0] == 503, 45, "/readyz 503")
        assert json.loads(http_get(f"{url}/readyz")[1])["checks"]["milvus"] is False
        wait_for(
            lambda: worker.alive() and worker.metrics().get("dupwatch_retries_total{reason=milvus_unavailable}", 0) >= 3,
            90,
            "retries against the dead server",
        )
        frozen = committed_offsets(kafka_broker.bootstrap_servers, group, topic)
        indexed_during = worker.metrics().get("dupwatch_videos_indexed_total", 0)
        time.sleep(3)
        assert committed_offsets(kafka_broker.bootstrap_servers, group, topic) == frozen  # no commit while down
        assert worker.metrics().get("dupwatch_videos_indexed_total", 0) == indexed_during
        assert http_get(f"{url}/healthz")[0] == 200  # alive, waiting: not a crash loop
        assert worker.proc.pid == pid and worker.alive()
        server.start()
        wait_for(lambda: worker.alive() and drained(settings), 180, "everything committed after Milvus came back")
        wait_for(lambda: http_get(f"{url}/readyz")[0] == 200, 30, "/readyz 200 again")
        metrics = worker.metrics()
    finally:
        code = worker.stop()
    assert code == 0, worker.log_path.read_text()[-3000:]
    assert sum(v for k, v in metrics.items() if k.startswith("dupwatch_dead_letters_total")) == 0
    result = tally(settings, ids)
    result.extra.update(seconds=round(time.monotonic() - t0, 1))
    print(f"\nRELIABILITY milvus-restart: {result.row()}")
    assert result.lost == 0 and result.indexed == len(ids) and result.dead_lettered == 0, result.row()
    assert result.duplicate_rows == 0, result.row()
