"""Building blocks shared by the DnS, S²VS and ViSiL networks.

No layer downloads anything: weights (PCA ``{'mean','d','V'}``, ITQ ``{'proj'}``) are passed in
as tensors, the registry/fetch code finds the files.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VideoNormalizer",
    "PCALayer",
    "Attention",
    "BinarizationLayer",
    "NetVLAD",
    "check_video_features",
    "pca_projection",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_video_features(x: torch.Tensor, mask: torch.Tensor | None = None, *, dims: int | None = None,
                         name: str = "features") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Accept ``[T, R, D]`` (one video) or ``[N, T, R, D]``; return the 4-D form and its mask ``[N, T]``."""
    if x.ndim == 3:
        x = x.unsqueeze(0)
        if mask is not None and mask.ndim == 1:
            mask = mask.unsqueeze(0)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected region features [N, T, R, D] or [T, R, D], got shape {tuple(x.shape)}")
    if dims is not None and x.shape[-1] != dims:
        raise ValueError(f"{name}: expected D={dims} in [N, T, R, D], got shape {tuple(x.shape)}")
    if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"{name}: mask must be [N, T] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    return x, mask


class VideoNormalizer(nn.Module):
    """uint8/float RGB frames ``[N, H, W, 3]`` (or ``[N, 3, H, W]``) → ImageNet-normalised ``[N, 3, H, W]``."""

    def __init__(self, mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor([255.0]))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or (frames.shape[-1] != 3 and frames.shape[1] != 3):
            raise ValueError(f"frames: expected [N, H, W, 3] or [N, 3, H, W], got shape {tuple(frames.shape)}")
        x = frames.to(self.mean.dtype)  # float32, or the model's dtype after .half()
        if x.shape[-1] == 3 and x.shape[1] != 3:
            x = x.permute(0, 3, 1, 2)
        elif x.shape[-1] == 3 and x.shape[1] == 3:  # 3x3 images are ambiguous: NHWC wins (decoder layout)
            x = x.permute(0, 3, 1, 2)
        return ((x / self.scale) - self.mean) / self.std


