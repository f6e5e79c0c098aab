"""Temporal alignment of two videos: copy segments with per-pair evidence, DTW, the
bi-directional DTW of seed 004, and the Temporal-Network (TN) localizer.

Used by the detection stage to say *where* a copy is (``list[Segment]`` in seconds) and to
give the copy head features that separate a copy from "another moment of the same footage".

Conventions
-----------
- ``sim`` is a frame-to-frame (or clip-to-clip) similarity matrix ``[Tq, Tr]``; higher = more
  similar (cosine / dot product of unit vectors, roughly in [-1, 1]).
- Timestamps are ``[T]`` (one time per frame, seconds) or ``[T, 2]`` (start, end per clip, e.g.
  ``VideoRepresentation.clip_times``). :func:`align_segments` / :func:`align_pair` treat ``[T]``
  as intervals up to the next sample (:func:`inference.segments.frame_intervals`), so a segment
  covers its frames' whole intervals; the legacy :func:`tn_segments` runs from the first matched
  frame's time to the last's.

Algorithms (own implementation; see anchors §1.7 for the VCSL/TCA originals)
----------------------------------------------------------------------------
- :func:`align_segments` / :func:`align_pair`: straight-line copy segments at a plausible speed
  (Hough voting over speed and offset, runs along the best line, greedy non-overlapping choice;
  :mod:`inference.segments`) and the pair's :class:`AlignmentEvidence`, including the share of
  degenerate (speed ≈ 0) matches. This is what alerts carry.
- :func:`dtw`: full-alignment DTW that *maximizes* the summed similarity along a monotone path
  from (0, 0) to (Tq-1, Tr-1) with steps (1,0), (0,1), (1,1).
- :func:`dtw_distance` / :func:`bi_dtw`: seed 004 Eq. (6) on squared Euclidean distances between
  clip embeddings, and Bi-DTW = ``min(DTW(v1, v2), DTW(rev v1, rev v2))`` exactly as the seed
  writes it. **Finding** (digest §5.3/§7.1.6, checked by ``tests/inference/test_alignment.py``):
  reversing *both* sequences maps every warping path onto a path with the same cost, so Bi-DTW as
  written equals plain DTW. We keep it for fidelity; :func:`bi_dtw` with
  ``reverse="one"`` is the variant that can differ (it matches a time-reversed copy).
- :func:`temporal_network` / :func:`tn_segments`: the TN idea (Tan et al., as in VCSL/TCA): keep
  the top-k reference frames per query frame with ``sim >= min_sim``; link node (i, j) to
  (i', j') when ``1 <= i'-i <= max_step`` and ``0 <= j'-j <= max_step``; the longest path (sum
  of node similarities) is found by dynamic programming over the DAG, its box removed, and the
  search repeated. Its paths may stand still on the reference (speed 0) and its boxes overlap:
  it is kept as the chamfer baseline's localizer, not used for alerts.

Cost: the segment search is O((Tq + Tr) · top_k · speeds) per segment; TN is
O(Tq · max_step · top_k²) per path; DTW is O(Tq · Tr) with row-vectorized numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dupwatch.records import Segment
from inference.segments import FoundSegment, SegmentParams, degenerate_fraction, find_segments, frame_intervals, search_segments
from inference.similarity_matrix import cells, checked, row_blocks

__all__ = [
    "AlignmentEvidence",
    "AlignedPath",
    "DtwResult",
    "align_pair",
    "align_segments",
    "alignment_evidence",
    "bi_dtw",
    "tn_segments",
    "dtw",
    "dtw_distance",
    "temporal_network",
]


# --------------------------------------------------------------------------------------------
# shape helpers


def _check_times(times: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if times is None:
        return np.arange(n, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if not ((t.ndim == 1 and t.shape == (n,)) or (t.ndim == 2 and t.shape == (n, 2))):
        raise ValueError(f"{name} must be [{n}] or [{n}, 2] seconds, got {t.shape}")
    return t


def _t_start(t: np.ndarray, i: int) -> float:
    return float(t[i, 0] if t.ndim == 2 else t[i])


def _t_end(t: np.ndarray, i: int) -> float:
    return float(t[i, 1] if t.ndim == 2 else t[i])


def _span(t: np.ndarray) -> float:
    return max(_t_end(t, len(t) - 1) - _t_start(t, 0), 0.0)


# --------------------------------------------------------------------------------------------
# DTW


@dataclass(frozen=True)
class DtwResult:
    """``path`` is ``[L, 2]`` (query index, reference index), monotone, from (0,0) to the end.

    ``score`` is the summed similarity along the path (or summed cost for distance DTW);
    ``mean`` is ``score / L``.
    """

    path: np.ndarray
    score: float

    @property
    def mean(self) -> float:
        return self.score / max(len(self.path), 1)


def _dtw_accumulate(local: np.ndarray, maximize: bool) -> np.ndarray:
    """Accumulated matrix of the full-alignment DTW recurrence (row by row, vectorized over j)."""
    tq, tr = local.shape
    acc = np.empty_like(local)
    pick = np.maximum if maximize else np.minimum
    acc[0] = np.cumsum(local[0])
    for i in range(1, tq):
        prev = acc[i - 1]
        diag_up = np.empty(tr)
        diag_up[0] = prev[0]
        diag_up[1:] = pick(prev[1:], prev[:-1])  # best of (i-1, j) and (i-1, j-1)
        base = local[i] + diag_up
        # left moves (i, j-1) -> (i, j): row[j] = best_k<=j (base[k] + C[j] - C[k]), C = cumsum(local[i])
        c = np.cumsum(local[i])
        acc_fn = np.maximum.accumulate if maximize else np.minimum.accumulate
        acc[i] = c + acc_fn(base - c)
    return acc


def _dtw_backtrack(acc: np.ndarray, maximize: bool) -> np.ndarray:
    i, j = acc.shape[0] - 1, acc.shape[1] - 1
    path = [(i, j)]
    better = (lambda a, b: a > b) if maximize else (lambda a, b: a < b)
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            cands = [(acc[i - 1, j - 1], i - 1, j - 1), (acc[i - 1, j], i - 1, j), (acc[i, j - 1], i, j - 1)]
            best = cands[0]
            for c in cands[1:]:
                if better(c[0], best[0]):
                    best = c
            _, i, j = best
        path.append((i, j))
    return np.asarray(path[::-1], dtype=np.int64)


def dtw(sim: np.ndarray) -> DtwResult:
    """Full-alignment DTW over a similarity matrix ``[Tq, Tr]``, maximizing summed similarity."""
    sim = np.asarray(checked(sim), np.float64)
    acc = _dtw_accumulate(sim, maximize=True)
    return DtwResult(path=_dtw_backtrack(acc, maximize=True), score=float(acc[-1, -1]))


def _check_seq(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be [N, D] clip embeddings with N >= 1, got {x.shape}")
    return x


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def dtw_distance(v1: np.ndarray, v2: np.ndarray) -> DtwResult:
    """Seed 004 Eq. (6): ``D[i,j] = ||v1_i - v2_j||² + min(D[i-1,j], D[i,j-1], D[i-1,j-1])``.

    ``v1`` ``[N, D]``, ``v2`` ``[M, D]``; ``score`` is ``D[N-1, M-1]`` (lower = more similar).
    """
    v1, v2 = _check_seq(v1, "v1"), _check_seq(v2, "v2")
    if v1.shape[1] != v2.shape[1]:
        raise ValueError(f"embedding sizes differ: {v1.shape} vs {v2.shape}")
    acc = _dtw_accumulate(_sq_dist(v1, v2), maximize=False)
    return DtwResult(path=_dtw_backtrack(acc, maximize=False), score=float(acc[-1, -1]))


def bi_dtw(v1: np.ndarray, v2: np.ndarray, reverse: str = "both") -> float:
    """Bi-directional DTW distance of seed 004 (lower = more similar).

    ``reverse="both"`` (the seed's text): ``min(DTW(v1, v2), DTW(rev v1, rev v2))`` — this is
    provably equal to ``DTW(v1, v2)`` (see module docstring). ``reverse="one"``:
    ``min(DTW(v1, v2), DTW(v1, rev v2))``, which also matches a time-reversed copy.
    """
    if reverse not in ("both", "one"):
        raise ValueError(f"reverse must be 'both' or 'one', got {reverse!r}")
    forward = dtw_distance(v1, v2).score
    a = np.asarray(v1)[::-1] if reverse == "both" else np.asarray(v1)
    backward = dtw_distance(a, np.asarray(v2)[::-1]).score
    return min(forward, backward)


# --------------------------------------------------------------------------------------------
# Temporal network


@dataclass(frozen=True)
class AlignedPath:
    """One aligned run: ``path`` ``[L, 2]`` frame indices (query, reference), strictly increasing
    in the query index; ``sims`` ``[L]`` similarity of each matched pair."""

    path: np.ndarray
    sims: np.ndarray

    @property
    def total(self) -> float:
        return float(self.sims.sum())

    @property
    def mean(self) -> float:
        return float(self.sims.mean())


def _top_k_nodes(sim: np.ndarray, top_k: int, min_sim: float) -> list[np.ndarray]:
    """Per query frame: the reference indices of its top-k matches with ``sim >= min_sim``."""
    k = min(top_k, sim.shape[1])
    out = []
    for _, block in row_blocks(sim):
        idx = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(block, idx, axis=1) >= min_sim
        out.extend(np.sort(js[ok]) for js, ok in zip(idx, top))
    return out


_TIE_EPS = 1e-6


def _longest_path(sim: np.ndarray, nodes: list[np.ndarray], max_step: int) -> AlignedPath | None:
    """Longest path (sum of node similarities) in the TN DAG; ``None`` when there are no nodes."""
    tq = sim.shape[0]
    best: list[np.ndarray] = []  # best path score ending at each node of frame i
    back: list[tuple[np.ndarray, np.ndarray]] = []  # (prev frame, prev node position)
    top_score, top_at = -np.inf, (-1, -1)
    for i in range(tq):
        js = nodes[i]
        own = cells(sim, i, js) if len(js) else np.empty(0)
        score = own.copy()
        bi = np.full(len(js), -1, dtype=np.int64)
        bp = np.full(len(js), -1, dtype=np.int64)
        if len(js):
            for ip in range(max(0, i - max_step), i):
                pj = nodes[ip]
                if len(pj) == 0:
                    continue
                dj = js[:, None] - pj[None, :]
                ok = (dj >= 0) & (dj <= max_step)
                # tiny tie-break toward constant speed (dj == di) so flat regions give straight paths
                cand = np.where(ok, best[ip][None, :] - _TIE_EPS * np.abs(dj - (i - ip)), -np.inf)
                arg = cand.argmax(1)
                val = cand[np.arange(len(js)), arg] + own
                upd = val > score
                score = np.where(upd, val, score)
                bi = np.where(upd, ip, bi)
                bp = np.where(upd, arg, bp)
            a = int(score.argmax())
            if score[a] > top_score:
                top_score, top_at = float(score[a]), (i, a)
        best.append(score)
        back.append((bi, bp))
    if top_at[0] < 0:
        return None
    i, a = top_at
    path = []
    while i >= 0:
        path.append((i, int(nodes[i][a])))
        i, a = int(back[i][0][a]), int(back[i][1][a])
    p = np.asarray(path[::-1], dtype=np.int64)
    return AlignedPath(path=p, sims=cells(sim, p[:, 0], p[:, 1]))


def temporal_network(
    sim: np.ndarray,
    *,
    min_sim: float = 0.5,
    min_length: int = 3,
    max_step: int = 4,
    top_k: int = 5,
    max_paths: int = 10,
) -> list[AlignedPath]:
    """Aligned paths (index space) found by the Temporal Network; strongest (total) first.

    ``min_length`` counts matched query frames on a path; shorter paths are dropped.
    """
    sim = checked(sim)
    if min_length < 1 or max_step < 1 or top_k < 1 or max_paths < 1:
        raise ValueError("min_length, max_step, top_k and max_paths must be >= 1")
    nodes = _top_k_nodes(sim, top_k, min_sim)
    found: list[AlignedPath] = []
    for _ in range(max_paths):
        p = _longest_path(sim, nodes, max_step)
        if p is None:
            break
        (q0, r0), (q1, r1) = p.path.min(0), p.path.max(0)
        # remove the box of the found run (also kills its near-parallel shadows)
        for i in range(q0, q1 + 1):
            js = nodes[i]
            nodes[i] = js[(js < r0) | (js > r1)]
        if len(p.path) >= min_length:
            found.append(p)
    found.sort(key=lambda p: -p.total)
    return found


def _segment(p: AlignedPath, q_times: np.ndarray, r_times: np.ndarray) -> Segment:
    qs, rs = p.path.min(0)
    qe, re = p.path.max(0)
    return Segment(
        query_start=_t_start(q_times, int(qs)),
        query_end=_t_end(q_times, int(qe)),
        ref_start=_t_start(r_times, int(rs)),
        ref_end=_t_end(r_times, int(re)),
        score=p.mean,
    )


def tn_segments(
    sim: np.ndarray,
    query_times: np.ndarray | None = None,
    ref_times: np.ndarray | None = None,
    *,
    min_sim: float = 0.5,
    min_length: int = 3,
    max_step: int = 4,
    top_k: int = 5,
    max_paths: int = 10,
) -> list[Segment]:
    """The Temporal Network's segments (bounding boxes of its paths), sorted by mean similarity.

    The VCSL/TCA-style localizer, kept as the chamfer baseline's alignment; its paths may stand
    still on the reference (speed 0) and its boxes may overlap. ``[T]`` times give a one-frame
    match zero length. Alerts use :func:`align_segments`.
    """
    sim = checked(sim)
    qt = _check_times(query_times, sim.shape[0], "query_times")
    rt = _check_times(ref_times, sim.shape[1], "ref_times")
    paths = temporal_network(
        sim, min_sim=min_sim, min_length=min_length, max_step=max_step, top_k=top_k, max_paths=max_paths
    )
    segs = [_segment(p, qt, rt) for p in paths]
    segs.sort(key=lambda s: -s.score)
    return segs


def align_segments(
    sim: np.ndarray,
    query_times: np.ndarray | None = None,
    ref_times: np.ndarray | None = None,
    params: SegmentParams = SegmentParams(),
) -> list[Segment]:
    """Copy segments in seconds (:func:`inference.segments.find_segments`), strongest first."""
    sim = checked(sim)
    return [f.segment for f in find_segments(sim, query_times, ref_times, params)]


# --------------------------------------------------------------------------------------------
# Per-pair evidence


@dataclass(frozen=True)
class AlignmentEvidence:
    """Features of one (query, reference) pair computed from its copy segments and flat lines
    (:func:`align_pair`).

    - ``aligned_seconds``: summed query-side length of the segments (s).
    - ``query_coverage`` / ``ref_coverage``: fraction of the query / reference time span covered
      by the union of the segments, in [0, 1].
    - ``mean_similarity``: mean similarity over all matched frame pairs (0 when nothing matched).
    - ``diagonality``: matched-pair-weighted R² of a straight-line fit ref ≈ a·query + b per
      segment (1 = a clean copy at constant speed); 0 when nothing matched.
    - ``speed_ratio``: reference seconds per query second on the strongest segment (1 = same
      speed; within the supported range, 0 without a segment).
    - ``num_segments``: how many segments were found.
    - ``temporal_contrast``: mean over matched pairs of ``sim[i, j]`` minus the mean of
      ``sim[i, j']`` for ``2 <= |j' - j| <= 7`` (same query frame, nearby reference frames).
      A copy of changing content is a sharp ridge (high contrast); another moment of the same
      static footage is a flat plateau (contrast near 0). 0 when nothing matched.
    - ``degenerate_fraction``: :func:`inference.segments.degenerate_fraction` of the whole matrix,
      the share of matched query frames that pile onto one reference frame (speed ≈ 0): evidence
      *against* a copy, never a segment.
    """

    aligned_seconds: float
    query_coverage: float
    ref_coverage: float
    mean_similarity: float
    diagonality: float
    speed_ratio: float
    num_segments: int
    temporal_contrast: float
    degenerate_fraction: float = 0.0


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total = 0.0
    ivs = sorted(intervals)
    if not ivs:
        return total
    cur_s, cur_e = ivs[0]
    for s, e in ivs[1:]:
        if s > cur_e:
            total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + (cur_e - cur_s)


def _contrast(sim: np.ndarray, paths: list[FoundSegment], near: int = 2, far: int = 7) -> float:
    tr = sim.shape[1]
    vals = []
    for p in paths:
        for i, j in p.path:
            js = np.r_[j - far : j - near + 1, j + near : j + far + 1]
            js = js[(js >= 0) & (js < tr)]
            if len(js):
                vals.append(cells(sim, i, j) - cells(sim, i, js).mean())
    return float(np.mean(vals)) if vals else 0.0


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    c = np.corrcoef(x, y)[0, 1]
    return float(c * c) if np.isfinite(c) else 0.0


def alignment_evidence(
    sim: np.ndarray,
    found: list[FoundSegment],
    query_times: np.ndarray | None = None,
    ref_times: np.ndarray | None = None,
    min_sim: float = SegmentParams().min_sim,
) -> AlignmentEvidence:
    """Evidence for one pair from the segments of :func:`inference.segments.find_segments` on the same ``sim``."""
    sim = checked(sim)
    qt = frame_intervals(query_times, sim.shape[0], "query_times")
    rt = frame_intervals(ref_times, sim.shape[1], "ref_times")
    degenerate = degenerate_fraction(sim, min_sim)
    if not found:
        return AlignmentEvidence(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, degenerate)
    strongest = max(found, key=lambda f: f.total)
    return _evidence(sim, [f.segment for f in found], found, qt, rt, strongest.speed, degenerate)


def _evidence(sim: np.ndarray, segs: list[Segment], parts: list[Any], qt: np.ndarray, rt: np.ndarray, speed: float,
              degenerate: float) -> AlignmentEvidence:
    """Evidence from ``segs`` and the matched paths behind them (``.path`` ``[n, 2]`` frame indices, ``.sims``)."""
    q_iv = [(s.query_start, s.query_end) for s in segs]
    r_iv = [(s.ref_start, s.ref_end) for s in segs]
    q_span, r_span = _span(qt), _span(rt)
    q_cov = _union_length(q_iv) / q_span if q_span > 0 else 1.0
    r_cov = _union_length(r_iv) / r_span if r_span > 0 else 1.0
    all_sims = np.concatenate([p.sims for p in parts])
    weights = np.array([len(p.path) for p in parts], dtype=np.float64)
    r2 = np.array([_r2(p.path[:, 0].astype(float), p.path[:, 1].astype(float)) for p in parts])
    return AlignmentEvidence(
        aligned_seconds=float(sum(e - s for s, e in q_iv)),
        query_coverage=float(min(q_cov, 1.0)),
        ref_coverage=float(min(r_cov, 1.0)),
        mean_similarity=float(all_sims.mean()),
        diagonality=float((r2 * weights).sum() / weights.sum()),
        speed_ratio=float(speed),
        num_segments=len(parts),
        temporal_contrast=_contrast(sim, parts),
        degenerate_fraction=degenerate,
    )


def align_pair(
    sim: np.ndarray,
    query_times: np.ndarray | None = None,
    ref_times: np.ndarray | None = None,
    params: SegmentParams = SegmentParams(),
) -> tuple[list[Segment], AlignmentEvidence]:
    """:func:`align_segments` and :func:`alignment_evidence` from one segment search.

    The evidence covers the reported segments *and* the flat lines the search turned down for lack
    of contrast (:func:`inference.segments.search_segments`): a copy of slowly changing footage
    cannot be placed at 1 fps, but its flat line (low ``temporal_contrast``, high
    ``degenerate_fraction`` when static) still tells the copy head something."""
    sim = checked(sim)
    found, flat = search_segments(sim, query_times, ref_times, params)
    return [f.segment for f in found], alignment_evidence(sim, found + flat, query_times, ref_times, params.min_sim)


HEAD_TN_PARAMS = {"min_sim": 0.35, "min_length": 2, "max_step": 3, "top_k": 5, "max_paths": 5}
"""The Temporal Network's parameters behind the copy head's evidence (:func:`tn_evidence`)."""


def tn_evidence(
    sim: np.ndarray,
    query_times: np.ndarray | None = None,
    ref_times: np.ndarray | None = None,
) -> AlignmentEvidence:
    """The pair evidence the default copy head was fitted on: the Temporal Network's paths
    (:data:`HEAD_TN_PARAMS`), timed first-to-last frame on ``[T]`` times.

    The copy-segment search (:func:`align_pair`) decides what alerts *carry*; the copy head keeps
    reading the evidence it was trained on, so a change of the segment search cannot shift its
    calibrated threshold. ``degenerate_fraction`` is that of the whole matrix, as in :func:`align_pair`.
    """
    sim = checked(sim)
    qt = _check_times(query_times, sim.shape[0], "query_times")
    rt = _check_times(ref_times, sim.shape[1], "ref_times")
    p = HEAD_TN_PARAMS
    paths = temporal_network(sim, min_sim=p["min_sim"], min_length=p["min_length"], max_step=p["max_step"],
                             top_k=p["top_k"], max_paths=p["max_paths"])
    degenerate = degenerate_fraction(sim, SegmentParams().min_sim)
    if not paths:
        return AlignmentEvidence(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, degenerate)
    segs = [_segment(p_, qt, rt) for p_ in paths]
    strongest = segs[int(np.argmax([p_.total for p_ in paths]))]
    q_len = strongest.query_end - strongest.query_start
    speed = (strongest.ref_end - strongest.ref_start) / q_len if q_len > 0 else 0.0
    return _evidence(sim, segs, paths, qt, rt, speed, degenerate)
