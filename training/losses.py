"""Contrastive / metric losses shared by the trainers (TCA, clip autoencoder, S²VS, ...).

All similarity-based losses take a similarity matrix ``sim`` ``[B, M]`` (row = anchor, column =
candidate, higher = more similar; cosine of unit vectors for circle loss) and a boolean
``positive`` mask ``[B, M]``; an optional ``valid`` mask ``[B, M]`` drops columns from a row
(e.g. the anchor itself, or memory-bank entries of the same video). Every row needs at least one
positive and one valid negative. Convenience helpers build ``sim``/``positive`` for the usual
"one positive key + a bank of negatives" (MoCo) layout.

- :class:`InfoNCELoss`: ``-mean_p log softmax(sim / τ)_p`` over the valid columns (multi-positive
  form of InfoNCE; with one positive it is the usual cross-entropy on ``[s_p, s_n...] / τ``).
- :class:`CircleLoss` (Sun et al. 2020, re-derived from the paper):
  ``log(1 + Σ_n exp(γ α_n (s_n − Δ_n)) · Σ_p exp(−γ α_p (s_p − Δ_p)))`` with
  ``α_p = [1 + m − s_p]₊``, ``α_n = [s_n + m]₊`` (detached), ``Δ_p = 1 − m``, ``Δ_n = m``.
  (TCA's repo indexes α by row instead of column — a bug, digest §4.5; not copied.)
- :class:`TripletLoss`: seed 004 Eq. (4) on squared Euclidean distances.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CircleLoss", "InfoNCELoss", "TripletLoss", "moco_logits"]


def _check(sim: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if sim.ndim != 2:
        raise ValueError(f"sim must be [B, M], got {tuple(sim.shape)}")
    if positive.shape != sim.shape or positive.dtype != torch.bool:
        raise ValueError(f"positive must be bool {tuple(sim.shape)}, got {tuple(positive.shape)} {positive.dtype}")
    v = torch.ones_like(positive) if valid is None else valid
    if v.shape != sim.shape or v.dtype != torch.bool:
        raise ValueError(f"valid must be bool {tuple(sim.shape)}, got {tuple(v.shape)} {v.dtype}")
    pos, neg = positive & v, ~positive & v
    if not bool(pos.any(1).all()):
        raise ValueError("every row needs at least one valid positive")
    if not bool(neg.any(1).all()):
        raise ValueError("every row needs at least one valid negative")
    return v


def moco_logits(
    query: torch.Tensor, key: torch.Tensor, bank: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``query``/``key`` ``[B, D]`` (unit), ``bank`` ``[K, D]`` → (sim ``[B, 1+K]``, positive mask).

    Column 0 is ``query·key`` (the positive), the rest ``query·bank``.
    """
    if query.ndim != 2 or key.shape != query.shape or bank.ndim != 2 or bank.shape[1] != query.shape[1]:
        raise ValueError(f"need query/key [B, D], bank [K, D]; got {tuple(query.shape)} {tuple(key.shape)} {tuple(bank.shape)}")
    sim = torch.cat([(query * key).sum(1, keepdim=True), query @ bank.T], dim=1)
    positive = torch.zeros_like(sim, dtype=torch.bool)
    positive[:, 0] = True
    return sim, positive


class InfoNCELoss(nn.Module):
    """InfoNCE with temperature ``τ`` (TCA ablation: τ = 1/256 ≈ circle; S²VS: τ = 0.03)."""

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = temperature

    def __repr__(self) -> str:
        return f"InfoNCELoss(temperature={self.temperature})"

    def forward(self, sim: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        v = _check(sim, positive, valid)
        logits = (sim / self.temperature).masked_fill(~v, float("-inf"))
        logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        pos = positive & v
        per_row = -(logp.masked_fill(~pos, 0.0)).sum(1) / pos.sum(1)
        return per_row.mean()


class CircleLoss(nn.Module):
    """Circle loss with scale ``γ`` and relaxation margin ``m`` (TCA: γ = 256, m = 0.25)."""

    def __init__(self, gamma: float = 256.0, margin: float = 0.25) -> None:
        super().__init__()
        self.gamma = gamma
        self.margin = margin

    def __repr__(self) -> str:
        return f"CircleLoss(gamma={self.gamma}, margin={self.margin})"

    def forward(self, sim: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        v = _check(sim, positive, valid)
        m = self.margin
        s_det = sim.detach()
        alpha_p = torch.clamp_min(1.0 + m - s_det, 0.0)
        alpha_n = torch.clamp_min(s_det + m, 0.0)
        logit_p = -self.gamma * alpha_p * (sim - (1.0 - m))
        logit_n = self.gamma * alpha_n * (sim - m)
        pos, neg = positive & v, ~positive & v
        lse_p = torch.logsumexp(logit_p.masked_fill(~pos, float("-inf")), dim=1)
        lse_n = torch.logsumexp(logit_n.masked_fill(~neg, float("-inf")), dim=1)
        return F.softplus(lse_p + lse_n).mean()


class TripletLoss(nn.Module):
    """``max(0, ||a − p||² − ||a − n||² + margin)`` averaged over the batch (seed 004 Eq. 4).

    ``reduction="none"`` returns the per-triplet losses ``[B]`` (used for hard-sample mining).
    """

    def __init__(self, margin: float = 0.2, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "none"):
            raise ValueError("reduction must be 'mean' or 'none'")
        self.margin = margin
        self.reduction = reduction

    def __repr__(self) -> str:
        return f"TripletLoss(margin={self.margin})"

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        if anchor.ndim != 2 or positive.shape != anchor.shape or negative.shape != anchor.shape:
            raise ValueError(f"anchor/positive/negative must be the same [B, D], got {tuple(anchor.shape)} {tuple(positive.shape)} {tuple(negative.shape)}")
        d_ap = (anchor - positive).pow(2).sum(1)
        d_an = (anchor - negative).pow(2).sum(1)
        loss = F.relu(d_ap - d_an + self.margin)
        return loss if self.reduction == "none" else loss.mean()
