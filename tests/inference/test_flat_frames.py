"""Flat frames carry no evidence (:mod:`inference.flat_frames`): a blank screen no longer matches
another blank or dark screen, while dark but textured real footage keeps its features and its
copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dupwatch.config import DEFAULT_FLAT_LUMA_STD, DecodeConfig, ModelConfig, Settings
from dupwatch.paths import REPO_ROOT
from inference.flat_frames import blank_flat_frames, luma_std
from tests.inference.real_clips import FPS, Clip, bunny, write

DEFAULT = REPO_ROOT / "models" / "default"


def test_luma_std_of_flat_textured_and_dark_frames():
    rng = np.random.default_rng(0)
    frames = np.zeros((4, 96, 128, 3), np.uint8)
    frames[1] = 255
    frames[2] = rng.integers(0, 256, frames[2].shape)
    frames[3] = rng.integers(0, 12, frames[3].shape)  # dark noise: box-averaged, still not flat
    frames[3, :48] //= 4  # dark with a darker half: structure survives the downscale
    std = luma_std(frames)
    assert std.dtype == np.float32 and std.shape == (4,)
    assert std[0] == 0 and std[1] == 0
    assert std[2] > 10 and std[3] > DEFAULT_FLAT_LUMA_STD
    with pytest.raises(ValueError):
        luma_std(frames[..., 0])


def test_only_flat_rows_are_zeroed():
    frames = np.zeros((3, 64, 64, 3), np.uint8)
    frames[1] = np.random.default_rng(1).integers(0, 256, frames[1].shape)
    regions = np.ones((3, 2, 4), np.float32)
    out = blank_flat_frames(frames, regions, DEFAULT_FLAT_LUMA_STD)
    assert out.sum(axis=(1, 2)).tolist() == [0, 8, 0] and regions.sum() == 24  # the input is left alone
    assert blank_flat_frames(frames, regions, 0) is regions  # the rule off
    assert blank_flat_frames(frames[1:2], regions[1:2], DEFAULT_FLAT_LUMA_STD) is not None
    with pytest.raises(ValueError):
        blank_flat_frames(frames, regions[:2], DEFAULT_FLAT_LUMA_STD)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    """Real footage made dark (bunny at 8 % brightness: luma std about 4), a dark re-encoded copy
    of it, and two blank screens (flat grey, black) of the same length, decoded by the worker's decoder."""
    from ingest.decode import decode_video

    tmp: Path = tmp_path_factory.mktemp("flat")
    source = bunny()
    dark = Clip([(f.astype(np.float32) * 0.08).astype(np.uint8) for f in source.frames], FPS)
    made = {
        "dark": dark,
        "dark_copy": Clip([np.clip(f.astype(np.int16) + 2, 0, 255).astype(np.uint8) for f in dark.frames], FPS),
        "grey": Clip([np.full_like(source.frames[0], 12) for _ in source.frames], FPS),
        "black": Clip([np.zeros_like(source.frames[0]) for _ in source.frames], FPS),
    }
    crf = {"dark_copy": 34}
    return {k: decode_video(write(tmp / f"{k}.mp4", c, crf=crf.get(k, 26)), DecodeConfig(), k) for k, c in made.items()}


def test_served_and_pytorch_models_zero_flat_frames_alike(clips):
    from inference.embedder import VideoModels
    from inference.served import EngineModels, load_models

    served = load_models(Settings(model=ModelConfig(bundle=DEFAULT, engine="onnxruntime")))
    assert isinstance(served, EngineModels) and served.flat_luma_std == DEFAULT_FLAT_LUMA_STD
    torch_models = VideoModels.from_path(DEFAULT, device="cpu")
    frames = np.concatenate([clips["dark"].frames[:3], clips["grey"].frames[:2], clips["dark"].frames[3:5]])
    a, b = served.regions(frames), torch_models.regions(frames)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.abs(a[3:5]).max() == 0 and (np.abs(a[[0, 1, 2, 5, 6]]).max(axis=(1, 2)) > 0).all()
    off = load_models(Settings(model=ModelConfig(bundle=DEFAULT, engine="onnxruntime"), decode=DecodeConfig(flat_luma_std=0)))
    assert off.flat_luma_std == 0 and np.abs(off.regions(frames)[3:5]).max() > 0
    np.testing.assert_allclose(off.regions(frames)[[0, 1, 2, 5, 6]], a[[0, 1, 2, 5, 6]], atol=1e-6)
    blank = served.represent(clips["black"])  # a wholly blank upload: finite vectors, matching nothing
    assert np.isfinite(blank.coarse).all() and np.isfinite(blank.clips).all() and not np.abs(blank.regions).any()


def test_blank_screens_no_longer_match_while_dark_footage_keeps_its_copy(clips):
    from detect.copy_head import copy_head_for
    from detect.detector import AlignmentParams, assess_pair
    from inference.embedder import VideoModels
    from inference.thumbnails import frame_thumbnails

    models = VideoModels.from_path(DEFAULT, device="cpu")
    head = copy_head_for(models.bundle)

    def assess(q: str, r: str, std: float):
        models.flat_luma_std = std
        a = assess_pair(models, models.regions(clips[q].frames), models.regions(clips[r].frames),
                        clips[q].timestamps, clips[r].timestamps, AlignmentParams(), head,
                        thumbs=(frame_thumbnails(clips[q].frames), frame_thumbnails(clips[r].frames)))
        assert np.isfinite(a.features()).all()
        return a

    def p_copy(q: str, r: str, std: float) -> float:
        return float(assess(q, r, std).copy_score)

    assert assess("grey", "black", 0.0).fine > 0.9  # what the rule is for: two blank screens match frame by frame
    assert p_copy("grey", "black", DEFAULT_FLAT_LUMA_STD) < 0.05
    assert p_copy("grey", "dark", DEFAULT_FLAT_LUMA_STD) < 0.05
    # dark but textured footage: no frame is flat, so its copy scores exactly as without the rule
    assert (luma_std(clips["dark"].frames) > DEFAULT_FLAT_LUMA_STD).all()
    assert (luma_std(clips["dark_copy"].frames) > DEFAULT_FLAT_LUMA_STD).all()
    on = p_copy("dark_copy", "dark", DEFAULT_FLAT_LUMA_STD)
    assert on > 0.3 and on == pytest.approx(p_copy("dark_copy", "dark", 0.0), abs=1e-6)

