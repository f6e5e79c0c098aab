"""Typed records that move between stages (ingest → inference → index/detect → alerts).

Shapes are checked in ``__post_init__`` so that a stage that produces the wrong layout fails
where it happens, not three stages later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DecodedVideo:
    """Frames sampled from one video, already resized and centre-cropped.

    ``frames`` is ``[T, H, W, 3]`` uint8 RGB; ``timestamps`` is ``[T]`` seconds from the start.
    """

    video_id: str
    frames: np.ndarray
    timestamps: np.ndarray
    duration_s: float
    source_width: int
    source_height: int
    source_fps: float | None = None
    inset: np.ndarray | None = None
    """A picture-in-picture inset found by :mod:`ingest.inset`: ``[T, H, W, 3]`` like ``frames``
    (same timestamps), resized and centre-cropped the same way; ``None`` when there is none."""
    inset_box: tuple[float, float, float, float] | None = None
    """The inset in relative display coordinates (x0, y0, x1, y1)."""
    inset_kind: str | None = None
    """What ``inset`` holds: ``inset`` (a picture-in-picture inset) or ``reframe`` (a portrait
    video's content at a landscape original's scale, :mod:`ingest.reframe`)."""
    borders: dict[str, object] | None = None
    """Bars cropped before the main view (:mod:`ingest.borders`): ``kind``, ``fill`` and the
    relative ``content_box``; ``None`` when the frame had none."""

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be [T, H, W, 3] uint8, got {self.frames.shape} {self.frames.dtype}")
        if self.timestamps.shape != (self.frames.shape[0],):
            raise ValueError(f"need one timestamp per frame: {self.timestamps.shape} vs T={self.frames.shape[0]}")
        if self.frames.shape[0] == 0:
            raise ValueError("a decoded video holds at least one frame")
        if self.inset is not None and (self.inset.shape[0] != self.frames.shape[0] or self.inset.dtype != np.uint8):
            raise ValueError(f"inset must be [T, H, W, 3] uint8 with T={self.frames.shape[0]}, got {self.inset.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class FrameChunk:
    """A run of consecutive sampled frames of one video (chunked decoding, ``ingest.decode.FrameStream``).

    ``frames`` and ``inset`` may be views of the decoder's reused buffer: they are valid only
    until the next chunk is requested, so a consumer keeps features, never these arrays.
    """

    frames: np.ndarray
    """``[n, H, W, 3]`` uint8 RGB, like :attr:`DecodedVideo.frames`."""
    timestamps: np.ndarray
    """``[n]`` seconds from the start."""
    inset: np.ndarray | None = None
    """The inset view of the same frames, when an inset was found so far."""


@dataclass(frozen=True)
class DecodeSummary:
    """What a finished chunked decode learned about the whole video."""

    video_id: str
    num_frames: int
    duration_s: float
    source_width: int
    source_height: int
    source_fps: float | None = None
    inset_box: tuple[float, float, float, float] | None = None
    """Set only when every chunk carried an inset view (else the inset is dropped)."""
    inset_kind: str | None = None
    """``inset`` or ``reframe`` with ``inset_box`` (:attr:`DecodedVideo.inset_kind`)."""
    borders: dict[str, object] | None = None
    """Bars cropped before the main view, as in :attr:`DecodedVideo.borders`."""


@dataclass(frozen=True)
class VideoRepresentation:
    """Everything the index and the detector keep about one video.

    - ``regions``: ``[T, R, D]`` per-frame region vectors (PCA-whitened, L2-normalized), the input
      of the fine-grained similarity networks.
    - ``coarse``: ``[Dc]`` unit vector (DnS coarse student) for the first-stage search.
    - ``clips``: ``[N, Dk]`` unit vectors, one per 8-frame clip (DRCA), with ``clip_times`` ``[N, 2]``
      (start, end seconds).
    - ``selfsim``: the selector's per-video scalar.
    - ``fine_index``: the fine network's indexed form (attention-weighted regions or binary codes),
      ``[T, R, D]``; ``None`` means "same as regions".
    """

    video_id: str
    timestamps: np.ndarray
    regions: np.ndarray
    coarse: np.ndarray
    clips: np.ndarray
    clip_times: np.ndarray
    selfsim: float
    fine_index: np.ndarray | None = None
    tenant: str = "default"
    meta: dict[str, str] = field(default_factory=dict)
    inset: "VideoRepresentation | None" = None
    """The picture-in-picture inset's own representation (video id ``<video_id>#inset``), indexed as
    rows of its own and searched as a second view of the video; ``None`` when there is none."""
    thumbs: np.ndarray | None = None
    """``[T, S, S]`` uint8 grey thumbnails of the frames (:mod:`inference.thumbnails`), the copy head's
    pixel evidence; ``None`` when unknown."""

    def __post_init__(self) -> None:
        if self.regions.ndim != 3:
            raise ValueError(f"regions must be [T, R, D], got {self.regions.shape}")
        if self.timestamps.shape != (self.regions.shape[0],):
            raise ValueError(f"need one timestamp per frame: {self.timestamps.shape} vs {self.regions.shape}")
        if self.coarse.ndim != 1:
            raise ValueError(f"coarse must be [D], got {self.coarse.shape}")
        if self.clips.ndim != 2 or self.clip_times.shape != (self.clips.shape[0], 2):
            raise ValueError(f"clips must be [N, D] with clip_times [N, 2], got {self.clips.shape} {self.clip_times.shape}")
        if self.thumbs is not None and (self.thumbs.ndim != 3 or self.thumbs.shape[0] != self.regions.shape[0]
                                        or self.thumbs.dtype != np.uint8):
            raise ValueError(f"thumbs must be [T, S, S] uint8 with T={self.regions.shape[0]}, got {self.thumbs.shape} {self.thumbs.dtype}")


INSET_SUFFIX = "#inset"
"""Video id suffix of an inset view's rows. ``#`` is outside the event id pattern, so no upload's
own id can collide with it."""


def inset_id(video_id: str) -> str:
    return f"{video_id}{INSET_SUFFIX}"


def parent_id(video_id: str) -> str:
    """The uploaded video an index id belongs to (itself, or the parent of an inset view)."""
    return video_id[: -len(INSET_SUFFIX)] if video_id.endswith(INSET_SUFFIX) else video_id


@dataclass(frozen=True)
class Segment:
    """A matched segment: the same content at these times in the query and the reference (seconds)."""

    query_start: float
    query_end: float
    ref_start: float
    ref_end: float
    score: float

    def __post_init__(self) -> None:
        if self.query_end < self.query_start or self.ref_end < self.ref_start:
            raise ValueError(f"segment ends before it starts: {self}")
