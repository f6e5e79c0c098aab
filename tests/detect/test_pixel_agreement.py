"""Pixel evidence of the copy head: thumbnails, ``pixel_agreement`` and unknown values.

A static textured scene with one moving square stands for a static camera (the texture makes
whole frames of the two moments alike; only what moves differs): a copy (brighter,
mirrored, the same square path) agrees, another moment of the same scene (the square elsewhere
at every sampled instant) does not, although every frame of both shows the same background.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from detect.copy_head import FEATURES, CopyHead, fit_copy_head, pixel_agreement
from inference.thumbnails import THUMB_SIDE, frame_thumbnails, thumbnails_of


SQUARE = 32


def _scene(path: list[tuple[int, int]], seed: int = 0) -> np.ndarray:
    """Frames ``[T, 224, 224, 3]``: one fixed coarse texture (7 × 7 blocks of 32 px, which dominates
    every frame as a static camera's scene does), a dark square at each ``path`` point."""
    rng = np.random.default_rng(seed)
    base = np.repeat(np.repeat(rng.integers(40, 220, (7, 7, 1)), 32, 0), 32, 1)
    frames = np.repeat(np.broadcast_to(base, (224, 224, 3))[None], len(path), 0).astype(np.uint8).copy()
    for t, (y, x) in enumerate(path):
        frames[t, y : y + SQUARE, x : x + SQUARE] = 10
    return frames


def _path(seed: int, n: int = 12, rows: tuple[int, int] = (0, 224 - SQUARE)) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return [(int(a), int(b)) for a, b in zip(rng.integers(*rows, n), rng.integers(0, 224 - SQUARE, n))]


def test_thumbnails_are_grey_block_means():
    frames = np.zeros((2, 224, 224, 3), np.uint8)
    frames[1, :7, :7] = (30, 60, 90)
    t = frame_thumbnails(frames)
    assert t.shape == (2, THUMB_SIDE, THUMB_SIDE) and t.dtype == np.uint8
    assert t[1, 0, 0] == 60 and t[1].sum() == 60 and t[0].sum() == 0
    assert thumbnails_of(np.zeros((3, 16, 16, 3), np.uint8)) is None  # smaller than a thumbnail
    assert thumbnails_of(None) is None
    with pytest.raises(ValueError):
        frame_thumbnails(np.zeros((3, 224, 224), np.uint8))


def test_a_copy_agrees_and_another_moment_of_the_same_static_scene_does_not():
    original = _scene(_path(1, rows=(0, 70)))
    copy = np.clip(original[:, :, ::-1].astype(np.int16) + 25, 0, 255).astype(np.uint8)  # mirrored, brighter
    moment = _scene(_path(2, rows=(114, 224 - SQUARE)))  # same background, the square lower down
    thumbs = {name: frame_thumbnails(f) for name, f in (("original", original), ("copy", copy), ("moment", moment))}
    as_copy = pixel_agreement(thumbs["copy"], thumbs["original"])
    as_moment = pixel_agreement(thumbs["moment"], thumbs["original"])
    assert as_copy > 0.9 and as_moment < 0.5, (as_copy, as_moment)
    # a few frames in any order still find their moment (chamfer over the reference's frames)
    assert pixel_agreement(thumbs["copy"][[5, 2, 9]], thumbs["original"]) > 0.9


def test_unknown_pixel_evidence_is_nan_and_the_head_reads_it_as_the_mean():
    t = frame_thumbnails(_scene(_path(3)))
    assert math.isnan(pixel_agreement(None, t)) and math.isnan(pixel_agreement(t, None))
    assert math.isnan(pixel_agreement(t[:2], t))  # too few frames to know what moves
    with pytest.raises(ValueError):
        pixel_agreement(t, t[:, :16, :16])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, len(FEATURES)))
    y = x[:, FEATURES.index("pixel_agreement")] + 0.3 * x[:, 0] > 0
    x[::3, FEATURES.index("pixel_agreement")] = np.nan  # a third of the pairs were indexed without thumbnails
    x[::3, FEATURES.index("fine_x_pixel")] = np.nan
    head = fit_copy_head(x, y, l2=0.01, features=("fine_score", "pixel_agreement", "fine_x_pixel"))
    assert np.all(np.isfinite(head.mean)) and head.weights[1] > 0
    row = x[:1].copy()
    row[0, FEATURES.index("pixel_agreement")] = np.nan
    row[0, FEATURES.index("fine_x_pixel")] = np.nan
    at_mean = row.copy()
    at_mean[0, FEATURES.index("pixel_agreement")] = head.mean[1]
    at_mean[0, FEATURES.index("fine_x_pixel")] = head.mean[2]
    assert head.score(row) == pytest.approx(head.score(at_mean))
    # a head fitted without the pixel features ignores them entirely
    old = CopyHead(("fine_score",), np.zeros(1), np.ones(1), np.ones(1), 0.0, {})
    assert old.score(row) == pytest.approx(1 / (1 + math.exp(-row[0, 0])))
