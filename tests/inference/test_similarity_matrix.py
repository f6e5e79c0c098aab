"""The frame similarity is read a block or a gather at a time (:mod:`inference.similarity_matrix`):
a float32 matrix gives the segments, evidence and copy-head features of its float64 copy, bit for
bit, and the assessment of a long pair allocates no whole-matrix copy."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from detect.copy_head import motion_agreement, pair_features, pixel_agreement
from inference import similarity_matrix
from inference.alignment import align_pair, tn_evidence
from inference.segments import degenerate_fraction
from inference.similarity_matrix import cells, checked, row_blocks


def _matrices() -> list[np.ndarray]:
    """float32 matrices with a copy's diagonal, a freeze's column, ties, and a 1.5× line."""
    rng = np.random.default_rng(3)
    out = []
    for kind in range(8):
        tq, tr = (int(x) for x in rng.integers(5, 120, size=2))
        sim = (rng.random((tq, tr)) * rng.uniform(0.3, 0.8)).astype(np.float32)
        if kind % 4 == 0:
            n = min(tq, tr) // 2
            a, b = rng.integers(0, tq - n + 1), rng.integers(0, tr - n + 1)
            sim[np.arange(a, a + n), np.arange(b, b + n)] += np.float32(0.5)
        elif kind % 4 == 1:
            sim[:, rng.integers(tr)] = np.float32(0.9)
        elif kind % 4 == 2:
            sim = (np.round(sim * 8) / 8).astype(np.float32)
        else:
            sim[np.arange(tq), (np.arange(tq) * 1.5).astype(int) % tr] = np.float32(0.93)
        out.append(sim)
    return out


def _readings(sim: np.ndarray) -> tuple:
    times = np.arange(sim.shape[0], dtype=np.float64), np.arange(sim.shape[1], dtype=np.float64)
    segments, evidence = align_pair(sim, *times)
    head = tn_evidence(sim, *times)
    features = pair_features(0.7, sim, head, (0.1, 0.2), (0.3, 0.4, 0.5))
    return segments, evidence, head, features.tolist(), degenerate_fraction(sim, 0.35)


@pytest.mark.parametrize("block_cells", [37, similarity_matrix.BLOCK_CELLS])
def test_a_float32_matrix_reads_as_its_float64_copy(monkeypatch: pytest.MonkeyPatch, block_cells: int) -> None:
    monkeypatch.setattr(similarity_matrix, "BLOCK_CELLS", block_cells)
    for sim in _matrices():
        assert repr(_readings(sim)) == repr(_readings(sim.astype(np.float64)))


def test_checked_keeps_floats_as_they_are_and_refuses_bad_matrices() -> None:
    f32 = np.ones((3, 4), np.float32)
    assert checked(f32) is f32
    assert checked([[1, 2], [3, 4]]).dtype == np.float64
    with pytest.raises(ValueError, match="non-finite"):
        checked(np.array([[0.5, np.nan]], np.float32))
    with pytest.raises(ValueError, match=r"\[Tq, Tr\]"):
        checked(np.ones((0, 3)))
    with pytest.raises(ValueError, match=r"\[Tq, Tr\]"):
        checked(np.ones(3))


def test_row_blocks_and_cells_read_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(similarity_matrix, "BLOCK_CELLS", 10)
    sim = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    blocks = list(row_blocks(sim))
    assert [a for a, _ in blocks] == [0, 2] and all(b.dtype == np.float64 for _, b in blocks)
    assert np.array_equal(np.concatenate([b for _, b in blocks]), sim.astype(np.float64))
    assert cells(sim, 1, 2).dtype == np.float64 and cells(sim, [0, 2], [1, 3]).dtype == np.float64


def test_assessing_a_long_pair_makes_no_whole_matrix_copy() -> None:
    """Segments, the copy head's evidence and its features on a 4,000 × 4,000 float32 matrix
    (61 MiB) allocate less than one float64 copy of it (122 MiB); each reader used to make one."""
    rng = np.random.default_rng(0)
    n = 4000
    sim = (rng.random((n, n), dtype=np.float32) * 0.4).astype(np.float32)
    sim[np.arange(n // 4, n // 2), np.arange(n // 2, 3 * n // 4)] = 0.9  # a copied quarter
    times = np.arange(n, dtype=np.float64)
    tracemalloc.start()
    try:
        segments, _ = align_pair(sim, times, times)
        head = tn_evidence(sim, times, times)
        pair_features(0.7, sim, head, (0.1, 0.2), (0.3, 0.4, 0.5))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert segments and segments[0].query_end - segments[0].query_start >= n // 4 - 2
    assert peak < 2 * sim.nbytes, f"peak {peak / 2**20:.0f} MiB for a {sim.nbytes / 2**20:.0f} MiB matrix"


def test_pixel_agreement_in_row_blocks_is_the_whole_product(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each query change's best reference change is its own row's maximum, so row blocks give the
    whole product's result (to float32 rounding where a block is one row: a matrix-vector product)."""
    rng = np.random.default_rng(4)
    q = rng.integers(0, 255, (40, 32, 32)).astype(np.uint8)
    r = rng.integers(0, 255, (23, 32, 32)).astype(np.uint8)
    r[5:20] = q[10:25]
    whole = pixel_agreement(q, r)
    for block_cells in (1, 50, 23 * 7):
        monkeypatch.setattr(similarity_matrix, "BLOCK_CELLS", block_cells)
        assert pixel_agreement(q, r) == pytest.approx(whole, abs=1e-6)


def _peak_mib(fn) -> float:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_motion_and_pixel_evidence_of_long_pairs_are_bounded() -> None:
    """The self-similarity agreement reads at most SELF_SIM_MAX_FRAMES query frames, and the pixel
    agreement compares a block of query frames at a time. Measured with the whole products: 242 MiB
    (motion, 3,000 frames a side) and 198 MiB (pixels, 6,000), growing with the square of the length;
    bounded: 34 and 108 MiB, the pixel figure the videos' own thumbnail changes."""
    rng = np.random.default_rng(5)
    n = 3000
    q = rng.standard_normal((n, 9, 32)).astype(np.float32)
    r = (q + 0.2 * rng.standard_normal(q.shape)).astype(np.float32)
    sim = np.eye(n, dtype=np.float32)
    found: list[tuple[float, float, float]] = []
    assert _peak_mib(lambda: found.append(motion_agreement(q, r, sim))) < 64
    agreement, _, self_sim = found[0]
    assert agreement > 0.5 and self_sim > 0.5
    thumbs = rng.integers(0, 255, (2 * n, 32, 32)).astype(np.uint8)
    assert _peak_mib(lambda: pixel_agreement(thumbs, thumbs)) < 150
