"""Copy segments on a frame-to-frame similarity matrix: straight lines at a plausible speed.

A copied part shows up in the similarity matrix ``sim[Tq, Tr]`` as a ridge along a straight line
``ref_time = speed · query_time + offset`` with ``speed`` in the supported range (0.5–2× by
default). :func:`find_segments` finds such lines and reports each as a :class:`FoundSegment`:

1. candidate matches: the ``top_k`` reference frames of every query frame and the ``top_k``
   query frames of every reference frame with ``sim >= min_sim`` (both directions, so a
   reference that is a part of the query is found as well as a query that is a part of the
   reference);
2. Hough voting: every candidate votes, with its similarity, for the offsets of the lines through
   it at each speed of a geometric grid over ``[min_speed, max_speed]``; the strongest
   (speed, offset) cell wins;
3. along that line every query frame takes its best reference frame within a tolerance of the
   line; runs of matched query frames (gaps of at most ``max_gap`` frames) with at least
   ``min_length`` matches become segment candidates (lines are fitted on the sampling instants); the line is refitted (weighted least
   squares, speed clamped to the range) on the strongest run and the run re-extracted; weak
   matches at its ends (below 0.75 × its median similarity) are trimmed;
4. a run is kept when it stands out from its surroundings (mean ``contrast`` ≥ ``min_contrast``:
   the similarity of a matched pair minus the highest mean of the cells 2–5 frames off it on each
   of its four sides; another moment of static footage is a plateau, a freeze a column: neither
   stands out on every side) and does not overlap a
   kept segment (boxes that intersect, or more than half of its length on either axis shared);
   its box is then removed from the candidates and the search repeats, which yields several
   segments when a copy is cut and re-ordered.

A segment covers its matched frames' whole sampling intervals on the query side and their image
under the fitted line on the reference side, so a 10-second copy sampled at 1 fps is 0–10 s, and
speed is exactly ``(ref_end − ref_start) / (query_end − query_start)``, always within the range.
A speed of about 0 (many query frames on one reference frame: a freeze, or static footage) is
not a copy: it is never reported as a segment; :func:`degenerate_fraction` measures it as
evidence against a copy (a gate on the copy level, :mod:`detect.levels`).

Timestamps are ``[T, 2]`` (start, end per sample) or ``[T]`` (sample times: each sample stands
for the interval up to the next one, the last for the median step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dupwatch.records import Segment
from inference.similarity_matrix import cells, checked, row_blocks

__all__ = ["FoundSegment", "SegmentParams", "degenerate_fraction", "find_segments", "frame_intervals", "search_segments"]


@dataclass(frozen=True)
class SegmentParams:
    """Parameters of :func:`find_segments` (defaults tuned for 1 fps fine-network similarities)."""

    min_sim: float = 0.35
    min_length: int = 2
    """Matched query frames a segment needs at least."""
    max_gap: int = 2
    """Unmatched query frames allowed inside a segment (dropped or inserted frames, noise)."""
    top_k: int = 5
    max_segments: int = 5
    min_speed: float = 0.5
    max_speed: float = 2.0
    speed_steps: int = 17
    min_contrast: float = 0.03
    snap_same_speed: float | None = 0.5
    """The fitted speed becomes 1× when the matches lie within this many reference steps (RMS) of a
    1× line (short runs fit speed poorly); ``None``: never."""
    rescue_degenerate: float | None = 0.9
    """A line below ``min_contrast`` is still a segment when the best reference frames of its query
    frames do not collapse onto one instant (their :func:`degenerate_fraction` is below this): real
    footage that changes slowly has a broad ridge at 1 fps, a still shot a plateau. ``None``: contrast alone."""

    def __post_init__(self) -> None:
        if self.min_length < 1 or self.top_k < 1 or self.max_segments < 1 or self.max_gap < 0 or self.speed_steps < 1:
            raise ValueError("min_length, top_k, max_segments, speed_steps must be >= 1 and max_gap >= 0")
        if not 0 < self.min_speed <= 1 <= self.max_speed:
            raise ValueError(f"speed range must contain 1 and be positive, got {self.min_speed}..{self.max_speed}")


@dataclass(frozen=True)
class FoundSegment:
    """One copy segment: ``path`` ``[L, 2]`` matched (query, reference) frame indices (both strictly
    increasing in the query index, non-decreasing in the reference index), ``sims`` ``[L]`` their
    similarities, the fitted line (``speed`` reference seconds per query second, ``offset`` s) and the
    reported :class:`Segment` in seconds."""

    path: np.ndarray
    sims: np.ndarray
    speed: float
    offset: float
    contrast: float
    segment: Segment

    @property
    def total(self) -> float:
        return float(self.sims.sum())

    @property
    def mean(self) -> float:
        return float(self.sims.mean())


def frame_intervals(times: np.ndarray | None, n: int, name: str = "times") -> np.ndarray:
    """``[n, 2]`` (start, end) seconds from ``[n]`` sample times or ``[n, 2]`` intervals (``None``: frame indices)."""
    if times is None:
        t = np.arange(n, dtype=np.float64)
    else:
        t = np.asarray(times, dtype=np.float64)
    if t.ndim == 2 and t.shape == (n, 2):
        return t
    if t.ndim != 1 or t.shape != (n,):
        raise ValueError(f"{name} must be [{n}] or [{n}, 2] seconds, got {t.shape}")
    steps = np.diff(t)
    step = float(np.median(steps)) if len(steps) and np.median(steps) > 0 else 1.0
    end = np.append(t[1:], t[-1] + step) if n > 1 else t + step
    end = np.maximum(end, t)  # non-monotone input: never a negative interval
    return np.stack([t, end], axis=1)


def degenerate_fraction(sim: np.ndarray, min_sim: float, *, eps: float = 0.001, run: int = 3) -> float:
    """Share of the matched query frames (best similarity ≥ ``min_sim``) that collapse onto one
    reference instant: the reference frame that is the best (within ``eps``) of the most query
    frames, counted when it is that for at least ``run`` of them (speed below 0.5: a slowed-down
    copy at 0.5× puts two query frames on a reference frame, not three). 0 when fewer than ``run``
    frames match.

    Another moment of static footage, or a freeze, piles (almost) every query frame onto one
    reference frame; a copy, even of slowly changing real footage, moves along the reference as the
    query moves on, each frame most like its own original. ``eps`` absorbs the sensor-noise ties of
    a still shot (about 0.0001 apart). Evidence *against* a copy: it gates the copy level
    (:mod:`detect.levels`, ``detection.max_degenerate``) and is never a segment.
    """
    sim = checked(sim)
    n = 0
    votes = np.zeros(sim.shape[1], np.int64)
    for _, block in row_blocks(sim):  # a row's match and vote depend on that row alone: one pass
        best = block.max(axis=1)
        keep = best >= min_sim
        n += int(keep.sum())
        votes += (block[keep] >= best[keep, None] - eps).sum(axis=0)
    if n < run:
        return 0.0
    count = int(votes.max())
    return float(count / n) if count >= run else 0.0


# --------------------------------------------------------------------------------------------
# internals


def _candidates(sim: np.ndarray, live: np.ndarray, k: int, min_sim: float) -> tuple[np.ndarray, np.ndarray]:
    """(query, reference) indices of the row-wise and column-wise top-k live cells with ``sim >= min_sim``.

    Each row's and each column's top-k is its own, so they are taken a block of rows, then of
    columns, at a time (:data:`inference.similarity_matrix.BLOCK_CELLS`)."""
    tq, tr = sim.shape
    keep = np.zeros_like(live)
    kr, kc = min(k, tr), min(k, tq)
    for a, block in row_blocks(sim):
        b = a + len(block)
        masked = np.where(live[a:b], block, -np.inf)
        top = np.argpartition(-masked, kr - 1, axis=1)[:, :kr]
        keep[np.arange(a, b)[:, None], top] |= np.take_along_axis(masked, top, axis=1) >= min_sim
    for a, block in row_blocks(sim.T):
        b = a + len(block)
        masked = np.where(live[:, a:b], block.T, -np.inf)
        top = np.argpartition(-masked, kc - 1, axis=0)[:kc, :]
        keep[top, np.arange(a, b)[None, :]] |= np.take_along_axis(masked, top, axis=0) >= min_sim
    qi, rj = np.nonzero(keep)
    return qi, rj


def _best_line(qc: np.ndarray, rc: np.ndarray, w: np.ndarray, speeds: np.ndarray, bin_w: float) -> tuple[float, float, float]:
    """(speed, offset, votes) of the strongest Hough cell; offsets binned by ``bin_w`` and summed over 3 bins."""
    b_all = rc[None, :] - speeds[:, None] * qc[None, :]  # [S, N]
    lo = b_all.min()
    idx = np.floor((b_all - lo) / bin_w).astype(np.int64)
    nbins = int(idx.max()) + 1
    flat = idx + (np.arange(len(speeds)) * nbins)[:, None]
    hist = np.bincount(flat.ravel(), weights=np.broadcast_to(w, b_all.shape).ravel(), minlength=len(speeds) * nbins)
    hist = hist.reshape(len(speeds), nbins)
    smooth = hist.copy()
    smooth[:, 1:] += hist[:, :-1]
    smooth[:, :-1] += hist[:, 1:]
    si, k = np.unravel_index(int(smooth.argmax()), smooth.shape)
    sel = (idx[si] >= k - 1) & (idx[si] <= k + 1)
    ws = w[sel]
    off = float((b_all[si, sel] * ws).sum() / ws.sum())
    return float(speeds[si]), off, float(smooth[si, k])


def _along(sim: np.ndarray, live: np.ndarray, qc: np.ndarray, rc: np.ndarray, speed: float, offset: float, tol: float,
           min_sim: float) -> np.ndarray:
    """Per query frame: its best live reference frame within ``tol`` s of the line (−1: none ≥ ``min_sim``)."""
    tq, tr = sim.shape
    target = speed * qc + offset
    lo = np.searchsorted(rc, target - tol, side="left")
    hi = np.searchsorted(rc, target + tol, side="right")
    width = int((hi - lo).max(initial=0))
    out = np.full(tq, -1, np.int64)
    if width <= 0:
        return out
    cols = lo[:, None] + np.arange(width)[None, :]
    ok = cols < hi[:, None]
    cols = np.minimum(cols, tr - 1)
    rows = np.arange(tq)[:, None]
    vals = np.where(ok & live[rows, cols], cells(sim, rows, cols), -np.inf)
    j = vals.argmax(axis=1)
    best = vals[np.arange(tq), j]
    hit = best >= min_sim
    out[hit] = cols[np.arange(tq), j][hit]
    return out


def _runs(match: np.ndarray, max_gap: int, min_length: int) -> list[np.ndarray]:
    """Query indices of each run of matched frames (gaps ≤ ``max_gap``) with ≥ ``min_length`` matches."""
    idx = np.flatnonzero(match >= 0)
    if len(idx) == 0:
        return []
    cuts = np.flatnonzero(np.diff(idx) > max_gap + 1) + 1
    return [r for r in np.split(idx, cuts) if len(r) >= min_length]


def _monotone(qi: np.ndarray, rj: np.ndarray) -> np.ndarray:
    """Keep the matches whose reference index never goes back (longest non-decreasing subsequence).

    Each match extends the longest chain ending at an earlier match with a reference index no
    larger (the first such earlier match when several tie); one vectorised pass per match keeps a
    run of a 4 h copy (14,400 matches) well under a second."""
    n = len(rj)
    if n <= 1 or np.all(np.diff(rj) >= 0):
        return np.arange(n)
    length = np.ones(n, np.int64)
    prev = np.full(n, -1, np.int64)
    for a in range(1, n):
        chains = np.where(rj[:a] <= rj[a], length[:a], 0)
        c = int(chains.argmax())
        if chains[c] > 0:
            length[a], prev[a] = chains[c] + 1, c
    a = int(length.argmax())
    keep = []
    while a >= 0:
        keep.append(a)
        a = int(prev[a])
    return np.array(keep[::-1], np.int64)


def _trim(sim: np.ndarray, qi: np.ndarray, rj: np.ndarray, min_length: int, ratio: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Drop weak matches at the run's ends (below ``ratio`` × the run's median similarity): the
    neighbours of a copy's first and last frames often pass ``min_sim`` but belong to no copy."""
    med = float(np.median(cells(sim, qi, rj)))
    a, b = 0, len(qi)
    while b - a > min_length and cells(sim, qi[a], rj[a]) < ratio * med:
        a += 1
    while b - a > min_length and cells(sim, qi[b - 1], rj[b - 1]) < ratio * med:
        b -= 1
    return qi[a:b], rj[a:b]


