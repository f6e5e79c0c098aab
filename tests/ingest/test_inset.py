"""Picture-in-picture insets: found on real footage placed inside other real footage, not on plain
videos, cut out as a second view by the decoder, indexed as rows of their own and searched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.inset import iou, placed_box
from evaluation import transforms
from evaluation.sources import ken_burns, real_photos, real_videos
from evaluation.video_io import Clip, read_clip, write_clip
from dupwatch.config import DecodeConfig
from dupwatch.records import INSET_SUFFIX, inset_id, parent_id
from ingest.decode import decode_video
from ingest.inset import DETECT_FRAMES, detect_inset


@pytest.fixture(scope="module")
def clips() -> dict[str, Clip]:
    videos = {v.name: v.path for v in real_videos()}
    photos = real_photos()
    rng = np.random.default_rng(3)
    return {
        "s2vs": read_clip(videos["s2vs_example_video1"], fps=2.0, max_seconds=10.0, max_side=480),
        "bikes": read_clip(videos["bikes"], fps=2.0, max_seconds=8.0, max_side=480),
        "kb_cat": ken_burns(photos["chelsea"], 10.0, 2.0, rng),
    }


def _pip(copy: Clip, host: Clip, seed: int) -> tuple[Clip, tuple[float, float, float, float]]:
    """Our benchmark's picture-in-picture edit and the box it drew (relative x0, y0, x1, y1)."""
    edit = transforms.picture_in_picture(copy, host, np.random.default_rng(seed))
    return edit.clip, placed_box(edit, host.size)


