"""Which pair of views a pair is assessed on: every view pair is compared (inset against inset
too); with a copy head the one with the highest P(copy) is kept, without one the best fine score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detect.copy_head import FEATURES, CopyHead
from detect.detector import AlignmentParams, assess_scored_views, view_combos
from inference.served import PairScore

T, R, D = 12, 9, 8


def _regions(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(T, R, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _diagonal(strength: float) -> np.ndarray:
    """A copy's frame similarity: a ridge of ``strength`` on the diagonal over a low plateau."""
    sim = np.full((T, T), -0.2, np.float32)
    np.fill_diagonal(sim, strength)
    return sim


def _head(weight_on_fine: float) -> CopyHead:
    """A logistic head that reads the fine score alone, with the given sign."""
    weights = np.zeros(len(FEATURES))
    weights[FEATURES.index("fine_score")] = weight_on_fine
    return CopyHead(FEATURES, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), weights, 0.0, {})


def _scored() -> dict[tuple[str, str], PairScore]:
    views = {"main": None, "inset": None}
    fine = {("main", "main"): 0.2, ("main", "inset"): 0.3, ("inset", "main"): 0.5, ("inset", "inset"): 0.8}
    return {c: PairScore(fine[c], _diagonal(fine[c])) for c in view_combos(views, views)}


def test_every_view_pair_is_compared_inset_against_inset_too() -> None:
    views = {"main": 1, "inset": 2}
    assert view_combos(views, views) == [("main", "main"), ("main", "inset"), ("inset", "main"), ("inset", "inset")]
    assert view_combos({"main": 1}, views) == [("main", "main"), ("main", "inset")]


def test_without_a_head_the_best_fine_score_is_assessed() -> None:
    views = {"main": _regions(0), "inset": _regions(1)}
    times = np.arange(T, dtype=np.float64)
    a = assess_scored_views(_scored(), views, views, times, times, AlignmentParams())
    assert a.views == ("inset", "inset") and a.fine == 0.8 and a.copy_score is None


def test_with_a_head_the_highest_p_copy_is_kept() -> None:
    views = {"main": _regions(0), "inset": _regions(1)}
    times = np.arange(T, dtype=np.float64)
    # a head that trusts a lower fine score more picks the pair the fine score ranks last
    a = assess_scored_views(_scored(), views, views, times, times, AlignmentParams(), _head(-4.0))
    assert a.views == ("main", "main") and a.fine == 0.2
    assert a.copy_score == pytest.approx(1.0 / (1.0 + math.exp(4.0 * 0.2)))
    b = assess_scored_views(_scored(), views, views, times, times, AlignmentParams(), _head(4.0))
    assert b.views == ("inset", "inset") and b.copy_score is not None and b.copy_score > a.copy_score
