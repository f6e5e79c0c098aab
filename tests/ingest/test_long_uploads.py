"""Long and hostile uploads through the chunked decode: memory bound, deadlines, capped reads.

Real files made with PyAV (``tests/ingest/corpus.py``): a 4-hour and half-hour 16×16 H.264 upload
with a frame every second (each becomes a sampled crop), a 5-hour stream whose header claims
10 s, playlists. Peak memory is measured in fresh processes (``tests/ingest/memprobe.py``) and
compared with a plain 10-second upload; the time bounds are generous guards against hangs, not
performance checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dupwatch.config import DecodeConfig, SourceConfig
from dupwatch.errors import PermanentError
from ingest.decode import FrameStream, decode_video
from ingest.pipeline import FileDecoder
from tests.ingest import corpus

pytestmark = [pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]
RSS_HEADROOM_MIB = 600
"""No upload may raise the worker's peak RSS more than this above a plain 10-second upload."""
HALF_HOUR_FRAMES = 1801


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("long") / "root"
    root.mkdir()
    corpus.encode(root / "plain_10s.mp4", n_frames=100)
    corpus.make_long_tiny(root)
    corpus.make_long_tiny(root, seconds=HALF_HOUR_FRAMES - 1, name="half_hour_16x16.mp4")
    corpus.make_lying_header_5h(root)
    corpus.make_hls_live(root)
    corpus.make_hls_absolute_escape(root)
    corpus.make_still_png_as_mp4(root)
    return root


def _probe(root: Path, files: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "tests.ingest.memprobe", str(root), *files],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_stream_hands_out_chunks_of_one_reused_buffer(uploads: Path) -> None:
    stream = FrameStream(uploads / "half_hour_16x16.mp4", DecodeConfig(chunk_frames=64), "v")
    sizes, last_t, base = [], -1.0, None
    for chunk in stream:
        sizes.append(len(chunk.frames))
        base = chunk.frames if base is None else base
        assert np.shares_memory(chunk.frames, base)  # the same buffer every time: no growth with length
        assert chunk.timestamps[0] > last_t and np.all(np.diff(chunk.timestamps) > 0)
        last_t = float(chunk.timestamps[-1])
    assert sum(sizes) == HALF_HOUR_FRAMES and max(sizes) == 64
    assert stream.summary is not None and stream.summary.num_frames == HALF_HOUR_FRAMES
    assert abs(stream.summary.duration_s - HALF_HOUR_FRAMES) <= 1.0


def test_chunk_size_does_not_change_the_frames(uploads: Path) -> None:
    small = DecodeConfig(short_side=64, crop=64, chunk_frames=24)
    whole = DecodeConfig(short_side=64, crop=64, chunk_frames=4096)
    a = decode_video(uploads / "half_hour_16x16.mp4", small, "v")
    b = decode_video(uploads / "half_hour_16x16.mp4", whole, "v")
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert a.duration_s == b.duration_s


def test_decode_deadline_ends_a_long_decode(uploads: Path) -> None:
    started = time.monotonic()
    with pytest.raises(PermanentError) as info:
        for _ in FrameStream(uploads / "long_4h_16x16.mp4", DecodeConfig(timeout_s=1.0), "v"):
            pass
    assert info.value.reason == "decode_timeout"
    assert time.monotonic() - started < 1.0 + 20.0  # a guard against a hang, not a speed check


def test_decode_deadline_holds_inside_ffmpegs_open(uploads: Path) -> None:
    """No Python check runs before ``av.open``: a deadline already passed when FFmpeg opens and
    probes the file can only be enforced by the reader FFmpeg calls into."""
    stream = FrameStream(uploads / "long_4h_16x16.mp4", DecodeConfig(timeout_s=1e-6), "v")
    with pytest.raises(PermanentError) as info:
        list(stream)
    assert info.value.reason == "decode_timeout" and "opening" in str(info.value)
    assert stream.stats.frames_decoded == 0


def test_four_hour_upload_is_indexed_within_the_memory_headroom(uploads: Path) -> None:
    base = _probe(uploads, ["plain_10s.mp4"])
    long = _probe(uploads, ["long_4h_16x16.mp4"])
    assert base["jobs"][0]["status"] == "indexed"
    job = long["jobs"][0]
    assert job["status"] == "indexed" and job["frames"] == 14391, long
    assert long["streamed"] == [14391]  # embedded chunk by chunk, never held whole
    # Held whole, its crops alone would be 14391 × 224² × 3 = 2.2 GB.
    assert long["peak_rss_mib"] - base["peak_rss_mib"] < RSS_HEADROOM_MIB, (base, long)


def test_eight_long_uploads_and_hostile_files_in_one_batch(uploads: Path) -> None:
    base = _probe(uploads, ["plain_10s.mp4"])
    files = ["half_hour_16x16.mp4"] * 8 + ["lying_header_5h.mkv", "live.m3u8", "escape_absolute.m3u8", "still_png.mp4", "plain_10s.mp4"]
    batch = _probe(uploads, files)
    outcomes = [(j["status"], j["reason"]) for j in batch["jobs"]]
    assert outcomes == [("indexed", None)] * 8 + [
        ("dead", "too_long"), ("dead", "container_not_allowed"), ("dead", "container_not_allowed"), ("dead", "still_image"), ("indexed", None),
    ], batch
    assert all(j["frames"] == HALF_HOUR_FRAMES for j in batch["jobs"][:8])
    # Held whole, the eight uploads' crops would be 8 × 1801 × 224² × 3 = 2.2 GB.
    assert batch["peak_rss_mib"] - base["peak_rss_mib"] < RSS_HEADROOM_MIB, (base, batch)