def _fit(qc: np.ndarray, rc: np.ndarray, w: np.ndarray, lo: float, hi: float, fallback: float) -> tuple[float, float]:
    """Weighted least-squares line ``rc ≈ s·qc + b`` with ``s`` clamped to ``[lo, hi]``."""
    if len(qc) >= 2 and np.ptp(qc) > 0:
        mq, mr = np.average(qc, weights=w), np.average(rc, weights=w)
        s = float(np.sum(w * (qc - mq) * (rc - mr)) / np.sum(w * (qc - mq) ** 2))
        s = float(np.clip(s, lo, hi)) if np.isfinite(s) else fallback
    else:
        s = fallback
    return s, float(np.average(rc - s * qc, weights=w))


def _contrast(sim: np.ndarray, qi: np.ndarray, rj: np.ndarray, near: int = 2, far: int = 5) -> float:
    """Mean over the matches of ``sim`` minus the highest of its four side means (cells ``near..far``
    frames before / after on the reference axis, above / below on the query axis). A ridge stands
    out on all four sides; a plateau (static footage) or a column (a freeze) does not on at least one."""
    if len(qi) == 0:
        return 0.0
    tq, tr = sim.shape
    offs = np.arange(near, far + 1)
    sides = []
    for sign, axis in ((-1, 1), (1, 1), (-1, 0), (1, 0)):
        if axis == 1:
            idx = rj[:, None] + sign * offs[None, :]
            ok = (idx >= 0) & (idx < tr)
            vals = cells(sim, qi[:, None], np.clip(idx, 0, tr - 1))
        else:
            idx = qi[:, None] + sign * offs[None, :]
            ok = (idx >= 0) & (idx < tq)
            vals = cells(sim, np.clip(idx, 0, tq - 1), rj[:, None])
        count = ok.sum(axis=1)
        mean = np.where(count > 0, (vals * ok).sum(axis=1) / np.maximum(count, 1), -np.inf)
        sides.append(mean)
    top = np.max(np.stack(sides), axis=0)
    has = np.isfinite(top)
    if not has.any():
        return 0.0
    return float((cells(sim, qi, rj) - top)[has].mean())


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def _conflicts(seg: Segment, kept: list[FoundSegment]) -> bool:
    q, r = (seg.query_start, seg.query_end), (seg.ref_start, seg.ref_end)
    for k in kept:
        kq, kr = (k.segment.query_start, k.segment.query_end), (k.segment.ref_start, k.segment.ref_end)
        oq, orr = _overlap(q, kq), _overlap(r, kr)
        if (oq > 1e-9 and orr > 1e-9) or oq > 0.5 * (q[1] - q[0]) or orr > 0.5 * (r[1] - r[0]):
            return True
    return False


