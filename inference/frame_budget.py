"""How many frames a whole-video head may read at once.

Why: two heads of the default bundle read every frame of a video together, and their memory grows
with the square of its length. For a 4 h upload at one frame a second (14,391 frames; the decoder
allows ``decode.max_frames`` = 14,400):

- the DnS selector's self-similarity (``[T, T, R, R]`` region products, then the ViSiL comparator
  over the ``[T, T]`` map) asked ONNX Runtime for one 67 GB buffer, and the upload could not be
  indexed;
- the DnS coarse student's transformer (attention over all ``T`` frames) then peaked the worker at
  15 GB, against the Helm chart's 16 Gi limit.

So a long video is read in bounded pieces. The self-similarity is a scalar, the mean comparator
output over the map, and the map of :data:`SELFSIM_MAX_FRAMES` evenly spaced frames estimates that
mean (:func:`evenly_spaced`). The coarse vector of a video longer than
:data:`COARSE_WINDOW_FRAMES` is the mean of its consecutive windows' coarse vectors, weighted by
their frames and L2-normalised (:func:`coarse_by_windows`): every frame still counts, attention
stays within a window. Videos up to 512 frames (8.5 minutes at one frame a second; every benchmark
and parity video here) are read whole, as before.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SELFSIM_MAX_FRAMES", "COARSE_WINDOW_FRAMES", "COARSE_WINDOWS_PER_RUN", "evenly_spaced", "coarse_by_windows"]

SELFSIM_MAX_FRAMES = 512
"""Frames the selector's self-similarity reads at most (region products of 512 frames: 85 MB)."""
COARSE_WINDOW_FRAMES = 512
"""Frames of one window of the coarse student."""
COARSE_WINDOWS_PER_RUN = 4
"""Windows run through the coarse student together (a batch)."""


def evenly_spaced(frames: np.ndarray, limit: int = SELFSIM_MAX_FRAMES) -> np.ndarray:
    """``frames`` (first axis: time) when there are at most ``limit``; else ``limit`` of them,
    evenly spaced from the first to the last, in time order."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    n = len(frames)
    if n <= limit:
        return frames
    return frames[np.linspace(0, n - 1, limit).round().astype(np.int64)]


def coarse_by_windows(run: Callable[[np.ndarray, np.ndarray], np.ndarray], features: np.ndarray,
                      window: int = COARSE_WINDOW_FRAMES, per_run: int = COARSE_WINDOWS_PER_RUN) -> np.ndarray:
    """The coarse vector of ``features`` ``[T, ...]``: ``run(batch [B, W, ...], mask [B, W])`` →
    ``[B, E]`` on the whole video when ``T <= window``, else on consecutive windows of ``window``
    frames (the last one padded and masked), ``per_run`` windows a call, then their frame-weighted
    mean, L2-normalised."""
    if window < 1 or per_run < 1:
        raise ValueError(f"window and per_run must be at least 1, got {window}, {per_run}")
    x = np.asarray(features, np.float32)
    t = len(x)
    if t <= window:
        return np.asarray(run(x[None], np.ones((1, t), np.float32))[0], np.float32)
    starts = range(0, t, window)
    total: np.ndarray | float = 0.0
    for first in range(0, len(starts), per_run):
        group = starts[first:first + per_run]
        batch = np.zeros((len(group), window, *x.shape[1:]), np.float32)
        mask = np.zeros((len(group), window), np.float32)
        for i, s in enumerate(group):
            part = x[s:s + window]
            batch[i, :len(part)] = part
            mask[i, :len(part)] = 1.0
        total = total + (np.asarray(run(batch, mask), np.float64) * mask.sum(axis=1, keepdims=True)).sum(axis=0)
    total = np.asarray(total)
    norm = np.linalg.norm(total)
    return (total / norm if norm > 0 else total).astype(np.float32)
