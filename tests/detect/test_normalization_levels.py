from __future__ import annotations

import numpy as np
import pytest

from detect.calibration import Calibration, LevelCalibration
from detect.levels import AlignmentEvidence, LevelThresholds, decide_level
from detect.normalization import NormalizationParams, SimilarityNormalizer, normalize, query_bias
from dupwatch.config import DetectionConfig


class TestNormalization:
    def test_bias_is_weighted_mean_of_top_k(self):
        sims = [0.1, 0.9, 0.5, 0.7, 0.3]
        assert query_bias(sims, k=2) == pytest.approx((0.9 + 0.7) / 2)
        assert query_bias(sims, k=3, weight=0.5) == pytest.approx(0.5 * (0.9 + 0.7 + 0.5) / 3)
        # fewer background similarities than k: mean of all of them
        assert query_bias([0.2, 0.4], k=10) == pytest.approx(0.3)
        assert normalize(0.8, 0.3) == pytest.approx(0.5)

    def test_callable_background_gets_k(self):
        asked = []

        def search(k: int) -> list[float]:
            asked.append(k)
            return [0.6, 0.4, 0.2][:k]

        n = SimilarityNormalizer(k=2, weight=1.0)
        assert n.bias(search) == pytest.approx(0.5)
        np.testing.assert_allclose(n.normalize(np.array([0.9, 0.5]), search), [0.4, 0.0])
        assert n.normalize(0.9, [0.5]) == pytest.approx(0.4)
        assert asked == [2, 2]
        assert repr(n) == "SimilarityNormalizer(k=2, weight=1.0)"

    def test_errors(self):
        with pytest.raises(ValueError, match="no similarity"):
            query_bias([], k=3)
        with pytest.raises(ValueError, match="non-finite"):
            query_bias([0.1, float("nan")], k=1)
        with pytest.raises(ValueError):
            NormalizationParams(k=0, weight=1.0)
        with pytest.raises(ValueError):
            NormalizationParams(k=1, weight=-1.0)
        assert NormalizationParams.from_dict(NormalizationParams(5, 0.5).to_dict()) == NormalizationParams(5, 0.5)


EVIDENCE = AlignmentEvidence(aligned_length_s=8.0, query_coverage=0.9, reference_coverage=0.1, fine_score=0.7)
T = LevelThresholds(copy=0.5, incident=0.2, min_aligned_s=4.0, min_coverage=0.5)


class TestLevels:
    @pytest.mark.parametrize(
        "score, evidence, expected",
        [
            (0.6, EVIDENCE, "copy"),
            (0.5, EVIDENCE, "copy"),  # inclusive
            (0.6, None, "incident"),  # no temporal evidence: not a copy
            (0.6, AlignmentEvidence(3.0, 0.9, 0.9), "incident"),  # too short
            (0.6, AlignmentEvidence(8.0, 0.3, 0.4), "incident"),  # too little coverage on both
            (0.3, EVIDENCE, "incident"),
            (0.2, None, "incident"),
            (0.19, EVIDENCE, "none"),
        ],
    )
    def test_rule(self, score, evidence, expected):
        assert decide_level(score, evidence, T) == expected

    def test_fine_score_gate_and_missing_levels(self):
        t = LevelThresholds(copy=0.5, incident=None, min_aligned_s=0.0, min_fine_score=0.8)
        assert decide_level(0.9, EVIDENCE, t) == "none"
        assert decide_level(0.9, AlignmentEvidence(1.0, 1.0, 1.0, fine_score=0.85), t) == "copy"
        with pytest.raises(ValueError):
            decide_level(float("nan"), EVIDENCE, T)
        with pytest.raises(ValueError):
            AlignmentEvidence(1.0, 1.5, 0.0)

    def test_resolve_config_overrides_calibration(self):
        lv = dict(target_precision=0.95, precision=0.96, recall=0.8, support=30, positives=40, negatives=100, micro_ap=0.9)
        cal = Calibration(
            levels={"copy": LevelCalibration(level="copy", threshold=0.4, **lv),
                    "incident": LevelCalibration(level="incident", threshold=0.1, **lv)},
            score_field="normalized_score", normalization=None, min_support=20, created_at="2026-01-01T00:00:00Z",
        )
        t = LevelThresholds.resolve(cal, DetectionConfig(thresholds={"copy": 0.55}, min_segment_s=3.0))
        assert (t.copy, t.incident, t.min_aligned_s) == (0.55, 0.1, 3.0)
        assert LevelThresholds.resolve(cal).copy == 0.4
