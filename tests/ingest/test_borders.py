"""Border handling at decode: real clips with letterbox/pillarbox bars and padded vertical frames
added and removed, HD vs SD, both directions; the main view compares content to content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from evaluation.sources import ken_burns, real_photos
from evaluation.video_io import Clip, write_clip
from dupwatch.config import DecodeConfig
from ingest.borders import BorderTracker, detect_borders
from ingest.decode import decode_video, decode_video_with_stats
from tests.ingest.real_clips import bbb_clip, resize, write_edit


@pytest.fixture(scope="module")
def bbb() -> Clip:
    return bbb_clip()


def _pad(frame: np.ndarray, size: tuple[int, int], content: tuple[int, int], *, fill: str = "black",
         offset: tuple[int, int] | None = None) -> np.ndarray:
    """``frame`` resized to ``content`` and placed in a ``size`` canvas (centred, or at ``offset``)."""
    w, h = size
    cw, ch = content
    if fill == "blur":
        canvas = np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC).filter(ImageFilter.GaussianBlur(18)))
        canvas = canvas.copy()
    else:
        canvas = np.full((h, w, 3), {"black": 0, "grey": 90}[fill], np.uint8)
    x, y = offset or ((w - cw) // 2, (h - ch) // 2)
    canvas[y: y + ch, x: x + cw] = resize(frame, content)
    return canvas


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.abs(a[:n].astype(np.float32) - b[:n].astype(np.float32)).mean())


CFG = DecodeConfig(fps=2.0)
NO_BORDERS = DecodeConfig(fps=2.0, crop_borders=False)


def _views(path: Path, config: DecodeConfig = CFG) -> np.ndarray:
    return decode_video(path, config, path.stem).frames


def test_hd_without_bars_matches_sd_letterbox_both_ways(tmp_path: Path, bbb: Clip) -> None:
    hd = write_edit(tmp_path, "hd", bbb, lambda f: f)  # 1280×720, no bars
    sd = write_edit(tmp_path, "sd_letterbox", bbb, lambda f: _pad(f, (640, 480), (640, 360)))  # 4:3 SD with bars
    video, stats = decode_video_with_stats(sd, CFG, "sd")
    assert stats.borders is not None and stats.borders["kind"] == "letterbox" and stats.borders["fill"] == "constant"
    x0, y0, x1, y1 = stats.borders["content_box"]  # type: ignore[misc]
    assert x0 == 0 and x1 == 1 and abs(y0 - 60 / 480) < 0.02 and abs(y1 - 420 / 480) < 0.02
    assert video.borders == stats.borders
    ref = _views(hd)
    assert decode_video(hd, CFG, "hd").borders is None
    with_crop, without = _diff(video.frames, ref), _diff(_views(sd, NO_BORDERS), ref)
    assert with_crop < 10 and without > 2 * with_crop, (with_crop, without)
    # the other direction: bars on the HD copy of a wide excerpt, the SD one without
    hd_bars = write_edit(tmp_path, "hd_bars", bbb, lambda f: _pad(f[90:630], (1280, 720), (1280, 536)))
    sd_plain = write_edit(tmp_path, "sd_plain", bbb, lambda f: resize(f[90:630], (640, 268)))
    a, b = decode_video(hd_bars, CFG, "a"), decode_video(sd_plain, CFG, "b")
    assert a.borders is not None and a.borders["kind"] == "letterbox" and b.borders is None
    assert _diff(a.frames, b.frames) < 10 < _diff(_views(hd_bars, NO_BORDERS), b.frames)


def test_pillarbox_grey_bars_vertical_clip_in_hd(tmp_path: Path, bbb: Clip) -> None:
    portrait = lambda f: f[:, 438:842]  # noqa: E731  # a 9:16 phone-style excerpt of the picture
    sd = write_edit(tmp_path, "sd916", bbb, lambda f: resize(portrait(f), (270, 480)))
    hd = write_edit(tmp_path, "hd_pillar", bbb, lambda f: _pad(portrait(f), (1280, 720), (404, 720), fill="grey"))
    v = decode_video(hd, CFG, "hd")
    assert v.borders is not None and v.borders["kind"] == "pillarbox"
    x0, _, x1, _ = v.borders["content_box"]  # type: ignore[misc]
    assert abs(x0 - 438 / 1280) < 0.02 and abs(x1 - 842 / 1280) < 0.02
    ref = _views(sd)
    assert _diff(v.frames, ref) < 10 < _diff(_views(hd, NO_BORDERS), ref)


@pytest.mark.parametrize("fill", ["black", "blur"])
def test_landscape_padded_into_a_vertical_frame(tmp_path: Path, bbb: Clip, fill: str) -> None:
    vertical = write_edit(tmp_path, f"v_{fill}", bbb, lambda f: _pad(f, (360, 640), (360, 202), fill=fill))
    plain = write_edit(tmp_path, "plain", bbb, lambda f: resize(f, (640, 360)))
    v = decode_video(vertical, CFG, "v")
    assert v.borders is not None and v.borders["kind"] == "letterbox"
    assert v.borders["fill"] == ("constant" if fill == "black" else "blurred")
    _, y0, _, y1 = v.borders["content_box"]  # type: ignore[misc]
    assert abs(y0 - 219 / 640) < 0.03 and abs(y1 - 421 / 640) < 0.03
    ref = _views(plain)
    # 202 px of content upscaled: softer than the original, but content against content
    assert _diff(v.frames, ref) < 14 < _diff(_views(vertical, NO_BORDERS), ref)


def test_a_dim_static_picture_padded_with_its_own_blur(tmp_path: Path, bbb: Clip) -> None:
    """A static camera's dim, low-contrast picture (a lab tank) in a 9:16 frame over a blurred,
    zoomed copy of itself: too little detail to tell the bands by detail alone, found by the
    seams where fill meets content (``_seam_pair_bands``)."""
    dim = lambda f: (f.astype(np.float32) * 0.12 + 96).astype(np.uint8)  # noqa: E731
    vertical = write_edit(tmp_path, "dim_blur", bbb, lambda f: _pad(dim(f), (360, 640), (360, 202), fill="blur"))
    plain = write_edit(tmp_path, "dim_plain", bbb, lambda f: resize(dim(f), (640, 360)))
    v = decode_video(vertical, CFG, "v")
    assert v.borders is not None and v.borders["fill"] == "blurred", v.borders
    _, y0, _, y1 = v.borders["content_box"]  # type: ignore[misc]
    assert abs(y0 - 219 / 640) < 0.03 and abs(y1 - 421 / 640) < 0.03
    assert v.inset_box is None  # content, not a portrait picture: no reframe view
    assert _diff(v.frames, _views(plain)) < _diff(_views(vertical, NO_BORDERS), _views(plain))


def test_symmetric_edges_of_a_vertical_picture_are_not_fill() -> None:
    """A vertical frame whose picture has mirrored horizontal edges (a window's frame, a game
    board) with flat areas between them: seams, but bands as detailed as the content."""
    rng = np.random.default_rng(3)
    frames = np.empty((6, 455, 256, 3), np.uint8)
    for i in range(6):
        g = rng.integers(60, 200, (455 // 5 + 1, 256 // 8 + 1))  # blocky texture everywhere
        frame = np.repeat(np.repeat(g, 5, 0), 8, 1)[:455, :256]
        frame[85:87] = 250  # mirrored window edges
        frame[368:370] = 250
        frames[i] = frame[..., None]
    assert detect_borders(frames) is None


def test_off_centre_bars_are_found(tmp_path: Path, bbb: Clip) -> None:
    path = write_edit(tmp_path, "off", bbb, lambda f: _pad(f, (640, 480), (640, 360), offset=(0, 100)))
    v = decode_video(path, CFG, "off")
    assert v.borders is not None
    _, y0, _, y1 = v.borders["content_box"]  # type: ignore[misc]
    assert abs(y0 - 100 / 480) < 0.02 and abs(y1 - 460 / 480) < 0.02


def test_no_crop_on_plain_real_footage(tmp_path: Path, bbb: Clip) -> None:
    photos = real_photos()
    rng = np.random.default_rng(0)
    clips = {"bbb": bbb, **{name: ken_burns(photos[name], 6.0, 4.0, rng) for name in sorted(photos)[:6]}}
    for name, clip in clips.items():
        path = write_edit(tmp_path, name, clip, lambda f: f)
        video = decode_video(path, CFG, name)
        assert video.borders is None, (name, video.borders)
        assert np.array_equal(video.frames, _views(path, NO_BORDERS))


def test_a_flat_real_background_is_not_a_bar(tmp_path: Path, bbb: Clip) -> None:
    """A static camera over a plain wall or tank (the left half here): nearly flat, lit a little
    differently from frame to frame, yet picture; cropping it would cut copies differently."""
    rng = np.random.default_rng(2)

    def wall(frame: np.ndarray, i: int) -> np.ndarray:
        out = frame.copy()
        w = out.shape[1] // 2
        shade = 178 + 3 * np.sin(i) + np.linspace(-4, 4, out.shape[0])[:, None, None]  # vignetting and flicker
        out[:, :w] = np.clip(shade + rng.normal(0, 3, (out.shape[0], w, 3)), 0, 255).astype(np.uint8)
        return out

    path = write_clip(tmp_path / "wall.mp4", Clip([wall(f, i) for i, f in enumerate(bbb.frames)], bbb.fps), crf=20)
    assert decode_video(path, CFG, "wall").borders is None


def test_detector_on_arrays() -> None:
    rng = np.random.default_rng(0)
    content = rng.integers(0, 255, (6, 180, 320, 3), dtype=np.uint8)
    framed = np.zeros((6, 240, 320, 3), np.uint8)
    framed[:, 30:210] = content
    box = detect_borders(framed)
    assert box is not None and box.kind == "letterbox" and box.as_list() == [0.0, 0.125, 1.0, 0.875]
    assert detect_borders(content) is None
    assert detect_borders(np.zeros((6, 240, 320, 3), np.uint8)) is None  # a black frame is not bars


def test_tracker_recuts_the_frames_seen_before_the_decision() -> None:
    rng = np.random.default_rng(1)
    frames = np.zeros((10, 256, 341, 3), np.uint8)
    frames[:, 32:224] = rng.integers(0, 255, (10, 192, 341, 3), dtype=np.uint8)
    tracker = BorderTracker(256, 224)
    crops = [tracker.view(f[16:240, 58:282].copy(), f) for f in frames]
    crops, box = tracker.finish(crops)
    assert box is not None and len(crops) == 10
    assert all(c.shape == (224, 224, 3) for c in crops)
    assert all(c[:16].std() > 20 for c in crops)  # no bar rows left at the top of any view
