"""Frame features: L3-iMAC region vectors and the full frames → ``[T, R, D]`` extractor.

Region pooling (DnS/S²VS): every tapped feature map ``[N, C, H, W]`` is max-pooled with a
square kernel ``s`` and stride ``ceil(s/2)`` where ``s`` gives a 3×3 grid at 224 px
(ResNet-50: 28/14/6/3 for layer1..4), L2-normalised over channels, adaptive-max-pooled to the
last tap's grid and L2-normalised again; the taps are concatenated per region (ResNet-50:
256+512+1024+2048 = 3840) and each region vector is L2-normalised. PCA whitening then maps
to ``[T, R, 512]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from inference.layers import IMAGENET_MEAN, IMAGENET_STD, PCALayer, VideoNormalizer

__all__ = ["region_kernel", "l3imac_regions", "FrameFeatureExtractor", "extract_in_batches"]


def region_kernel(size: int, regions: int = 3) -> int:
    """Kernel ``s`` such that ``max_pool2d(s, ceil(s/2))`` gives ``regions`` cells over ``size`` pixels.

    Reproduces the published table at 224 px (56→28, 28→14, 14→6, 7→3).
    """
    table = {56: 28, 28: 14, 14: 6, 7: 3}
    if regions == 3 and size in table:
        return table[size]
    for s in range(size, 0, -1):
        if (size - s) // math.ceil(s / 2) + 1 >= regions:
            return s
    return 1


def l3imac_regions(activations: Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
                   kernels: Sequence[int] | None = None) -> torch.Tensor:
    """Feature maps ``[N, C_i, H_i, W_i]`` (shallow → deep) → region vectors ``[N, R, sum C_i]``.

    ``kernels`` default to :func:`region_kernel` of each map's short side (28/14/6/3 for ResNet-50 at
    224). Backbones fix them per tap (``region_kernels``) so that other input sizes give more
    regions, as in the official code (256×340 → 15 regions).
    """
    maps = list(activations.values()) if isinstance(activations, Mapping) else list(activations)
    if not maps:
        raise ValueError("l3imac_regions: no feature maps given")
    for m in maps:
        if m.ndim != 4:
            raise ValueError(f"l3imac_regions: each activation must be [N, C, H, W], got {tuple(m.shape)}")
    if kernels is None:
        kernels = [region_kernel(min(m.shape[-2:])) for m in maps]
    pooled = []
    for m, s in zip(maps, kernels):
        r = F.max_pool2d(m, kernel_size=s, stride=int(math.ceil(s / 2)))
        pooled.append(F.normalize(r, p=2, dim=1))
    grid = pooled[-1].shape[-2:]
    pooled = [F.normalize(F.adaptive_max_pool2d(p, grid), p=2, dim=1) for p in pooled]
    x = torch.cat(pooled, dim=1)  # [N, C, h, w]
    x = x.flatten(2).transpose(1, 2)  # [N, R, C]
    return F.normalize(x, p=2, dim=-1)


class FrameFeatureExtractor(nn.Module):
    """uint8 RGB frames ``[T, H, W, 3]`` → whitened region features ``[T, R, D]``.

    ``backbone`` must return the list of tapped feature maps (see :mod:`inference.backbones`);
    ``pca`` is optional (without it the output is the raw L2-normalised region vectors).
    """

    def __init__(self, backbone: nn.Module, pca: PCALayer | None = None, kernels: Sequence[int] | None = None) -> None:
        super().__init__()
        mean = getattr(backbone, "input_mean", IMAGENET_MEAN)
        std = getattr(backbone, "input_std", IMAGENET_STD)
        self.normalizer = VideoNormalizer(mean, std)
        self.backbone = backbone
        self.pca = pca
        if kernels is None:
            kernels = getattr(backbone, "region_kernels", None)
        self.kernels = list(kernels) if kernels is not None else None

    def regions(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4:
            raise ValueError(f"frames: expected [T, H, W, 3] uint8 RGB, got shape {tuple(frames.shape)}")
        return l3imac_regions(self.backbone(self.normalizer(frames)), self.kernels)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.regions(frames)
        return self.pca(x) if self.pca is not None else x


def extract_in_batches(extractor: nn.Module, frames: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Run ``extractor`` over uint8 frames ``[T, H, W, 3]`` in chunks of ``batch_size`` (no grad) → ``[T, R, D]``."""
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"frames: expected a non-empty [T, H, W, 3] uint8 tensor, got {tuple(frames.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(iter(extractor.parameters()), torch.empty(0)).device
    with torch.inference_mode():
        parts = [extractor(frames[i:i + batch_size].to(device)) for i in range(0, frames.shape[0], batch_size)]
    return torch.cat(parts)
