"""S²VS augmentations (digest §3.3): frame-level edits on uint8 clips, temporal edits on feature sequences.

Frame-level views are made once per video and their backbone features cached
(:mod:`training.corpus`), so CPU training only pays for the heads:

- :func:`weak_view`: resized crop (scale 0.8–1) + horizontal flip, one set of parameters per clip;
- :func:`strong_view`: resized crop (0.5–1) + flip + RandAugment(2, 9) (global, same for every frame),
  then real copy edits from :mod:`evaluation.transforms`: text and logo overlays (p = 0.3 each), blur
  (p = 0.5) and picture-in-picture inside another video (video-in-video, p = 0.3).

Temporal edits act on feature sequences ``[T, R, D]`` and always return ``length`` frames:
fast forward, slow motion, reverse, pause and Temporal Shuffle-Dropout (:func:`temporal_view`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from evaluation import transforms as T
from evaluation.video_io import Clip

__all__ = [
    "CROP", "SHORT_SIDE", "resize_center_crop", "weak_view", "strong_view", "StrongView",
    "temporal_view", "fast_forward", "slow_motion", "reverse", "pause", "temporal_shuffle_dropout", "frame_drop",
]

SHORT_SIDE = 256
CROP = 224


def resize_center_crop(frame: np.ndarray, short_side: int = SHORT_SIDE, crop: int = CROP) -> np.ndarray:
    """Serving preprocessing: resize the short side to 256 and take the centre 224×224."""
    h, w = frame.shape[:2]
    s = short_side / min(h, w)
    nw, nh = max(crop, round(w * s)), max(crop, round(h * s))
    img = Image.fromarray(frame).resize((nw, nh), Image.BILINEAR)
    left, top = (nw - crop) // 2, (nh - crop) // 2
    return np.asarray(img.crop((left, top, left + crop, top + crop)))


def resize_short(frame: np.ndarray, short_side: int = SHORT_SIDE) -> np.ndarray:
    h, w = frame.shape[:2]
    s = short_side / min(h, w)
    return np.asarray(Image.fromarray(frame).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR))


def _to_tensor(frames: np.ndarray):  # uint8 [T, H, W, 3] -> [T, 3, H, W]
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()


def _resized_crop(frames: np.ndarray, rng: np.random.Generator, scale: tuple[float, float], flip_p: float = 0.5) -> np.ndarray:
    """One RandomResizedCrop (+ flip) for the whole clip → ``[T, 224, 224, 3]``."""
    h, w = frames.shape[1:3]
    area = h * w
    for _ in range(10):
        a = area * rng.uniform(*scale)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(round(np.sqrt(a * ratio))), int(round(np.sqrt(a / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:
        cw = ch = min(h, w)
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    flip = rng.random() < flip_p
    out = []
    for f in frames:
        img = Image.fromarray(f[y0:y0 + ch, x0:x0 + cw]).resize((CROP, CROP), Image.BILINEAR)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(np.asarray(img))
    return np.stack(out)


def weak_view(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """S²VS weak augmentation: resized crop (0.8–1) and flip, consistent over the clip."""
    return _resized_crop(frames, rng, (0.8, 1.0))


def _rand_augment(frames: np.ndarray, rng: np.random.Generator, num_ops: int = 2, magnitude: int = 9) -> np.ndarray:
    import torch
    from torchvision.transforms import v2

    torch.manual_seed(int(rng.integers(2**31)))
    x = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)(_to_tensor(frames))  # one draw for the whole clip
    return x.permute(0, 2, 3, 1).contiguous().numpy()


@dataclass
class StrongView:
    frames: np.ndarray
    edits: tuple[str, ...]
    host: str | None = None
    """Source whose content fills the background (picture-in-picture), else ``None``."""


def upload_view(frames: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One of the edits people upload (:data:`evaluation.transforms.UPLOAD_EDITS`: bars with a resolution
    change, 9:16 reframes, heavy combinations, grey/sepia, logo), seen the way the decoder serves it:
    bars it would detect (:mod:`ingest.borders`) are cropped before the ``CROP``² view."""
    from ingest.borders import cut_content, detect_borders

    name = str(rng.choice(sorted(T.UPLOAD_EDITS)))
    edit = T.UPLOAD_EDITS[name](Clip(list(frames), 1.0), rng)
    out = np.stack(edit.clip.frames)
    box = detect_borders(out[:8])
    if box is not None:
        return np.stack([cut_content(f, box, CROP, CROP) for f in out]), edit.name + "+borders_cropped"
    return np.stack([resize_center_crop(f) for f in out]), edit.name


