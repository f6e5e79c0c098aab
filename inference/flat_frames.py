"""Flat frames carry no evidence.

A frame with (almost) no texture, a black, white or single-colour screen, says nothing about which
video it came from, yet its region vectors match every other flat or dark frame closely: on the
real-footage training benchmarks, the blank frames of a screen recording matched unrelated dark
footage at P(copy) 0.99 (README *Real footage*). vPDQ drops low-quality frames before matching for
the same reason. Here a frame whose luma is flat (standard deviation of its 64×64 box-downscaled
luma below ``decode.flat_luma_std``) keeps its place and timestamp, but its region vectors are
zeroed: it is similar to nothing, so it can neither make nor break a match.

The cut (0.45 on 0..255) was chosen on the three real train benchmarks: it removes the blank-frame
false alerts there and touches no frame of a true copy on the train, calibrate or check sets
(decoded frames with a standard deviation under 0.45: 13–25 per train set, 0 on calibrate, 2 on
check). vPDQ's own quality cut (PDQ quality < 50) would also drop the frames of dark but textured
true copies.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

LUMA_SIDE = 64
"""Frames are box-downscaled to this square before their luma is measured."""
_BT601 = np.array([0.299, 0.587, 0.114], np.float32)


def luma_std(frames: np.ndarray) -> np.ndarray:
    """Per frame of ``[T, H, W, 3]`` uint8 RGB: the standard deviation of its BT.601 luma after a box
    downscale to 64×64 (0..255), ``[T]`` float32."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    luma = frames.astype(np.float32) @ _BT601
    out = np.empty(len(frames), np.float32)
    for i, y in enumerate(luma):
        out[i] = np.asarray(Image.fromarray(y, mode="F").resize((LUMA_SIDE, LUMA_SIDE), Image.BOX)).std()
    return out


def blank_flat_frames(frames: np.ndarray, regions: np.ndarray, min_std: float) -> np.ndarray:
    """``regions`` (``[T, R, D]``, one row per frame of ``frames``) with the rows of flat frames set to
    zero; the same array when no frame is flat or ``min_std`` is 0 (the rule switched off)."""
    if min_std <= 0 or len(frames) == 0:
        return regions
    if len(frames) != len(regions):
        raise ValueError(f"{len(frames)} frames but {len(regions)} region rows")
    flat = luma_std(frames) < min_std
    if not flat.any():
        return regions
    out = np.array(regions, copy=True)
    out[flat] = 0
    return out