def _view_error(views: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute pixel difference of two views over their common frames."""
    n = min(len(views), len(target))
    return float(np.abs(views[:n].astype(float) - target[:n].astype(float)).mean())


@pytest.mark.parametrize("copy,host,seed", [("s2vs", "kb_cat", 1), ("bikes", "kb_cat", 2), ("kb_cat", "s2vs", 3)])
def test_inset_found_where_it_was_placed(clips: dict[str, Clip], tmp_path: Path, copy: str, host: str, seed: int) -> None:
    clip, truth = _pip(clips[copy], clips[host], seed)
    path = write_clip(tmp_path / "pip.mp4", clip)
    video = decode_video(path, DecodeConfig(fps=2.0), "pip")
    assert video.inset is not None and video.inset_box is not None
    assert video.inset.shape == video.frames.shape
    assert iou(video.inset_box, truth) > 0.75, (video.inset_box, truth)
    # the inset view shows the copy, not the host: it is closer to the copied video's own frames
    source = decode_video(write_clip(tmp_path / "src.mp4", clips[copy]), DecodeConfig(fps=2.0), "src")
    assert _view_error(video.inset, source.frames) < _view_error(video.frames, source.frames)


@pytest.mark.parametrize("upload", ["letterbox", "vertical"])
def test_compound_inset_view_compares_content_to_content(clips: dict[str, Clip], tmp_path: Path, upload: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A letterboxed or 9:16 (off-centre crop) copy shown as an inset: the inset view is cut inside the inset's own bars
    and a portrait inset gets the reframe view, so the view matches how the decoder sees that upload
    on its own (bars cropped, reframe view) far better than the plain inset cut-and-centre-crop."""
    seed = next(s for s in range(20) if upload == "letterbox"
                or transforms.vertical_reframe(clips["s2vs"], np.random.default_rng(s)).params["mode"] == "offcentre")
    edit = transforms.UPLOAD_EDITS[upload](clips["s2vs"], np.random.default_rng(seed))
    alone = decode_video(write_clip(tmp_path / "alone.mp4", edit.clip), DecodeConfig(fps=2.0), "alone")
    if upload == "letterbox":
        assert alone.borders is not None
        target = alone.frames
    else:
        assert alone.inset_kind == "reframe"
        target = alone.inset
    clip, box = _pip(edit.clip, clips["kb_cat"], 2)
    path = write_clip(tmp_path / "pip.mp4", clip)
    video = decode_video(path, DecodeConfig(fps=2.0), "pip")
    assert video.inset is not None and video.inset_box is not None and video.inset_kind == "inset"
    x0, y0, x1, y1 = video.inset_box
    if upload == "letterbox":  # the box is the content inside the inset's bars
        assert x1 - x0 > 0.8 * (box[2] - box[0]) and y1 - y0 < 0.9 * (box[3] - box[1])
    else:
        assert iou(video.inset_box, box) > 0.75
    ours = _view_error(video.inset, target)
    monkeypatch.setattr("ingest.decode.inset_content", lambda frames, b: b)
    monkeypatch.setattr("ingest.decode.is_portrait", lambda b, w, h: False)
    plain = decode_video(path, DecodeConfig(fps=2.0), "pip")
    assert plain.inset is not None
    assert ours < 0.75 * _view_error(plain.inset, target), upload


@pytest.mark.parametrize("photo,seed", [("rocket", 1), ("coffee", 2)])
def test_inset_is_not_a_rectangle_of_its_own_content(clips: dict[str, Clip], tmp_path: Path, photo: str, seed: int) -> None:
    """A split-screen upload (a still picture above real footage) shown as an inset: the line where
    the still half meets the moving half is as persistent as the inset's border, so the still half is
    a rectangle with four clean sides too. The inset is the whole copy (``AREA_WEIGHT``); these two
    placements picked the still half without it."""
    from PIL import Image

    footage = clips["s2vs"]
    width, height = footage.size
    top = height // 4 * 2
    still = np.asarray(Image.fromarray(real_photos()[photo]).resize((width, top), Image.BICUBIC))
    split_screen = Clip([np.concatenate([still, f[top:]], axis=0) for f in footage.frames], footage.fps)
    clip, truth = _pip(split_screen, clips["kb_cat"], seed)
    video = decode_video(write_clip(tmp_path / "pip.mp4", clip), DecodeConfig(fps=2.0), "pip")
    assert video.inset_box is not None and iou(video.inset_box, truth) > 0.9, (video.inset_box, truth)


@pytest.mark.parametrize("name", ["s2vs", "bikes", "kb_cat"])
def test_plain_real_video_has_no_inset(clips: dict[str, Clip], tmp_path: Path, name: str) -> None:
    video = decode_video(write_clip(tmp_path / "plain.mp4", clips[name]), DecodeConfig(fps=2.0), "plain")
    assert video.inset is None and video.inset_box is None


def test_inset_views_can_be_switched_off(clips: dict[str, Clip], tmp_path: Path) -> None:
    clip, _ = _pip(clips["s2vs"], clips["kb_cat"], 1)
    path = write_clip(tmp_path / "pip.mp4", clip)
    assert decode_video(path, DecodeConfig(fps=2.0, inset_views=False), "pip").inset is None


def test_detector_needs_several_frames_and_uses_only_the_first(clips: dict[str, Clip]) -> None:
    clip, _ = _pip(clips["s2vs"], clips["kb_cat"], 1)
    frames = np.stack(clip.frames)
    assert detect_inset(frames[:2]) is None  # two frames cannot tell a border from content
    first = np.concatenate([frames, frames])[:DETECT_FRAMES]
    later = np.random.default_rng(0).integers(0, 256, (8, *frames.shape[1:]), dtype=np.uint8)
    found = detect_inset(first)
    assert found is not None and detect_inset(np.concatenate([first, later])) == found


def test_garbage_shapes_are_no_inset() -> None:
    assert detect_inset(np.zeros((0, 64, 64, 3), np.uint8)) is None
    assert detect_inset(np.zeros((5, 8, 8, 3), np.uint8)) is None
    assert detect_inset(np.full((6, 64, 64, 3), 128, np.uint8)) is None  # flat grey: no edge at all


def test_inset_ids() -> None:
    assert inset_id("vid-1") == "vid-1" + INSET_SUFFIX
    assert parent_id(inset_id("vid-1")) == "vid-1" and parent_id("vid-1") == "vid-1"
    from ingest.events import ID_PATTERN
    import re

    assert re.match(ID_PATTERN, inset_id("vid-1")) is None  # no upload can be named like an inset view
