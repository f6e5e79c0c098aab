"""The download temp directory missing, then full (a real 64 KiB tmpfs), then fixed.

Uploads come over http (a local file server) and are downloaded into ``sources.temp_dir``. While
the directory is missing or the disk is full, the worker reports ``temp_storage_unavailable``
(a clear message naming the directory and the OS error), stays alive, commits nothing past the
upload, dead-letters nothing; /readyz says not ready. Once storage is back, every upload is
indexed exactly once. The tmpfs phase needs root (mount); it is skipped without it.
"""

from __future__ import annotations

import functools
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dupwatch.config import SourceConfig
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

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
BIG = VIDEO_FILES[3]  # bikes.mp4, ~500 KB: does not fit a 64 KiB tmpfs


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


def test_missing_then_full_temp_dir_waits_then_completes(kafka_broker, milvus_lite_uri, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(BIG.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = _mount_tmpfs(mnt, "64k")  # a 64 KiB disk; the temp dir inside it does not exist yet
    temp_dir = mnt / "downloads"
    topic = kafka_broker.create_topic(unique("tempdir"), 1)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri)
    settings = settings.model_copy(
        update={
            "sources": SourceConfig(
                local_roots=settings.sources.local_roots,
                http_allow_hosts=["127.0.0.1"],
                allow_private_addresses=True,
                temp_dir=temp_dir,
            )
        }
    )
    base = f"http://127.0.0.1:{server.server_address[1]}"
    ids = ["local-0", "http-0", "http-1", "http-2"]
    produce(
        kafka_broker.bootstrap_servers,
        topic,
        [upload_event(ids[0], VIDEO_FILES[0])] + [upload_event(v, f"{base}/{BIG.name}") for v in ids[1:]],
    )
    worker = start_worker(settings, tmp_path)
    url = f"http://127.0.0.1:{worker.port}"

    def retries() -> float:
        return worker.metrics().get("dupwatch_retries_total{reason=temp_storage_unavailable}", 0.0)

    try:
        # 1. missing directory: the http uploads wait (the local one in the same batch with them)
        wait_for(lambda: worker.alive() and retries() >= 2, 60, "retries on the missing temp dir")
        assert http_get(f"{url}/readyz")[0] == 503
        assert committed_offsets(kafka_broker.bootstrap_servers, settings.kafka.group_id, topic).get(0, 0) <= 1
        # 2. the directory exists but the disk is full
        temp_dir.mkdir()
        if mounted:
            seen = retries()
            wait_for(lambda: worker.alive() and retries() >= seen + 2, 60, "retries on the full disk")
            assert committed_offsets(kafka_broker.bootstrap_servers, settings.kafka.group_id, topic).get(0, 0) <= 1
            assert http_get(f"{url}/readyz")[0] == 503
            assert subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)]).returncode == 0
        # 3. storage back: everything completes
        wait_for(lambda: worker.alive() and drained(settings), 90, "everything committed once storage is back")
        wait_for(lambda: http_get(f"{url}/readyz")[0] == 200, 30, "/readyz 200 again")
    finally:
        code = worker.stop()
        server.shutdown()
        if mounted:
            leftovers = sorted(p.name for p in temp_dir.iterdir()) if temp_dir.is_dir() else []
            subprocess.run(["umount", str(mnt)])
    assert code == 0
    log_text = worker.log_path.read_text()
    assert "temp_storage_unavailable" in log_text and str(temp_dir) in log_text
    assert "(no such directory)" in log_text
    if mounted:
        assert "No space left on device" in log_text
    result = tally(settings, ids)
    print(f"\nRELIABILITY temp-dir-missing-then-full: {result.row()} tmpfs={mounted}")
    assert result.lost == 0 and result.indexed == len(ids) and result.dead_lettered == 0, result.row()
    assert result.duplicate_rows == 0
    if mounted:
        assert leftovers == []  # no partial download left behind on the full disk
