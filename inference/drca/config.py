"""DRCA model configurations (DRCA-S / DRCA-B from the seed, plus a tiny CPU config for tests)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class DRCAConfig:
    """Hyper-parameters of the divided space-time ViT with DCCM and RAT layers.

    ``comp_insert_layer`` is the number of full-resolution blocks before DCCM (3 in the seed:
    "third transformer block output"); every later block is a RAT layer. ``down_factor`` is h
    (14x14 -> 7x7 tokens for non-salient frames at h = 2).
    """

    embed_dim: int = 384
    num_heads: int = 6
    num_layers: int = 12
    num_frames: int = 8
    img_size: int = 224
    patch_size: int = 16
    mlp_ratio: float = 4.0
    comp_insert_layer: int = 3
    comp_k: int = 4
    down_factor: int = 2
    sigma: float = 0.05
    num_samples: int = 500
    compressor_heads: int = 2

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        if self.grid % self.down_factor:
            raise ValueError(f"token grid {self.grid} must be divisible by down_factor {self.down_factor}")
        if not 0 < self.comp_k < self.num_frames:
            raise ValueError(f"comp_k must be in (0, num_frames={self.num_frames}), got {self.comp_k}")
        if not 0 < self.comp_insert_layer < self.num_layers:
            raise ValueError(f"comp_insert_layer must be in (0, num_layers={self.num_layers})")
        if self.embed_dim % self.compressor_heads:
            raise ValueError("embed_dim must be divisible by compressor_heads")

    @property
    def grid(self) -> int:
        """Tokens per side of one full-resolution frame (14 at 224 px / patch 16)."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def with_k(self, k: int) -> "DRCAConfig":
        return replace(self, comp_k=k)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DRCAConfig":
        return cls(**data)


def drca_s(k: int = 4, img_size: int = 224) -> DRCAConfig:
    """DRCA-S-K{k}: 384-d, 6 heads, 12 layers, 8 frames."""
    return DRCAConfig(embed_dim=384, num_heads=6, comp_k=k, img_size=img_size)


def drca_b(k: int = 4, img_size: int = 224) -> DRCAConfig:
    """DRCA-B-K{k}: 768-d, 12 heads, 12 layers, 8 frames."""
    return DRCAConfig(embed_dim=768, num_heads=12, comp_k=k, img_size=img_size)


def drca_tiny(k: int = 3, img_size: int = 64) -> DRCAConfig:
    """CPU-sized config for tests and toy training: 64-d, 2 heads, 4 layers, 64 px (4x4 tokens)."""
    return DRCAConfig(
        embed_dim=64, num_heads=2, num_layers=4, comp_k=k, img_size=img_size, comp_insert_layer=2, num_samples=100
    )


PRESETS = {"tiny": drca_tiny, "s": drca_s, "b": drca_b}


def get_config(name: str, k: int | None = None, img_size: int | None = None) -> DRCAConfig:
    """Build a preset by name ("tiny", "s", "b"), optionally overriding K and the input size."""
    if name.lower() not in PRESETS:
        raise ValueError(f"unknown DRCA preset {name!r}; expected one of {sorted(PRESETS)}")
    kwargs: dict[str, int] = {}
    if k is not None:
        kwargs["k"] = k
    if img_size is not None:
        kwargs["img_size"] = img_size
    return PRESETS[name.lower()](**kwargs)
