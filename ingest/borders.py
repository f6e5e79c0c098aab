"""Letterbox / pillarbox / padded-frame detection, so that content is compared to content.

A copy uploaded with black bars (an HD film as SD 4:3 with bars, a landscape clip padded into a
9:16 vertical frame with black or blurred fill) would otherwise be centre-cropped with its bars,
and the region features (and the region layout of the copy head) would compare bars to content.

:func:`detect_borders` looks at a few whole frames (the decoder's resized frames, before the
centre crop) and finds, on each side, a run of rows or columns that is

- *constant*: flat within every frame (spatial std ≤ :data:`FLAT_STD`) and steady over the frames
  (its mean moves ≤ :data:`STEADY_MEAN`), in any colour (black, grey, white bars); or
- *blurred fill* (only as a pair of opposite bands, both ≥ :data:`MIN_BLUR_BAND` of the side, the
  way vertical reframes are padded): image detail (mean absolute gradient) below
  :data:`BLUR_RATIO` of the centre's, while the centre has real detail, and a seam where fill meets
  content; in a vertical frame also any mirrored pair of seams around content with more detail
  than the bands (:func:`_seam_pair_bands`).

A side counts only when its bar is at least :data:`MIN_BAR` of the dimension; the content left
must keep :data:`MIN_CONTENT` of it. The result is the content box in relative coordinates;
:func:`cut_content` cuts it from a whole frame and resizes/centre-crops it like the decoder's main
view. Cost: a few array reductions over ``DETECT_FRAMES`` frames of ~256×455 pixels, then one
extra resize per frame for videos that have bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

DETECT_FRAMES = 8
"""Frames looked at (spread over the first seconds at the decoder's sampling rate)."""
FLAT_STD = 2.0
"""Max spatial std (0–255 grey levels) of a bar row/column in every frame. Encoded bars measure 0–1;
flat real backgrounds (a lab tank, a studio wall, a window's title bar) measure 2.5–6, and taking
them for bars cut different parts of the picture from copies of the same footage (chosen on the
real train benchmarks: ``dupwatch train real-benchmarks``)."""
STEADY_MEAN = 3.0
"""Max change of a bar row's mean over the frames (bars: 0; a flat background under changing light: 7–8)."""
MIN_BAR = 0.03
MIN_CONTENT = 0.3
MIN_BLUR_BAND = 0.08
BLUR_RATIO = 0.25
SEAM_BAND_RATIO = 0.3
"""Bands found by their seams must have less than this share of the content's mean image detail."""
BLUR_SYMMETRY = 0.03
"""How far (share of the side) two bands found by their seams may differ in size: padding is centred."""
PORTRAIT_FRAME = 1.5
"""Frame height / width from which bands are also looked for by their seams (9:16 is 1.78)."""
MIN_DETAIL = 2.0
SEAM_RATIO = 2.5
"""The centre's mean absolute gradient must exceed this for a blurred band to be told from it."""

Fill = Literal["constant", "blurred"]


@dataclass(frozen=True)
class BorderCrop:
    """The content box (relative x0, y0, x1, y1 of the whole frame) and how its bars looked."""

    x0: float
    y0: float
    x1: float
    y1: float
    kind: str
    """``letterbox`` (bars above/below), ``pillarbox`` (left/right), ``windowbox`` (both)."""
    fill: Fill

    def as_list(self) -> list[float]:
        return [round(self.x0, 4), round(self.y0, 4), round(self.x1, 4), round(self.y1, 4)]

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        x0, y0 = int(round(self.x0 * width)), int(round(self.y0 * height))
        x1, y1 = int(round(self.x1 * width)), int(round(self.y1 * height))
        return x0, y0, max(x0 + 1, x1), max(y0 + 1, y1)

    def to_evidence(self) -> dict[str, object]:
        return {"kind": self.kind, "fill": self.fill, "content_box": self.as_list()}


def _grey(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _leading(mask: np.ndarray) -> int:
    """Length of the run of True at the start of ``mask``."""
    off = np.flatnonzero(~mask)
    return int(off[0]) if len(off) else int(len(mask))


def _constant_lines(grey: np.ndarray, axis: int) -> np.ndarray:
    """Per line (rows for axis=2 reductions, columns for axis=1): flat in every frame and steady."""
    std = grey.std(axis=axis).max(axis=0)
    mean = grey.mean(axis=axis)
    steady = (mean.max(axis=0) - mean.min(axis=0)) <= STEADY_MEAN
    return (std <= FLAT_STD) & steady


def _line_profile(grey: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``(detail, steps)`` per line, medians over frames: ``detail`` is the mean absolute gradient
    along the line and across it; ``steps`` ``[L - 1]`` the mean absolute step from each line to
    the next (the seams of :func:`_seam`)."""
    along = np.abs(np.diff(grey, axis=axis)).mean(axis=axis)  # [N, L]
    across = np.abs(np.diff(grey, axis=3 - axis)).mean(axis=axis)  # [N, L-1]: step between line i and i+1
    n = min(along.shape[1], across.shape[1])
    return np.median(along[:, :n] + across[:, :n], axis=0), np.median(across, axis=0)


def _side_bars(grey: np.ndarray, axis: int) -> tuple[int, int, Fill] | None:
    """(bar at start, bar at end, fill) along one dimension; axis=2 → rows (top/bottom), 1 → columns."""
    length = grey.shape[3 - axis]
    flat = _constant_lines(grey, axis)
    start, end = _leading(flat), _leading(flat[::-1])
    min_bar = max(2, int(np.ceil(MIN_BAR * length)))
    start, end = (start if start >= min_bar else 0), (end if end >= min_bar else 0)
    if start or end:
        if length - start - end < MIN_CONTENT * length:
            return None  # (almost) all flat: a blank or title frame, not bars
        return start, end, "constant"
    detail, steps = _line_profile(grey, axis)
    blurred = _low_detail_bands(detail, steps, length)
    if blurred is None and axis == 2 and length >= PORTRAIT_FRAME * grey.shape[2]:
        blurred = _seam_pair_bands(detail, steps, length)
    return blurred


def _low_detail_bands(detail: np.ndarray, steps: np.ndarray, length: int) -> tuple[int, int, Fill] | None:
    """(band at start, band at end, "blurred"): runs of lines from both edges whose image detail is
    below :data:`BLUR_RATIO` of the centre's, ending in a seam (:func:`_seam`); ``None`` if not.
    ``detail``, ``steps``: :func:`_line_profile` of the ``length`` lines."""
    n = len(detail)
    centre = float(np.median(detail[int(0.4 * n): int(0.6 * n) + 1]))
    if centre < MIN_DETAIL:
        return None
    low = detail < BLUR_RATIO * centre
    start, end = _leading(low), _leading(low[::-1])
    band = MIN_BLUR_BAND * length
    if not (start >= band and end >= band and length - start - end >= MIN_CONTENT * length and abs(start - end) <= 0.1 * length):
        return None
    return (start, end, "blurred") if _seam(steps, start) and _seam(steps, length - end) else None


def _seam_pair_bands(detail: np.ndarray, steps: np.ndarray, length: int) -> tuple[int, int, Fill] | None:
    """(band at start, band at end, "blurred") of a vertical frame padded with blurred fill above
    and below its content, found by its seams; ``None`` if there is no such pair.

    Why: a static camera's dim, low-contrast picture (a lab tank) padded with its own blur has
    too little detail for :func:`_low_detail_bands` to tell the bands from it, yet the seams where
    fill meets content still stand out. The evidence: seams (:func:`_seam`) at mirrored positions
    (within :data:`BLUR_SYMMETRY` of the side), each band at least :data:`MIN_BLUR_BAND` of it,
    and on average less image detail in the bands than :data:`SEAM_BAND_RATIO` of the content's;
    of several such pairs the sharpest wins. Only for frames at least :data:`PORTRAIT_FRAME` times
    taller than wide (a 9:16 phone frame): screen recordings with symmetric window edges satisfy
    the same rule, and vertical reframes are where blurred fill is used. ``detail``, ``steps``:
    :func:`_line_profile` of the ``length`` lines."""
    lo, hi = int(np.ceil(MIN_BLUR_BAND * length)), int((1 - MIN_CONTENT) / 2 * length)
    tolerance = max(2, int(round(BLUR_SYMMETRY * length)))
    best: tuple[float, int, int] | None = None
    for start in range(lo, hi + 1):
        if not (_is_peak(steps, start - 1) and _seam(steps, start)):
            continue
        for end in range(max(lo, start - tolerance), min(hi, start + tolerance) + 1):
            if not _is_peak(steps, length - end - 1):
                continue
            inner = detail[start: length - end]
            bands = np.concatenate([detail[:start], detail[length - end:]])
            if not inner.size or float(bands.mean()) >= SEAM_BAND_RATIO * float(inner.mean()):
                continue
            if not _seam(steps, length - end):
                continue
            strength = min(float(steps[start - 1]), float(steps[length - end - 1]))
            if best is None or strength > best[0]:
                best = (strength, start, end)
    return None if best is None else (best[1], best[2], "blurred")


def _is_peak(steps: np.ndarray, i: int) -> bool:
    """Whether step ``i`` is the largest within two lines of it (a seam may fall between two lines)."""
    if not 0 <= i < len(steps):
        return False
    return bool(steps[i] >= steps[max(0, i - 2): i + 3].max())


def _seam(steps: np.ndarray, at: int) -> bool:
    """A padded frame has a seam where fill meets content: the step across line ``at`` (best of
    ±2 lines) is :data:`SEAM_RATIO` × the steps between neighbouring lines on both sides of it. A
    defocused background in one shot fades into focus without such a line. ``steps``: :func:`_line_profile`."""
    n = len(steps)
    if n < 12:
        return False
    near = [i for i in range(at - 3, at + 2) if 0 <= i < n]
    if not near:
        return False
    peak = max(steps[i] for i in near)
    around = [steps[i] for i in list(range(at - 8, at - 3)) + list(range(at + 2, at + 7)) if 0 <= i < n]
    return bool(around) and peak >= SEAM_RATIO * float(np.median(around)) and peak >= MIN_DETAIL


def detect_borders(frames: np.ndarray) -> BorderCrop | None:
    """The content box of whole frames ``[N, H, W, 3]`` uint8, or ``None`` when there are no bars."""
    if frames.ndim != 4 or len(frames) == 0 or min(frames.shape[1:3]) < 16:
        return None
    grey = _grey(frames)
    h, w = grey.shape[1:]
    rows = _side_bars(grey, axis=2)
    top, bottom, fill_r = rows if rows else (0, 0, "constant")
    inner = grey[:, top: h - bottom] if (top or bottom) else grey
    cols = _side_bars(inner, axis=1)
    left, right, fill_c = cols if cols else (0, 0, "constant")
    if not (top or bottom or left or right):
        return None
    kind = "windowbox" if (top or bottom) and (left or right) else "letterbox" if (top or bottom) else "pillarbox"
    fill: Fill = "blurred" if "blurred" in (fill_r if rows else "", fill_c if cols else "") else "constant"
    return BorderCrop(left / w, top / h, (w - right) / w, (h - bottom) / h, kind, fill)


def cut_content(context: np.ndarray, box: BorderCrop, short_side: int, crop: int) -> np.ndarray:
    """The content of a whole frame, short side resized to ``short_side`` (bicubic) and centre-cropped to ``crop``²."""
    import av

    h, w = context.shape[:2]
    x0, y0, x1, y1 = box.pixels(w, h)
    region = np.ascontiguousarray(context[y0:y1, x0:x1])
    rh, rw = region.shape[:2]
    scale = short_side / max(1, min(rw, rh))
    sw, sh = max(crop, round(rw * scale)), max(crop, round(rh * scale))
    big = av.VideoFrame.from_ndarray(region, format="rgb24").reformat(width=sw, height=sh, interpolation="BICUBIC").to_ndarray()
    oy, ox = (sh - crop) // 2, (sw - crop) // 2
    return np.ascontiguousarray(big[oy: oy + crop, ox: ox + crop])


class BorderTracker:
    """Keeps the first :data:`DETECT_FRAMES` whole frames, detects bars on them once, then replaces
    the centre crop of every sampled frame by the crop of its content (the decoder's hook)."""

    def __init__(self, short_side: int, crop: int, *, enabled: bool = True) -> None:
        self.short_side, self.crop = short_side, crop
        self.active = enabled
        self.pending: list[np.ndarray] = []
        self.box: BorderCrop | None = None
        self.decided = False

    @property
    def wants_context(self) -> bool:
        return self.active and (not self.decided or self.box is not None)

    def view(self, crop: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        """The frame's main view: ``crop`` until bars are known, the content's crop after."""
        if not self.wants_context:
            return crop
        if context is None or (not self.decided and self.pending and context.shape != self.pending[0].shape):
            self.active, self.box, self.pending = False, None, []  # extreme aspect, or a size change while detecting
            return crop
        if self.decided:  # the box is relative: a later size change cuts the same part of the picture
            return cut_content(context, self.box, self.short_side, self.crop)  # type: ignore[arg-type]
        self.pending.append(context)
        if len(self.pending) >= DETECT_FRAMES:
            self._decide()
        return crop

    def _decide(self) -> None:
        self.decided = True
        self.box = detect_borders(np.stack(self.pending)) if self.pending else None

    def finish(self, crops: list[np.ndarray]) -> tuple[list[np.ndarray], BorderCrop | None]:
        """Re-cut the frames seen before the decision; return the crops and the box (``None``: no bars).

        The whole frames kept for the decision are released: later frames are cut as they come."""
        if self.active and not self.decided:
            self._decide()
        pending, self.pending = self.pending, []
        if not self.active or self.box is None:
            return crops, None
        n = len(pending)
        if n and len(crops) >= n:
            crops = [cut_content(c, self.box, self.short_side, self.crop) for c in pending] + crops[n:]
        return crops, self.box
