"""The copy head reads the frames that matched: an excerpt embedded in other footage is judged on
its own frames, not diluted by the unrelated rest (:func:`detect.detector.head_rows`)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from detect.detector import AlignmentParams, _assess_scored, head_rows
from dupwatch.records import Segment

REGIONS, DIM = 9, 16


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _upload(filler_before: int, filler_after: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A 10-frame reference and an upload showing its frames 2-7 between unrelated frames: regions,
    the frame similarity (1 fps), thumbnails and times of both."""
    rng = np.random.default_rng(seed)
    ref = _unit(rng.normal(size=(10, REGIONS, DIM)))
    excerpt = _unit(ref[2:8] + 0.05 * rng.normal(size=(6, REGIONS, DIM)))
    filler = _unit(rng.normal(size=(filler_before + filler_after, REGIONS, DIM)))
    query = np.concatenate([filler[:filler_before], excerpt, filler[filler_before:]])
    sim = np.einsum("ird,jrd->ij", query, ref) / REGIONS
    ref_thumbs = rng.integers(0, 255, (10, 32, 32)).astype(np.uint8)
    query_thumbs = np.concatenate([rng.integers(0, 255, (filler_before, 32, 32)), ref_thumbs[2:8],
                                   rng.integers(0, 255, (filler_after, 32, 32))]).astype(np.uint8)
    return query, ref, sim, query_thumbs, ref_thumbs, np.arange(len(query), dtype=np.float64), np.arange(10, dtype=np.float64)


def test_an_embedded_excerpt_is_judged_on_its_own_frames() -> None:
    q, r, sim, qth, rth, qt, rt = _upload(4, 3)
    a = _assess_scored(SimpleNamespace(score=0.7, frame_similarity=sim), q, r, qt, rt, AlignmentParams(), None, thumbs=(qth, rth))
    assert a.segments and a.head_rows is not None
    assert list(a.head_rows) == list(range(4, 10))
    # alerts keep the whole upload's segments and evidence: the excerpt starts 4 s into the upload
    assert a.segments[0].query_start == pytest.approx(4.0) and a.frame_similarity.shape == sim.shape
    # the head reads what the excerpt uploaded on its own would show
    alone = _assess_scored(SimpleNamespace(score=0.7, frame_similarity=sim[4:10]), q[4:10], r, qt[4:10], rt, AlignmentParams(),
                           None, thumbs=(qth[4:10], rth))
    assert alone.head_rows is None
    np.testing.assert_allclose(a.features(), alone.features())
    # read over every frame, the same upload's evidence is diluted by the filler
    whole = _assess_scored(SimpleNamespace(score=0.7, frame_similarity=sim), q, r, qt, rt, AlignmentParams(), None,
                           thumbs=(qth, rth))
    assert whole.features()[1] > 0  # frame chamfer
    diluted = float(sim.max(axis=1).mean())
    assert a.features()[1] == pytest.approx(float(sim[4:10].max(axis=1).mean())) and a.features()[1] > diluted + 0.2


def test_a_copy_of_the_whole_upload_reads_every_frame() -> None:
    q, r, sim, qth, rth, qt, rt = _upload(0, 0)
    a = _assess_scored(SimpleNamespace(score=0.9, frame_similarity=sim), q, r, qt, rt, AlignmentParams(), None, thumbs=(qth, rth))
    assert a.segments and a.head_rows is None


def test_head_rows_rules() -> None:
    seg = lambda a, b: Segment(a, b, a, b, 1.0)  # noqa: E731
    t = np.arange(10, dtype=np.float64)
    assert head_rows((), t, 10) is None
    assert list(head_rows((seg(2, 6), seg(7, 8)), t, 10)) == [2, 3, 4, 5]  # the longest segment
    assert head_rows((seg(0, 9.5),), t, 10) is None  # 10 of 10 frames: no focus
    assert head_rows((seg(3, 5),), t, 10) is None  # 2 frames: too few to judge on
    intervals = np.stack([t, t + 1], axis=1)  # [n, 2] frame intervals read by their starts
    assert list(head_rows((seg(2, 6),), intervals, 10)) == [2, 3, 4, 5]
    assert head_rows((seg(2, 6),), t, 12) is None  # times of another length: no focus
