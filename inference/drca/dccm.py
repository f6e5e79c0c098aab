"""DCCM: Differentiable Context-aware Compression Module (DRCA Sect. 3.1).

``rank_net.score_network`` predicts one saliency score per frame from the 3rd block's tokens;
the top-K frames stay at full resolution, selected with perturbed maxima during training (soft,
differentiable) and hard top-K in eval mode. ``compression`` is the Saliency Frame Reference
Compressor (Eq. 5-6): down-sampled queries from each non-salient frame cross-attend to the
down-sampled tokens of all K salient frames, plus the residual ``D(t^NK)``, so every non-salient
frame goes from g x g to (g/h) x (g/h) tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from inference.drca.rank import perturbed_topk, split_indices
from inference.drca.rat import downsample_tokens
from inference.drca.vit import LN_EPS


def _grid_side(p: int) -> int:
    side = int(round(p**0.5))
    if side * side != p:
        raise ValueError(f"frame tokens must form a square grid, got {p} tokens")
    return side


class ScoreNetwork(nn.Module):
    """``[B, T, g*g, C] -> [B, T]`` saliency scores, min-max normalised to [0, 1] per clip.

    Conv3d (1x3x3, stride 1x2x2) + BN -> per-frame spatial mean and max -> LN + Linear + GELU ->
    local half per frame, global half averaged over frames -> three-layer MLP -> 1 score.
    The input is detached: the ranking loss trains only this network, not the backbone.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.downsample = nn.Conv3d(dim, dim, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.bn = nn.BatchNorm3d(dim)
        self.in_conv = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, 2 * dim), nn.GELU())
        self.out_conv = nn.Sequential(
            nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"ScoreNetwork expects [B, T, P, C], got {tuple(x.shape)}")
        b, t, p, c = x.shape
        side = _grid_side(p)
        vol = x.detach().reshape(b, t, side, side, c).permute(0, 4, 1, 2, 3)  # [B, C, T, g, g]
        vol = self.bn(self.downsample(vol)).flatten(3)  # [B, C, T, g'^2]
        feat = torch.cat([vol.mean(-1), vol.amax(-1)], dim=1).transpose(1, 2)  # [B, T, 2C]
        feat = self.in_conv(feat)
        local, context = feat.split(c, dim=-1)
        feat = torch.cat([local, context.mean(dim=1, keepdim=True).expand_as(context)], dim=-1)
        scores = self.out_conv(feat).squeeze(-1)  # [B, T]
        low = scores.amin(dim=1, keepdim=True)
        high = scores.amax(dim=1, keepdim=True)
        return (scores - low) / (high - low + 1e-5)


class RankNet(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score_network = ScoreNetwork(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.score_network(x)


def _pool_frames(x: Tensor, pool: nn.Conv2d, norm: nn.LayerNorm) -> Tensor:
    """Learned spatial down-sampling of every frame: ``[B, F, g*g, C] -> [B, F, (g/h)^2, C]``."""
    b, f, p, c = x.shape
    side = _grid_side(p)
    grid = pool(x.reshape(b * f, side, side, c).permute(0, 3, 1, 2))
    return norm(grid.flatten(2).transpose(1, 2)).reshape(b, f, -1, c)


class ReferenceAttention(nn.Module):
    """Eq. 5: ``Softmax(D(w_a t^NK) D(w_b t^K)^T / sqrt(c)) D(w_c t^K)`` with h^2 compression.

    D is a depth-wise strided conv (kernel 2h-1, stride h) followed by LayerNorm, one per q/k/v.
    """

    def __init__(self, dim: int, num_heads: int, factor: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        for name in ("q", "k", "v"):
            conv = nn.Conv2d(dim, dim, 2 * factor - 1, stride=factor, padding=factor - 1, groups=dim, bias=False)
            setattr(self, f"pool_{name}", conv)
            setattr(self, f"norm_{name}", nn.LayerNorm(dim, eps=LN_EPS))

    def _heads(self, x: Tensor) -> Tensor:
        b, f, n, c = x.shape
        return x.reshape(b, f * n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, non_salient: Tensor, salient: Tensor) -> Tensor:
        b, j, _, c = non_salient.shape
        q = _pool_frames(self.q(non_salient), self.pool_q, self.norm_q)
        k = _pool_frames(self.k(salient), self.pool_k, self.norm_k)
        v = _pool_frames(self.v(salient), self.pool_v, self.norm_v)
        n = q.shape[2]
        out = nn.functional.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))
        return self.proj(out.transpose(1, 2).reshape(b, j, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.act = nn.GELU()
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SaliencyReferenceCompressor(nn.Module):
    """``(salient [B, K, g*g, C], non_salient [B, T-K, g*g, C]) -> [B, T-K, (g/h)^2, C]`` (Eq. 5-6 + MLP)."""

    def __init__(self, dim: int, num_heads: int, factor: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.factor = factor
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = ReferenceAttention(dim, num_heads, factor)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, salient: Tensor, non_salient: Tensor) -> Tensor:
        compressed = self.attn(self.norm1(non_salient), self.norm1(salient)) + downsample_tokens(
            non_salient, self.factor
        )  # Eq. 6
        return compressed + self.mlp(self.norm2(compressed))


class DCCMOutput(NamedTuple):
    salient: Tensor  # [B, K, g*g, C]
    compressed: Tensor  # [B, T-K, (g/h)^2, C]
    scores: Tensor  # [B, T] saliency in [0, 1]
    salient_index: Tensor | None  # [B, K] frame indices (eval only; soft selection in training)


class DCCM(nn.Module):
    def __init__(
        self, dim: int, k: int, num_heads: int, factor: int, sigma: float, num_samples: int, mlp_ratio: float = 4.0
    ) -> None:
        super().__init__()
        self.k = k
        self.sigma = sigma
        self.num_samples = num_samples
        self.compression = SaliencyReferenceCompressor(dim, num_heads, factor, mlp_ratio)
        self.rank_net = RankNet(dim)

    def forward(self, x: Tensor) -> DCCMOutput:
        if x.dim() != 4:
            raise ValueError(f"DCCM expects frame tokens [B, T, P, C], got {tuple(x.shape)}")
        scores = self.rank_net(x)
        index: Tensor | None = None
        if self.training:
            sel_top, sel_rest = perturbed_topk(scores, self.k, self.sigma, self.num_samples)
            salient = torch.einsum("bkt,btpc->bkpc", sel_top, x)
            rest = torch.einsum("bjt,btpc->bjpc", sel_rest, x)
        else:
            index, rest_index = split_indices(scores, self.k)
            salient = x[torch.arange(x.shape[0], device=x.device)[:, None], index]
            rest = x[torch.arange(x.shape[0], device=x.device)[:, None], rest_index]
        return DCCMOutput(salient, self.compression(salient, rest), scores, index)
