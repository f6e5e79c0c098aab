"""A PNG of one pair's frame-similarity matrix with its aligned paths and segments
(``dupwatch detect plot QUERY REF``).

The matrix is the one the detector aligns (``VideoModels.compare(...).frame_similarity``, query
frames as rows); the segments are the detector's (:func:`inference.segments.find_segments` with its
:class:`~detect.detector.AlignmentParams`): each segment's matched frames as dots, the segment
itself as a line over the frames' whole intervals with its box, labelled in seconds and speed, as
alerts report it. Matplotlib with the Agg
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
    from inference.segments import find_segments, frame_intervals

    sim = np.asarray(frame_similarity, np.float32)
    if sim.ndim != 2 or 0 in sim.shape:
        raise ValueError(f"frame similarity must be a non-empty 2-d matrix, got {sim.shape}")
    p = params or AlignmentParams()
    qt = frame_intervals(query_times, sim.shape[0], "query_times")
    rt = frame_intervals(ref_times, sim.shape[1], "ref_times")
    found = find_segments(sim, qt, rt, p)

    def pixel(t: float, iv: np.ndarray) -> float:
        """Seconds → image coordinate (pixel k spans k − 0.5 … k + 0.5, i.e. frame k's interval)."""
        return float(np.interp(t, np.r_[iv[:, 0], iv[-1, 1]], np.arange(len(iv) + 1))) - 0.5

    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(sim, origin="upper", aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="frame similarity")
    for n, f in enumerate(found):
        seg = f.segment
        ax.plot(f.path[:, 1], f.path[:, 0], "o", color="red", markersize=2.5, label="matched frames" if n == 0 else None)
        x0, x1 = pixel(seg.ref_start, rt), pixel(seg.ref_end, rt)
        y0, y1 = pixel(seg.query_start, qt), pixel(seg.query_end, qt)
        ax.plot([x0, x1], [y0, y1], "-", color="red", linewidth=1.2, label="segment" if n == 0 else None)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linestyle="--", linewidth=1.0))
        ax.annotate(f"q {seg.query_start:.1f}-{seg.query_end:.1f}s / r {seg.ref_start:.1f}-{seg.ref_end:.1f}s "
                    f"({f.speed:.2g}x)", (x0, y0), color="white", fontsize=7, xytext=(2, -3), textcoords="offset points",
                    va="bottom")
    ax.set_xlabel("reference frame")
    ax.set_ylabel("query frame")
    ax.set_title(title or f"{len(found)} copy segment(s)", fontsize=9)
    if found:
        ax.legend(loc="lower right", fontsize=7)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")
    return out


def plot_video_pair(models: Any, query: Any, ref: Any, out: Path | str, *, params: Any = None) -> tuple[Path, float, list[Any]]:
    """Plot two :class:`~dupwatch.records.VideoRepresentation`; returns the PNG path, the fine score
    and the segments drawn (:class:`~dupwatch.records.Segment`, the detector's for this pair)."""
    from detect.detector import AlignmentParams
    from inference.alignment import align_segments

    pair = models.compare(query.regions, ref.regions)
    path = plot_pair(pair.frame_similarity, out, query_times=query.timestamps, ref_times=ref.timestamps, params=params,
                     title=f"{query.video_id} vs {ref.video_id}: fine {pair.score:.3f}")
    segments = align_segments(pair.frame_similarity, query.timestamps, ref.timestamps, params or AlignmentParams())
    return path, float(pair.score), segments
