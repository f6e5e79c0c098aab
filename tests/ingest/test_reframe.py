"""Reframe views: a portrait upload gets a second view at its landscape original's scale, and on a
real clip that view matches the original better than the upload's own main view does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.video_io import Clip
from dupwatch.config import DecodeConfig
from dupwatch.paths import REPO_ROOT
from ingest.borders import detect_borders
from ingest.decode import decode_video
from ingest.reframe import MIN_ASPECT, portrait_content, reframe_view
from tests.ingest.real_clips import bbb_clip, resize, write_edit

CFG = DecodeConfig(fps=2.0)


@pytest.fixture(scope="module")
def bbb() -> Clip:
    return bbb_clip()


def _textured(h: int, w: int, n: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _portrait(frames: np.ndarray, *, borders: bool = True):  # type: ignore[no-untyped-def]
    """:func:`portrait_content` given the bars the decoder's border detector finds on ``frames``."""
    return portrait_content(frames.shape[2], frames.shape[1], detect_borders(frames) if borders else None)


def test_portrait_content_only_for_tall_content() -> None:
    box = _portrait(_textured(455, 256))
    assert box is not None and box.kind == "reframe" and box.as_list() == [0.0, 0.0, 1.0, 1.0]
    assert _portrait(_textured(256, 455)) is None  # landscape
    assert _portrait(_textured(int(256 * (MIN_ASPECT - 0.2)), 256)) is None  # upright 4:3-ish
    # a landscape picture padded into a 9:16 frame with black bars: its content is landscape
    padded = np.zeros((8, 455, 256, 3), np.uint8)
    padded[:, 155:299] = _textured(144, 256)
    assert _portrait(padded) is None
    # a 9:16 picture pillarboxed into a 16:9 frame: portrait content inside the bars
    pillar = np.zeros((8, 256, 455, 3), np.uint8)
    pillar[:, :, 155:299] = _textured(256, 144)
    box = _portrait(pillar)
    assert box is not None and abs(box.x0 - 155 / 455) < 0.02 and abs(box.x1 - 299 / 455) < 0.02
    assert _portrait(pillar, borders=False) is None  # the whole 16:9 frame is landscape


def test_reframe_view_puts_the_strip_at_the_originals_scale() -> None:
    frame = _textured(455, 256, n=1)[0]
    box = _portrait(frame[None])
    view = reframe_view(frame, box, 256, 224)  # type: ignore[arg-type]
    assert view.shape == (224, 224, 3) and view.dtype == np.uint8
    # the whole height maps to 256 rows (the original's short side), so the strip is 256 * 256/455 = 144 wide
    sides = np.concatenate([view[:, :38], view[:, -38:]], axis=1).reshape(-1, 3)
    assert np.ptp(sides, axis=0).max() == 0  # one fill colour
    assert view[:, 45:179].std() > 20  # the picture


def test_a_vertical_reframe_matches_its_original_through_the_reframe_view(tmp_path: Path, bbb: Clip) -> None:
    from inference.embedder import VideoModels

    original = write_edit(tmp_path, "original", bbb, lambda f: f)
    strip = lambda f: f[:, 300:705]  # noqa: E731  # an off-centre 9:16 strip of the 1280×720 picture
    vertical = write_edit(tmp_path, "vertical", bbb, lambda f: resize(strip(f), (360, 640)))
    up = decode_video(vertical, CFG, "vertical")
    assert up.inset is not None and up.inset_kind == "reframe" and up.inset.shape == up.frames.shape
    orig = decode_video(original, CFG, "original")
    assert orig.inset is None and orig.inset_kind is None  # landscape: no reframe view
    assert decode_video(vertical, DecodeConfig(fps=2.0, reframe_views=False), "v").inset is None
    models = VideoModels.from_path(REPO_ROOT / "models" / "default", device="cpu")
    ref = models.regions(orig.frames)
    main = models.compare(models.regions(up.frames), ref).score
    reframed = models.compare(models.regions(up.inset), ref).score
    assert reframed > main + 0.05, (main, reframed)


def test_an_inset_wins_over_a_reframe_view(tmp_path: Path, bbb: Clip) -> None:
    def pip(frame: np.ndarray) -> np.ndarray:
        out = np.full((640, 360, 3), 30, np.uint8)  # a tall host frame
        out[200:380, 20:340] = resize(frame, (320, 180))
        return out

    v = decode_video(write_edit(tmp_path, "pip", bbb, pip), CFG, "pip")
    assert v.inset_kind in ("inset", None)  # a picture in picture is never taken for a reframe


def test_eval_switches_reframe_views_and_keys_its_caches_by_it() -> None:
    from scoring.methods import FeatureCache, FrameCache, OursMethod, build_methods

    frames, features = FrameCache(), FeatureCache()
    bundle = REPO_ROOT / "models" / "default"
    on, off = (build_methods(["ours"], [bundle], frames, features, device="cpu", reframe_views=flag)[0] for flag in (None, False))
    assert isinstance(on, OursMethod) and isinstance(off, OursMethod)
    assert on.decode_config.reframe_views is True and off.decode_config.reframe_views is False
    assert on.feature_key != off.feature_key  # features of one setting are never served to the other


def test_the_decoder_cuts_the_reframe_view_inside_the_bars_it_found(tmp_path: Path, bbb: Clip) -> None:
    def pillarboxed(frame: np.ndarray) -> np.ndarray:  # a 9:16 phone excerpt shown in an HD frame with black bars
        out = np.zeros((720, 1280, 3), np.uint8)
        out[:, 438:842] = frame[:, 438:842]
        return out

    path = write_edit(tmp_path, "pillar", bbb, pillarboxed)
    v = decode_video(path, CFG, "pillar")
    assert v.borders is not None and v.inset_kind == "reframe"
    x0, _, x1, _ = v.inset_box  # type: ignore[misc]
    assert abs(x0 - 438 / 1280) < 0.02 and abs(x1 - 842 / 1280) < 0.02
    # without the border crop the decoder sees a 16:9 frame: no reframe view
    assert decode_video(path, DecodeConfig(fps=2.0, crop_borders=False), "p").inset_kind != "reframe"
