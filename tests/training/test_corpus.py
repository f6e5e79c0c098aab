"""Corpus builder: real frames cached on disk, augmented views, cached region features, held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.augment import strong_view, temporal_view, weak_view
from training.corpus import CorpusSpec, benchmark_photo_split, build_feature_corpus, heldout_benchmark_spec


@pytest.fixture(autouse=True)
def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("DUPWATCH_CACHE_DIR", str(tmp_path / "cache"))


def test_corpus_caches_frames_and_features_of_a_real_video(tmp_path: Path) -> None:
    spec = CorpusSpec(views=2, only=("carphone_pristine",), heldout_videos=())
    corpus = build_feature_corpus(spec, progress=False)
    assert corpus.names == ["carphone_pristine"]
    frames = list((tmp_path / "cache" / "training" / "frames").glob("carphone_pristine*.npz"))
    assert len(frames) == 1
    with np.load(frames[0]) as z:
        f = z["frames"]
    assert f.dtype == np.uint8 and f.ndim == 4 and min(f.shape[1:3]) == 256 and len(f) >= 3
    assert f.std() > 10  # real picture content
    views = corpus.videos["carphone_pristine"]
    assert len(views) == 2 and views[0].shape == (len(f), 9, 1752) and views[0].dtype == np.float16
    assert not np.allclose(views[0], views[1])  # the weak view differs from the centre crop
    again = build_feature_corpus(spec, progress=False)  # from the cache
    np.testing.assert_array_equal(again.videos["carphone_pristine"][1], views[1])


def test_heldout_split_keeps_training_sources_out_of_the_benchmark() -> None:
    names = [f"p{i}" for i in range(14)]
    held, train = benchmark_photo_split(names, 0)
    assert len(held) == 7 and not set(held) & set(train) and set(held) | set(train) == set(names)
    spec = heldout_benchmark_spec(CorpusSpec())
    assert "bigbuckbunny" in spec.exclude_sources and "s2vs_example_video1" not in spec.exclude_sources


def test_frame_and_temporal_augmentations() -> None:
    rng = np.random.default_rng(0)
    frames = (np.random.default_rng(1).integers(0, 255, (4, 120, 200, 3))).astype(np.uint8)
    assert weak_view(frames, rng).shape == (4, 224, 224, 3)
    sv = strong_view(frames, rng, other=("host", frames[::-1].copy()), p_viv=1.0, p_overlay=1.0)
    assert sv.frames.shape == (4, 224, 224, 3) and sv.host == "host" and "pip" in sv.edits
    x = np.arange(20, dtype=np.float32).reshape(20, 1, 1)
    for seed in range(20):
        assert temporal_view(x, 8, np.random.default_rng(seed)).shape == (8, 1, 1)
