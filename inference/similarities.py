"""Similarity functions: chamfer similarity, the ViSiL video comparator CNN, hard tanh."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["chamfer_similarity", "ChamferSimilarity", "VideoComparator", "hard_tanh", "frame_to_frame_similarity",
           "repeat_to_min_length", "pair_similarity"]


def hard_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, -1.0, 1.0)


def chamfer_similarity(s: torch.Tensor, max_axis: int, mean_axis: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Max over ``max_axis`` then mean over ``mean_axis`` (both removed). ``mask`` broadcasts to ``s``."""
    if mask is None:
        s = s.max(dim=max_axis, keepdim=True).values
        s = s.mean(dim=mean_axis, keepdim=True)
    else:
        mask = mask.bool().expand_as(s)
        s = s.masked_fill(~mask, float("-inf")).max(dim=max_axis, keepdim=True).values
        m = mask.any(dim=max_axis, keepdim=True)
        s = s.masked_fill(~m, 0.0).sum(dim=mean_axis, keepdim=True)
        s = s / m.sum(dim=mean_axis, keepdim=True).clamp_min(1).to(s.dtype)
    return s.squeeze(max(max_axis, mean_axis)).squeeze(min(max_axis, mean_axis))


class ChamferSimilarity(nn.Module):
    def __init__(self, max_axis: int, mean_axis: int) -> None:
        super().__init__()
        self.max_axis, self.mean_axis = max_axis, mean_axis

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return chamfer_similarity(s, self.max_axis, self.mean_axis, mask)

    def extra_repr(self) -> str:
        return f"max_axis={self.max_axis}, mean_axis={self.mean_axis}"


def frame_to_frame_similarity(query: torch.Tensor, target: torch.Tensor, binary: bool = False) -> torch.Tensor:
    """Region chamfer between every frame pair: ``[N, Tq, R, D]`` × ``[N, Tt, R, D]`` → ``[N, Tq, Tt]``.

    ``binary`` divides the dot products by ``D`` (Hamming-style similarity of ±1 codes, in [-1, 1]).
    """
    if query.ndim != 4 or target.ndim != 4 or query.shape[0] != target.shape[0] or query.shape[-1] != target.shape[-1]:
        raise ValueError(f"frame_to_frame_similarity: expected query [N, Tq, R, D] and target [N, Tt, R, D], "
                         f"got {tuple(query.shape)} and {tuple(target.shape)}")
    sim = torch.einsum("biok,bjpk->biopj", query, target)  # [N, Tq, Rq, Rt, Tt]
    sim = sim.max(dim=3).values.mean(dim=2)
    if binary:
        sim = sim / target.shape[-1]
    return sim


def pair_similarity(model: nn.Module, query: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fine network (S²VS or a DnS fine student) on a batch of indexed pairs ``[B, Tq, R, D]``,
    ``[B, Tt, R, D]``, each already at least the network's ``min_frames`` long → similarity ``[B]``,
    the region-chamfer frame similarity ``[B, Tq, Tt]`` (the head's input, computed once) and the
    head's output after hard tanh ``[B, Tq // 4, Tt // 4]`` (the similarity is its row maxima's
    mean; :mod:`inference.fine_blocks` stitches it from tiles of long videos)."""
    f2f = frame_to_frame_similarity(query, target, binary=bool(getattr(model, "binary", False)))
    out, _ = model.visil_head(f2f.unsqueeze(1))
    out = hard_tanh(out[:, 0])
    return chamfer_similarity(out, max_axis=2, mean_axis=1), f2f, out


def repeat_to_min_length(x: torch.Tensor, min_len: int = 4, dim: int = 0) -> torch.Tensor:
    """Repeat a too-short video along time (concatenate it with itself, doubling, as S²VS does)
    until it has at least ``min_len`` frames."""
    T = x.shape[dim]
    if T == 0:
        raise ValueError(f"empty video: 0 frames along dim {dim} of {tuple(x.shape)}")
    while x.shape[dim] < min_len:
        x = torch.cat([x, x], dim=dim)
    return x


class VideoComparator(nn.Module):
    """ViSiL CNN on a frame-to-frame similarity matrix ``[N, 1, Tq, Tt]`` (or ``[N, Tq, Tt]``).

    ``padding='zero'`` is the DnS/S²VS layout (``ZeroPad2d`` / constant), ``'replicate'`` the
    original ViSiL. With ``mask`` ``[N, 1, Tq, Tt]`` the padded cells are zeroed after every conv
    and the mask is max-pooled with the activations; returns ``(sim, mask)``.
    Keys: ``conv1.{weight,bias}`` [32,1,3,3], ``conv2`` [64,32,3,3], ``conv3`` [128,64,3,3], ``fconv`` [1,128,1,1].
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, padding: str = "zero") -> None:
        super().__init__()
        if padding not in ("zero", "replicate"):
            raise ValueError(f"padding must be 'zero' or 'replicate', got {padding!r}")
        self.padding = padding
        self.conv1 = nn.Conv2d(in_channels, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.conv3 = nn.Conv2d(64, 128, 3)
        self.fconv = nn.Conv2d(128, out_channels, 1)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (1, 1, 1, 1), mode="constant" if self.padding == "zero" else "replicate")

    def forward(self, sim: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if sim.ndim == 3:
            sim = sim.unsqueeze(1)
        if sim.ndim != 4 or sim.shape[1] != self.conv1.in_channels:
            raise ValueError(f"VideoComparator: expected [N, {self.conv1.in_channels}, Tq, Tt], got {tuple(sim.shape)}")
        if min(sim.shape[-2:]) < 4:
            raise ValueError(f"VideoComparator: both videos need >= 4 frames (two 2x2 max-pools), got {tuple(sim.shape)}; "
                             "repeat short videos with repeat_to_min_length")
        if mask is not None:
            if mask.ndim == 3:
                mask = mask.unsqueeze(1)
            mask = mask.to(sim.dtype)
            sim = sim * mask
        x = F.relu(self.conv1(self._pad(sim)))
        x, mask = self._pool(x, mask)
        x = F.relu(self.conv2(self._pad(x)))
        x, mask = self._pool(x, mask)
        x = F.relu(self.conv3(self._pad(x)))
        if mask is not None:
            x = x * mask
        x = self.fconv(x)
        if mask is not None:
            x = x * mask
        return x, (mask.bool() if mask is not None else None)

    @staticmethod
    def _pool(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if mask is not None:
            x = x * mask
            mask = F.max_pool2d(mask, 2, 2)
        return F.max_pool2d(x, 2, 2), mask

    def extra_repr(self) -> str:
        return f"padding={self.padding}"
