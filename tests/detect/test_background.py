"""``dupwatch background build|info`` on real videos into Milvus Lite, and the detector's
normalization against that collection (issue #8, item 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation.sources import real_videos
from detect.background import background_files, background_row_id
from detect.detector import Detector
from detect.levels import LevelThresholds
from dupwatch.cli import app
from dupwatch.config import DecodeConfig, DetectionConfig, MilvusConfig
from index.schema import IndexDims
from index.store import VideoIndex
from inference.embedder import VideoModels
from ingest.decode import decode_video

pytestmark = pytest.mark.timeout(600)
DIMS = IndexDims(coarse=1752, clip=1752, regions=9, region_dim=1752)
COLLECTION = "bg_test"


@pytest.fixture(scope="module")
def bundle(chamfer_bundle: Path) -> Path:
    return chamfer_bundle


@pytest.fixture(scope="module")
def models(bundle: Path) -> VideoModels:
    return VideoModels.from_path(bundle, device="cpu")


@pytest.fixture(scope="module")
def sources() -> dict[str, Path]:
    by_name = {v.name: v.path for v in real_videos()}
    needed = ("s2vs_example_video1", "bikes", "carphone_pristine", "bigbuckbunny")
    missing = [n for n in needed if n not in by_name]
    if missing:
        pytest.skip(f"real videos missing: {missing}")
    return {n: by_name[n] for n in needed}


def _env(uri: str, bundle: Path) -> dict[str, str]:
    return {"DUPWATCH_MILVUS__URI": uri, "DUPWATCH_DETECTION__BACKGROUND_COLLECTION": COLLECTION,
            "DUPWATCH_MODEL__ENGINE": "torch", "DUPWATCH_MODEL__DEVICE": "cpu", "DUPWATCH_CONFIG": ""}


def test_build_rebuild_info_and_detector_bias(tmp_path: Path, bundle: Path, models: VideoModels, sources: dict[str, Path]) -> None:
    uri = str(tmp_path / "m.db")
    folder = tmp_path / "bg"
    folder.mkdir()
    for name in ("s2vs_example_video1", "carphone_pristine"):
        shutil.copy(sources[name], folder / f"{name}.mp4")
    (folder / "notes.txt").write_text("not a video")  # not a video suffix: not picked up
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")  # skipped with its reason
    runner = CliRunner()
    env = _env(uri, bundle)

    res = runner.invoke(app, ["background", "build", str(folder), "--bundle", str(bundle)], env=env)
    assert res.exit_code == 0, res.output
    assert f"2 videos added to dupwatch_{COLLECTION} (2 rows, 1 skipped)" in res.output
    assert "broken.mp4" in res.output
    # building again from the same files keeps one row per file
    res = runner.invoke(app, ["background", "build", str(folder), "--bundle", str(bundle)], env=env)
    assert res.exit_code == 0 and "(2 rows, 1 skipped)" in res.output, res.output
    res = runner.invoke(app, ["background", "info"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1]) == {"collection": f"dupwatch_{COLLECTION}", "count": 2}

    # --rebuild from a list file replaces the set (relative paths are relative to the list)
    listed = tmp_path / "lists" / "bg.txt"
    listed.parent.mkdir()
    shutil.copy(sources["bigbuckbunny"], listed.parent / "bunny.mp4")
    listed.write_text(f"# background videos\nbunny.mp4\n{folder / 'carphone_pristine.mp4'}\n\n")
    assert sorted(p.name for p in background_files(None, listed)) == ["bunny.mp4", "carphone_pristine.mp4"]
    res = runner.invoke(app, ["background", "build", "--list", str(listed), "--rebuild", "--bundle", str(bundle)], env=env)
    assert res.exit_code == 0, res.output
    assert f"2 videos rebuilt dupwatch_{COLLECTION} (2 rows, 0 skipped)" in res.output
    index = VideoIndex(MilvusConfig(uri=uri), DIMS)
    try:
        assert index.count_background(COLLECTION) == 2
        assert index.count_background() == 0  # the default collection was never written
        # the stored vectors are the worker's decode + embedder output for those very files
        decode = DecodeConfig()
        bg_paths = [listed.parent / "bunny.mp4", folder / "carphone_pristine.mp4"]
        bg = np.stack([models.represent(decode_video(p, decode, "x")).coarse for p in bg_paths])
        rows = index._call("get", lambda c: c.get(index.background_name(COLLECTION),
                                                  ids=[background_row_id(p) for p in bg_paths], output_fields=["id", "vector"]))
        assert len(rows) == 2
        by_id = {r["id"]: np.asarray(r["vector"], np.float32) for r in rows}
        for p, vec in zip(bg_paths, bg):
            np.testing.assert_allclose(by_id[background_row_id(p)], vec, atol=1e-4)

        # the detector with normalization on reads detection.background_collection
        ref = models.represent(decode_video(sources["bikes"], decode, "bikes"), tenant="t1")
        index.upsert(ref)
        query = type(ref)(**{**ref.__dict__, "video_id": "bikes-again", "meta": {}})
        k, weight = 2, 0.5
        config = DetectionConfig(normalization_k=k, normalization_weight=weight, background_collection=COLLECTION)
        detector = Detector(models, index, config, thresholds=LevelThresholds(copy=None, incident=-5.0))
        [det] = detector.detect(query)
        expected_bias = weight * float(np.sort(bg @ query.coarse)[::-1][:k].mean())
        assert expected_bias > 0.05
        assert det.evidence["bias"] == pytest.approx(expected_bias, abs=1e-3)
        assert det.normalized == pytest.approx(det.fine - det.evidence["bias"], abs=1e-4)
        assert det.evidence["normalization"] == {"k": k, "weight": weight, "background_collection": COLLECTION,
                                                 "background_hits": 2}
        [alert] = detector.alerts(query, [det])
        assert alert.scores.fine == pytest.approx(det.fine) and alert.scores.normalized == pytest.approx(det.normalized)
        assert alert.scores.normalized < alert.scores.fine
        # another (empty) background collection: no bias, the detector does not fall back silently to ours
        other = Detector(models, index, config.model_copy(update={"background_collection": "bg_empty"}),
                         thresholds=LevelThresholds(copy=None, incident=-5.0))
        [det0] = other.detect(query)
        assert det0.evidence["bias"] == 0.0 and det0.normalized == pytest.approx(det0.fine, abs=1e-5)
    finally:
        index.close()


def test_build_needs_input_and_refuses_empty(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"DUPWATCH_MILVUS__URI": str(tmp_path / "m.db"), "DUPWATCH_CONFIG": ""}
    res = runner.invoke(app, ["background", "build"], env=env)
    assert res.exit_code == 2 and "give a folder or --list" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["background", "build", str(tmp_path / "empty")], env=env)
    assert res.exit_code == 2 and "no video file" in res.output
    res = runner.invoke(app, ["background", "info"], env=env)
    assert res.exit_code == 0 and json.loads(res.output.strip()) == {"collection": "dupwatch_background", "count": 0}
