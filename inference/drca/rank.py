"""Differentiable top-K frame selection by perturbed maxima (Berthet et al. 2020; DRCA Eq. 3-4).

Forward: the expectation, over ``n`` Gaussian perturbations ``s + sigma * Z``, of the one-hot
indicator matrices of the top-K frames (kept in temporal order) and of the remaining T-K frames.
Backward: the perturbed-gradient estimator ``J = E[argmax(s + sigma Z) Z^T] / sigma`` (Eq. 4),
contracted with the upstream gradients of both indicator matrices.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_scores(scores: Tensor, k: int) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, T], got shape {tuple(scores.shape)}")
    if not 0 < k < scores.shape[1]:
        raise ValueError(f"k must be in (0, T={scores.shape[1]}), got {k}")


def split_indices(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Hard selection: ([B, K] indices of the K highest scores, [B, T-K] the rest), both sorted by time."""
    _check_scores(scores, k)
    top = scores.topk(k, dim=-1).indices.sort(dim=-1).values
    member = torch.zeros_like(scores, dtype=torch.int8).scatter_(-1, top, 1)
    rest = torch.argsort(member, dim=-1, stable=True)[..., : scores.shape[-1] - k]
    return top, rest


class PerturbedTopK(torch.autograd.Function):
    """``(scores [B, T]) -> (salient [B, K, T], rest [B, T-K, T])`` soft indicator matrices."""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, k: int, sigma: float, num_samples: int) -> tuple[Tensor, Tensor]:
        b, t = scores.shape
        noise = torch.randn(b, num_samples, t, device=scores.device, dtype=scores.dtype)
        perturbed = scores.detach().unsqueeze(1) + sigma * noise  # [B, n, T]
        top, rest = split_indices(perturbed.reshape(b * num_samples, t), k)
        one_hot_top = F.one_hot(top, t).to(scores.dtype).reshape(b, num_samples, k, t)
        one_hot_rest = F.one_hot(rest, t).to(scores.dtype).reshape(b, num_samples, t - k, t)
        ctx.save_for_backward(noise, one_hot_top, one_hot_rest)
        ctx.sigma = sigma
        return one_hot_top.mean(dim=1), one_hot_rest.mean(dim=1)

    @staticmethod
    def backward(ctx: Any, grad_top: Tensor, grad_rest: Tensor) -> tuple[Tensor | None, None, None, None]:
        noise, one_hot_top, one_hot_rest = ctx.saved_tensors
        # <dL/dY, Y(s + sigma Z)> per sample, then the Eq. 4 estimator E[. * Z] / sigma.
        weight = torch.einsum("bnkt,bkt->bn", one_hot_top, grad_top)
        weight = weight + torch.einsum("bnjt,bjt->bn", one_hot_rest, grad_rest)
        grad_scores = torch.einsum("bn,bnt->bt", weight, noise) / (noise.shape[1] * ctx.sigma)
        return grad_scores, None, None, None


def perturbed_topk(scores: Tensor, k: int, sigma: float = 0.05, num_samples: int = 500) -> tuple[Tensor, Tensor]:
    """Soft top-K / rest indicator matrices ``[B, K, T]``, ``[B, T-K, T]`` (rows sum to 1)."""
    _check_scores(scores, k)
    out: tuple[Tensor, Tensor] = PerturbedTopK.apply(scores, k, sigma, num_samples)
    return out
