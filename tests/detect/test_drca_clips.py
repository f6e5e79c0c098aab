"""DRCA clip vectors through the bundle, the index and the candidate stage (Milvus Lite, real videos).

A bundle with a ``drca`` artifact (as ``dupwatch train drca --bundle`` writes it) embeds clips with
DRCA; the clips collection holds them; a video that is among the best *clip* hits but not among
the coarse hits still becomes a candidate, with its coarse similarity fetched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.sources import real_videos
from detect.detector import Detector
from detect.levels import LevelThresholds
from dupwatch.config import DecodeConfig, DetectionConfig, MilvusConfig
from dupwatch.paths import REPO_ROOT
from index.schema import IndexDims
from index.store import VideoIndex
from inference.drca import DRCA, drca_tiny
from inference.embedder import VideoModels
from ingest.decode import decode_video
from training.drca import add_drca_to_bundle

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> VideoModels:
    bundle = tmp_path_factory.mktemp("drca") / "bundle"
    shutil.copytree(REPO_ROOT / "models" / "default", bundle)
    torch.manual_seed(0)
    add_drca_to_bundle(DRCA(drca_tiny()), bundle, source="test: random init")
    return VideoModels.from_path(bundle, device="cpu")


def test_bundle_drca_embeds_the_clips(models: VideoModels) -> None:
    assert models.methods["clips"] == "drca"
    path = {v.name: v.path for v in real_videos()}["s2vs_example_video1"]
    video = decode_video(path, DecodeConfig(), "s2vs")
    rep = models.represent(video)
    n = models.drca.cfg.num_frames  # type: ignore[union-attr]
    assert rep.clips.shape == (-(-video.num_frames // n), models.drca.cfg.embed_dim)  # type: ignore[union-attr]
    np.testing.assert_allclose(np.linalg.norm(rep.clips, axis=1), 1.0, atol=1e-4)
    assert rep.clip_times[0, 0] == pytest.approx(video.timestamps[0])
    assert np.all(rep.clip_times[:, 1] > rep.clip_times[:, 0])


def test_clip_hits_become_candidates(models: VideoModels, tmp_path: Path) -> None:
    videos = {v.name: v.path for v in real_videos()}
    names = [n for n in ("s2vs_example_video1", "bikes", "bigbuckbunny", "carphone_pristine") if n in videos]
    reps = {n: models.represent(decode_video(videos[n], DecodeConfig(), n), tenant="t") for n in names}
    first = reps[names[0]]
    dims = IndexDims(coarse=first.coarse.shape[0], clip=first.clips.shape[1], regions=first.regions.shape[1],
                     region_dim=first.regions.shape[2])
    index = VideoIndex(MilvusConfig(uri=str(tmp_path / "m.db")), dims)
    for n in names[1:]:
        index.upsert(reps[n])
    detector = Detector(models, index, DetectionConfig(coarse_top_k=1, clip_top_k=10),
                        thresholds=LevelThresholds(copy=None, incident=None))
    query = reps[names[0]]
    coarse_only = index.search_coarse(query.coarse, "t", 1, exclude_video_id=query.video_id)
    clip_videos = {c.video_id for c in index.search_clips(query.clips, "t", 10, exclude_video_id=query.video_id)}
    candidates = detector.candidates(query)
    assert len(coarse_only) == 1 and clip_videos - {coarse_only[0][0]}, "the test needs a clip-only candidate"
    assert set(candidates) == {coarse_only[0][0]} | clip_videos
    for vid in clip_videos - {coarse_only[0][0]}:  # their coarse similarity, fetched by primary key
        assert candidates[vid] == pytest.approx(float(np.dot(query.coarse, reps[vid].coarse)), abs=1e-4)
