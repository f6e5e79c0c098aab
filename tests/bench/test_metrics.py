"""Known-answer tests for evaluation.metrics: a wrong formula fails them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.metrics import (
    Match,
    ScoredPair,
    average_precision,
    best_recall_at_precision,
    micro_average_precision,
    precision_recall_at,
    retrieval_map,
    segment_micro_average_precision,
    segment_precision_recall,
)


def sp(q: str, r: str, s: float) -> ScoredPair:
    return ScoredPair(q, r, s)


def m(q, r, qs, qe, rs, re, score=1.0) -> Match:
    return Match(q, r, qs, qe, rs, re, score)


class TestAveragePrecision:
    def test_positives_at_ranks_1_and_3(self):
        ap = average_precision([0.9, 0.8, 0.7, 0.6], [True, False, True, False])
        assert ap.ap == pytest.approx((1 + 2 / 3) / 2)
        np.testing.assert_allclose(ap.curve.precisions, [1, 0.5, 2 / 3, 0.5])
        np.testing.assert_allclose(ap.curve.recalls, [0.5, 0.5, 1, 1])

    def test_perfect_ranking(self):
        assert average_precision([3, 2, 1, 0], [1, 1, 0, 0]).ap == pytest.approx(1.0)

    def test_order_of_input_does_not_matter(self):
        assert average_precision([0.6, 0.7, 0.8, 0.9], [0, 1, 0, 1]).ap == pytest.approx((1 + 2 / 3) / 2)

    def test_unretrieved_positives_cap_recall(self):
        # positives at ranks 1 and 3, plus two relevant items never retrieved
        assert average_precision([0.9, 0.8, 0.7], [1, 0, 1], num_positives=4).ap == pytest.approx((1 + 2 / 3) / 4)

    def test_ties_grouped(self):
        # one positive and one negative tied at the top: P = 1/2 at R = 1
        assert average_precision([0.5, 0.5], [True, False]).ap == pytest.approx(0.5)
        assert average_precision([0.5, 0.5], [False, True]).ap == pytest.approx(0.5)

    def test_errors(self):
        with pytest.raises(ValueError, match="non-finite"):
            average_precision([0.1, float("nan")], [1, 0])
        with pytest.raises(ValueError, match="without any positive"):
            average_precision([0.1], [0])
        with pytest.raises(ValueError):
            average_precision([0.1], [1], num_positives=0)
        with pytest.raises(ValueError, match="non-finite"):
            sp("q", "r", float("inf"))

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 1000), st.booleans()), min_size=1, max_size=30, unique_by=lambda t: t[0]))
    def test_matches_textbook_formula_without_ties(self, items):
        scores = [s for s, _ in items]
        labels = [y for _, y in items]
        if not any(labels):
            return
        order = np.argsort(-np.array(scores))
        rel = np.array(labels)[order]
        expected = sum(rel[: k + 1].mean() for k in range(len(rel)) if rel[k]) / rel.sum()
        assert average_precision(scores, labels).ap == pytest.approx(expected)


class TestRetrievalAndDetection:
    # Query A: positive scores 0.9 (rank 1); negative 0.8.   AP_A = 1
    # Query B: positive scores 0.3 (rank 1 of its list); negative 0.2.   AP_B = 1
    # mAP = 1, but jointly: 0.9(+) 0.8(-) 0.3(+) 0.2(-) → µAP = (1 + 2/3)/2
    PREDS = [sp("A", "a1", 0.9), sp("A", "a2", 0.8), sp("B", "b1", 0.3), sp("B", "b2", 0.2)]
    POS = [("A", "a1"), ("B", "b1")]

    def test_map_vs_micro_ap(self):
        assert retrieval_map(self.PREDS, self.POS).map == pytest.approx(1.0)
        assert micro_average_precision(self.PREDS, self.POS).ap == pytest.approx((1 + 2 / 3) / 2)

    def test_query_without_positive_skipped_and_missing_positive_counts(self):
        preds = self.PREDS + [sp("C", "c1", 0.95)]
        res = retrieval_map(preds, self.POS + [("D", "d1")])
        assert res.skipped_queries == ("C",)
        assert res.per_query == {"A": 1.0, "B": 1.0, "D": 0.0}
        assert res.map == pytest.approx(2 / 3)
        # µAP: C's pair is a false positive at the top; D's positive is never retrieved (G = 3)
        mu = micro_average_precision(preds, self.POS + [("D", "d1")])
        assert mu.num_positives == 3
        assert mu.ap == pytest.approx((1 / 2 + 2 / 4) / 3)

    def test_duplicates_rejected(self):
        with pytest.raises(ValueError, match="duplicate prediction"):
            micro_average_precision(self.PREDS + [sp("A", "a1", 0.1)], self.POS)
        with pytest.raises(ValueError, match="duplicate ground-truth"):
            micro_average_precision(self.PREDS, self.POS + [("A", "a1")])
        with pytest.raises(ValueError, match="duplicate"):
            retrieval_map(self.PREDS + [sp("B", "b1", 0.1)], self.POS)

    def test_precision_recall_at(self):
        pr = precision_recall_at(self.PREDS, self.POS, 0.3)
        assert (pr.precision, pr.recall, pr.support) == (pytest.approx(2 / 3), 1.0, 3)
        assert precision_recall_at(self.PREDS, self.POS, 0.95).precision is None

    def test_best_recall_at_precision(self):
        # 0.9(+) 0.8(-) 0.3(+) 0.2(-), a third positive never retrieved: P 1, 1/2, 2/3, 1/2 at R 1/3, 1/3, 2/3, 2/3
        ap = micro_average_precision(self.PREDS, self.POS + [("C", "c1")])
        best = best_recall_at_precision(ap, 0.6)
        assert best is not None
        assert (best.threshold, best.precision, best.recall) == (0.3, pytest.approx(2 / 3), pytest.approx(2 / 3))
        assert (best.true_positives, best.false_positives, best.num_positives) == (2, 1, 3)
        # precision 0.9 only holds at the top: the highest threshold of that recall
        top = best_recall_at_precision(ap, 0.9)
        assert top is not None and (top.threshold, top.recall, top.support) == (0.9, pytest.approx(1 / 3), 1)
        assert best_recall_at_precision(micro_average_precision([sp("A", "x", 0.9)], [("A", "a1")]), 0.5) is None
        with pytest.raises(ValueError, match="target precision"):
            best_recall_at_precision(ap, 0.0)


class TestSegments:
    def test_prf_exact_fractions(self):
        gt = [m("q", "r", 0, 10, 0, 10)]
        pred = [m("q", "r", 5, 15, 0, 10)]
        res = segment_precision_recall(gt, pred)
        assert (res.query_precision, res.query_recall) == (0.5, 0.5)
        assert (res.ref_precision, res.ref_recall) == (1.0, 1.0)
        assert res.precision == pytest.approx(math.sqrt(0.5))
        assert res.recall == pytest.approx(math.sqrt(0.5))
        assert res.f1 == pytest.approx(math.sqrt(0.5))

    def test_prf_two_pairs_and_wrong_pair(self):
        gt = [m("q", "r", 0, 10, 0, 10), m("q2", "r2", 0, 20, 100, 120)]
        pred = [
            m("q", "r", 0, 10, 0, 10),
            m("q2", "r2", 0, 10, 100, 105),  # q: 10/10 inside gt; r: 5/5 inside gt
            m("x", "y", 0, 10, 0, 10),  # a pair with no ground truth: all false
        ]
        res = segment_precision_recall(gt, pred)
        assert res.query_precision == pytest.approx(20 / 30)
        assert res.query_recall == pytest.approx(20 / 30)
        assert res.ref_precision == pytest.approx(15 / 25)
        assert res.ref_recall == pytest.approx(15 / 30)
        assert res.precision == pytest.approx(math.sqrt(20 / 30 * 15 / 25))
        assert res.recall == pytest.approx(math.sqrt(20 / 30 * 15 / 30))

    def test_right_on_one_axis_only_earns_nothing(self):
        gt = [m("q", "r", 0, 10, 0, 10)]
        pred = [m("q", "r", 0, 10, 50, 60)]
        res = segment_precision_recall(gt, pred)
        assert res.precision == 0.0 and res.recall == 0.0

    def test_segment_micro_ap(self):
        gt = [m("q", "r", 0, 10, 0, 10), m("q2", "r2", 0, 10, 0, 10)]
        preds = [
            m("q", "r", 0, 10, 0, 10, score=0.9),  # perfect: P=1, R=1/2
            m("x", "y", 0, 10, 0, 10, score=0.8),  # false: P=1/2, R=1/2
            m("q2", "r2", 0, 10, 0, 10, score=0.7),  # P=2/3, R=1
        ]
        ap = segment_micro_average_precision(gt, preds)
        assert ap.ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
        np.testing.assert_allclose(ap.curve.recalls, [0.5, 0.5, 1.0])
        np.testing.assert_allclose(ap.curve.precisions, [1.0, 0.5, 2 / 3])

    def test_segment_micro_ap_perfect_and_partial(self):
        gt = [m("q", "r", 0, 10, 0, 10)]
        assert segment_micro_average_precision(gt, [m("q", "r", 0, 10, 0, 10, 0.5)]).ap == pytest.approx(1.0)
        # half on the query axis: P = R = √0.5 in one step
        assert segment_micro_average_precision(gt, [m("q", "r", 5, 15, 0, 10, 0.5)]).ap == pytest.approx(0.5)

    def test_segment_errors(self):
        with pytest.raises(ValueError):
            m("q", "r", 5, 1, 0, 1)
        with pytest.raises(ValueError, match="non-finite"):
            m("q", "r", 0, 1, 0, 1, float("nan"))
        with pytest.raises(ValueError, match="positive length"):
            segment_micro_average_precision([], [m("q", "r", 0, 1, 0, 1)])