def test_file_grown_after_the_size_check_is_not_read_past_max_bytes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    full = corpus.encode(tmp_path / "full.ts", n_frames=200).read_bytes()  # 20 s of MPEG-TS
    head = full[: (len(full) // 4) // 188 * 188]  # a quarter, cut on a TS packet boundary
    path = root / "growing.ts"
    path.write_bytes(head)
    config = DecodeConfig(short_side=64, crop=64)
    decoder = FileDecoder(SourceConfig(local_roots=[root], max_bytes=len(head)), config)
    with decoder.open_stream("grow", str(path)) as stream:
        with path.open("ab") as handle:  # the file grows after the size check, before decoding
            handle.write(full[len(head) :])
        frames = sum(len(chunk.frames) for chunk in stream)
    whole = decode_video(path, config, "whole").num_frames
    assert whole == 20
    assert 1 <= frames <= 8, frames  # only what lies in the first max_bytes (about 5 of 20 s)


def test_batch_embeds_what_it_decoded_once_the_budget_is_reached(uploads: Path) -> None:
    """Short uploads are held for cross-video batching only up to ``limits.batch_decoded_bytes``:
    past it the held uploads are embedded before the next one is decoded."""
    from dupwatch.config import LimitsConfig
    from ingest.metrics import WorkerMetrics
    from ingest.pipeline import CollectingAlertSink, Job, NoDetector, Pipeline
    from tests.ingest.embedders import ThumbnailEmbedder
    from tests.ingest.memprobe import _Dead, _MemoryIndex

    events: list[str] = []

    class _LoggingDecoder(FileDecoder):
        def open_stream(self, video_id: str, uri: str):  # type: ignore[override]
            events.append(f"decode {video_id}")
            return super().open_stream(video_id, uri)

    class _LoggingEmbedder(ThumbnailEmbedder):
        def embed(self, decoded, tenant):  # type: ignore[override]
            events.append(f"embed {decoded.video_id}")
            return super().embed(decoded, tenant)

        def embed_batch(self, videos, tenants):  # type: ignore[override]
            events.append("embed " + "+".join(v.video_id for v in videos))
            return [ThumbnailEmbedder.embed(self, v, t) for v, t in zip(videos, tenants)]

    def run(budget: int) -> list[str]:
        events.clear()
        pipeline = Pipeline(
            decoder=_LoggingDecoder(SourceConfig(local_roots=[uploads]), DecodeConfig()),
            embedder=_LoggingEmbedder(), detector=NoDetector(), alert_sink=CollectingAlertSink(), index=_MemoryIndex(),
            dead_letters=_Dead(), limits=LimitsConfig(batch_decoded_bytes=budget), metrics=WorkerMetrics(),
        )
        jobs = [Job(value=json.dumps({"schema_version": 1, "event_id": f"e{i}", "video_id": f"v{i}", "tenant": "t",
                                      "uri": str(uploads / "plain_10s.mp4"), "uploaded_at": "2026-11-22T04:30:00Z"}).encode(), offset=i)
                for i in range(3)]
        pipeline.process(jobs)
        assert [j.status for j in jobs] == ["indexed"] * 3
        assert all(j.decoded is None for j in jobs)  # frames released once embedded
        return list(events)

    # 10 crops of 224² × 3 = 1.5 MB per upload
    assert run(256 * 1024**2) == ["decode v0", "decode v1", "decode v2", "embed v0+v1+v2"]
    assert run(1024**2) == ["decode v0", "embed v0", "decode v1", "embed v1", "decode v2", "embed v2"]


def test_chunking_keeps_the_picture_in_picture_view(tmp_path: Path) -> None:
    """An inset found on the first 24 sampled frames is cut from every chunk: chunks of 24 give
    the same inset view and box as one chunk for the whole video."""
    from evaluation import transforms
    from evaluation.sources import ken_burns, real_photos, real_videos
    from evaluation.video_io import read_clip, write_clip

    bikes = {v.name: v.path for v in real_videos()}["bikes"]
    copy = read_clip(bikes, fps=8.0, max_seconds=8.0, max_side=480)
    host = ken_burns(real_photos()["chelsea"], 8.0, 8.0, np.random.default_rng(3))
    edit = transforms.picture_in_picture(copy, host, np.random.default_rng(2))
    path = write_clip(tmp_path / "pip.mp4", edit.clip)
    chunked = decode_video(path, DecodeConfig(fps=8.0, chunk_frames=24), "pip")
    whole = decode_video(path, DecodeConfig(fps=8.0, chunk_frames=4096), "pip")
    assert whole.num_frames > 2 * 24
    assert whole.inset is not None and chunked.inset is not None and chunked.inset_box == whole.inset_box
    np.testing.assert_array_equal(chunked.inset, whole.inset)
    np.testing.assert_array_equal(chunked.frames, whole.frames)
