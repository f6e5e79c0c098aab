"""``dupwatch bench pip-hosts``: does picture-in-picture recall depend on the host's size?

The real benchmarks show every picture-in-picture copy inside a 320×180 filler
(:attr:`evaluation.builder.FillerPool.SIZE`), so the copy inside is 144–208 pixels wide, while
reaction and news uploads are mostly HD with insets of several hundred pixels. This set measures
what that costs: each window of real footage of one corpus split is shown, with the benchmarks' own
edit (:func:`evaluation.transforms.picture_in_picture`), inside the same host at three sizes
(:data:`HOST_SIZES`), and ``dupwatch eval`` reports recall per host size (the ``kind`` column).

What the folder holds, per source file (at most ``per_package`` files of each package):

- ``<file>__ref``: the file, as the benchmarks read their sources (5 fps, larger side 480, 30 s);
- ``<file>__w<k>_host<W>``: window ``k`` (4–12 s; up to three per file, each in its own part of
  the file, so windows never overlap) inside a Ken Burns pan over a photo quarter no other window uses
  (:func:`evaluation.builder.photo_quarter`), ``W`` pixels wide. The three sizes of one window share
  the photo quarter, the pan and the inset's relative scale; only the pixels differ.

Truth: each composite against its reference is a copy of kind ``pip_host<W>``; two sizes of one
window are a copy of kind ``pip_both`` (both sides picture in picture); composites of two windows of
one file, and any two videos made of different files of one package (the same camera or screen,
another recording), are ``another_moment`` incidents. Nothing else is related.

The set is for recall at the copy threshold per host size. Its precision is not the benchmarks': it
has no edited copies to confuse, only other moments and unrelated footage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.inset import MAX_SIDE, READ_FPS, WINDOW_SECONDS, files_per_package, package_of

__all__ = ["HOST_SIZES", "WINDOWS", "build_pip_hosts"]

HOST_SIZES: tuple[tuple[int, int], ...] = ((320, 180), (640, 360), (1280, 720))
"""Host frames: the benchmarks' filler size, then twice and four times as wide (720p)."""
WINDOWS = 3
"""Windows per source file at most (fewer in a file shorter than three windows)."""
SOURCE_SECONDS = 30.0
"""Seconds read from each source file: room for three windows (read at ``bench.inset``'s rate and size)."""


def _windows(duration: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Up to :data:`WINDOWS` windows, one inside each of as many equal parts of ``duration`` as hold
    the shortest window (none for a file shorter than that)."""
    count = min(WINDOWS, int(duration // WINDOW_SECONDS[0]))
    part = duration / count if count else 0.0
    out = []
    for k in range(count):
        length = float(rng.uniform(WINDOW_SECONDS[0], min(WINDOW_SECONDS[1], part)))
        start = k * part + float(rng.uniform(0.0, part - length))
        out.append((start, start + length))
    return out


def build_pip_hosts(split: str, out: Path | str, *, per_package: int = 3, seed: int = 0,
                    footage: Sequence[Any] | None = None, progress: bool = True) -> Path:
    """Write ``out/videos/*.mp4`` and ``out/truth.csv`` (see the module docstring); returns ``out``."""
    from tqdm import tqdm

    from evaluation import transforms as T
    from evaluation.builder import FillerPool, photo_quarter
    from evaluation.sources import ken_burns, real_photos
    from evaluation.truth import TruthRow, write_truth_csv
    from evaluation.video_io import read_clip, write_clip
    from training.footage import footage_videos

    out = Path(out)
    videos_dir = out / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    photos = real_photos()
    if not photos:
        raise ValueError("no scikit-image photos for the hosts (install scikit-image)")
    rng = np.random.default_rng(seed)
    quarters = [(name, q) for name in sorted(photos) for q in range(FillerPool.QUARTERS)]
    rng.shuffle(quarters)  # type: ignore[arg-type]
    chosen = files_per_package(footage if footage is not None else footage_videos(split), per_package)  # type: ignore[arg-type]
    rows: list[TruthRow] = []
    family: dict[str, list[list[str]]] = defaultdict(list)  # package → the videos made of each of its files
    for video in tqdm(chosen, desc=f"pip hosts {split}", unit="file", disable=not progress):
        clip = read_clip(video.path, fps=READ_FPS, max_side=MAX_SIDE, max_seconds=SOURCE_SECONDS)
        windows = _windows(clip.duration, rng)
        if not windows:
            continue
        ref = f"{video.name}__ref"
        write_clip(videos_dir / f"{ref}.mp4", clip)
        made: list[list[str]] = []
        for k, (start, end) in enumerate(windows):
            if not quarters:
                raise ValueError("more windows than photo quarters: lower --per-package")
            photo, q = quarters.pop()
            part = clip.window(start, end)
            pan, place = int(rng.integers(1 << 31)), int(rng.integers(1 << 31))
            names = []
            for width, height in HOST_SIZES:
                host = ken_burns(photo_quarter(photos[photo], q), part.duration + 1.0, part.fps,
                                 np.random.default_rng(pan), size=(width, height))
                composite = T.picture_in_picture(part, host, np.random.default_rng(place)).clip
                name = f"{video.name}__w{k}_host{width}"
                write_clip(videos_dir / f"{name}.mp4", composite)
                rows.append(TruthRow(name, ref, "copy", 0.0, round(part.duration, 3), round(start, 3),
                                     round(start + part.duration, 3), kind=f"pip_host{width}"))
                names.append(name)
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    rows.append(TruthRow(a, b, "copy", 0.0, round(part.duration, 3), 0.0, round(part.duration, 3), kind="pip_both"))
            made.append(names)
        for i, group in enumerate(made):
            for other in made[i + 1:]:
                rows.extend(TruthRow(a, b, "incident", kind="another_moment") for a in group for b in other)
        mine = [ref, *(name for group in made for name in group)]
        for earlier in family[package_of(video.name)]:
            rows.extend(TruthRow(a, b, "incident", kind="another_moment") for a in mine for b in earlier)
        family[package_of(video.name)].append(mine)
    if not rows:
        raise ValueError(f"split {split!r}: no file long enough for a {WINDOW_SECONDS[0]:.0f} s window")
    write_truth_csv(rows, out / "truth.csv")
    return out
