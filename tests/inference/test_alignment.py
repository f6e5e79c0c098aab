"""DTW, Bi-DTW (seed 004) and the Temporal-Network segment localizer on hand-made matrices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dupwatch.records import Segment
from inference.segments import SegmentParams
from inference.alignment import (
    align_pair,
    align_segments,
    tn_segments,
    bi_dtw,
    dtw,
    dtw_distance,
    temporal_network,
)


def _noise(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.2, 0.3, shape)


def _unit(rng: np.random.Generator, n: int, d: int = 128) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------- copy segments


def _ends(segs: list[Segment]) -> list[tuple[float, float, float, float]]:
    return [(round(s.query_start, 6), round(s.query_end, 6), round(s.ref_start, 6), round(s.ref_end, 6)) for s in segs]


def test_diagonal_band_gives_one_segment_over_whole_intervals() -> None:
    sim = _noise((30, 40))
    for i in range(5, 20):
        sim[i, i + 10] = 0.9
    qt, rt = np.arange(30) * 1.0, np.arange(40) * 1.0 + 100.0
    segs = align_segments(sim, qt, rt, SegmentParams(min_sim=0.5, min_length=3))
    # frames 5..19 sampled at 1 fps cover 5-20 s, not 5-19 s
    assert _ends(segs) == [(5.0, 20.0, 115.0, 130.0)]
    assert segs[0].score == pytest.approx(0.9)


def test_band_with_slope_two_is_a_2x_speed_copy() -> None:
    sim = _noise((20, 50))
    for i in range(0, 20):
        sim[i, 2 * i + 5] = 0.8
    qt, rt = np.arange(20) * 1.0, np.arange(50) * 1.0
    segs = align_segments(sim, qt, rt, SegmentParams(min_sim=0.5))
    assert _ends(segs) == [(0.0, 20.0, 5.0, 45.0)]
    _, ev = align_pair(sim, qt, rt, SegmentParams(min_sim=0.5))
    assert ev.speed_ratio == pytest.approx(2.0)
    assert ev.diagonality == pytest.approx(1.0)
    assert ev.degenerate_fraction == 0.0


def test_slow_motion_copy_ratio_one_half() -> None:
    # each reference frame shown twice in the query: still a copy, not degenerate
    sim = _noise((24, 30))
    for i in range(24):
        sim[i, 3 + i // 2] = 0.85
    segs, ev = align_pair(sim, params=SegmentParams(min_sim=0.5))
    assert len(segs) == 1
    s = segs[0]
    assert (s.query_start, s.query_end) == (0.0, 24.0)
    assert s.ref_start == pytest.approx(3.0, abs=0.5) and s.ref_end == pytest.approx(15.0, abs=0.5)
    assert ev.speed_ratio == pytest.approx(0.5, abs=0.02)
    assert ev.degenerate_fraction == 0.0


def test_two_separate_bands_give_two_segments_strongest_first() -> None:
    sim = _noise((40, 60))
    for i in range(0, 10):
        sim[i, 40 + i] = 0.7
    for i in range(20, 35):
        sim[i, 5 + i - 20] = 0.95
    segs = align_segments(sim, params=SegmentParams(min_sim=0.5))
    assert _ends(segs) == [(20.0, 35.0, 5.0, 20.0), (0.0, 10.0, 40.0, 50.0)]


def test_noise_only_gives_no_segment() -> None:
    sim = np.random.default_rng(3).normal(0.0, 0.1, (50, 50))
    segs, ev = align_pair(sim, params=SegmentParams(min_sim=0.5))
    assert segs == []
    assert ev.num_segments == 0 and ev.query_coverage == 0.0 and ev.degenerate_fraction == 0.0


def test_temporal_crop_inserted_into_other_content() -> None:
    """Query = [10 s other][ref 30..49 with noise][10 s other]; reference 60 s at 1 fps."""
    rng = np.random.default_rng(7)
    ref = _unit(rng, 60)
    copy = ref[30:50] + 0.02 * rng.normal(size=(20, 128))
    query = np.concatenate([_unit(rng, 10), copy / np.linalg.norm(copy, axis=1, keepdims=True), _unit(rng, 10)])
    sim = query @ ref.T
    qt, rt = np.arange(40) * 1.0, np.arange(60) * 1.0
    segs, ev = align_pair(sim, qt, rt, SegmentParams(min_sim=0.5))
    assert _ends(segs) == [(10.0, 30.0, 30.0, 50.0)]
    assert ev.aligned_seconds == 20.0
    assert ev.query_coverage == pytest.approx(20 / 40)
    assert ev.ref_coverage == pytest.approx(20 / 60)
    assert ev.mean_similarity > 0.9 and ev.diagonality == pytest.approx(1.0)


def test_clip_intervals_use_clip_start_and_end() -> None:
    sim = _noise((6, 6))
    for i in range(1, 5):
        sim[i, i] = 0.9
    times = np.stack([np.arange(6) * 8.0, np.arange(6) * 8.0 + 8.0], 1)
    segs = align_segments(sim, times, times, SegmentParams(min_sim=0.5))
    assert (segs[0].query_start, segs[0].query_end) == (8.0, 40.0)


def test_static_plateau_and_freeze_give_no_segment_but_degenerate_evidence() -> None:
    """Another moment of static footage (a plateau) and a freeze (one reference frame for many
    query frames) are not copies: no segment, and a high degenerate share for the copy head."""
    block = _noise((20, 20))
    block[5:15, 5:15] = 0.8
    column = _noise((20, 20))
    column[3:15, 7] = 0.8
    diag = _noise((20, 20))
    diag[np.arange(5, 15), np.arange(5, 15)] = 0.8
    for sim in (block, column):
        segs, ev = align_pair(sim, params=SegmentParams(min_sim=0.5))
        assert segs == []
        assert ev.degenerate_fraction > 0.9
        # the flat line is evidence (with its low contrast), never a segment
        assert ev.num_segments <= 1
    segs, ev = align_pair(diag, params=SegmentParams(min_sim=0.5))
    assert len(segs) == 1 and ev.degenerate_fraction == 0.0
    assert ev.temporal_contrast > 0.6


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"\[Tq, Tr\]"):
        align_segments(np.zeros(5))
    with pytest.raises(ValueError, match="query_times"):
        align_segments(np.zeros((3, 4)), np.zeros(4))


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 25), st.integers(1, 25)), elements=st.floats(-1, 1)),
    st.integers(0, 3),
    st.integers(1, 4),
)
def test_segments_are_monotone_disjoint_and_inside_the_videos(sim: np.ndarray, max_gap: int, min_length: int) -> None:
    tq, tr = sim.shape
    qt, rt = np.arange(tq) * 0.5, np.arange(tr) * 2.0
    params = SegmentParams(min_sim=0.3, max_gap=max_gap, min_length=min_length)
    segs = align_segments(sim, qt, rt, params)
    # a video of one sample has no sampling step: its one interval lasts 1 s (the worker's 1 fps)
    q_step, r_step = (0.5 if tq > 1 else 1.0), (2.0 if tr > 1 else 1.0)
    for s in segs:
        assert 0.0 <= s.query_start < s.query_end <= qt[-1] + q_step
        assert 0.0 <= s.ref_start < s.ref_end <= rt[-1] + r_step
        speed = (s.ref_end - s.ref_start) / (s.query_end - s.query_start)
        assert params.min_speed - 1e-9 <= speed <= params.max_speed + 1e-9 or s.ref_start == 0.0 or s.ref_end == rt[-1] + r_step
        assert s.score >= 0.3
    for a, b in itertools.combinations(segs, 2):
        overlap_q = min(a.query_end, b.query_end) - max(a.query_start, b.query_start)
        overlap_r = min(a.ref_end, b.ref_end) - max(a.ref_start, b.ref_start)
        assert overlap_q <= 1e-9 or overlap_r <= 1e-9
    for p in temporal_network(sim, min_sim=0.3, max_step=max_gap + 1, min_length=min_length):
        assert len(p.path) >= min_length
        steps = np.diff(p.path, axis=0)
        assert np.all((steps[:, 0] >= 1) & (steps[:, 0] <= max_gap + 1) & (steps[:, 1] >= 0) & (steps[:, 1] <= max_gap + 1))


def test_tn_segments_keep_the_baseline_conventions() -> None:
    """The Temporal Network (chamfer baseline): boxes of its paths, first to last frame time."""
    sim = _noise((30, 40))
    for i in range(5, 20):
        sim[i, i + 10] = 0.9
    segs = tn_segments(sim, np.arange(30) * 1.0, np.arange(40) * 1.0 + 100.0, min_sim=0.5, min_length=3)
    assert segs == [Segment(5.0, 19.0, 115.0, 129.0, pytest.approx(0.9))]


# ---------------------------------------------------------------------------------- DTW


def _all_paths(n: int, m: int) -> list[list[tuple[int, int]]]:
    out: list[list[tuple[int, int]]] = []

    def rec(path: list[tuple[int, int]]) -> None:
        i, j = path[-1]
        if (i, j) == (n - 1, m - 1):
            out.append(list(path))
            return
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            if i + di < n and j + dj < m:
                rec(path + [(i + di, j + dj)])

    rec([(0, 0)])
    return out


def test_dtw_maximizes_summed_similarity_brute_force() -> None:
    sim = np.random.default_rng(1).uniform(-1, 1, (4, 5))
    best = max(sum(sim[i, j] for i, j in p) for p in _all_paths(4, 5))
    r = dtw(sim)
    assert r.score == pytest.approx(best)
    assert r.score == pytest.approx(sim[r.path[:, 0], r.path[:, 1]].sum())
    assert tuple(r.path[0]) == (0, 0) and tuple(r.path[-1]) == (3, 4)
    steps = np.diff(r.path, axis=0)
    assert np.all(steps >= 0) and np.all(steps.sum(1) >= 1) and np.all(steps <= 1)


def test_dtw_distance_matches_seed_eq6_brute_force() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 3))
    cost = ((a[:, None] - b[None]) ** 2).sum(-1)
    best = min(sum(cost[i, j] for i, j in p) for p in _all_paths(4, 3))
    assert dtw_distance(a, b).score == pytest.approx(best)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(0, 10_000))
def test_bi_dtw_as_written_equals_dtw(n: int, m: int, seed: int) -> None:
    """Finding (digest §5.3, §7.1.6): reversing both sequences maps each warping path to one of the
    same cost, so the seed's Bi-DTW = min(DTW(v1,v2), DTW(rev v1, rev v2)) = DTW(v1, v2)."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, 4)), rng.normal(size=(m, 4))
    assert bi_dtw(a, b) == pytest.approx(dtw_distance(a, b).score, rel=1e-9, abs=1e-9)
    assert dtw_distance(a[::-1], b[::-1]).score == pytest.approx(dtw_distance(a, b).score, rel=1e-9, abs=1e-9)


def test_bi_dtw_reverse_one_matches_a_time_reversed_copy() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(6, 4))
    assert bi_dtw(a, a[::-1], reverse="one") == pytest.approx(0.0, abs=1e-9)
    assert bi_dtw(a, a[::-1]) > 1.0
    with pytest.raises(ValueError):
        bi_dtw(a, a, reverse="neither")


def test_all_monotone_paths_counted() -> None:
    # Delannoy number D(2,2) = 13 paths for a 3x3 grid: guards the brute-force helper itself
    assert len(_all_paths(3, 3)) == 13
    assert list(itertools.islice(_all_paths(1, 1), 2)) == [[(0, 0)]]


def test_align_pair_matches_separate_calls() -> None:
    from inference.alignment import alignment_evidence
    from inference.segments import find_segments

    sim = _noise((30, 40))
    for i in range(5, 20):
        sim[i, i + 10] = 0.9
    params = SegmentParams(min_sim=0.5)
    segs, ev = align_pair(sim, params=params)
    assert segs == align_segments(sim, params=params)
    assert ev == alignment_evidence(sim, find_segments(sim, params=params), min_sim=0.5)
    assert ev.num_segments == 1 and ev.aligned_seconds == 15.0