# --------------------------------------------------------------------------------------------
# public


def find_segments(sim: np.ndarray, query_times: np.ndarray | None = None, ref_times: np.ndarray | None = None,
                  params: SegmentParams = SegmentParams()) -> list[FoundSegment]:
    """Copy segments of one pair, strongest (summed similarity) first; see the module docstring.

    Segments are monotone, of positive length on both axes, at a speed within
    ``[params.min_speed, params.max_speed]``, and never overlap each other.
    """
    return search_segments(sim, query_times, ref_times, params)[0]


def search_segments(sim: np.ndarray, query_times: np.ndarray | None = None, ref_times: np.ndarray | None = None,
                    params: SegmentParams = SegmentParams()) -> tuple[list[FoundSegment], list[FoundSegment]]:
    """(segments, flat lines): :func:`find_segments`'s segments and the lines it turned down for
    lack of contrast (a plateau: static footage, or footage that changes too slowly to place at this
    sampling rate), which are never reported but are evidence for the copy head."""
    sim = checked(sim)
    tq, tr = sim.shape
    qt, rt = frame_intervals(query_times, tq, "query_times"), frame_intervals(ref_times, tr, "ref_times")
    qc, rc = qt[:, 0], rt[:, 0]  # the sampling instants: a query instant t shows the reference instant speed·t + offset
    q_step = float(np.median(qt[:, 1] - qt[:, 0])) or 1.0
    r_step = float(np.median(rt[:, 1] - rt[:, 0])) or 1.0
    p = params
    speeds = np.geomspace(p.min_speed, p.max_speed, p.speed_steps) if p.speed_steps > 1 else np.array([1.0])
    live = np.ones_like(sim, dtype=bool)
    kept: list[FoundSegment] = []
    flat: list[FoundSegment] = []
    for _ in range(p.max_segments + 6):
        if len(kept) + len(flat) >= p.max_segments:
            break
        ci, cj = _candidates(sim, live, p.top_k, p.min_sim)
        if len(ci) < p.min_length:
            break
        speed, offset, _votes = _best_line(qc[ci], rc[cj], cells(sim, ci, cj), speeds, r_step / 2)
        found = _extract(sim, live, qt, rt, qc, rc, q_step, r_step, speed, offset, p)
        if found is None:
            # nothing on the strongest line forms a run: drop its voters and look again
            near = np.abs(rc[cj] - (speed * qc[ci] + offset)) <= 0.75 * max(r_step, speed * q_step)
            live[ci[near], cj[near]] = False
            continue
        seg_box = found.path
        (q0, r0), (q1, r1) = seg_box.min(0), seg_box.max(0)
        live[q0 : q1 + 1, r0 : r1 + 1] = False
        if _conflicts(found.segment, kept + flat):
            continue
        (kept if _is_segment(sim, found, p) else flat).append(found)
    kept.sort(key=lambda f: -f.total)
    flat.sort(key=lambda f: -f.total)
    return kept, flat


