"""Video -> per-clip DRCA embeddings with clip start/end times."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from inference.drca.model import DRCA
from inference.drca.preprocess import normalize, resize_center_crop, split_clips, to_float_frames


@dataclass(frozen=True)
class ClipEmbeddings:
    embeddings: Tensor  # [N, D] L2-normalised, float32 on CPU
    start_s: Tensor  # [N] clip start times in seconds
    end_s: Tensor  # [N] clip end times in seconds (exclusive; last clip ends at the last real frame)

    def __post_init__(self) -> None:
        n = self.embeddings.shape[0]
        if self.start_s.shape != (n,) or self.end_s.shape != (n,):
            raise ValueError("one start and one end time per clip embedding")


@torch.no_grad()
def embed_video(
    model: DRCA, frames: Tensor | np.ndarray, fps: float = 1.0, batch_size: int = 8, compress: bool | None = None
) -> ClipEmbeddings:
    """Embed frames sampled at ``fps`` (uint8 ``[T, H, W, 3]`` or float 0-255 ``[T, 3, H, W]``).

    Frames are resized/cropped to the model size, normalised with mean = std = 127.5 and cut into
    consecutive clips of ``cfg.num_frames`` (last one padded by repetition). Runs in eval mode
    (hard top-K) on the model's device.
    """
    cfg = model.cfg
    x = normalize(resize_center_crop(to_float_frames(frames), cfg.img_size))
    clips = split_clips(x, cfg.num_frames)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        out = [model(clips[i : i + batch_size].to(device), compress=compress).float().cpu() for i in range(0, len(clips), batch_size)]
    finally:
        model.train(was_training)
    t = x.shape[0]
    starts = torch.arange(len(clips), dtype=torch.float64) * cfg.num_frames
    ends = torch.clamp(starts + cfg.num_frames, max=t)
    return ClipEmbeddings(torch.cat(out), starts / fps, ends / fps)
