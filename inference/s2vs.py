"""S²VS similarity network: ViSiL with tanh attention (``s2vs_dns.pth`` / ``s2vs_vcdb.pth``).

Same keys as the DnS fine attention student (``attention.*``, ``visil_head.*``); the comparator
pads with zeros (the released ``pooling=True`` configuration) and outputs keep the channel axis
(``[N, 1, Tq', Tt']``) like the official code. Videos shorter than 4 frames are tiled in time.
"""

from __future__ import annotations

import torch
from torch import nn

from inference.layers import Attention, BinarizationLayer, check_video_features
from inference.similarities import VideoComparator, chamfer_similarity, frame_to_frame_similarity, hard_tanh, repeat_to_min_length

__all__ = ["S2VSSimilarityNetwork", "MIN_FRAMES"]

MIN_FRAMES = 4


class S2VSSimilarityNetwork(nn.Module):
    def __init__(self, dims: int = 512, attention: bool = True, binarization: bool = False,
                 bits: int | None = None, padding: str = "zero", min_frames: int = MIN_FRAMES) -> None:
        super().__init__()
        if min_frames < MIN_FRAMES:
            raise ValueError(f"min_frames must be ≥ {MIN_FRAMES} (the similarity head halves the length twice)")
        self.min_frames = int(min_frames)
        """Videos shorter than this are tiled to this length before comparison. The published
        code uses 4, the least the head accepts; a 1-fps clip of 4–7 frames then fills only a
        corner of the head's receptive field and scores far below its longer copies, so bundles
        may ask for more (``min_frames`` in the fine artifact's config). Not a weight."""
        if attention and binarization:
            raise ValueError("S2VSSimilarityNetwork: attention and binarization are exclusive")
        self.dims = dims
        self.binary = binarization
        if attention:
            self.attention = Attention(dims, norm=False)
        if binarization:
            self.binarization = BinarizationLayer(dims, bits)
        self.visil_head = VideoComparator(padding=padding)

    def index_video(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Region features ``[N, T, R, D]`` (or ``[T, R, D]``) → indexed ``[N, max(T, 4), R, D]``."""
        x, mask = check_video_features(x, mask, dims=self.dims)
        if mask is None:
            x = repeat_to_min_length(x, self.min_frames, dim=1)
        if hasattr(self, "binarization"):
            x = self.binarization(x)
        elif hasattr(self, "attention"):
            x, _ = self.attention(x)
        if mask is not None:
            x = x.masked_fill(~mask.bool()[:, :, None, None], 0.0)
        return x

    def frame_to_frame_similarity(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Indexed ``[N, Tq, R, D]`` × ``[N, Tt, R, D]`` → region chamfer ``[N, 1, Tq, Tt]``."""
        query, _ = check_video_features(query, name="query")
        target, _ = check_video_features(target, name="target")
        return frame_to_frame_similarity(query, target, binary=self.binary).unsqueeze(1)

    def similarity_matrix(self, query: torch.Tensor, target: torch.Tensor, query_mask: torch.Tensor | None = None,
                          target_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Comparator output after hard tanh ``[N, 1, Tq', Tt']`` (and its mask when masks are given)."""
        query, query_mask = check_video_features(query, query_mask, name="query")
        target, target_mask = check_video_features(target, target_mask, name="target")
        if query_mask is None:
            query = repeat_to_min_length(query, self.min_frames, dim=1)
        if target_mask is None:
            target = repeat_to_min_length(target, self.min_frames, dim=1)
        sim = self.frame_to_frame_similarity(query, target)
        mask = None
        if query_mask is not None or target_mask is not None:
            qm = torch.ones(query.shape[:2], device=query.device) if query_mask is None else query_mask.float()
            tm = torch.ones(target.shape[:2], device=target.device) if target_mask is None else target_mask.float()
            mask = torch.einsum("bi,bj->bij", qm, tm).unsqueeze(1)
        out, mask = self.visil_head(sim, mask)
        return hard_tanh(out), mask

    def calculate_video_similarity(self, query: torch.Tensor, target: torch.Tensor,
                                   query_mask: torch.Tensor | None = None,
                                   target_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Indexed videos → ``[N]`` similarities in [-1, 1]."""
        sim, mask = self.similarity_matrix(query, target, query_mask, target_mask)
        return chamfer_similarity(sim, max_axis=3, mean_axis=2, mask=mask).squeeze(1)

    def forward(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.calculate_video_similarity(self.index_video(query), self.index_video(target))
