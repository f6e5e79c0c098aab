"""DnS (Distill-and-Select) students and selector, key-compatible with the released checkpoints.

- :class:`CoarseGrainedStudent`: attention → region sum → transformer (1 layer) → NetVLAD → 1024-d unit vector.
- :class:`FineGrainedStudent`: attention or ITQ binarization on region vectors, then the ViSiL
  comparator on the frame-to-frame chamfer similarity; similarity in [-1, 1].
- :class:`SelectorNetwork`: a per-video self-similarity scalar and an MLP on
  ``[selfsim(q), selfsim(t), coarse_sim]`` → probability that re-ranking pays.
All inputs are region features ``[N, T, R, D]`` (or ``[T, R, D]``) with an optional mask ``[N, T]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inference.layers import Attention, BinarizationLayer, NetVLAD, check_video_features
from inference.similarities import VideoComparator, chamfer_similarity, frame_to_frame_similarity, hard_tanh, repeat_to_min_length

__all__ = ["CoarseGrainedStudent", "FineGrainedStudent", "SelectorNetwork", "MetadataModel", "MIN_FRAMES"]

MIN_FRAMES = 4


class CoarseGrainedStudent(nn.Module):
    def __init__(self, dims: int = 512, heads: int = 8, ff_dims: int = 2048, layers: int = 1,
                 netvlad_clusters: int = 64, netvlad_outdims: int = 1024) -> None:
        super().__init__()
        self.dims = dims
        self.attention = Attention(dims, norm=False)
        layer = nn.TransformerEncoderLayer(dims, heads, ff_dims, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dims), enable_nested_tensor=False)
        self.netvlad = NetVLAD(dims, netvlad_clusters, netvlad_outdims)

    @property
    def output_dims(self) -> int:
        return self.netvlad.outdims

    def index_video(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, T, R, D]`` (+ mask ``[N, T]``, 1 = real frame) → ``[N, 1024]`` L2-normalised."""
        x, mask = check_video_features(x, mask, dims=self.dims)
        x, _ = self.attention(x)
        x = F.normalize(x.sum(dim=2), p=2, dim=-1)  # [N, T, D]
        pad = None if mask is None else ~mask.bool()
        x = self.transformer(x, src_key_padding_mask=pad)
        if mask is not None:
            x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        x = x.unsqueeze(2).permute(0, 3, 1, 2)  # [N, D, T, 1]
        x = self.netvlad(x, mask=mask)
        return F.normalize(x, p=2, dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.index_video(x, mask)

    @staticmethod
    def calculate_video_similarity(query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Dot products of indexed vectors ``[Nq, E]`` × ``[Nt, E]`` → ``[Nq, Nt]``."""
        return query @ target.t()


class FineGrainedStudent(nn.Module):
    """Attention (``dns_fg_att_student``) or binarization (``dns_fg_bin_student``) variant."""

    def __init__(self, dims: int = 512, attention: bool = False, binarization: bool = False,
                 bits: int | None = None, padding: str = "zero") -> None:
        super().__init__()
        if attention and binarization:
            raise ValueError("FineGrainedStudent: choose attention or binarization, not both")
        self.dims = dims
        self.binary = binarization
        if attention:
            self.attention = Attention(dims, norm=False)
        if binarization:
            self.binarization = BinarizationLayer(dims, bits)
        self.visil_head = VideoComparator(padding=padding)

    def index_video(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, T, R, D]`` → indexed ``[N, T', R, D']`` (T' = max(T, 4); short videos are tiled)."""
        x, mask = check_video_features(x, mask, dims=self.dims)
        if x.shape[1] < MIN_FRAMES and mask is None:
            x = repeat_to_min_length(x, MIN_FRAMES, dim=1)
        if hasattr(self, "binarization"):
            x = self.binarization(x)
        elif hasattr(self, "attention"):
            x, _ = self.attention(x)
        if mask is not None:
            x = x.masked_fill(~mask.bool()[:, :, None, None], 0.0)
        return x

    def similarity_matrix(self, query: torch.Tensor, target: torch.Tensor, query_mask: torch.Tensor | None = None,
                          target_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Comparator output after hard tanh ``[N, Tq/4, Tt/4]`` for indexed videos, and its mask."""
        query, query_mask = check_video_features(query, query_mask, name="query")
        target, target_mask = check_video_features(target, target_mask, name="target")
        query = repeat_to_min_length(query, MIN_FRAMES, dim=1) if query_mask is None else query
        target = repeat_to_min_length(target, MIN_FRAMES, dim=1) if target_mask is None else target
        sim = frame_to_frame_similarity(query, target, binary=self.binary)
        mask = _pair_mask(query_mask, target_mask, query, target)
        out, mask = self.visil_head(sim.unsqueeze(1), mask)
        out = hard_tanh(out.squeeze(1))
        return out, (None if mask is None else mask.squeeze(1))

    def calculate_video_similarity(self, query: torch.Tensor, target: torch.Tensor,
                                   query_mask: torch.Tensor | None = None,
                                   target_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Indexed ``[N, Tq, R, D]`` × ``[N, Tt, R, D]`` → ``[N]`` similarities in [-1, 1]."""
        sim, mask = self.similarity_matrix(query, target, query_mask, target_mask)
        return chamfer_similarity(sim, max_axis=2, mean_axis=1, mask=mask)

    def forward(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.calculate_video_similarity(self.index_video(query), self.index_video(target))


def _pair_mask(qm: torch.Tensor | None, tm: torch.Tensor | None, q: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
    if qm is None and tm is None:
        return None
    qm = torch.ones(q.shape[:2], device=q.device) if qm is None else qm.float()
    tm = torch.ones(t.shape[:2], device=t.device) if tm is None else tm.float()
    return torch.einsum("bi,bj->bij", qm, tm).unsqueeze(1)


class MetadataModel(nn.Module):
    """``Linear(in, h, no bias)-BN-ReLU-Dropout`` × (1 + layers) then ``Linear(h, 1)-Sigmoid`` (keys ``model.{0,1,4,5,8}``)."""

    def __init__(self, input_size: int = 3, hidden_size: int = 100, num_layers: int = 1) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Linear(input_size, hidden_size, bias=False), nn.BatchNorm1d(hidden_size),
                                   nn.ReLU(), nn.Dropout()]
        for _ in range(num_layers):
            blocks += [nn.Linear(hidden_size, hidden_size, bias=False), nn.BatchNorm1d(hidden_size), nn.ReLU(), nn.Dropout()]
        blocks += [nn.Linear(hidden_size, 1), nn.Sigmoid()]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.model[0].in_features:
            raise ValueError(f"MetadataModel: expected [N, {self.model[0].in_features}], got {tuple(x.shape)}")
        return self.model(x)


class SelectorNetwork(nn.Module):
    def __init__(self, dims: int = 512, hidden_size: int = 100, num_layers: int = 1) -> None:
        super().__init__()
        self.dims = dims
        self.attention = Attention(dims, norm=False)
        self.visil_head = VideoComparator(padding="zero")
        self.mlp = MetadataModel(3, hidden_size, num_layers)

    def index_video(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, T, R, D]`` → self-similarity scalar ``[N, 1]``: mean comparator output on the
        video's region-averaged self-similarity matrix."""
        x, mask = check_video_features(x, mask, dims=self.dims)
        if x.shape[1] < MIN_FRAMES and mask is None:
            x = repeat_to_min_length(x, MIN_FRAMES, dim=1)
        x, _ = self.attention(x)
        if mask is not None:
            x = x.masked_fill(~mask.bool()[:, :, None, None], 0.0)
        # the selector averages over all region pairs (no chamfer) and skips the hard tanh
        sim = torch.einsum("biok,bjpk->biopj", x, x).mean(dim=(2, 3))
        smask = _pair_mask(mask, mask, x, x)
        out, smask = self.visil_head(sim.unsqueeze(1), smask)
        if smask is None:
            return out.mean(dim=(1, 2, 3)).unsqueeze(-1)
        m = smask.to(out.dtype)
        return ((out * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1)).unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """MLP input ``[N, 3]`` rows ``[selfsim(q), selfsim(t), coarse_sim]`` → ``[N, 1]`` in (0, 1)."""
        return self.mlp(x)
