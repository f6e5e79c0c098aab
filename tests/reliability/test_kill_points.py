"""SIGKILL at chosen points of the chain (issue #11), not at random times.

The worker's test hook ``DUPWATCH_FAULT_KILL_AT=PHASE:N`` (``ingest.pipeline.FAULT_KILL_ENV``)
makes the worker process SIGKILL itself the N-th time it enters PHASE: during decode, inference
(embed), a Milvus row write (``index_write:5`` lands between the frame and the coarse rows of the
second upload: a half-written video), an alert send (Kafka alerts topic + webhook), right before
and right after an offset commit. Each phase: 8 uploads (2 partitions, files reused so that copies
raise real alerts), one worker with the hook that dies there, one worker without it that finishes
the stream; then the usual bookkeeping (``harness.tally``): events in = indexed + dead-lettered,
none lost, no duplicate Milvus rows, every alert id acknowledged once by the webhook receiver
(the hooks sit outside the sender, so no kill falls between a 200 and its delivery record).
"""

from __future__ import annotations

import base64
import signal
import time

import pytest

from ingest.pipeline import FAULT_KILL_ENV, FAULT_PHASES, parse_fault_spec
from tests.reliability.harness import (
    VIDEO_FILES,
    WebhookReceiver,
    drained,
    make_settings,
    produce,
    start_worker,
    tally,
    unique,
    upload_event,
    wait_for,
    webhook_settings,
)

SECRET = "whsec_" + base64.b64encode(b"reliability-killpoint-secret-01").decode()
EVENTS = 8
KILL_AT = {
    "decode": 6,  # second poll's uploads, after the first ones were indexed
    "embed": 2,
    "index_write": 5,  # upload 2: frame rows written, clip and coarse rows not
    "alert_send": 2,
    "pre_commit": 2,
    "post_commit": 1,
}
assert set(KILL_AT) == set(FAULT_PHASES)


def test_fault_spec_parsing():
    assert parse_fault_spec("index_write:5") == ("index_write", 5)
    assert parse_fault_spec("decode") == ("decode", 1)
    for bad in ("nowhere:1", "decode:0", "decode:x"):
        with pytest.raises(ValueError):
            parse_fault_spec(bad)


@pytest.mark.kafka
@pytest.mark.timeout(120)
@pytest.mark.parametrize("phase", FAULT_PHASES)
def test_sigkill_at_phase_then_restart(kafka_broker, milvus_lite_uri, tmp_path, phase):
    n = KILL_AT[phase]
    topic = kafka_broker.create_topic(unique(f"kp-{phase.replace('_', '-')}"), 2)
    receiver = WebhookReceiver(SECRET)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=4)
    settings = webhook_settings(settings, receiver, SECRET)
    ids = [f"kp-{i:03d}" for i in range(EVENTS)]
    produce(kafka_broker.bootstrap_servers, topic, [upload_event(v, VIDEO_FILES[i % len(VIDEO_FILES)]) for i, v in enumerate(ids)])
    t0 = time.monotonic()
    try:
        doomed = start_worker(settings, tmp_path, "doomed", env={FAULT_KILL_ENV: f"{phase}:{n}"})
        try:
            wait_for(lambda: not doomed.proc.is_alive(), 90, f"the worker killing itself at {phase}:{n}")
        finally:
            code = doomed.kill()  # reaps it (and any child left in its process group)
        log = doomed.log_path.read_text()
        assert code == -signal.SIGKILL, log[-3000:]
        assert f"{FAULT_KILL_ENV}={phase}:{n}: SIGKILL now" in log, log[-3000:]
        assert not drained(settings), "the kill landed after the whole stream was committed"

        final = start_worker(settings, tmp_path, "final", env={FAULT_KILL_ENV: ""})
        try:
            wait_for(lambda: final.alive() and _serving(final) and drained(settings), 90, "the restarted worker committing everything")
        finally:
            code = final.stop(timeout=30)
        assert code == 0, final.log_path.read_text()[-3000:]
        assert "SIGKILL now" not in final.log_path.read_text()
        result = tally(settings, ids, receiver)
    finally:
        receiver.close()
    result.extra.update(phase=f"{phase}:{n}", seconds=round(time.monotonic() - t0, 1))
    print(f"\nRELIABILITY kill-point: {result.row()}")
    assert result.lost == 0 and result.indexed == EVENTS and result.dead_lettered == 0, result.row()
    assert result.events_in == result.indexed + result.dead_lettered
    assert result.duplicate_rows == 0, result.row()
    assert result.alert_ids > 0, result.row()  # reused files: copies raised real alerts
    assert result.webhook_ids == result.alert_ids, result.row()  # every alert id acknowledged
    assert result.duplicate_webhook_acks == 0, result.row()  # and none twice
    assert receiver.bad_signatures == 0


def _serving(worker) -> bool:
    try:
        return bool(worker.metrics())
    except OSError:
        return False
