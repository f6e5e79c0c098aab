"""TCA: Temporal Context Aggregation (seed 003; key layout from anchors §1.4).

A transformer encoder over a video's frame features gives

- frame-level descriptors (TCA_f): one L2-normalized vector per frame, compared with chamfer;
- a video-level descriptor (TCA_c): masked mean of the frame outputs, L2-normalized, compared
  with the dot product.

The module keeps the official parameter names so that an official ``model.pth`` (the
``encoder_q`` state_dict) loads with ``load_state_dict(..., strict=True)``:
``transformer_encoder.layers.{l}.self_attn.in_proj_weight`` ``[3D, D]``, ``.in_proj_bias``,
``.self_attn.out_proj.{weight,bias}``, ``.linear1.*`` ``[F, D]``, ``.linear2.*`` ``[D, F]``,
``.norm1.*``, ``.norm2.*``; post-norm layers, ReLU, sequence-first internally, no final LayerNorm.

Public tensors are batch-first: ``x`` ``[B, T, D]``, ``mask`` ``[B, T]`` bool, **True = a real
frame** (the official code passes the inverse as ``src_key_padding_mask``).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TCA", "chamfer_similarity"]


class TCA(nn.Module):
    """``TCA(feature_size=1024, nlayers=1, nhead=8, dim_feedforward=2048, dropout=0.1)``."""

    def __init__(
        self,
        feature_size: int = 1024,
        nlayers: int = 1,
        nhead: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if feature_size % nhead != 0:
            raise ValueError(f"feature_size {feature_size} must be divisible by nhead {nhead}")
        self.feature_size = feature_size
        self.nlayers = nlayers
        self.nhead = nhead
        self.dim_feedforward = dim_feedforward
        layer = nn.TransformerEncoderLayer(
            d_model=feature_size, nhead=nhead, dim_feedforward=dim_feedforward, dropout=dropout
        )
        self.transformer_encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)

    def __repr__(self) -> str:
        return (
            f"TCA(feature_size={self.feature_size}, nlayers={self.nlayers}, nhead={self.nhead}, "
            f"dim_feedforward={self.dim_feedforward})"
        )

    def _check(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.feature_size:
            raise ValueError(f"x must be [B, T, {self.feature_size}], got {tuple(x.shape)}")
        if mask is None:
            return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if mask.shape != x.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool [B, T] = {tuple(x.shape[:2])}, got {tuple(mask.shape)} {mask.dtype}")
        if not bool(mask.any(1).all()):
            raise ValueError("every video needs at least one valid frame in mask")
        return mask

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[B, T, D]``, ``mask`` ``[B, T]`` (True = frame) → (frames ``[B, T, D]``, video ``[B, D]``).

        Both outputs are L2-normalized; padded frame rows are zeroed.
        """
        mask = self._check(x, mask)
        h = self.transformer_encoder(x.transpose(0, 1), src_key_padding_mask=~mask).transpose(0, 1)
        m = mask.unsqueeze(-1).to(h.dtype)
        video = F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1.0), dim=-1)
        frames = F.normalize(h, dim=-1) * m
        return frames, video

    @classmethod
    def from_official_state_dict(cls, state_dict: dict[str, torch.Tensor], nhead: int = 8) -> "TCA":
        """Build a TCA whose sizes are read from an official ``encoder_q`` state_dict and load it
        (strict). ``nhead`` cannot be read from the weights (official: 8). A ``module.`` or
        ``encoder_q.`` prefix (DataParallel / a whole MoCo wrapper) is stripped; other MoCo
        entries (``queue``, ``encoder_k.*``) are ignored."""
        sd: dict[str, torch.Tensor] = {}
        for k, v in state_dict.items():
            for prefix in ("module.", "encoder_q."):
                if k.startswith(prefix):
                    k = k[len(prefix):]
            if k.startswith("transformer_encoder."):
                sd[k] = v
        w = sd.get("transformer_encoder.layers.0.linear1.weight")
        if w is None:
            raise ValueError("not a TCA state_dict: no transformer_encoder.layers.0.linear1.weight")
        nlayers = 1 + max(int(k.split(".")[2]) for k in sd)
        model = cls(feature_size=int(w.shape[1]), nlayers=nlayers, nhead=nhead, dim_feedforward=int(w.shape[0]))
        model.load_state_dict(sd, strict=True)
        return model.eval()

    @classmethod
    def from_official_file(cls, path: str | os.PathLike[str], nhead: int = 8) -> "TCA":
        """Load an official ``models/model.pth`` with ``weights_only=True``."""
        return cls.from_official_state_dict(torch.load(path, map_location="cpu", weights_only=True), nhead=nhead)

    def encode_frames(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """TCA_f descriptors ``[B, T, D]``."""
        return self.forward(x, mask)[0]

    def encode_video(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """TCA_c descriptor ``[B, D]``."""
        return self.forward(x, mask)[1]


def chamfer_similarity(
    q: torch.Tensor, r: torch.Tensor, q_mask: torch.Tensor | None = None, r_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """All-pairs chamfer ``mean_i max_j <q_a,i , r_b,j>`` → ``[Bq, Br]``.

    ``q`` ``[Bq, Tq, D]``, ``r`` ``[Br, Tr, D]``, masks bool ``[B, T]`` (True = frame).
    """
    if q.ndim != 3 or r.ndim != 3 or q.shape[-1] != r.shape[-1]:
        raise ValueError(f"q, r must be [B, T, D] with the same D, got {tuple(q.shape)} {tuple(r.shape)}")
    qm = torch.ones(q.shape[:2], dtype=torch.bool, device=q.device) if q_mask is None else q_mask
    rm = torch.ones(r.shape[:2], dtype=torch.bool, device=r.device) if r_mask is None else r_mask
    s = torch.einsum("aid,bjd->abij", q, r)
    s = s.masked_fill(~rm[None, :, None, :], float("-inf")).amax(-1)  # [Bq, Br, Tq]
    s = s.masked_fill(~qm[:, None, :], 0.0)
    return s.sum(-1) / qm.sum(-1, keepdim=True).to(s.dtype)
