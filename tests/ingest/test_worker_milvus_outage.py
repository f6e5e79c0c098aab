"""Milvus server (gRPC) goes down mid-run: not ready, no commit, no dead letter; back up: resumes."""

from __future__ import annotations

import json

import pytest

from tests.ingest.test_worker import RunningWorker, _drained
from tests.ingest.test_worker_helpers import (
    VIDEO_FILES,
    committed_offsets,
    http_get,
    make_settings,
    produce,
    scrape,
    unique,
    upload_event,
    wait_for,
)

# ~60-75 s on the shared 2-core machine (a private Milvus server is started and restarted):
# slow, run with --runslow. The default run covers the outage with a closed port (test_worker.py).
pytestmark = [pytest.mark.kafka, pytest.mark.milvus_server, pytest.mark.slow, pytest.mark.timeout(240)]


def test_worker_waits_out_a_milvus_outage_without_committing(kafka_broker, milvus_server_factory):
    server = milvus_server_factory()
    topic = kafka_broker.create_topic(unique("uploads"), 1)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, server.uri, milvus_timeout_s=3.0, max_attempts=2)
    group = settings.kafka.group_id
    produce(kafka_broker.bootstrap_servers, topic, [upload_event("before-1", VIDEO_FILES[0]), upload_event("before-2", VIDEO_FILES[1])])

    with RunningWorker(settings) as run:
        url = f"http://127.0.0.1:{run.port}"
        wait_for(lambda: _drained(settings), 60, "first uploads committed")
        assert http_get(f"{url}/readyz")[0] == 200
        # up from the first answered call, not only once an outage has ended
        assert scrape(run.port)["dupwatch_dependency_up{dependency=milvus}"] == 1

        server.kill()
        produce(kafka_broker.bootstrap_servers, topic, [upload_event("during-1", VIDEO_FILES[2])])
        wait_for(lambda: http_get(f"{url}/readyz")[0] == 503, 30, "/readyz 503 while Milvus is down")
        assert json.loads(http_get(f"{url}/readyz")[1])["checks"]["milvus"] is False
        wait_for(
            lambda: scrape(run.port).get("dupwatch_retries_total{reason=milvus_unavailable}", 0) >= 3,
            60,
            "retries against the dead server",
        )
        assert committed_offsets(kafka_broker.bootstrap_servers, group, topic) == {0: 2}
        assert http_get(f"{url}/healthz")[0] == 200
        assert scrape(run.port)["dupwatch_dependency_up{dependency=milvus}"] == 0

        server.start()  # same ports and data
        wait_for(lambda: _drained(settings), 90, "the waiting upload indexed and committed after recovery")
        wait_for(lambda: http_get(f"{url}/readyz")[0] == 200, 30, "/readyz 200 again")
        metrics = scrape(run.port)
    assert metrics["dupwatch_videos_indexed_total"] == 3
    assert metrics["dupwatch_dependency_up{dependency=milvus}"] == 1
    assert sum(v for k, v in metrics.items() if k.startswith("dupwatch_dead_letters_total")) == 0
    assert run.worker.index.has_video("during-1")
