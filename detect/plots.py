"""A PNG of one pair's frame-similarity matrix with its aligned paths and segments
(``dupwatch detect plot QUERY REF``).

The matrix is the one the detector aligns (``VideoModels.compare(...).frame_similarity``, query
frames as rows); the paths are the Temporal Network's (:func:`inference.alignment.temporal_network`
with the detector's :class:`~detect.detector.AlignmentParams`), each drawn as a line with its
bounding box, i.e. the segment reported in alerts, labelled in seconds. Matplotlib with the Agg
backend (no display), imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_pair", "plot_video_pair"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def plot_pair(
    frame_similarity: np.ndarray,
    out: Path | str,
    *,
    query_times: np.ndarray | None = None,
    ref_times: np.ndarray | None = None,
    params: Any = None,
    title: str = "",
    dpi: int = 110,
) -> Path:
    """Write the PNG; returns its path. ``params``: :class:`detect.detector.AlignmentParams`."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from detect.detector import AlignmentParams
    from inference.alignment import temporal_network

    sim = np.asarray(frame_similarity, np.float32)
    if sim.ndim != 2 or 0 in sim.shape:
        raise ValueError(f"frame similarity must be a non-empty 2-d matrix, got {sim.shape}")
    p = params or AlignmentParams()
    qt = np.arange(sim.shape[0], dtype=np.float32) if query_times is None else np.asarray(query_times, np.float32)
    rt = np.arange(sim.shape[1], dtype=np.float32) if ref_times is None else np.asarray(ref_times, np.float32)
    paths = temporal_network(sim, min_sim=p.min_sim, min_length=p.min_length, max_step=p.max_step, top_k=p.top_k,
                             max_paths=p.max_paths)
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(sim, origin="upper", aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="frame similarity")
    for n, path in enumerate(paths):
        q, r = path.path[:, 0], path.path[:, 1]
        ax.plot(r, q, "-o", color="red", markersize=2.5, linewidth=1.2, label="aligned path" if n == 0 else None)
        (q0, r0), (q1, r1) = path.path.min(0), path.path.max(0)
        ax.add_patch(Rectangle((r0 - 0.5, q0 - 0.5), r1 - r0 + 1, q1 - q0 + 1, fill=False, edgecolor="white",
                               linestyle="--", linewidth=1.0))
        ax.annotate(f"q {qt[q0]:.1f}-{qt[q1]:.1f}s / r {rt[r0]:.1f}-{rt[r1]:.1f}s", (r0, q0), color="white",
                    fontsize=7, xytext=(2, -3), textcoords="offset points", va="bottom")
    ax.set_xlabel("reference frame")
    ax.set_ylabel("query frame")
    ax.set_title(title or f"{len(paths)} aligned segment(s)", fontsize=9)
    if paths:
        ax.legend(loc="lower right", fontsize=7)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")
    return out


def plot_video_pair(models: Any, query: Any, ref: Any, out: Path | str, *, params: Any = None) -> tuple[Path, float]:
    """Plot two :class:`~dupwatch.records.VideoRepresentation`; returns the PNG path and the fine score."""
    pair = models.compare(query.regions, ref.regions)
    path = plot_pair(pair.frame_similarity, out, query_times=query.timestamps, ref_times=ref.timestamps, params=params,
                     title=f"{query.video_id} vs {ref.video_id}: fine {pair.score:.3f}")
    return path, float(pair.score)
