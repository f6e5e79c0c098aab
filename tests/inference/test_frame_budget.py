"""Whole-video heads read long videos in bounded pieces (:mod:`inference.frame_budget`).

A 4 h upload (14,391 frames) made the selector's self-similarity ask for a 67 GB buffer and the
coarse student's attention peak at 15 GB; these tests pin the bound at a size a test can afford
(the README's reliability table has the 4 h measurement)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dupwatch.paths import REPO_ROOT
from inference.frame_budget import COARSE_WINDOW_FRAMES, SELFSIM_MAX_FRAMES, coarse_by_windows, evenly_spaced

DEFAULT = REPO_ROOT / "models" / "default"


def test_evenly_spaced_keeps_short_videos_and_spans_long_ones() -> None:
    short = np.arange(10)
    assert evenly_spaced(short, 10) is short
    picked = evenly_spaced(np.arange(1000), 7)
    assert picked.tolist() == [0, 166, 333, 500, 666, 832, 999]
    with pytest.raises(ValueError, match="at least 1"):
        evenly_spaced(short, 0)


def test_coarse_windows_are_bounded_and_weighted_by_their_frames() -> None:
    calls: list[tuple[int, ...]] = []

    def run(batch: np.ndarray, mask: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        # a stand-in "coarse vector": the mean of the window's real frames (one number a frame)
        return (batch[..., 0] * mask).sum(axis=1, keepdims=True) / mask.sum(axis=1, keepdims=True) * np.ones((1, 2))

    x = np.zeros((23, 1), np.float32)
    x[:10], x[10:] = 1.0, 3.0
    whole = coarse_by_windows(run, x, window=23)
    assert calls == [(1, 23, 1)]
    np.testing.assert_allclose(whole, np.ones(2) * (10 + 3 * 13) / 23)  # one window: the head's own output
    calls.clear()
    out = coarse_by_windows(run, x, window=5, per_run=2)
    assert calls == [(2, 5, 1), (2, 5, 1), (1, 5, 1)]  # 5 windows of at most 5 frames, at most 2 a call
    # window means 1, 1, 3, 3, 3 (the last has 3 frames): frame-weighted mean direction, unit length
    np.testing.assert_allclose(out, np.ones(2) / np.sqrt(2))
    with pytest.raises(ValueError, match="at least 1"):
        coarse_by_windows(run, x, window=0)


@pytest.fixture(scope="module")
def served() -> Any:
    from inference.bundle import load_bundle
    from inference.engines import OnnxRuntimeEngine, onnx_graphs
    from inference.served import EngineModels

    bundle = load_bundle(DEFAULT)
    return EngineModels(bundle, OnnxRuntimeEngine(onnx_graphs(bundle), threads=1), batch_frames=4)


def test_a_long_video_never_reaches_a_whole_video_head_whole(served: Any) -> None:
    """The served heads of a video 2.3 × the budget long see at most the budget, and the PyTorch
    embedder gives the same coarse vector and self-similarity."""
    import torch

    from inference.embedder import VideoModels

    t = COARSE_WINDOW_FRAMES * 2 + 150
    rng = np.random.default_rng(3)
    x = rng.standard_normal((t, 9, 512)).astype(np.float32)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    seen: dict[str, list[tuple[int, ...]]] = {}
    engine = served.engine
    original = engine.run

    def spy(name: str, feeds: dict[str, np.ndarray]) -> Any:
        seen.setdefault(name, []).append(feeds["features"].shape)
        return original(name, feeds)

    engine.run = spy
    try:
        rep = served.represent_regions("long", x, np.arange(t, dtype=np.float32))
    finally:
        engine.run = original
    assert max(s[1] for s in seen["coarse"]) == COARSE_WINDOW_FRAMES
    assert sum(s[0] for s in seen["coarse"]) == 3
    assert [s[1] for s in seen["selector_selfsim"]] == [SELFSIM_MAX_FRAMES]
    assert np.linalg.norm(rep.coarse) == pytest.approx(1.0, abs=1e-5)
    torch.set_num_threads(1)
    ref = VideoModels(served.bundle, device="cpu").represent_regions("long", x, np.arange(t, dtype=np.float32))
    np.testing.assert_allclose(rep.coarse, ref.coarse, atol=1e-5)
    assert rep.selfsim == pytest.approx(ref.selfsim, abs=1e-5)
