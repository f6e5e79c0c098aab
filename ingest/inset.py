"""Find a picture-in-picture inset (or a padded content area) from persistent straight edges.

Why: a copy shown small inside other footage fills only part of each frame, so every frame-level
descriptor of the upload mostly describes the *other* footage; the centre crop may even cut the
inset in half. The inset's border, though, is a rectangle at a fixed place whose four sides are an
edge in every frame, while the edges of moving content wander. We look for that rectangle on the
first :data:`DETECT_FRAMES` sampled frames (uncropped, short side ``short_side``), and when one is
found the decoder also returns the inset itself, resized and centre-cropped like the main view, as
a second *view* of the video (``DecodedVideo.inset``). Bars of a letterboxed copy give only two
real sides and are not taken for an inset (the main view handles them).

Method (per frame pair of neighbouring pixels, grey levels 0-255):

1. ``|∂x|`` and ``|∂y|`` per frame; their :data:`PERSIST_QUANTILE` quantile over time keeps only
   edges present in (nearly) every frame;
2. a column is a candidate side when its rows (a share of at least :data:`MIN_SIDE` of the height)
   holds many persistent edge pixels above :data:`EDGE_LEVEL`; rows likewise; the frame borders are
   candidates too (an inset may touch them);
3. every candidate rectangle between :data:`MIN_SIDE` and :data:`MAX_SIDE` of the frame in both
   directions is scored per real (non-border) side by its *line contrast*: the fraction of the
   side's pixels that are persistent edges minus the smaller fraction on the two parallel lines
   :data:`OFFSET` pixels beside it (a texture covers the line and both neighbours, a border at most
   one of them); the best one with at least three real sides, each ≥ :data:`MIN_SIDE_COVERAGE` and
   ≥ :data:`MIN_COVERAGE` on average, wins, with a bonus for its area (:data:`AREA_WEIGHT`): an
   inset encloses the rectangles of its own content.

A found inset may carry bars of its own (a letterboxed or padded copy shown small):
:func:`inset_content` looks for them inside it (:func:`ingest.borders.detect_borders`) and narrows
the box to the content, so the inset view compares content to content like the main view does.

Static footage makes every edge persistent, so a rectangle of static edges could be taken for an
inset; that only adds a view (an extra comparison), it never removes the main one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ingest.borders import detect_borders

__all__ = ["InsetBox", "detect_inset", "inset_content", "DETECT_FRAMES"]

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
AREA_WEIGHT = 0.3
"""Score per unit of the frame's area a rectangle covers. Content inside an inset (a screen
recording's panels, a wall meeting a ceiling in static footage) forms smaller rectangles whose
sides are as persistent as the inset's own border and often cleaner; without this weight the
decoder returned a wrong box for 30 of the train split's 210 insets (20 with it). Chosen on the
train split's sources with ``dupwatch bench inset``: of 0, 0.2, 0.3, 0.5, 0.7 and 1, 0.2 and 0.3
were best; 1 did worse than none, when larger boxes holding part of the host won."""
TRIM = 4
"""Pixels taken off each side of a found inset before its own bars are looked for: the box may
hold resampled pixels blending the background into the inset, which are not part of a bar."""


@dataclass(frozen=True)
class InsetBox:
    """The inset in relative frame coordinates ``[0, 1]`` (x0 < x1, y0 < y1)."""

    x0: float
    y0: float
    x1: float
    y1: float
    coverage: float
    """Mean line contrast of the real sides (detection confidence)."""
    kind: str = "inset"
    """What the decoder's second view cut from this box is: ``inset`` (picture in picture) or
    ``reframe`` (a portrait video's content, :mod:`ingest.reframe`)."""

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
    """``np.quantile(steps, PERSIST_QUANTILE, axis=0)`` (linear interpolation); a plain sort over the
    short time axis measured ×3 faster here than ``np.partition`` or ``np.quantile``."""
    pos = PERSIST_QUANTILE * (steps.shape[0] - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, steps.shape[0] - 1)
    part = np.sort(steps, axis=0)
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


def _line_contrast(cum: np.ndarray, lines: np.ndarray, ends: np.ndarray, size: int) -> np.ndarray:
    """Line contrast ``[len(lines), len(ends), len(ends)]`` of every segment ``ends[a]..ends[b]``
    along every candidate line: its coverage (share of persistent-edge pixels) minus the smaller
    coverage of the parallel lines :data:`OFFSET` pixels to either side (a texture covers the line
    and both neighbours, a border at most one of them). NaN where the line is a frame border.

    ``cum`` is ``[segment axis + 1, line axis]``: prefix sums of the edge mask along each line
    (line ``p`` sits between pixels ``p-1`` and ``p``, so its column is ``p - 1``)."""
    a, b = ends[:, None], ends[None, :]
    length = np.where(b > a, b - a, 1)

    def coverage(pos: np.ndarray) -> np.ndarray:
        inside = (pos > 0) & (pos < size)
        col = np.clip(pos - 1, 0, cum.shape[1] - 1)
        cov = (cum[b[None], col[:, None, None]] - cum[a[None], col[:, None, None]]) / length[None]
        return np.where(inside[:, None, None], cov, np.nan)

    line = coverage(lines)
    beside = np.fmin(coverage(lines - OFFSET), coverage(lines + OFFSET))
    contrast = line - np.nan_to_num(beside, nan=0.0)
    return contrast


def detect_inset(frames: np.ndarray) -> InsetBox | None:
    """The inset rectangle of ``frames`` (``[T, H, W, 3]`` uint8, uncropped), or ``None``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] < MIN_FRAMES or frames.shape[1] < 16 or frames.shape[2] < 16:
        return None
    grey = frames[:DETECT_FRAMES].sum(axis=3, dtype=np.uint16).astype(np.float32) / 3.0
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
    row_cum = np.concatenate([np.zeros((gy.shape[0], 1)), np.cumsum(gy, axis=1)], axis=1).T  # [W+1, H-1]
    c, r = np.asarray(cols), np.asarray(rows)
    v = _line_contrast(col_cum, c, r, w)  # [len(cols), len(rows), len(rows)]: a vertical side at c[i] over r[a]..r[b]
    hz = _line_contrast(row_cum, r, c, h)  # [len(rows), len(cols), len(cols)]
    ht = hz.transpose(1, 2, 0)  # ht[i, j, k]: the horizontal side at r[k] over c[i]..c[j]
    sides = np.stack(np.broadcast_arrays(v[:, None, :, :], v[None, :, :, :], ht[:, :, :, None], ht[:, :, None, :]), axis=-1)
    real = ~np.isnan(sides)
    n = real.sum(axis=-1)
    coverage = np.where(n > 0, np.nansum(sides, axis=-1) / np.maximum(n, 1), 0.0)
    weakest = np.where(real, sides, np.inf).min(axis=-1)
    width, height = c[None, :] - c[:, None], r[None, :] - r[:, None]  # [i, j], [k, l]
    ok_w = (width >= MIN_SIDE * w) & (width <= MAX_SIDE * w)
    ok_h = (height >= MIN_SIDE * h) & (height <= MAX_SIDE * h)
    ok = ok_w[:, :, None, None] & ok_h[None, None, :, :] & (n >= 3) & (weakest >= MIN_SIDE_COVERAGE) & (coverage >= MIN_COVERAGE)
    if not ok.any():
        return None
    # the best rectangle: highest (coverage + 0.05 per real side + AREA_WEIGHT × area share), then
    # largest area, then first in (x0, x1, y0, y1) order
    area = width[:, :, None, None] * height[None, None, :, :] / float(w * h)
    key = np.where(ok, coverage + 0.05 * n + AREA_WEIGHT * area, -np.inf)
    top = ok & (key == key.max())
    i, j, k, l = np.unravel_index(int(np.argmax(np.where(top, area, -1.0))), key.shape)
    return InsetBox(c[i] / w, r[k] / h, c[j] / w, r[l] / h, float(coverage[i, j, k, l]))


def inset_content(frames: np.ndarray, box: InsetBox) -> InsetBox:
    """``box`` narrowed to the content inside the inset's own letterbox/pillarbox bars, if it has
    any (``frames`` as for :func:`detect_inset`); otherwise ``box`` itself."""
    frames = np.asarray(frames)[:DETECT_FRAMES]
    h, w = frames.shape[1:3]
    x0, y0, x1, y1 = box.pixels(w, h)
    x0, y0, x1, y1 = x0 + TRIM, y0 + TRIM, x1 - TRIM, y1 - TRIM
    if x1 - x0 < 16 or y1 - y0 < 16:
        return box
    bars = detect_borders(frames[:, y0:y1, x0:x1])
    if bars is None:
        return box
    rw, rh = x1 - x0, y1 - y0
    return replace(box, x0=(x0 + bars.x0 * rw) / w, y0=(y0 + bars.y0 * rh) / h,
                   x1=(x0 + bars.x1 * rw) / w, y1=(y0 + bars.y1 * rh) / h)
