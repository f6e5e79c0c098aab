"""The original ViSiL head (MKLab-ITI/visil, PyTorch branch) loading ``visil.pth`` directly.

Bare state_dict keys: ``attention.context_vector.weight`` [1, 3840] (L2-normalised attention,
no transform) and ``video_comperator.{conv1,conv2,conv3,fconv}.{weight,bias}``; the comparator
pads by replication. Inputs are 3840-d whitened L3-iMAC regions (512-d for ``visil_symmetric.pth``).
"""

from __future__ import annotations

import torch
from torch import nn

from inference.layers import Attention, check_video_features
from inference.similarities import VideoComparator, chamfer_similarity, frame_to_frame_similarity, hard_tanh, repeat_to_min_length

__all__ = ["ViSiLHead", "MIN_FRAMES"]

MIN_FRAMES = 4


class ViSiLHead(nn.Module):
    def __init__(self, dims: int = 3840, attention: bool = True, symmetric: bool = False) -> None:
        super().__init__()
        self.dims = dims
        self.symmetric = symmetric
        if attention:
            self.attention = Attention(dims, norm=True)
        self.video_comperator = VideoComparator(padding="replicate")

    def index_video(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, T, R, D]`` → attention-weighted ``[N, max(T, 4), R, D]``."""
        x, mask = check_video_features(x, mask, dims=self.dims)
        if mask is None:
            x = repeat_to_min_length(x, MIN_FRAMES, dim=1)
        if hasattr(self, "attention"):
            x, _ = self.attention(x)
        if mask is not None:
            x = x.masked_fill(~mask.bool()[:, :, None, None], 0.0)
        return x

    def similarity_matrix(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Indexed ``[N, Tq, R, D]`` × ``[N, Tt, R, D]`` → ``[N, Tq', Tt']`` after hard tanh."""
        query, _ = check_video_features(query, name="query")
        target, _ = check_video_features(target, name="target")
        query = repeat_to_min_length(query, MIN_FRAMES, dim=1)
        target = repeat_to_min_length(target, MIN_FRAMES, dim=1)
        sim = frame_to_frame_similarity(query, target)
        out, _ = self.video_comperator(sim.unsqueeze(1))
        return hard_tanh(out.squeeze(1))

    def calculate_video_similarity(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sim = self.similarity_matrix(query, target)
        score = chamfer_similarity(sim, max_axis=2, mean_axis=1)
        if self.symmetric:
            score = (score + chamfer_similarity(sim, max_axis=1, mean_axis=2)) / 2
        return score

    def forward(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.calculate_video_similarity(self.index_video(query), self.index_video(target))
