"""Kafka unreachable when the worker starts: it stays up, not ready, says so once per attempt,
and starts consuming as soon as a broker appears on the configured address."""

from __future__ import annotations

import json
import logging

import pytest

from dupwatch.testing._process import free_ports
from dupwatch.testing.errors import ServiceUnavailable
from dupwatch.testing.kafka_broker import KafkaBroker
from tests.ingest.test_worker import RunningWorker, _drained
from tests.ingest.test_worker_helpers import VIDEO_FILES, http_get, make_settings, produce, unique, upload_event, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

RETRY_LINE = "Kafka not reachable at"


def _retry_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ingest.consumer" and r.getMessage().startswith(RETRY_LINE)]


def test_worker_waits_not_ready_for_a_broker_that_is_down_at_start(milvus_lite_uri, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    port, controller_port = free_ports(2)
    bootstrap = f"127.0.0.1:{port}"
    topic = unique("uploads")
    settings = make_settings(bootstrap, topic, milvus_lite_uri)
    kafka = settings.kafka.model_copy(update={"connect_timeout_s": 1.0, "connect_retry_s": 0.5})
    settings = settings.model_copy(update={"kafka": kafka})

    broker = KafkaBroker(data_dir=tmp_path / "kafka")
    broker.port, broker.controller_port = port, controller_port  # the address the worker was given
    try:
        with RunningWorker(settings) as run:
            wait_for(lambda: len(_retry_lines(caplog)) >= 3, 120, "three connection attempts")
            assert run.thread.is_alive() and run.error is None
            status, body = http_get(f"http://127.0.0.1:{run.port}/readyz")
            assert status == 503 and json.loads(body)["checks"]["kafka"] is False
            assert http_get(f"http://127.0.0.1:{run.port}/healthz")[0] == 200  # alive: not restarted
            line = _retry_lines(caplog)[0]
            assert line.levelno == logging.WARNING and line.exc_info is None  # one line, no traceback
            assert bootstrap in line.getMessage() and "not ready" in line.getMessage()
            assert not [r for r in caplog.records if r.exc_info and r.name.startswith(("ingest", "dupwatch"))]
            # kafka-python's own per-connection errors are not repeated on every attempt
            assert not [r.getMessage() for r in caplog.records if r.name.startswith("kafka") and r.levelno >= logging.WARNING]

            try:
                broker.start()
            except ServiceUnavailable as exc:
                pytest.skip(f"Kafka unavailable: {exc}")
            broker.create_topic(topic, 1)
            produce(bootstrap, topic, [upload_event("late-1", VIDEO_FILES[0]), upload_event("late-2", VIDEO_FILES[3])])
            wait_for(lambda: http_get(f"http://127.0.0.1:{run.port}/readyz")[0] == 200, 120, "/readyz 200 once the broker is up")
            wait_for(lambda: _drained(settings), 120, "the uploads produced after the broker came up committed")
    finally:
        broker.stop()
    assert any(r.getMessage().startswith("Kafka reachable at") for r in caplog.records)
