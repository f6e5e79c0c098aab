"""Plain chamfer similarity on backbone region features (ViSiL_f style, no learned head).

For a query ``[Tq, R, D]`` and a reference ``[Tr, R, D]`` of L2-normalized region vectors:

1. region chamfer → frame-to-frame similarity ``S[i, j] = mean_r max_r' <q[i, r], x[j, r']>``;
2. frame chamfer → video score ``mean_i max_j S[i, j]`` (query-side: a query that is a part of
   the reference scores high, the converse does not).

This is what :meth:`inference.embedder.VideoModels.compare` falls back to for a bundle without a
fine head; here the reference frames of all candidates go through one matrix product per query.
Features: EfficientNet-Lite0 regions (1752-d), whitened by the PCA of ``pca_bundle`` when given.
Segments: the Temporal Network (:func:`inference.alignment.tn_segments`, VCSL/TCA style) on ``S``,
the baseline localizer that the detector's copy-segment search is measured against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.flat_frames import blank_flat_frames
from scoring.methods import FeatureCache, FrameCache, Method, PairResult, feature_key, decode_setting, frame_intervals

BACKBONE = "efficientnet_lite0_regions"
TN_PARAMS = {"min_sim": 0.35, "min_length": 2, "max_step": 3, "top_k": 5, "max_paths": 5}
"""The Temporal Network's parameters for the baseline's segments (the detector's before the copy-segment search)."""

__all__ = ["ChamferMethod", "frame_similarity", "chamfer_score"]


def frame_similarity(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Region chamfer: ``[Tq, R, D]`` × ``[Tr, R', D]`` → ``[Tq, Tr]``."""
    if query.ndim != 3 or reference.ndim != 3 or query.shape[-1] != reference.shape[-1]:
        raise ValueError(f"expected region features [T, R, D] with equal D, got {query.shape} and {reference.shape}")
    tq, r, d = query.shape
    tr, r2, _ = reference.shape
    sim = query.reshape(tq * r, d) @ reference.reshape(tr * r2, d).T  # [Tq*R, Tr*R']
    return sim.reshape(tq, r, tr, r2).max(axis=3).mean(axis=1)


def chamfer_score(frame_sim: np.ndarray) -> float:
    """Frame chamfer of a ``[Tq, Tr]`` similarity matrix."""
    return float(frame_sim.max(axis=1).mean())


class ChamferMethod(Method):
    """The chamfer baseline of the eval harness (see module docstring)."""

    name = "chamfer"

    def __init__(self, frames: FrameCache, features: FeatureCache, *, pca_bundle: Any | None = None, device: str = "auto",
                 fps: float | None = None, flat_luma_std: float | None = None) -> None:
        from dupwatch.config import DecodeConfig

        self.frames, self.features = frames, features
        self.pca_bundle = pca_bundle
        self.device = device
        self.decode_config = DecodeConfig(**({} if fps is None else {"fps": fps}), **decode_setting(flat_luma_std))
        self.feature_key = feature_key(BACKBONE, pca_bundle, self.decode_config)
        self._extractor: Any = None
        self._regions: dict[str, np.ndarray] = {}
        self._times: dict[str, np.ndarray] = {}

    def describe(self) -> dict[str, Any]:
        pca = f"PCA of {self.pca_bundle.root}" if self.pca_bundle is not None and self.pca_bundle.has("pca") else "no PCA"
        return {"features": f"{BACKBONE} ({pca})", "similarity": "region chamfer → frame chamfer (ViSiL_f, no head)",
                "segments": "Temporal Network (tn_segments) on the frame chamfer matrix"}

    def _extract(self, frames: np.ndarray) -> np.ndarray:
        import torch

        from inference.registry import get_model

        if self._extractor is None:
            pca = self.pca_bundle.path("pca") if self.pca_bundle is not None and self.pca_bundle.has("pca") else None
            dev = "cuda" if self.device == "auto" and torch.cuda.is_available() else ("cpu" if self.device == "auto" else self.device)
            self._extractor = (get_model(BACKBONE, pca=pca).eval().to(dev), dev)
        model, dev = self._extractor
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), 32):
                batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + 32])).to(dev)
                out.append(model(batch).float().cpu())
        return blank_flat_frames(frames, torch.cat(out).numpy(), self.decode_config.flat_luma_std)

    def prepare(self, videos: Mapping[str, Path]) -> None:
        for vid, path in videos.items():
            decoded = self.frames.get(vid, path, self.decode_config)
            self._regions[vid] = self.features.get(self.feature_key, vid, lambda d=decoded: self._extract(d.frames))
            self._times[vid] = frame_intervals(decoded.timestamps, decoded.duration_s, self.decode_config.fps)

    def score(self, query: str, reference: str) -> PairResult:
        return self._result(query, reference, frame_similarity(self._regions[query], self._regions[reference]))

    def score_query(self, query: str, references: Sequence[str]) -> list[PairResult]:
        if not references:
            return []
        q = self._regions[query]
        tq, r, d = q.shape
        refs = [self._regions[x] for x in references]
        flat = np.concatenate([x.reshape(-1, d) for x in refs])
        big = q.reshape(tq * r, d) @ flat.T  # one product per query
        out, col = [], 0
        for ref_id, x in zip(references, refs):
            n = x.shape[0] * x.shape[1]
            sim = big[:, col : col + n].reshape(tq, r, x.shape[0], x.shape[1]).max(axis=3).mean(axis=1)
            col += n
            out.append(self._result(query, ref_id, sim))
        return out

    def _result(self, query: str, reference: str, sim: np.ndarray) -> PairResult:
        from inference.alignment import tn_segments

        segments = tn_segments(sim, self._times[query], self._times[reference], **TN_PARAMS)
        return PairResult(chamfer_score(sim), tuple(segments))