def pca_projection(mean: torch.Tensor, d: torch.Tensor, V: torch.Tensor, n_components: int | None = None,
                   eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, DVt)`` from a ``{'mean','d','V'}`` file, keeping the ``n_components`` largest eigenvalues.

    ``DVt = V[:, top] · diag(1/sqrt(d[top] + eps))`` so that ``(x - mean) @ DVt`` whitens.
    """
    if V.ndim != 2 or d.ndim != 1 or mean.ndim != 1 or V.shape[0] != mean.shape[0] or V.shape[1] != d.shape[0]:
        raise ValueError(f"PCA: expected mean [D], d [K], V [D, K]; got {tuple(mean.shape)}, {tuple(d.shape)}, {tuple(V.shape)}")
    k = d.shape[0] if n_components is None else int(n_components)
    if not 0 < k <= d.shape[0]:
        raise ValueError(f"PCA: n_components must be in 1..{d.shape[0]}, got {k}")
    idx = torch.argsort(d, descending=True)[:k]
    DVt = V[:, idx] @ torch.diag(1.0 / torch.sqrt(d[idx] + eps))
    return mean.clone(), DVt.contiguous()


class PCALayer(nn.Module):
    """PCA whitening: ``x - mean`` → ``@ DVt`` → L2. Input ``[..., D_in]``, output ``[..., D_out]``."""

    def __init__(self, in_dims: int, out_dims: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dims))
        self.register_buffer("DVt", torch.eye(in_dims, out_dims))

    @classmethod
    def from_pca(cls, mean: torch.Tensor, d: torch.Tensor, V: torch.Tensor, n_components: int | None = None,
                 eps: float = 1e-7) -> "PCALayer":
        m, DVt = pca_projection(mean, d, V, n_components, eps)
        layer = cls(DVt.shape[0], DVt.shape[1])
        layer.mean.copy_(m)
        layer.DVt.copy_(DVt)
        return layer

    @property
    def in_dims(self) -> int:
        return int(self.DVt.shape[0])

    @property
    def out_dims(self) -> int:
        return int(self.DVt.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dims:
            raise ValueError(f"PCA: expected [..., {self.in_dims}], got shape {tuple(x.shape)}")
        x = (x - self.mean) @ self.DVt
        return F.normalize(x, p=2, dim=-1)

    def extra_repr(self) -> str:
        return f"{self.in_dims} -> {self.out_dims}"


class Attention(nn.Module):
    """Region attention, two published forms; returns ``(x * w, w)``.

    - ``norm=False`` (DnS, S²VS): ``w = sigmoid(context · tanh(transform(x)))``;
      keys ``transform.{weight,bias}``, ``context_vector.weight``.
    - ``norm=True`` (original ViSiL): ``w = (context · x) / ||context|| / 2 + 0.5``, no transform;
      key ``context_vector.weight``.
    """

    def __init__(self, dims: int, norm: bool = False) -> None:
        super().__init__()
        self.dims = dims
        self.norm = norm
        if not norm:
            self.transform = nn.Linear(dims, dims)
        self.context_vector = nn.Linear(dims, 1, bias=False)
        nn.init.xavier_uniform_(self.context_vector.weight)
        if not norm:
            nn.init.xavier_uniform_(self.transform.weight)
            nn.init.zeros_(self.transform.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] != self.dims:
            raise ValueError(f"Attention: expected [..., {self.dims}] (e.g. [N, T, R, D]), got shape {tuple(x.shape)}")
        if self.norm:
            w = self.context_vector.weight
            weights = (x @ (w / w.norm(dim=-1, keepdim=True)).t()) / 2.0 + 0.5
        else:
            weights = torch.sigmoid(self.context_vector(torch.tanh(self.transform(x))))
        return x * weights, weights

    def extra_repr(self) -> str:
        return f"dims={self.dims}, norm={self.norm}"


class BinarizationLayer(nn.Module):
    """Projection ``W`` [D, bits] (ITQ-initialised) then sign at inference (erf relaxation in training)."""

    def __init__(self, dims: int, bits: int | None = None, sigma: float = 1e-6) -> None:
        super().__init__()
        self.sigma = sigma
        self.W = nn.Parameter(torch.empty(dims, bits or dims))
        nn.init.orthogonal_(self.W)

    @classmethod
    def from_itq(cls, proj: torch.Tensor) -> "BinarizationLayer":
        if proj.ndim != 2:
            raise ValueError(f"ITQ: expected proj [D, bits], got {tuple(proj.shape)}")
        layer = cls(proj.shape[0], proj.shape[1])
        with torch.no_grad():
            layer.W.copy_(proj)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.W.shape[0]:
            raise ValueError(f"Binarization: expected [..., {self.W.shape[0]}], got shape {tuple(x.shape)}")
        x = F.normalize(x, p=2, dim=-1) @ self.W
        if self.training:
            return torch.erf(x / math.sqrt(2 * self.sigma))
        return torch.sign(x)

    def extra_repr(self) -> str:
        return f"dims={self.W.shape[0]}, bits={self.W.shape[1]}"


class NetVLAD(nn.Module):
    """NetVLAD over ``[N, C, T, R]`` with optional frame mask ``[N, T]`` → LayerNorm'd ``[N, outdims]``."""

    def __init__(self, dims: int, num_clusters: int, outdims: int | None = None) -> None:
        super().__init__()
        self.dims = dims
        self.num_clusters = num_clusters
        self.centroids = nn.Parameter(torch.randn(num_clusters, dims) / math.sqrt(dims))
        self.conv = nn.Conv2d(dims, num_clusters, kernel_size=1, bias=False)
        self.outdims = outdims if outdims is not None else num_clusters * dims
        if outdims is not None:
            self.reduction_layer = nn.Linear(num_clusters * dims, outdims, bias=False)
        self.norm = nn.LayerNorm(self.outdims)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.dims:
            raise ValueError(f"NetVLAD: expected [N, C={self.dims}, T, R], got shape {tuple(x.shape)}")
        N, C, T, R = x.shape
        assign = F.softmax(self.conv(x).view(N, self.num_clusters, -1), dim=1)  # [N, K, T*R]
        if mask is not None:
            keep = mask.to(x.dtype).unsqueeze(-1).expand(N, T, R).reshape(N, 1, T * R)
            assign = assign * keep
        flat = x.view(N, C, T * R)
        # sum_i a_k(i) (x_i - c_k) = a @ x^T - (sum_i a_k(i)) c_k
        vlad = torch.bmm(assign, flat.transpose(1, 2)) - assign.sum(-1, keepdim=True) * self.centroids.unsqueeze(0)
        vlad = F.normalize(vlad, p=2, dim=2).reshape(N, -1)
        vlad = F.normalize(vlad, p=2, dim=1)
        if hasattr(self, "reduction_layer"):
            vlad = self.reduction_layer(vlad)
        return self.norm(vlad)

    def extra_repr(self) -> str:
        return f"dims={self.dims}, clusters={self.num_clusters}, outdims={self.outdims}"
