"""``dupwatch bench inset``: does the decoder find a picture-in-picture inset where it was placed?

Real footage of one split of the corpus (:mod:`training.footage`) is given one of the upload edits
of the benchmarks (:data:`evaluation.transforms.UPLOAD_EDITS`, or none) and then shown small inside
a host with the benchmarks' own edit (:func:`evaluation.transforms.picture_in_picture`). Two hosts
per copy: a Ken Burns pan over a real photo (what the benchmarks' filler is) and a real video of
another source of the same split. The composite is encoded to H.264 and decoded by the worker's
decoder (:func:`ingest.decode.decode_video`, 1 fps), and its ``inset_box`` is compared with the truth:
the place the copy went, narrowed to the copy's content when the upload edit gave it bars of its
own (:func:`ingest.borders.detect_borders` on the copy before it was inset; the decoder narrows its
box the same way). The copy alone, without a host, is decoded too: an inset found there is a false one.

Copies shorter than :data:`ingest.inset.MIN_FRAMES` seconds are left out: at 1 fps the detector
does not look at so few frames. A case counts as *found* at an intersection over union of at least :data:`FOUND_IOU`; *wrong box*
when a box was returned that overlaps less; *missed* when none was. The tuning split is ``train``;
``calibrate`` and ``check`` report on sources that chose nothing.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["InsetCase", "InsetOutcome", "FOUND_IOU", "iou", "placed_box", "package_of", "files_per_package", "make_cases", "run_inset_bench", "summarize", "format_table"]

FOUND_IOU = 0.7
"""Overlap from which a returned box counts as the inset (0.7 of the union: a side off by ~10 %)."""
SOURCE_SECONDS = 24.0
"""Seconds read from each source file (the decoder looks for an inset on its first 24 sampled frames)."""
READ_FPS = 5.0
"""Frame rate of the composites (the decoder samples them at 1 fps)."""
MAX_SIDE = 480
"""Larger side of the sources, as in the benchmarks (``BenchmarkSpec.max_side``)."""
HOST_SIZE = (320, 180)
"""Host frame size: the benchmarks' filler size (``evaluation.builder.FillerPool.SIZE``)."""
WINDOW_SECONDS = (4.0, 12.0)
"""Length range of the copied window (the benchmarks' copies are 4–12 s)."""


@dataclass(frozen=True)
class InsetCase:
    """One composite: which copy, which edit, which host, and where the copy's content went."""

    copy: str
    edit: str
    host: str
    """``photo:<name>``, ``video:<source>`` or ``none`` (the copy alone, no inset)."""
    truth: tuple[float, float, float, float] | None
    """The copy's content in relative frame coordinates (x0, y0, x1, y1); ``None`` without a host."""


@dataclass(frozen=True)
class InsetOutcome:
    case: InsetCase
    box: tuple[float, float, float, float] | None
    iou: float

    @property
    def verdict(self) -> str:
        if self.case.truth is None:
            return "false inset" if self.box is not None else "no inset"
        if self.box is None:
            return "missed"
        return "found" if self.iou >= FOUND_IOU else "wrong box"


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _content_box(frames: list[np.ndarray]) -> tuple[float, float, float, float]:
    """The copy's content inside its own bars (the whole frame when it has none)."""
    from ingest.borders import DETECT_FRAMES, detect_borders

    crop = detect_borders(np.stack(frames[:DETECT_FRAMES]))
    return (0.0, 0.0, 1.0, 1.0) if crop is None else (crop.x0, crop.y0, crop.x1, crop.y1)