def _is_segment(sim: np.ndarray, found: FoundSegment, p: SegmentParams) -> bool:
    """A ridge (contrast), or a broad ridge whose query frames' best matches do not collapse onto one reference instant."""
    if found.contrast >= p.min_contrast:
        return True
    if p.rescue_degenerate is None:
        return False
    rows = sim[np.unique(found.path[:, 0])]
    return degenerate_fraction(rows, p.min_sim) < p.rescue_degenerate


def _extract(sim: np.ndarray, live: np.ndarray, qt: np.ndarray, rt: np.ndarray, qc: np.ndarray, rc: np.ndarray,
             q_step: float, r_step: float, speed: float, offset: float, p: SegmentParams) -> FoundSegment | None:
    """The strongest run along a line, refitted once; ``None`` when no run is long enough."""
    tol = 0.75 * max(r_step, speed * q_step)
    match = _along(sim, live, qc, rc, speed, offset, tol, p.min_sim)
    runs = _runs(match, p.max_gap, p.min_length)
    if not runs:
        return None
    run = max(runs, key=lambda r: float(cells(sim, r, match[r]).sum()))
    s, b = _fit(qc[run], rc[match[run]], cells(sim, run, match[run]), p.min_speed, p.max_speed, speed)
    # re-extract along the refitted line, near the run
    tol = 0.75 * max(r_step, s * q_step)
    match2 = _along(sim, live, qc, rc, s, b, tol, p.min_sim)
    lo, hi = max(0, run[0] - p.max_gap - 1), min(len(qc), run[-1] + p.max_gap + 2)
    window = np.full_like(match2, -1)
    window[lo:hi] = match2[lo:hi]
    runs2 = _runs(window, p.max_gap, p.min_length)
    if runs2:
        run2 = max(runs2, key=lambda r: float(cells(sim, r, window[r]).sum()))
        if len(run2) >= len(run):
            run, match = run2, window
    qi, rj = run, match[run]
    keep = _monotone(qi, rj)
    qi, rj = _trim(sim, qi[keep], rj[keep], p.min_length)
    if len(qi) < p.min_length:
        return None
    sims = cells(sim, qi, rj)
    s, b = _fit(qc[qi], rc[rj], sims, p.min_speed, p.max_speed, s)
    if p.snap_same_speed is not None and s != 1.0:
        # a few frames cannot tell 0.8× from 1×: keep the same speed when it fits the matches as well
        b1 = float(np.average(rc[rj] - qc[qi], weights=sims))
        if np.sqrt(np.average((rc[rj] - qc[qi] - b1) ** 2, weights=sims)) <= p.snap_same_speed * r_step:
            s, b = 1.0, b1
    q_start, q_end = float(qt[qi[0], 0]), float(qt[qi[-1], 1])
    r_lo, r_hi = float(rt[0, 0]), float(rt[-1, 1])
    r_start = float(np.clip(s * q_start + b, r_lo, r_hi))
    r_end = float(np.clip(s * q_end + b, r_lo, r_hi))
    if not (q_end > q_start and r_end > r_start):
        return None
    seg = Segment(query_start=q_start, query_end=q_end, ref_start=r_start, ref_end=r_end, score=float(sims.mean()))
    return FoundSegment(np.stack([qi, rj], axis=1), sims, s, b, _contrast(sim, qi, rj), seg)
