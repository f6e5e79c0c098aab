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
    spec = CorpusSpec(views=2, only=("bigbuckbunny",), heldout_videos=())
    corpus = build_feature_corpus(spec, progress=False)
    assert corpus.names == ["bigbuckbunny"]
    frames = list((tmp_path / "cache" / "training" / "frames").glob("bigbuckbunny*.npz"))
    assert len(frames) == 1
    with np.load(frames[0]) as z:
        f = z["frames"]
    assert f.dtype == np.uint8 and f.ndim == 4 and min(f.shape[1:3]) == 256 and len(f) >= 3
    assert f.std() > 10  # real picture content
    views = corpus.videos["bigbuckbunny"]
    assert len(views) == 2 and views[0].shape == (len(f), 9, 1752) and views[0].dtype == np.float16
    assert not np.allclose(views[0], views[1])  # the weak view differs from the centre crop
    again = build_feature_corpus(spec, progress=False)  # from the cache
    np.testing.assert_array_equal(again.videos["bigbuckbunny"][1], views[1])


@pytest.mark.parametrize("name", ["carphone_pristine", "bikes"])
def test_reserved_videos_are_never_trained_on(name: str) -> None:
    from training.corpus import training_sources
    from training.footage import ReservedSourceError

    with pytest.raises(ReservedSourceError):
        training_sources(CorpusSpec(views=2, only=(name,), heldout_videos=()))
    assert name not in training_sources(CorpusSpec(views=2, heldout_videos=(), max_photos=0))


def test_upload_views_go_through_the_decoders_border_crop() -> None:
    from evaluation.sources import ken_burns, real_photos
    from training.augment import strong_view, upload_view

    frames = np.stack(ken_burns(real_photos()["chelsea"], 8.0, 1.0, np.random.default_rng(0)).frames)
    seen = set()
    for seed in range(16):
        x, tag = upload_view(frames, np.random.default_rng(seed))
        assert x.shape == (len(frames), 224, 224, 3) and x.dtype == np.uint8
        seen.add(tag.split("+")[0].split("_")[0])
        if tag.startswith("letterbox"):
            assert tag.endswith("borders_cropped") and x[:, :6].std() > 10  # no bar rows left in the view
    assert {"letterbox", "vertical"} <= seen
    a = strong_view(frames, np.random.default_rng(1))
    b = strong_view(frames, np.random.default_rng(1), p_upload=0.0)
    np.testing.assert_array_equal(a.frames, b.frames)  # p_upload 0 draws nothing: older corpora unchanged


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
