"""The worker as a real process (``python -m ingest.worker``): SIGKILL mid-run and SIGTERM drain.

Milvus Lite is opened by the test only after the worker processes have exited (Lite holds an
flock on its data folder while a process has it open).
"""

from __future__ import annotations

import signal
import sys

import pytest

from dupwatch.testing._process import ManagedProcess, free_ports
from index.store import VideoIndex
from tests.ingest.embedders import ThumbnailEmbedder
from tests.ingest.test_worker_helpers import (
    EMBEDDER,
    REPO,
    VIDEO_FILES,
    committed_offsets,
    end_offsets,
    make_settings,
    produce,
    scrape,
    unique,
    upload_event,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]


def _start(config_path, log_path) -> ManagedProcess:
    return ManagedProcess(
        [sys.executable, "-m", "ingest.worker", "--config", str(config_path), "--embedder", EMBEDDER],
        log_path=log_path,
        cwd=REPO,
    )


def _indexed(port: int) -> float:
    return scrape(port).get("dupwatch_videos_indexed_total", 0.0)


def _drained(settings) -> bool:
    bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.uploads_topic
    ends = end_offsets(bootstrap, topic)
    done = committed_offsets(bootstrap, settings.kafka.group_id, topic)
    return bool(ends) and all(done.get(p, 0) == end for p, end in ends.items())


def _alive(proc: ManagedProcess, log_path) -> None:
    if not proc.is_alive():
        raise AssertionError(f"worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")


def test_sigkill_mid_run_then_restart_loses_nothing_duplicates_nothing(kafka_broker, milvus_lite_uri, tmp_path):
    topic = kafka_broker.create_topic(unique("uploads"), 2)
    port = free_ports(1)[0]
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, port=port, max_in_flight_videos=4)
    config = write_config(settings, tmp_path / "worker.yaml")
    ids = [f"crash-{i:03d}" for i in range(40)]
    produce(kafka_broker.bootstrap_servers, topic, [upload_event(v, VIDEO_FILES[i % len(VIDEO_FILES)]) for i, v in enumerate(ids)])
    log = tmp_path / "worker.log"

    first = _start(config, log)
    try:
        wait_for(lambda: (_alive(first, log), _indexed(port) >= 8)[1], 60, "the first worker indexing 8 videos")
    finally:
        first.kill()  # SIGKILL: no drain, no commit of the batch in flight
    assert first.returncode == -signal.SIGKILL
    assert not _drained(settings)

    second = _start(config, log)
    try:
        wait_for(lambda: (_alive(second, log), _drained(settings))[1], 90, "the restarted worker committing everything")
        assert _indexed(port) >= 1
    finally:
        code = second.stop(timeout=30)
    assert code == 0, log.read_text()[-3000:]

    index = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        info = index.video_info(ids)
        assert set(info) == set(ids)  # none lost
        for vid in ids:
            counts = index.count(vid)
            assert counts.coarse == 1, (vid, counts)  # none duplicated
            assert counts.frames == info[vid]["num_frames"] and counts.clips == info[vid]["num_clips"], (vid, counts)
        coarse = index.names["video_coarse"]
        total = index._call("count", lambda c: c.query(coarse, filter="", output_fields=["count(*)"]))
        assert int(total[0]["count(*)"]) == len(ids)
    finally:
        index.close()


def test_sigterm_drains_commits_and_exits_zero(kafka_broker, milvus_lite_uri, tmp_path):
    topic = kafka_broker.create_topic(unique("uploads"), 1)
    port = free_ports(1)[0]
    # Commits only at shutdown/revoke: the committed offset after exit proves the drain commit.
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, port=port, commit_interval_s=3600.0)
    config = write_config(settings, tmp_path / "worker.yaml")
    ids = [f"term-{i:03d}" for i in range(12)]
    produce(kafka_broker.bootstrap_servers, topic, [upload_event(v, VIDEO_FILES[i % len(VIDEO_FILES)]) for i, v in enumerate(ids)])
    log = tmp_path / "worker.log"

    worker = _start(config, log)
    try:
        wait_for(lambda: (_alive(worker, log), _indexed(port) >= len(ids))[1], 60, "all uploads indexed")
        assert committed_offsets(kafka_broker.bootstrap_servers, settings.kafka.group_id, topic) == {}
    finally:
        code = worker.stop(timeout=30)  # SIGTERM, then SIGKILL only if it hangs
    assert code == 0, log.read_text()[-3000:]
    assert "worker stopped cleanly" in log.read_text()
    ends = end_offsets(kafka_broker.bootstrap_servers, topic)
    assert committed_offsets(kafka_broker.bootstrap_servers, settings.kafka.group_id, topic) == ends == {0: len(ids)}
