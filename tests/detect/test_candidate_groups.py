"""Candidates are scored in groups of bounded frame-similarity cells (:func:`detect.detector.candidate_groups`)."""

from __future__ import annotations

import numpy as np

from detect.detector import CANDIDATE_CELLS, candidate_groups


def _views(frames: int, inset: bool = False) -> dict[str, np.ndarray]:
    v = np.zeros((frames, 1, 1), np.float32)
    return {"main": v, "inset": v} if inset else {"main": v}


def test_short_candidates_share_one_group_in_their_order() -> None:
    query = _views(60, inset=True)
    candidates = {f"v{i}": _views(30 + i, inset=i % 2 == 0) for i in range(20)}
    groups = candidate_groups(query, candidates)
    assert len(groups) == 1 and list(groups[0]) == list(candidates)
    assert 20 * 3 * 60 * 50 < CANDIDATE_CELLS


def test_long_pairs_are_split_and_an_oversized_one_stands_alone() -> None:
    query = _views(100)
    candidates = {"a": _views(40), "b": _views(50), "c": _views(30), "huge": _views(500), "d": _views(10)}
    groups = candidate_groups(query, candidates, budget=10_000)
    assert [list(g) for g in groups] == [["a", "b"], ["c"], ["huge"], ["d"]]
    # an inset view on both sides counts four view pairs (inset against inset too): 8,000 + 4,000 cells
    groups = candidate_groups(_views(100, inset=True), {"a": _views(20, inset=True), "b": _views(20)}, budget=12_000)
    assert [list(g) for g in groups] == [["a", "b"]]
    groups = candidate_groups(_views(100, inset=True), {"a": _views(20, inset=True), "b": _views(20)}, budget=11_999)
    assert [list(g) for g in groups] == [["a"], ["b"]]
