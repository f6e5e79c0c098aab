"""A letterboxed SD copy of an HD clip through the index and the detector (Milvus Lite, real video,
the real default bundle): the bars are cropped at decode, the alert evidence says so, and the copy
scores higher than with the bars left in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.sources import ken_burns, real_photos, real_videos
from evaluation.video_io import Clip, read_clip, write_clip
from detect.copy_head import CopyHead
from detect.detector import Detector
from detect.levels import LevelThresholds
from dupwatch.config import DecodeConfig, DetectionConfig, MilvusConfig
from dupwatch.paths import REPO_ROOT
from index.schema import IndexDims
from index.store import VideoIndex
from inference.embedder import VideoModels
from ingest.decode import decode_video

pytestmark = pytest.mark.timeout(600)


def _letterbox(frame: np.ndarray) -> np.ndarray:
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[60:420] = np.asarray(Image.fromarray(frame).resize((640, 360), Image.BICUBIC))
    return canvas


def test_letterboxed_copy_is_compared_content_to_content(tmp_path: Path) -> None:
    models = VideoModels.from_path(REPO_ROOT / "models" / "default", device="cpu")
    bbb = read_clip(next(v.path for v in real_videos() if v.name == "bigbuckbunny"), fps=4.0, max_side=None)
    photos = real_photos()
    paths = {
        "hd": write_clip(tmp_path / "hd.mp4", bbb),
        "sd": write_clip(tmp_path / "sd.mp4", Clip([_letterbox(f) for f in bbb.frames], bbb.fps)),
        "cat": write_clip(tmp_path / "cat.mp4", ken_burns(photos["chelsea"], 6.0, 4.0, np.random.default_rng(1))),
        "coffee": write_clip(tmp_path / "coffee.mp4", ken_burns(photos["coffee"], 6.0, 4.0, np.random.default_rng(2))),
    }
    reps = {n: models.represent(decode_video(p, DecodeConfig(), n), tenant="t") for n, p in paths.items()}
    barred = models.represent(decode_video(paths["sd"], DecodeConfig(crop_borders=False), "sd"), tenant="t")
    rep = reps["hd"]
    index = VideoIndex(MilvusConfig(uri=str(tmp_path / "m.db")),
                       IndexDims(coarse=rep.coarse.shape[0], clip=rep.clips.shape[1], regions=rep.regions.shape[1],
                                 region_dim=rep.regions.shape[2]))
    for n in ("hd", "cat", "coffee"):
        index.upsert(reps[n])
    detector = Detector(models, index, DetectionConfig(), thresholds=LevelThresholds(copy=None, incident=None))
    found = {d.ref_id: d for d in detector.detect(reps["sd"]) if d.reranked}
    assert "hd" in found
    evidence = found["hd"].evidence
    assert evidence["query_borders"]["kind"] == "letterbox" and evidence["query_borders"]["fill"] == "constant"
    assert evidence["query_borders"]["content_box"][1] == pytest.approx(0.125, abs=0.02)
    # the default head reads the pixel evidence: it gets the indexed HD clip's thumbnails, and the
    # letterboxed copy agrees; a head that does not read it fetches no thumbnails
    assert detector.copy_head is not None and detector.copy_head.reads_pixels
    assert evidence["pixel_agreement"] is not None and evidence["pixel_agreement"] > 0.8, evidence["pixel_agreement"]
    blind = Detector(models, index, DetectionConfig(), thresholds=LevelThresholds(copy=None, incident=None))
    blind.copy_head = CopyHead(("fine_score", "diagonality"), np.zeros(2), np.ones(2), np.ones(2), 0.0, {})
    assert {d.ref_id: d for d in blind.detect(reps["sd"]) if d.reranked}["hd"].evidence["pixel_agreement"] is None
    without = {d.ref_id: d for d in detector.detect(barred) if d.reranked}
    assert without["hd"].evidence["query_borders"] is None
    assert found["hd"].fine > without["hd"].fine
    if evidence["copy_score"] is not None:
        assert evidence["copy_score"] > without["hd"].evidence["copy_score"]
        others = [d.evidence["copy_score"] for v, d in found.items() if v != "hd"]
        assert evidence["copy_score"] > max(others, default=0.0)
    print(f"HD vs SD letterbox: fine {without['hd'].fine:.3f} -> {found['hd'].fine:.3f}, "
          f"P(copy) {without['hd'].evidence['copy_score']} -> {evidence['copy_score']}")
