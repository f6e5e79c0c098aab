"""Picture-in-picture through the index and the detector (Milvus Lite, real videos, the real
default bundle): the inset view is indexed under its own rows, searched both ways, and the
decided pair says which views matched. Two uploads that show the same clip inside different
hosts match inset against inset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation import transforms as T
from evaluation.sources import ken_burns, real_photos, real_videos
from evaluation.video_io import read_clip, write_clip
from detect.detector import Detector
from detect.levels import LevelThresholds
from dupwatch.config import DecodeConfig, DetectionConfig, MilvusConfig
from dupwatch.paths import REPO_ROOT
from dupwatch.records import inset_id
from index.store import VideoIndex
from index.schema import IndexDims
from inference.embedder import VideoModels
from ingest.decode import decode_video

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def models() -> VideoModels:
    return VideoModels.from_path(REPO_ROOT / "models" / "default", device="cpu")


@pytest.fixture(scope="module")
def reps(models: VideoModels, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("pip")
    by_name = {v.name: v.path for v in real_videos()}
    s2vs = read_clip(by_name["s2vs_example_video1"], fps=2.0, max_seconds=12.0, max_side=480)
    host = ken_burns(real_photos()["chelsea"], 12.0, 2.0, np.random.default_rng(5))
    pip = T.picture_in_picture(s2vs, host, np.random.default_rng(1)).clip
    other_host = ken_burns(real_photos()["astronaut"], 12.0, 2.0, np.random.default_rng(6))
    pip2 = T.picture_in_picture(s2vs, other_host, np.random.default_rng(2)).clip
    paths = {
        "s2vs": write_clip(root / "s2vs.mp4", s2vs),
        "pip": write_clip(root / "pip.mp4", pip),
        "pip2": write_clip(root / "pip2.mp4", pip2),
        "bikes": by_name["bikes"],
        "cat": write_clip(root / "cat.mp4", host),
    }
    decode = DecodeConfig()
    return {name: models.represent(decode_video(p, decode, name), tenant="t1") for name, p in paths.items()}


def _index(reps: dict, tmp_path: Path) -> VideoIndex:  # type: ignore[type-arg]
    rep = reps["s2vs"]
    dims = IndexDims(coarse=rep.coarse.shape[0], clip=rep.clips.shape[1], regions=rep.regions.shape[1],
                     region_dim=rep.regions.shape[2])
    return VideoIndex(MilvusConfig(uri=str(tmp_path / "m.db")), dims)


def test_only_the_picture_in_picture_upload_has_an_inset(reps: dict) -> None:  # type: ignore[type-arg]
    assert reps["pip"].inset is not None and reps["pip"].inset.video_id == inset_id("pip")
    assert reps["pip2"].inset is not None
    assert reps["pip"].inset.regions.shape == reps["pip"].regions.shape
    assert all(reps[n].inset is None for n in ("s2vs", "bikes", "cat"))


def test_inset_rows_are_upserted_once_and_deleted_with_the_video(models: VideoModels, reps: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    index = _index(reps, tmp_path)
    for _ in range(2):  # a replay upserts the same rows
        counts = index.upsert(reps["pip"])
    t = reps["pip"].regions.shape[0]
    assert counts.frames == t
    assert index.count("pip").frames == t and index.count(inset_id("pip")).frames == t
    assert index.count(inset_id("pip")).coarse == 1
    index.delete_video("pip")
    assert index.count("pip").total == 0 and index.count(inset_id("pip")).total == 0


@pytest.mark.parametrize("indexed,query", [("s2vs", "pip"), ("pip", "s2vs")])
def test_copy_shown_in_picture_matches_both_ways(models: VideoModels, reps: dict, tmp_path: Path, indexed: str,
                                                 query: str) -> None:  # type: ignore[type-arg]
    index = _index(reps, tmp_path)
    for name in (indexed, "bikes", "cat"):
        index.upsert(reps[name])
    detector = Detector(models, index, DetectionConfig(), thresholds=LevelThresholds(copy=None, incident=None))
    found = {d.ref_id: d for d in detector.detect(reps[query]) if d.reranked}
    assert inset_id(indexed) not in found and inset_id(query) not in found  # views fold into their video
    assert indexed in found
    best = found[indexed]
    side = "query" if query == "pip" else "reference"
    assert best.evidence["views"][side] == "inset"
    # "cat" is the composite's host: the composite shows its footage too, under the inset, and
    # scored both ways its whole frames are found in the composite's; "bikes" is unrelated
    assert {v for v in found if v != indexed} == {"bikes", "cat"}
    assert best.evidence["copy_score"] > found["bikes"].evidence["copy_score"] + 0.2
    assert best.evidence["copy_score"] > found["cat"].evidence["copy_score"]
    assert best.segments  # localized, in the upload's own seconds


def test_two_pictures_in_picture_of_one_clip_match_inset_against_inset(models: VideoModels, reps: dict,
                                                                       tmp_path: Path) -> None:  # type: ignore[type-arg]
    """Neither upload's whole frame shows the clip big enough to match the other's: only their insets do."""
    index = _index(reps, tmp_path)
    for name in ("pip", "bikes", "cat"):
        index.upsert(reps[name])
    detector = Detector(models, index, DetectionConfig(), thresholds=LevelThresholds(copy=None, incident=None))
    found = {d.ref_id: d for d in detector.detect(reps["pip2"]) if d.reranked}
    assert "pip" in found
    assert found["pip"].evidence["views"] == {"query": "inset", "reference": "inset"}
    others = [d.evidence["copy_score"] for v, d in found.items() if v != "pip"]
    assert found["pip"].evidence["copy_score"] > max(others, default=0.0) + 0.2