def _inside(box: tuple[float, float, float, float], outer: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """``box`` (relative to ``outer``) in the coordinates ``outer`` is given in."""
    w, h = outer[2] - outer[0], outer[3] - outer[1]
    return (outer[0] + box[0] * w, outer[1] + box[1] * h, outer[0] + box[2] * w, outer[1] + box[3] * h)


def placed_box(edit: Any, host_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Where :func:`evaluation.transforms.picture_in_picture` put the copy, relative to the host frame."""
    width, height = host_size
    x, y, pw, ph = (int(edit.params[k]) for k in ("x", "y", "width", "height"))
    return (x / width, y / height, (x + pw) / width, (y + ph) / height)


def package_of(name: str) -> str:
    """The corpus package a footage file's name (``fg_<package>__<file>``) belongs to."""
    return name.split("__", 1)[0]


def files_per_package(videos: Sequence[Any] | Iterable[Any], per_package: int) -> list[Any]:
    """The first ``per_package`` files of each package, packages in name order."""
    by_package: dict[str, list[Any]] = defaultdict(list)
    for video in videos:
        by_package[package_of(video.name)].append(video)
    return [v for pkg in sorted(by_package) for v in by_package[pkg][:per_package]]


def make_cases(split: str, *, per_package: int = 6, seed: int = 0,
               footage: Sequence[Any] | None = None) -> Iterator[tuple[InsetCase, Any]]:
    """``(case, clip)`` for every composite of ``split``: up to ``per_package`` files of each package,
    each copied once with a photo host, once with a video host of another package, and once alone."""
    from evaluation import transforms as T
    from evaluation.sources import ken_burns, real_photos
    from evaluation.video_io import Clip, read_clip
    from ingest.inset import MIN_FRAMES
    from training.footage import footage_videos

    rng = np.random.default_rng(seed)
    chosen = files_per_package(footage if footage is not None else footage_videos(split), per_package)  # type: ignore[arg-type]
    if len({package_of(v.name) for v in chosen}) < 2:
        raise ValueError(f"split {split!r} needs files of at least two packages (hosts come from another one)")
    clips = {v.name: read_clip(v.path, fps=READ_FPS, max_side=MAX_SIDE, max_seconds=SOURCE_SECONDS) for v in chosen}
    photos = real_photos()
    if not photos:
        raise ValueError("no scikit-image photos for the Ken Burns hosts (install scikit-image)")
    edits: dict[str, Callable[[Clip, np.random.Generator], Any] | None] = {"none": None, **T.UPLOAD_EDITS}
    for video in chosen:
        clip = clips[video.name]
        length = float(rng.uniform(*WINDOW_SECONDS))
        start = float(rng.uniform(0.0, max(0.0, clip.duration - length)))
        part = clip.window(start, start + length)
        if part.duration < MIN_FRAMES:  # fewer sampled frames (1 fps) than the detector looks for
            continue
        edit = str(rng.choice(list(edits)))
        fn = edits[edit]
        copy = fn(part, rng).clip if fn is not None else part
        content = _content_box(copy.frames)
        yield InsetCase(video.name, edit, "none", None), copy
        others = [v for v in chosen if package_of(v.name) != package_of(video.name)]
        host_video = others[int(rng.integers(len(others)))]
        photo = sorted(photos)[int(rng.integers(len(photos)))]
        hosts = {
            f"photo:{photo}": ken_burns(photos[photo], copy.duration + 1.0, copy.fps, rng, size=HOST_SIZE),
            f"video:{host_video.name}": _fit_host(clips[host_video.name]),
        }
        for host_name, host in hosts.items():
            inset = T.picture_in_picture(copy, host, rng)
            yield InsetCase(video.name, edit, host_name, _inside(content, placed_box(inset, host.size))), inset.clip


def _fit_host(clip: Any) -> Any:
    """A host video resized to :data:`HOST_SIZE` (a wider or narrower host is squeezed to it: only
    the edges it puts around the inset matter here)."""
    from PIL import Image

    from evaluation.video_io import Clip

    frames = [np.asarray(Image.fromarray(f).resize(HOST_SIZE, Image.BICUBIC)) for f in clip.frames]
    return Clip(frames, clip.fps)


def run_inset_bench(split: str, *, per_package: int = 6, seeds: Sequence[int] = (0,), progress: bool = True,
                    footage: Sequence[Any] | None = None) -> list[InsetOutcome]:
    """Encode and decode every case of :func:`make_cases` (one draw per seed); the decoder's box against the truth."""
    from tqdm import tqdm

    from dupwatch.config import DecodeConfig
    from evaluation.video_io import write_clip
    from ingest.decode import decode_video

    config = DecodeConfig(fps=1.0)
    out: list[InsetOutcome] = []
    with tempfile.TemporaryDirectory(prefix="dupwatch-inset-") as tmp:
        cases = (c for seed in seeds for c in make_cases(split, per_package=per_package, seed=seed, footage=footage))
        for i, (case, clip) in enumerate(tqdm(cases, desc=f"inset {split}", unit="video", disable=not progress)):
            path = write_clip(Path(tmp) / f"{i}.mp4", clip)
            video = decode_video(path, config, f"inset{i}")
            path.unlink()
            box = tuple(float(v) for v in video.inset_box) if video.inset_kind == "inset" and video.inset_box else None
            out.append(InsetOutcome(case, box, iou(box, case.truth) if box and case.truth else 0.0))
    return out


VERDICTS = ("found", "wrong box", "missed")


def summarize(outcomes: Sequence[InsetOutcome]) -> list[dict[str, Any]]:
    """Rows per host type and per upload edit (and all together): counts of each verdict, mean IoU
    of the returned boxes, and the false-inset rate on the copies shown alone."""
    groups: dict[tuple[str, str], list[InsetOutcome]] = defaultdict(list)
    for o in outcomes:
        host = o.case.host.split(":", 1)[0]
        groups[(host, "all")].append(o)
        if host != "none":
            groups[(host, o.case.edit)].append(o)
            groups[("any", "all")].append(o)
    rows = []
    for (host, edit), items in sorted(groups.items(), key=lambda kv: (kv[0][0] == "none", kv[0][0] == "any", kv[0][0], kv[0][1] != "all", kv[0][1])):
        row: dict[str, Any] = {"host": host, "edit": edit, "cases": len(items)}
        if host == "none":
            row["false inset"] = sum(o.box is not None for o in items)
        else:
            for v in VERDICTS:
                row[v] = sum(o.verdict == v for o in items)
            boxed = [o.iou for o in items if o.box is not None]
            row["mean IoU"] = round(float(np.mean(boxed)), 3) if boxed else None
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`summarize`'s rows."""
    head = ["host", "upload edit", "cases", "found", "wrong box", "missed", "mean IoU", "false inset"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["host"], r["edit"], r["cases"], r.get("found", ""), r.get("wrong box", ""), r.get("missed", ""),
                 "" if r.get("mean IoU") is None else f"{r['mean IoU']:.3f}", r.get("false inset", "")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)
