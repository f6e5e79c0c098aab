"""Divided space-time ViT building blocks with mmaction/mmcv parameter names.

Names follow the published DRCA checkpoint layout (anchors.md §1.5) so that the state dict maps
1:1: ``attentions.0`` = temporal (``norm``, ``attn``, ``temporal_fc``), ``attentions.1`` = spatial
(``norm``, ``attn`` and, in RAT layers, ``norm_low``/``attn_low``), ``ffns.0`` = ``norm`` +
``layers.0.0`` / ``layers.1``. ``attn`` mirrors ``nn.MultiheadAttention`` (``in_proj_weight``,
``in_proj_bias``, ``out_proj``) but calls ``scaled_dot_product_attention`` directly, so FLOP counters
see the attention matmuls and eval mode never takes the fused fast path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6


class PatchEmbed(nn.Module):
    """``[N, 3, H, W] -> [N, (H/p)*(W/p), C]`` by a strided convolution (``projection``)."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"PatchEmbed expects [N, 3, H, W], got {tuple(x.shape)}")
        return self.projection(x).flatten(2).transpose(1, 2)


class MultiheadAttention(nn.Module):
    """Self-attention on ``[B, L, C]`` with ``nn.MultiheadAttention``'s parameter names."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, length, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(b, length, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.out_proj(out.transpose(1, 2).reshape(b, length, c))


class TemporalAttentionWithNorm(nn.Module):
    """Attention along the frame axis at each spatial location: ``[B, T, P, C] -> [B, T, P, C]`` update."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = MultiheadAttention(dim, num_heads)
        self.temporal_fc = nn.Linear(dim, dim)
        # TimeSformer initialises the temporal branch as identity (zero update).
        nn.init.zeros_(self.temporal_fc.weight)
        nn.init.zeros_(self.temporal_fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, t, p, c = x.shape
        seq = x.permute(0, 2, 1, 3).reshape(b * p, t, c)
        out = self.temporal_fc(self.attn(self.norm(seq)))
        return out.reshape(b, p, t, c).permute(0, 2, 1, 3)


class SpatialAttentionWithNorm(nn.Module):
    """Attention within each frame with the CLS token prepended (TimeSformer divided attention).

    ``low_res`` adds a second norm/attention pair (``norm_low``/``attn_low``) used for the
    compressed non-salient frames of RAT layers.
    """

    def __init__(self, dim: int, num_heads: int, low_res: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = MultiheadAttention(dim, num_heads)
        self.low_res = low_res
        if low_res:
            self.norm_low = nn.LayerNorm(dim, eps=LN_EPS)
            self.attn_low = MultiheadAttention(dim, num_heads)

    def attend(self, cls: Tensor, frames: Tensor, low: bool = False) -> tuple[Tensor, Tensor]:
        """``cls [B, 1, C]``, ``frames [B, F, P, C]`` -> (per-frame CLS updates [B, F, C], frame updates [B, F, P, C])."""
        b, f, p, c = frames.shape
        if low and not self.low_res:
            raise RuntimeError("this layer has no low-resolution attention (it precedes DCCM)")
        norm, attn = (self.norm_low, self.attn_low) if low else (self.norm, self.attn)
        tokens = torch.cat([cls.expand(b, f, c).reshape(b * f, 1, c), frames.reshape(b * f, p, c)], dim=1)
        out = attn(norm(tokens)).reshape(b, f, p + 1, c)
        return out[:, :, 0], out[:, :, 1:]


class FFNWithNorm(nn.Module):
    """Pre-norm MLP with residual (``norm``, ``layers.0.0`` Linear + GELU, ``layers.1`` Linear)."""

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden), nn.GELU()), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(self.norm(x))
