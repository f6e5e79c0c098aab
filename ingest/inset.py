"""Find a picture-in-picture inset (or a padded content area) from persistent straight edges.

Why: a copy shown small inside other footage fills only part of each frame, so every frame-level
descriptor of the upload mostly describes the *other* footage; the centre crop may even cut the
inset in half. The inset's border, though, is a rectangle at a fixed place whose four sides are an
edge in every frame, while the edges of moving content wander. We look for that rectangle on the
first :data:`DETECT_FRAMES` sampled frames (uncropped, short side ``short_side``), and when one is
found the decoder also returns the inset itself, resized and centre-cropped like the main view, as
a second *view* of the video (``DecodedVideo.inset``). The same rule finds the content area of a
letterboxed / padded copy (bars are persistent edges too).

Method (per frame pair of neighbouring pixels, grey levels 0-255):

1. ``|∂x|`` and ``|∂y|`` per frame; their :data:`PERSIST_QUANTILE` quantile over time keeps only
   edges present in (nearly) every frame;
2. a column is a candidate side when its rows (a share of at least :data:`MIN_SIDE` of the height)
   holds many persistent edge pixels above :data:`EDGE_LEVEL`; rows likewise; the frame borders are
   candidates too (an inset may touch them);
3. every candidate rectangle between :data:`MIN_SIDE` and :data:`MAX_SIDE` of the frame in both
   directions is scored per real (non-border) side by its *line contrast*: the fraction of the
   side's pixels that are persistent edges minus that fraction on the parallel lines :data:`OFFSET`
   pixels beside it (a texture covers both, a border only the line); the best one with at least three real sides, each covered ≥ :data:`MIN_SIDE_COVERAGE`
   and ≥ :data:`MIN_COVERAGE` on average, wins.

Static footage makes every edge persistent, so a rectangle of static edges could be taken for an
inset; that only adds a view (an extra comparison), it never removes the main one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["InsetBox", "detect_inset", "DETECT_FRAMES"]

DETECT_FRAMES = 24
"""Sampled frames the detector looks at (1 fps: the first 24 s); memory ≤ 24 uncropped frames."""
MIN_FRAMES = 3
"""Fewer frames cannot tell a persistent edge from the content's own."""
PERSIST_QUANTILE = 0.2
"""An edge must hold in ~80 % of the frames."""
EDGE_LEVEL = 8.0
"""Grey-level step that counts as an edge."""
MIN_SIDE, MAX_SIDE = 0.25, 0.92
"""Inset size bounds, as fractions of the frame's width and height."""
MIN_COVERAGE = 0.68
"""Mean fraction of the real sides' pixels that must be persistent edges."""
MIN_SIDE_COVERAGE = 0.35
"""Every real side at least this much (a rotated or dark inset loses parts of its border)."""
OFFSET = 6
"""Pixels between a side and the parallel lines it is compared with."""
CANDIDATES = 12
"""Candidate lines kept per direction (strongest first)."""


@dataclass(frozen=True)
class InsetBox:
    """The inset in relative frame coordinates ``[0, 1]`` (x0 < x1, y0 < y1)."""

    x0: float
    y0: float
    x1: float
    y1: float
    coverage: float
    """Mean line contrast of the real sides (detection confidence)."""

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        return (int(round(self.x0 * width)), int(round(self.y0 * height)),
                int(round(self.x1 * width)), int(round(self.y1 * height)))

    def as_list(self) -> list[float]:
        return [round(v, 4) for v in (self.x0, self.y0, self.x1, self.y1)]


def _step(grey: np.ndarray, axis: int) -> np.ndarray:
    """|I[i+1] − I[i]| along ``axis``, widened to the larger of it and the 2-pixel step
    |I[i+1] − I[i−1]| / 2 so that an anti-aliased (resampled) border still reads as one edge."""
    d = np.abs(np.diff(grey, axis=axis))
    n = grey.shape[axis]
    wide = np.abs(np.take(grey, range(2, n), axis=axis) - np.take(grey, range(0, n - 2), axis=axis)) * 0.75
    pad = [(0, 0)] * grey.ndim
    pad[axis] = (0, 1)
    return np.maximum(d, np.pad(wide, pad))


def _persistent(steps: np.ndarray) -> np.ndarray:
    """``np.quantile(steps, PERSIST_QUANTILE, axis=0)`` (linear interpolation) by a partial sort."""
    pos = PERSIST_QUANTILE * (steps.shape[0] - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, steps.shape[0] - 1)
    part = np.partition(steps, (lo, hi), axis=0)
    return part[lo] + (pos - lo) * (part[hi] - part[lo])


