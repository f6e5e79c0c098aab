"""Small grey thumbnails of the sampled frames: the pixel evidence of the copy head.

Why: another moment of a static camera or a screen recording matches a copy frame by frame in
the region features (the same wall, tank or window fills both), and at 224 px through a CNN the
little that differs (a fish, a face, a moved tile) is averaged away. A ``THUMB_SIDE``² grey
thumbnail of the decoded view keeps where things are: minus the video's median thumbnail
(the static background) what is left is what moves, and in a copy it moves the same way at the
matching moments (:func:`detect.copy_head.pixel_agreement`).

Thumbnails are cut from the decoder's views (``DecodedVideo.frames`` and its inset or reframe
view, after the border crop), so a letterboxed copy and its original are compared content to
content. Kept as ``uint8`` in memory (``THUMB_SIDE``² bytes a frame); Milvus stores them as
float32 vectors next to the region vectors (:mod:`index.schema`, ``video_thumbs``), since its
Lite and 2.3 server accept no narrower vector type.
"""

from __future__ import annotations

import numpy as np

__all__ = ["THUMB_SIDE", "frame_thumbnails", "thumbnails_of"]

THUMB_SIDE = 32
"""Thumbnail side in pixels (a 224 px view is averaged over 7 × 7 blocks)."""


def frame_thumbnails(frames: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """``[T, side, side]`` uint8 grey thumbnails of ``[T, H, W, 3]`` uint8 RGB frames (box average
    over equal blocks; rows and columns past a whole block are dropped)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    t, h, w = frames.shape[:3]
    by, bx = h // side, w // side
    if by < 1 or bx < 1:
        raise ValueError(f"frames of {h}x{w} are smaller than a {side}x{side} thumbnail")
    grey = frames[:, : by * side, : bx * side].astype(np.float32).mean(axis=-1)
    small = grey.reshape(t, side, by, side, bx).mean(axis=(2, 4))
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def thumbnails_of(frames: np.ndarray | None, side: int = THUMB_SIDE) -> np.ndarray | None:
    """:func:`frame_thumbnails`, or ``None`` for no frames or frames smaller than a thumbnail (a
    decoder configured below ``side`` pixels has no pixel evidence)."""
    if frames is None or frames.ndim != 4 or min(frames.shape[1:3]) < side:
        return None
    return frame_thumbnails(frames, side)
