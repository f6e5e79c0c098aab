"""Benchmark generation: the labelling rule, exact segment times, and a tiny real build."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest

from evaluation import transforms as T
from evaluation.builder import BenchmarkSpec, Derivation, FillerPool, build_benchmark, label_pair
from evaluation.sources import real_photos
from evaluation.video_io import Clip


def test_overlap_rule_and_times() -> None:
    ref = Derivation("ref", "s", (0.0, 20.0), is_query=False)
    fast = Derivation("fast", "s", (4.0, 10.0), speed=2.0, offset=1.5)
    row = label_pair(fast, ref)
    assert row is not None and row.level == "copy"
    # source 4..10 s plays at 2x after a 1.5 s insert: query 1.5..4.5 s, reference 4..10 s
    assert (row.query_start, row.query_end, row.reference_start, row.reference_end) == (1.5, 4.5, 4.0, 10.0)


def test_copies_of_copies_and_incidents() -> None:
    a = Derivation("a", "s", (2.0, 8.0))
    b = Derivation("b", "s", (7.0, 12.0), offset=1.0)
    c = Derivation("c", "s", (8.5, 12.0))  # overlaps a by 0 s
    cam = Derivation("cam", "s", (2.0, 8.0), camera=1)
    other = Derivation("o", "t", (2.0, 8.0))
    ab = label_pair(a, b)
    assert ab is not None and ab.level == "copy"
    assert (ab.query_start, ab.query_end, ab.reference_start, ab.reference_end) == (5.0, 6.0, 1.0, 2.0)
    assert label_pair(a, c).level == "incident"  # type: ignore[union-attr]
    assert label_pair(a, cam).level == "incident"  # type: ignore[union-attr]  # same moment, second camera
    assert label_pair(a, other) is None
    short = Derivation("short", "s", (7.5, 8.4))  # 0.5 s overlap < 1 s
    assert label_pair(a, short).level == "incident"  # type: ignore[union-attr]


def test_temporal_transforms_report_timing() -> None:
    rng = np.random.default_rng(0)
    clip = Clip([np.full((32, 48, 3), i, np.uint8) for i in range(40)], fps=10.0)
    fast = T.speed(clip, rng)
    assert len(fast.clip.frames) == round(40 / fast.speed)
    filler = Clip([np.zeros((20, 30, 3), np.uint8)] * 30, fps=10.0)
    ins = T.insert_into(clip, filler, rng)
    first = int(round(ins.offset * clip.fps))
    assert ins.clip.frames[first][0, 0, 0] == 0 and ins.clip.frames[first + 5][0, 0, 0] == 5
    assert ins.clip.frames[0].shape == clip.frames[0].shape


@pytest.mark.parametrize("name", sorted(T.SPATIAL))
def test_spatial_transforms_change_pixels(name: str) -> None:
    rng = np.random.default_rng(1)
    gradient = np.linspace(0, 255, 64 * 96 * 3).reshape(64, 96, 3).astype(np.uint8)
    clip = Clip([gradient.copy() for _ in range(3)], fps=5.0)
    out = T.SPATIAL[name](clip, rng).clip
    assert len(out.frames) == 3 and out.frames[0].dtype == np.uint8
    same_shape = out.frames[0].shape == gradient.shape
    assert not same_shape or not np.array_equal(out.frames[0], gradient)


def test_tiny_build_is_deterministic(tmp_path: Path) -> None:
    spec = BenchmarkSpec(seed=3, copies_per_source=1, footage_photos=1, footage_seconds=14.0, distractors=1, include_real_videos=False, fps=4.0, max_side=160)
    bench = build_benchmark(tmp_path / "a", spec, progress=False)
    again = build_benchmark(tmp_path / "b", spec, progress=False)
    assert (tmp_path / "a/truth.csv").read_text() == (tmp_path / "b/truth.csv").read_text()
    names = {d.video for d in bench.derivations}
    assert {p.stem for p in bench.videos_dir.glob("*.mp4")} == names
    with open(bench.truth_path) as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["level"] for r in rows} == {"copy", "incident"}
    for row in rows:
        assert row["query"] in names and row["reference"] in names
    for path in bench.videos_dir.glob("*.mp4"):
        with av.open(str(path)) as container:
            assert container.streams.video[0].frames > 0 or container.duration
    del again


def test_own_filler_is_never_shown_by_two_videos() -> None:
    """With ``own_filler`` every insertion / picture in picture gets a quarter of a photo no other
    draw got, panned by its own generator; the shared pool keeps its clips for every draw."""
    photos = real_photos()
    names = sorted(photos)[:3]
    pool = FillerPool(photos, names, 4.0, np.random.default_rng(0), own=True, seed=5)
    rng = np.random.default_rng(1)
    drawn = []
    while pool:
        drawn.append(pool.draw(rng))
    assert len(drawn) == 3 * FillerPool.QUARTERS
    assert len({name for name, _ in drawn}) == len(drawn)
    assert all(clip.size == FillerPool.SIZE and len(clip.frames) == int(FillerPool.SECONDS * 4.0) for _, clip in drawn[:2])
    shared = FillerPool(photos, names, 4.0, np.random.default_rng(0))
    picks = {shared.draw(np.random.default_rng(s))[0] for s in range(30)}
    assert picks <= set(names) and len(picks) > 1 and shared  # the shared pool is never used up


def test_a_benchmark_with_own_filler_shares_none(tmp_path: Path) -> None:
    spec = BenchmarkSpec(seed=4, copies_per_source=8, footage_photos=2, footage_seconds=8.0, distractors=1,
                         include_real_videos=False, fps=2.0, max_side=120, own_filler=True)
    bench = build_benchmark(tmp_path / "own", spec, progress=False)
    used = [d.filler for d in bench.derivations if d.filler]
    assert len(used) >= 3 and len(set(used)) == len(used)
    assert all(d.filler for d in bench.derivations if {"insert", "pip"} & set(d.edits))
