"""Reading and writing real video files with PyAV for benchmarks, training corpora and the demo.

This is not the worker's decoder (``ingest/decode.py`` samples 1 fps with limits for hostile
input); it reads trusted local media at their native rate so that transformations can be
applied frame by frame and re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass
class Clip:
    """Frames of a video in memory: ``frames`` is a list of ``[H, W, 3]`` uint8 RGB arrays."""

    frames: list[np.ndarray]
    fps: float

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.frames[0].shape[:2]
        return width, height

    def window(self, start: float, end: float) -> "Clip":
        first = max(0, int(round(start * self.fps)))
        last = min(len(self.frames), int(round(end * self.fps)))
        return Clip(self.frames[first:last], self.fps)


def read_clip(path: Path | str, *, max_seconds: float | None = None, fps: float | None = None, max_side: int | None = 640) -> Clip:
    """Decode a whole (short) video; optionally resample to ``fps`` and bound its larger side."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        native = float(stream.average_rate or stream.guessed_rate or 25.0)
        target = fps or native
        frames: list[np.ndarray] = []
        next_t = 0.0
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else len(frames) / native
            if max_seconds is not None and t >= max_seconds:
                break
            if t + 1e-6 < next_t:
                continue
            width, height = frame.width, frame.height
            if max_side and max(width, height) > max_side:
                scale = max_side / max(width, height)
                width, height = max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
            frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
            next_t += 1.0 / target
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return Clip(frames, target)


def write_clip(
    path: Path | str,
    clip: Clip,
    *,
    codec: str = "libx264",
    crf: int | None = 23,
    bitrate: int | None = None,
    gop: int | None = None,
) -> Path:
    """Encode ``clip`` to ``path`` (yuv420p, even dimensions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = clip.size
    width, height = width - width % 2, height - height % 2
    rate = Fraction(clip.fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        options: dict[str, str] = {}
        if codec == "libx264":
            options["preset"] = "veryfast"
            if crf is not None and bitrate is None:
                options["crf"] = str(crf)
        if bitrate is not None:
            stream.bit_rate = bitrate
        if gop is not None:
            stream.gop_size = gop
        stream.options = options
        for image in clip.frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
