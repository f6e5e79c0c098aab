"""A second view for portrait uploads: the picture at the scale a landscape original is indexed at.

Why: a 9:16 vertical reframe of landscape footage keeps a vertical strip of the original (about a
third of a 16:9 frame's width). The decoder's main view of the upload is the centre square of the
strip, so the strip is magnified about 1.8× against the original's main view (the centre square of
the whole landscape frame), and the region features of the two describe the same picture at two
scales; off-centre strips also lose their top and bottom. The reframe view undoes the scale: the
content's height is resized to the decoder's short side (as the original's height is), the centre
``crop`` rows are kept, and the strip sits in the middle of a ``crop``² canvas filled with its mean
colour. It is handed out as the decoder's second view (``DecodedVideo.inset``) when no
picture-in-picture inset was found, so it is indexed and searched like one: a vertical upload
against an indexed original, and an original uploaded after its vertical copy was indexed.

Portrait means the *content* (inside letterbox/pillarbox bars, :mod:`ingest.borders`) is at least
:data:`MIN_ASPECT` times taller than wide: a 9:16 phone video, also when pillarboxed into a 16:9
frame. A landscape clip padded into a 9:16 frame is not portrait (its bars are cropped instead).
A portrait picture-in-picture inset (a vertical video shown small inside landscape footage) gets
the same view of the inset's content (:func:`ingest.decode`'s inset view).
"""

from __future__ import annotations

import av
import numpy as np

from ingest.borders import BorderCrop
from ingest.inset import InsetBox

__all__ = ["MIN_ASPECT", "is_portrait", "portrait_content", "reframe_view"]

MIN_ASPECT = 1.5
"""Content height / width from which a second, reframe view is made (9:16 is 1.78, 4:3 upright 1.33)."""


def is_portrait(box: BorderCrop | InsetBox, width: int, height: int) -> bool:
    """Whether ``box`` (relative coordinates of a ``width`` × ``height`` frame) is at least
    :data:`MIN_ASPECT` times taller than wide in pixels."""
    return (box.y1 - box.y0) * height >= MIN_ASPECT * (box.x1 - box.x0) * width


def portrait_content(width: int, height: int, bars: BorderCrop | None) -> InsetBox | None:
    """The content box of a ``width`` × ``height`` frame when it is portrait (inside ``bars``, the
    decoder's :class:`ingest.borders.BorderTracker` decision; ``None``: no bars), else ``None``."""
    x0, y0, x1, y1 = (bars.x0, bars.y0, bars.x1, bars.y1) if bars is not None else (0.0, 0.0, 1.0, 1.0)
    box = InsetBox(x0, y0, x1, y1, coverage=1.0, kind="reframe")
    return box if is_portrait(box, width, height) else None


def reframe_view(context: np.ndarray, box: InsetBox, short_side: int, crop: int) -> np.ndarray:
    """The content of a whole frame at a landscape original's scale: height → ``short_side``
    (bicubic), the centre ``crop`` rows, centred on a ``crop``² canvas of the content's mean colour."""
    h, w = context.shape[:2]
    x0, y0, x1, y1 = box.pixels(w, h)
    region = np.ascontiguousarray(context[y0:y1, x0:x1])
    rh, rw = region.shape[:2]
    sh = max(crop, short_side)
    sw = max(1, min(crop, round(rw * sh / max(1, rh))))
    strip = av.VideoFrame.from_ndarray(region, format="rgb24").reformat(width=sw, height=sh, interpolation="BICUBIC").to_ndarray()
    oy = (sh - crop) // 2
    strip = strip[oy: oy + crop]
    out = np.empty((crop, crop, 3), np.uint8)
    out[:] = strip.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    ox = (crop - sw) // 2
    out[:, ox: ox + sw] = strip
    return out
