from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.metrics import average_precision
from detect.calibration import (
    Calibration,
    CalibrationError,
    LabelledPair,
    calibrate,
    evaluate,
    fit_threshold,
    plot_calibration,
)


def synthetic(seed: int, n_queries: int = 40, prefix: str = "q", biased: bool = False):
    """Per query: 2 copies, 2 incidents, 16 unrelated references. With ``biased``, each query's
    scores are shifted by its own bias, which its background similarities reveal."""
    rng = np.random.default_rng(seed)
    pairs, background = [], {}
    for i in range(n_queries):
        q = f"{prefix}{i}"
        bias = rng.uniform(0.0, 0.4) if biased else 0.0
        background[q] = bias + rng.normal(0.05, 0.03, size=200)
        for j, (level, mu, sd, n) in enumerate([("copy", 0.75, 0.06, 2), ("incident", 0.45, 0.08, 2), ("unrelated", 0.1, 0.1, 16)]):
            for k in range(n):
                pairs.append(LabelledPair(q, f"{q}-{level}-{k}", level, float(rng.normal(mu, sd) + bias)))
    return pairs, background


def test_reaches_target_and_reports_holdout():
    cal_set, _ = synthetic(1, prefix="a")
    hold_set, _ = synthetic(2, prefix="b")
    cal = calibrate(cal_set, targets={"copy": 0.95, "incident": 0.9}, holdout=hold_set, clock=lambda: 0.0)
    assert set(cal.thresholds) == {"copy", "incident"}
    for name, lv in cal.levels.items():
        assert lv.precision >= lv.target_precision
        assert lv.support >= cal.min_support
        assert lv.holdout is not None and lv.holdout.precision is not None
        assert lv.holdout.precision >= lv.target_precision - 0.1
        assert lv.holdout.recall > 0.5
    assert cal.levels["copy"].positives == 80 and cal.levels["incident"].positives == 160
    assert cal.thresholds["copy"] > cal.thresholds["incident"]
    assert cal.created_at == "1970-01-01T00:00:00Z"
    # JSON round trip for the bundle manifest
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    assert Calibration.from_json(cal.to_json()).thresholds == cal.thresholds


def test_lowest_threshold_reaching_target():
    # descending: + + + - + + - - -  with min_support 1
    scores = [9, 8, 7, 6, 5, 4, 3, 2, 1]
    labels = [1, 1, 1, 0, 1, 1, 0, 0, 0]
    ap = average_precision(scores, labels)
    t, p, r, n = fit_threshold(ap, 0.8, min_support=1)
    # at 4: 5/6 = 0.833 ≥ 0.8 (lowest such); at 3: 5/7 < 0.8
    assert (t, n, r) == (4.0, 6, 1.0) and p == pytest.approx(5 / 6)
    # support rule: with min_support 7 the target is unreachable
    with pytest.raises(CalibrationError, match="unreachable"):
        fit_threshold(ap, 0.8, min_support=7)


def test_unreachable_target_and_too_few_positives():
    pairs, _ = synthetic(3, n_queries=10)
    with pytest.raises(CalibrationError, match="unreachable"):
        calibrate(pairs, targets={"copy": 1.0}, min_support=200)
    few = [p for p in pairs if p.level != "copy"] + [p for p in pairs if p.level == "copy"][:3]
    with pytest.raises(CalibrationError, match="only 3 positive"):
        calibrate(few, levels=["copy"])


def test_missed_positives_lower_recall():
    pairs, _ = synthetic(4, n_queries=20)
    missed = [LabelledPair(f"q{i}", f"missing{i}", "copy", None) for i in range(20)]
    cal = calibrate(pairs + missed, levels=["copy"])
    assert cal.levels["copy"].positives == 60
    assert cal.levels["copy"].recall <= 40 / 60 + 1e-9


def test_holdout_must_be_disjoint():
    pairs, _ = synthetic(5, n_queries=20)
    with pytest.raises(CalibrationError, match="shares"):
        calibrate(pairs, holdout=pairs[:50])


def test_normalization_grid_search_improves_copy_micro_ap(tmp_path):
    pairs, bg = synthetic(6, biased=True)
    raw = calibrate(pairs, levels=["copy"], targets={"copy": 0.8})
    norm = calibrate(pairs, levels=["copy"], targets={"copy": 0.8}, background=bg, k_grid=(1, 10, 50), weight_grid=(0.0, 0.5, 1.0))
    assert norm.normalization is not None and norm.normalization.weight > 0
    assert norm.score_field == "normalized_score"
    assert norm.levels["copy"].micro_ap > raw.levels["copy"].micro_ap + 0.02
    assert norm.stats["normalization_copy_micro_ap"] == pytest.approx(norm.levels["copy"].micro_ap)
    # holdout needs background (or normalized scores) when the calibration normalizes
    hold, hbg = synthetic(7, biased=True, prefix="h")
    with pytest.raises(CalibrationError, match="background"):
        evaluate(norm, hold)
    ev = evaluate(norm, hold, background=hbg)
    assert ev.levels["copy"].holdout.precision >= 0.7
    out = plot_calibration(norm, pairs, tmp_path / "cal.png", background=bg)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_uses_normalized_score_column_when_present():
    pairs, _ = synthetic(8, n_queries=20)
    shifted = [LabelledPair(p.query, p.reference, p.level, p.score, None, p.score - 1.0) for p in pairs]
    raw = calibrate(pairs, levels=["copy"])
    cal = calibrate(shifted, levels=["copy"])
    assert cal.score_field == "normalized_score"
    assert cal.thresholds["copy"] == pytest.approx(raw.thresholds["copy"] - 1.0)


def test_input_errors():
    with pytest.raises(ValueError, match="non-finite"):
        LabelledPair("q", "r", "copy", float("nan"))
    with pytest.raises(ValueError, match="level"):
        LabelledPair("q", "r", "dup", 0.1)  # type: ignore[arg-type]
    p = LabelledPair("q", "r", "copy", 0.5)
    with pytest.raises(CalibrationError, match="duplicate"):
        calibrate([p, p])


def test_confidence_bound_is_more_conservative():
    pairs, _ = synthetic(9)
    point = calibrate(pairs, levels=["copy"], targets={"copy": 0.9})
    safe = calibrate(pairs, levels=["copy"], targets={"copy": 0.9}, confidence=0.9)
    assert safe.thresholds["copy"] >= point.thresholds["copy"]
    assert safe.levels["copy"].precision >= point.levels["copy"].precision
    assert safe.stats["confidence"] == 0.9
    # Wilson bound of 19/20 at 90% confidence, known value
    from detect.calibration import wilson_lower_bound

    lb = float(wilson_lower_bound(np.array([0.95]), np.array([20]), 0.9)[0])
    z = 1.2815515655446004
    expected = (0.95 + z * z / 40 - z * np.sqrt(0.95 * 0.05 / 20 + z * z / 1600)) / (1 + z * z / 20)
    assert lb == pytest.approx(expected) and lb < 0.95