def strong_view(frames: np.ndarray, rng: np.random.Generator, *, other: tuple[str, np.ndarray] | None = None,
                p_overlay: float = 0.3, p_blur: float = 0.5, p_viv: float = 0.3, p_upload: float = 0.0) -> StrongView:
    """S²VS strong augmentation with real copy edits; ``other`` = (name, frames) of a possible host video.
    With probability ``p_upload`` the view starts from an :func:`upload_view` instead of a random crop
    (0 draws nothing from ``rng``: views of older corpora stay the same)."""
    if p_upload > 0 and rng.random() < p_upload:
        x, tag = upload_view(frames, rng)
        edits = [tag]
    else:
        x = _resized_crop(frames, rng, (0.5, 1.0))
        edits = ["crop"]
    x = _rand_augment(x, rng)
    edits.append("randaugment")
    clip = Clip(list(x), 1.0)
    if rng.random() < p_overlay:
        clip, edits = T.text_overlay(clip, rng).clip, edits + ["text"]
    if rng.random() < p_overlay:
        clip, edits = T.logo_overlay(clip, rng).clip, edits + ["logo"]
    if rng.random() < p_blur:
        clip, edits = T.blur(clip, rng).clip, edits + ["blur"]
    host = None
    if other is not None and rng.random() < p_viv:
        host_frames = _resized_crop(other[1], rng, (0.8, 1.0))
        clip = T.picture_in_picture(clip, Clip(list(host_frames), 1.0), rng).clip
        host, edits = other[0], edits + ["pip"]
    out = np.stack([f if f.shape[:2] == (CROP, CROP) else np.asarray(Image.fromarray(f).resize((CROP, CROP))) for f in clip.frames])
    return StrongView(out.astype(np.uint8), tuple(edits), host)


# --- temporal (feature sequences) -------------------------------------------------------------


def _fit_length(x: np.ndarray, length: int) -> np.ndarray:
    if len(x) >= length:
        return x[:length]
    reps = int(np.ceil(length / max(1, len(x))))
    return np.concatenate([x] * reps)[:length]


def _window(x: np.ndarray, span: int, rng: np.random.Generator) -> np.ndarray:
    start = int(rng.integers(0, max(0, len(x) - span) + 1))
    return x[start:start + span]


def fast_forward(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    factor = int(rng.integers(2, 4))
    return _fit_length(_window(x, length * factor, rng)[::factor], length)


def slow_motion(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    part = _window(x, (length + 1) // 2, rng)
    return _fit_length(np.repeat(part, 2, axis=0), length)


def reverse(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    return _fit_length(_window(x, length, rng), length)[::-1].copy()


def pause(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    part = _fit_length(_window(x, length, rng), length)
    at = int(rng.integers(0, length))
    hold = int(rng.integers(2, max(3, length // 4 + 1)))
    out = np.concatenate([part[:at + 1], np.repeat(part[at:at + 1], hold, axis=0), part[at + 1:]])
    return out[:length]


def temporal_shuffle_dropout(x: np.ndarray, length: int, rng: np.random.Generator, p_shuffle: float = 0.5,
                             p_dropout: float = 0.3) -> np.ndarray:
    """Split into clips of 2..length/2 frames, maybe shuffle them, drop some (zeros = empty frames)."""
    part = _fit_length(_window(x, length, rng), length)
    clips, i = [], 0
    while i < length:
        n = int(rng.integers(2, max(3, length // 2 + 1)))
        clips.append(part[i:i + n])
        i += n
    if rng.random() < p_shuffle:
        clips = [clips[j] for j in rng.permutation(len(clips))]
    out = [np.zeros_like(c) if (rng.random() < p_dropout and len(clips) > 1) else c for c in clips]
    return np.concatenate(out)[:length]


def temporal_view(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """One temporal edit, S²VS probabilities: TSD 0.5, fast forward / slow motion / reverse / pause 0.1 each."""
    r = rng.random()
    if r < 0.5:
        return temporal_shuffle_dropout(x, length, rng)
    for i, fn in enumerate((fast_forward, slow_motion, reverse, pause)):
        if r < 0.6 + 0.1 * i:
            return fn(x, length, rng)
    return _fit_length(_window(x, length, rng), length)


def frame_drop(x: np.ndarray, rng: np.random.Generator, keep: float = 0.7) -> np.ndarray:
    """DnS student augmentation: each frame kept with probability ``keep`` (at least 4 kept)."""
    m = rng.random(len(x)) < keep
    if m.sum() < min(4, len(x)):
        return x
    return x[m]
