"""S²VS ``min_frames``: short clips are tiled to the bundle's ``min_frames`` (16 in models/default)
before comparison, so a few-second exact copy scores like its longer copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dupwatch.paths import REPO_ROOT
from inference.s2vs import MIN_FRAMES, S2VSSimilarityNetwork

DEFAULT = REPO_ROOT / "models" / "default"


@pytest.fixture(scope="module")
def models():  # type: ignore[no-untyped-def]
    from inference.embedder import VideoModels

    torch.set_num_threads(1)
    return VideoModels.from_path(DEFAULT, device="cpu")


@pytest.fixture(scope="module")
def real_regions(models) -> np.ndarray:  # type: ignore[no-untyped-def]
    from evaluation.sources import real_videos
    from dupwatch.config import DecodeConfig
    from ingest.decode import decode_video

    video = next((v for v in real_videos() if v.name == "s2vs_example_video1"), None)
    if video is None:  # any real video long enough for a 5-frame window well inside it
        video = max(real_videos(), key=lambda v: v.path.stat().st_size)
    decoded = decode_video(video.path, DecodeConfig(), video.name)
    assert decoded.num_frames >= 10, f"{video.name}: {decoded.num_frames} frames at 1 fps"
    return models.regions(decoded.frames)


def test_default_bundle_asks_for_16(models) -> None:  # type: ignore[no-untyped-def]
    assert models.bundle.entry("fine").config["min_frames"] == 16
    assert models.fine.min_frames == 16
    assert "min_frames" not in models.fine.state_dict()  # not a weight
    assert all("min_frames" not in k for k in models.fine.state_dict())


def test_min_frames_is_validated_and_defaults_to_four() -> None:
    assert MIN_FRAMES == 4
    assert S2VSSimilarityNetwork().min_frames == 4
    assert S2VSSimilarityNetwork(min_frames=16).min_frames == 16
    with pytest.raises(ValueError, match="min_frames"):
        S2VSSimilarityNetwork(min_frames=3)
    a, b = S2VSSimilarityNetwork(), S2VSSimilarityNetwork(min_frames=16)
    assert set(a.state_dict()) == set(b.state_dict())  # the attribute does not change the checkpoint layout


def test_short_exact_window_scores_high_with_16(models, real_regions: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    fine = models.fine
    assert fine is not None
    starts = range(0, len(real_regions) - 5 + 1, max(1, (len(real_regions) - 5) // 3))
    try:
        for start in starts:
            window = real_regions[start : start + 5]
            fine.min_frames = 4
            low = models.compare(window, real_regions)
            fine.min_frames = 16
            high = models.compare(window, real_regions)
            assert high.score >= 0.8, (start, high.score)
            assert high.score > low.score + 0.1, (start, low.score, high.score)
            # the frame-similarity matrix keeps the real lengths (tiling is for the head only)
            assert high.frame_similarity.shape == low.frame_similarity.shape == (5, len(real_regions))
            np.testing.assert_allclose(high.frame_similarity, low.frame_similarity, atol=1e-5)
    finally:
        fine.min_frames = 16


def test_videos_of_16_frames_or_more_are_unaffected(models, real_regions: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    fine = models.fine
    doubled = np.concatenate([real_regions, real_regions])  # ≥ 16 frames: no tiling at either setting
    query = doubled[:16]
    assert len(doubled) >= 16
    try:
        fine.min_frames = 4
        a = models.compare(query, doubled).score
        fine.min_frames = 16
        b = models.compare(query, doubled).score
    finally:
        fine.min_frames = 16
    assert a == pytest.approx(b, abs=1e-6)
