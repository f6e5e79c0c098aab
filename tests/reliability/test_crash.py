"""SIGKILL the worker at random points over one stream, restart it, repeat; then count.

Default run: 3 kills over 24 uploads (2 partitions). ``--runslow``: 20 kills over 120 uploads.
Each kill lands a random 0-1.5 s after the worker has indexed at least one more upload, so kills
hit decode, embed, detect, webhook delivery, the Milvus upsert and the commit at random; at least
one kill must land while the worker holds polled, uncommitted uploads (``dupwatch_in_flight_videos``
scraped just before it). Kills at each named point are ``test_kill_points.py``.
End state asserted: every event indexed exactly once (one coarse row per id, frame/clip rows
matching the row's own counts), none lost, every alert id acknowledged by the webhook receiver
(a second 200 for the same ``webhook-id`` only where a kill fell between the receiver's answer and
the sender recording it: at most one per kill), and the alerts topic holds every alert id
(replays may re-produce a key; consumers dedupe on it).
"""

from __future__ import annotations

import base64
import random
import signal
import time

import pytest

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

pytestmark = [pytest.mark.kafka]
SECRET = "whsec_" + base64.b64encode(b"reliability-crash-secret-0001").decode()


def _run_with_kills(kafka_broker, milvus_lite_uri, tmp_path, *, events: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    topic = kafka_broker.create_topic(unique("crash"), 2)
    receiver = WebhookReceiver(SECRET)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=4)
    settings = webhook_settings(settings, receiver, SECRET)
    ids = [f"kill-{i:04d}" for i in range(events)]
    produce(kafka_broker.bootstrap_servers, topic, [upload_event(v, VIDEO_FILES[i % len(VIDEO_FILES)]) for i, v in enumerate(ids)])
    t0 = time.monotonic()
    done_kills = 0
    peak = 0
    held: list[int] = []  # per kill: uploads polled but not committed a moment before it
    try:
        while done_kills < kills and not drained(settings):
            worker = start_worker(settings, tmp_path, "worker")
            try:
                base = None

                def progressed() -> bool:
                    nonlocal base
                    worker.alive()
                    worker.sample_rss()
                    n = worker.metrics().get("dupwatch_videos_indexed_total")
                    if n is None:
                        return False
                    if base is None:
                        base = n
                    return n > base or drained(settings)

                wait_for(progressed, 90, "the worker indexing one more upload", interval=0.1)
                time.sleep(rng.uniform(0.0, 1.5))
                held.append(_uncommitted_work(worker))
            finally:
                code = worker.kill()
                peak = max(peak, worker.peak_rss_kib)
            assert code == -signal.SIGKILL
            done_kills += 1
        final = start_worker(settings, tmp_path, "worker")
        try:
            # wait until the restarted worker serves (signal handlers installed) before SIGTERM:
            # the stream may already be drained by the killed workers
            wait_for(lambda: final.alive() and _serving(final) and drained(settings), 150, "the last worker committing everything")
            time.sleep(1.0)
        finally:
            code = final.stop(timeout=30)
            peak = max(peak, final.peak_rss_kib)
        assert code == 0, final.log_path.read_text()[-3000:]
        result = tally(settings, ids, receiver)
    finally:
        receiver.close()
    result.extra.update(kills=done_kills, seconds=round(time.monotonic() - t0, 1), peak_rss_mib=round(peak / 1024, 1),
                        in_flight_at_kill=held)
    print(f"\nRELIABILITY crash: {result.row()}")
    assert done_kills >= min(kills, 2)
    # at least one kill really landed mid-processing: the worker held polled, uncommitted uploads
    # (scraped just before the SIGKILL) that the next worker had to process again
    assert any(n > 0 for n in held), result.row()
    assert result.lost == 0 and result.indexed == events and result.dead_lettered == 0, result.row()
    assert result.duplicate_rows == 0, result.row()
    assert result.alert_ids > 0  # reused files are copies of each other: real alerts were raised
    assert result.webhook_ids == result.alert_ids, result.row()  # every alert id acknowledged
    # A kill between the receiver's 200 and the sender recording it (sequential deliveries: at
    # most one such alert per kill) makes the restarted worker re-send that alert with the same
    # webhook-id: at-least-once, deduplicated by the receiver on webhook-id (Standard Webhooks).
    assert result.duplicate_webhook_acks <= done_kills, result.row()
    assert receiver.bad_signatures == 0


@pytest.mark.timeout(300)
def test_sigkill_three_times_over_one_stream(kafka_broker, milvus_lite_uri, tmp_path):
    _run_with_kills(kafka_broker, milvus_lite_uri, tmp_path, events=24, kills=3, seed=11)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_sigkill_twenty_times_over_one_stream(kafka_broker, milvus_lite_uri, tmp_path):
    _run_with_kills(kafka_broker, milvus_lite_uri, tmp_path, events=120, kills=20, seed=20)


def _uncommitted_work(worker) -> int:
    """``dupwatch_in_flight_videos`` (polled, not yet committed) of the live worker; 0 if unreadable."""
    try:
        return int(worker.metrics().get("dupwatch_in_flight_videos", 0))
    except OSError:
        return 0


def _serving(worker) -> bool:
    try:
        return bool(worker.metrics())
    except OSError:
        return False
