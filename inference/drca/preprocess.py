"""Frame preprocessing and video decoding for DRCA (anchors.md §1.5 inference pipeline).

Resize short side -> centre crop -> ``(x - 127.5) / 127.5``; clips of ``num_frames`` frames sampled
at ``fps`` (1 fps in the published pipeline), the last clip padded by repeating its last frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

PIXEL_MEAN = 127.5
PIXEL_STD = 127.5


def to_float_frames(frames: Tensor | np.ndarray) -> Tensor:
    """uint8 ``[T, H, W, 3]`` or float ``[T, 3, H, W]`` (0-255 pixel scale) -> float ``[T, 3, H, W]``."""
    x = torch.as_tensor(frames)
    if x.dim() != 4:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] or float [T, 3, H, W], got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be [T, H, W, 3], got {tuple(x.shape)}")
        return x.permute(0, 3, 1, 2).float()
    if x.shape[1] != 3:
        raise ValueError(f"float frames must be [T, 3, H, W], got {tuple(x.shape)}")
    return x.float()


def resize_center_crop(frames: Tensor, size: int) -> Tensor:
    """``[T, 3, H, W] -> [T, 3, size, size]``: bilinear resize of the short side, then centre crop."""
    _, _, h, w = frames.shape
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        frames = F.interpolate(frames, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        top, left = (nh - size) // 2, (nw - size) // 2
        frames = frames[:, :, top : top + size, left : left + size]
    return frames


def normalize(frames: Tensor) -> Tensor:
    return (frames - PIXEL_MEAN) / PIXEL_STD


def split_clips(frames: Tensor, clip_len: int) -> Tensor:
    """``[T, 3, H, W] -> [N, 3, clip_len, H, W]`` (NCTHW); the last clip repeats its last frame."""
    t = frames.shape[0]
    if t == 0:
        raise ValueError("cannot split an empty frame sequence into clips")
    n = -(-t // clip_len)
    pad = n * clip_len - t
    if pad:
        frames = torch.cat([frames, frames[-1:].expand(pad, *frames.shape[1:])], dim=0)
    return frames.reshape(n, clip_len, *frames.shape[1:]).transpose(1, 2)


def decode_video(path: str | Path, fps: float = 1.0, short_side: int | None = None, max_frames: int | None = None) -> Tensor:
    """Decode with PyAV, keep one frame every ``1/fps`` s -> uint8 ``[T, H, W, 3]``.

    ``short_side`` resizes while decoding (keeps memory small for toy training).
    """
    import av

    frames: list[np.ndarray] = []
    next_t = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            ts = float(frame.pts * stream.time_base) if frame.pts is not None else next_t
            if ts + 1e-6 < next_t:
                continue
            next_t += 1.0 / fps
            if short_side is not None:
                scale = short_side / min(frame.width, frame.height)
                frame = frame.reformat(width=round(frame.width * scale) // 2 * 2, height=round(frame.height * scale) // 2 * 2)
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"no frames decoded from {path}")
    return torch.from_numpy(np.stack(frames))