def _widen(mask: np.ndarray, axis: int) -> np.ndarray:
    """``mask`` OR its neighbours ±1 along ``axis``."""
    out = mask.copy()
    if axis == 1:
        out[:, 1:] |= mask[:, :-1]
        out[:, :-1] |= mask[:, 1:]
    else:
        out[1:] |= mask[:-1]
        out[:-1] |= mask[1:]
    return out


def _candidates(strength: np.ndarray, minimum: int, size: int) -> list[int]:
    """Edge positions (between pixel i-1 and i, so in 1..size-1) with the longest persistent runs,
    one per 3-pixel neighbourhood, plus the two borders 0 and ``size``."""
    order = np.argsort(-strength, kind="stable")
    picked: list[int] = []
    for i in order:
        if strength[i] < minimum or len(picked) >= CANDIDATES:
            break
        pos = int(i) + 1
        if all(abs(pos - p) > 3 for p in picked):
            picked.append(pos)
    return sorted(set(picked) | {0, size})


def detect_inset(frames: np.ndarray) -> InsetBox | None:
    """The inset rectangle of ``frames`` (``[T, H, W, 3]`` uint8, uncropped), or ``None``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] < MIN_FRAMES or frames.shape[1] < 16 or frames.shape[2] < 16:
        return None
    grey = frames[:DETECT_FRAMES].astype(np.float32).mean(axis=3)
    t, h, w = grey.shape
    # persistent edges: gx[y, i] is the step between columns i and i+1, gy[i, x] between rows i and i+1
    gx = _persistent(_step(grey, axis=2)) >= EDGE_LEVEL  # [H, W-1]
    gy = _persistent(_step(grey, axis=1)) >= EDGE_LEVEL  # [H-1, W]
    gx, gy = _widen(gx, axis=1), _widen(gy, axis=0)  # a border may wobble by a pixel between frames
    cols = _candidates(gx.sum(axis=0), int(MIN_COVERAGE * MIN_SIDE * h), w)
    rows = _candidates(gy.sum(axis=1), int(MIN_COVERAGE * MIN_SIDE * w), h)
    if len(cols) <= 2 and len(rows) <= 2:
        return None
    # prefix sums along every line for O(1) coverage of any segment
    col_cum = np.concatenate([np.zeros((1, gx.shape[1])), np.cumsum(gx, axis=0)], axis=0)  # [H+1, W-1]
    row_cum = np.concatenate([np.zeros((gy.shape[0], 1)), np.cumsum(gy, axis=1)], axis=1)  # [H-1, W+1]

    def col_cov(x: int, a: int, b: int) -> float:
        return float(col_cum[b, x - 1] - col_cum[a, x - 1]) / (b - a) if 0 < x < w else 0.0

    def row_cov(y: int, a: int, b: int) -> float:
        return float(row_cum[y - 1, b] - row_cum[y - 1, a]) / (b - a) if 0 < y < h else 0.0

    def side(cov, pos: int, a: int, b: int, size: int) -> float | None:
        """Line contrast of one side: its coverage minus that of the parallel lines beside it
        (a texture covers the line and both neighbours, a border at most one of them); ``None`` on a frame border."""
        if not 0 < pos < size:
            return None
        beside = [cov(p, a, b) for p in (pos - OFFSET, pos + OFFSET) if 0 < p < size]
        return cov(pos, a, b) - (min(beside) if beside else 0.0)

    best: tuple[float, float, InsetBox] | None = None
    for i, x0 in enumerate(cols):
        for x1 in cols[i + 1:]:
            if not (MIN_SIDE * w <= x1 - x0 <= MAX_SIDE * w):
                continue
            for j, y0 in enumerate(rows):
                for y1 in rows[j + 1:]:
                    if not (MIN_SIDE * h <= y1 - y0 <= MAX_SIDE * h):
                        continue
                    sides = [c for c in (side(col_cov, x0, y0, y1, w), side(col_cov, x1, y0, y1, w),
                                         side(row_cov, y0, x0, x1, h), side(row_cov, y1, x0, x1, h)) if c is not None]
                    coverage = sum(sides) / len(sides) if sides else 0.0
                    if len(sides) < 3 or min(sides) < MIN_SIDE_COVERAGE or coverage < MIN_COVERAGE:
                        continue
                    area = (x1 - x0) * (y1 - y0) / float(w * h)
                    key = (coverage + 0.05 * len(sides), area)
                    if best is None or key > best[:2]:
                        best = (*key, InsetBox(x0 / w, y0 / h, x1 / w, y1 / h, coverage))
    return best[2] if best is not None else None
