"""Resolution-Align Transformer layer (DRCA Sect. 3.2, Eq. 7-8) and the mixed-resolution token state.

A layer holds CLS ``[B, 1, C]``, full-resolution frames ``hi [B, K, g*g, C]`` and (after DCCM)
compressed frames ``lo [B, T-K, (g/h)^2, C]``. Without ``lo`` it is a plain TimeSformer
divided space-time block over all T frames.

* temporal attention: ``hi`` is average-pooled to the low grid, concatenated with ``lo`` along time,
  attended per spatial location; the update is bilinearly up-sampled back onto ``hi`` (Eq. 7) and
  added to ``lo`` as is (Eq. 8);
* spatial attention: per frame at its own resolution (``attn`` for ``hi``, ``attn_low`` for ``lo``);
  the per-frame CLS outputs are averaged over all T frames;
* FFN: shared by all tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference.drca.vit import FFNWithNorm, SpatialAttentionWithNorm, TemporalAttentionWithNorm


class TokenState(NamedTuple):
    cls: Tensor  # [B, 1, C]
    hi: Tensor  # [B, K, g*g, C] full-resolution frames (all T before DCCM)
    lo: Tensor | None  # [B, T-K, (g/h)^2, C] compressed frames, None before DCCM / without compression


def _to_grid(x: Tensor) -> tuple[Tensor, int, int]:
    b, f, p, c = x.shape
    side = int(round(p**0.5))
    if side * side != p:
        raise ValueError(f"frame tokens must form a square grid, got {p} tokens")
    return x.reshape(b * f, side, side, c).permute(0, 3, 1, 2), b, f


def downsample_tokens(x: Tensor, factor: int) -> Tensor:
    """``[B, F, g*g, C] -> [B, F, (g/h)^2, C]`` by average pooling (D(.) in the paper)."""
    grid, b, f = _to_grid(x)
    out = F.avg_pool2d(grid, kernel_size=factor)
    return out.flatten(2).transpose(1, 2).reshape(b, f, -1, x.shape[-1])


def upsample_tokens(x: Tensor, factor: int) -> Tensor:
    """``[B, F, n*n, C] -> [B, F, (n*h)^2, C]`` bilinear (align_corners, as nn.UpsamplingBilinear2d)."""
    grid, b, f = _to_grid(x)
    out = F.interpolate(grid, scale_factor=factor, mode="bilinear", align_corners=True)
    return out.flatten(2).transpose(1, 2).reshape(b, f, -1, x.shape[-1])


class RATLayer(nn.Module):
    """One divided space-time block; ``low_res=True`` makes it a RAT layer (after DCCM)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, low_res: bool, down_factor: int = 2) -> None:
        super().__init__()
        self.down_factor = down_factor
        self.attentions = nn.ModuleList(
            [TemporalAttentionWithNorm(dim, num_heads), SpatialAttentionWithNorm(dim, num_heads, low_res)]
        )
        self.ffns = nn.ModuleList([FFNWithNorm(dim, mlp_ratio)])

    def forward(self, state: TokenState) -> TokenState:
        cls, hi, lo = state
        temporal, spatial = self.attentions[0], self.attentions[1]
        k = hi.shape[1]

        # temporal attention (Eq. 7-8)
        if lo is None:
            hi = hi + temporal(hi)
        else:
            att = temporal(torch.cat([downsample_tokens(hi, self.down_factor), lo], dim=1))
            hi = hi + upsample_tokens(att[:, :k], self.down_factor)
            lo = lo + att[:, k:]

        # spatial attention per frame at its own resolution
        cls_hi, upd_hi = spatial.attend(cls, hi)
        hi = hi + upd_hi
        cls_updates = cls_hi
        if lo is not None:
            cls_lo, upd_lo = spatial.attend(cls, lo, low=True)
            lo = lo + upd_lo
            cls_updates = torch.cat([cls_hi, cls_lo], dim=1)
        cls = cls + cls_updates.mean(dim=1, keepdim=True)

        ffn = self.ffns[0]
        return TokenState(ffn(cls), ffn(hi), None if lo is None else ffn(lo))
