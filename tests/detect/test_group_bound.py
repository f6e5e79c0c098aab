"""The group-resampled precision bound (``detect.group_bound``) and ``dupwatch calibrate --groups``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detect.calibration import Calibration, CalibrationError, LabelledPair, wilson_lower_bound
from detect.group_bound import grouped_bound, read_groups
from evaluation.truth import GroundTruth, ScoreRow, TruthRow, write_scores_csv, write_truth_csv
from tests.detect.test_calibration_level_fields import invoke


def source_pairs(n_sources: int, copies: int, false_in_first: int, rng: np.random.Generator) -> tuple[list[LabelledPair], dict[str, str]]:
    """Per source ``s``: ``copies`` copy pairs scoring 0.8–1.0 and unrelated pairs below 0.3; the
    first source also has ``false_in_first`` "another moment" pairs scoring 0.85–0.99."""
    pairs, groups = [], {}
    for s in range(n_sources):
        ref = f"s{s}-ref"
        groups[ref] = f"source{s}"
        for k in range(copies):
            q = f"s{s}-copy{k}"
            groups[q] = f"source{s}"
            pairs.append(LabelledPair(q, ref, "copy", 0.5, 0.5, None, float(rng.uniform(0.8, 1.0))))
            pairs.append(LabelledPair(q, f"s{(s + 1) % n_sources}-ref", "unrelated", 0.1, 0.1, None, float(rng.uniform(0, 0.3))))
        for k in range(false_in_first if s == 0 else 0):
            q = f"s{s}-moment{k}"
            groups[q] = f"source{s}"
            pairs.append(LabelledPair(q, ref, "incident", 0.5, 0.5, None, float(rng.uniform(0.85, 0.99))))
    return pairs, groups


def test_false_alerts_in_one_source_weigh_as_one_source_not_as_many_pairs() -> None:
    """The Wilson bound of 400 alerts passes; resampling the ten sources shows that draws with the
    bad source twice or more fall short, and only a threshold above nearly all its false alerts
    reaches 0.95."""
    pairs, groups = source_pairs(10, 40, 12, np.random.default_rng(0))
    alerts = [p for p in pairs if p.copy_score >= 0.8]
    point = sum(p.level == "copy" for p in alerts) / len(alerts)
    assert point == pytest.approx(400 / 412)
    assert float(wilson_lower_bound(np.array([point]), np.array([len(alerts)]), 0.9)[0]) > 0.95
    g = grouped_bound(pairs, "copy", "copy_score", 0.8, 0.95, groups, confidence=0.9, draws=2000)
    assert g.groups == 10 and g.draws == 2000
    assert g.bound_at_threshold < 0.95 < point
    false_scores = [p.copy_score for p in pairs if p.level == "incident"]
    assert g.reaches_target_from is not None
    assert sum(s < g.reaches_target_from for s in false_scores) >= 10  # above nearly all of them
    # the same seed gives the same bound; another seed a close one
    assert grouped_bound(pairs, "copy", "copy_score", 0.8, 0.95, groups, draws=2000) == g
    other = grouped_bound(pairs, "copy", "copy_score", 0.8, 0.95, groups, draws=2000, seed=1)
    assert abs(other.bound_at_threshold - g.bound_at_threshold) < 0.01


def test_sources_alike_give_their_own_precision_and_cross_pairs_are_kept_in_every_draw() -> None:
    """Every source with the same share of false alerts: every draw has that precision. Pairs across
    sources are not resampled: with only such pairs the bound is the point precision."""
    pairs = []
    groups = {}
    for s in range(6):
        for k, level in enumerate(["copy"] * 9 + ["incident"]):
            q, r = f"s{s}-q{k}", f"s{s}-r{k}"
            groups[q] = groups[r] = f"source{s}"
            pairs.append(LabelledPair(q, r, level, 0.5, 0.5, None, 0.9 if level == "copy" else 0.95))  # type: ignore[arg-type]
    g = grouped_bound(pairs, "copy", "copy_score", 0.9, 0.95, groups, min_support=1)
    assert g.bound_at_threshold == pytest.approx(0.9)
    assert g.reaches_target_from is None  # 0.9 at 0.9, and only false alerts above it
    crossed = {v: f"own{i}" for i, v in enumerate(sorted(groups))}
    c = grouped_bound(pairs, "copy", "copy_score", 0.9, 0.95, crossed, min_support=1)
    assert c.bound_at_threshold == pytest.approx(54 / 60) and c.groups == len(crossed)


def test_group_inputs_are_checked() -> None:
    pairs = [LabelledPair("a", "b", "copy", 0.5, 0.5, None, 0.9)]
    with pytest.raises(CalibrationError, match="no group for 1 video"):
        grouped_bound(pairs, "copy", "copy_score", 0.5, 0.95, {"a": "x"})
    with pytest.raises(CalibrationError, match="no pair has a normalized_score"):
        grouped_bound(pairs, "copy", "normalized_score", 0.5, 0.95, {"a": "x", "b": "x"})
    with pytest.raises(CalibrationError, match="confidence"):
        grouped_bound(pairs, "copy", "copy_score", 0.5, 0.95, {"a": "x", "b": "x"}, confidence=1.0)
    assert read_groups([{"video": "a", "group": "x"}, {"video": "a", "group": "x"}]) == {"a": "x"}
    with pytest.raises(CalibrationError, match="line 3: video 'a' is in groups 'x' and 'y'"):
        read_groups([{"video": "a", "group": "x"}, {"video": "a", "group": "y"}])
    with pytest.raises(CalibrationError, match="line 2: needs a video and a group"):
        read_groups([{"video": "a"}])


def test_cli_reports_the_grouped_bound_beside_the_thresholds(tmp_path: Path) -> None:
    pairs, groups = source_pairs(10, 40, 12, np.random.default_rng(0))
    write_truth_csv(GroundTruth(tuple(TruthRow(p.query, p.reference, p.level) for p in pairs if p.level != "unrelated")),  # type: ignore[arg-type]
                    tmp_path / "truth.csv")
    write_scores_csv([ScoreRow(p.query, p.reference, p.score, p.fine_score, None, p.copy_score) for p in pairs], tmp_path / "scores.csv")
    (tmp_path / "groups.csv").write_text("video,group\n" + "".join(f"{v},{g}\n" for v, g in groups.items()))
    base = ["--truth", str(tmp_path / "truth.csv"), "--scores", str(tmp_path / "scores.csv"), "--plot", str(tmp_path / "p.png"),
            "--confidence", "0.9", "--levels", "copy"]
    res = invoke(*base, "--groups", str(tmp_path / "groups.csv"), "--bundle", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("copy ") and "groups:" in x)
    assert line.startswith("copy      10 groups: bound 0.9") and "reaches 0.950 from 0.9" in line
    # the thresholds themselves keep the Wilson rule: the same with and without --groups; the stored
    # calibration keeps the grouped bound beside them
    plain = invoke(*base, "--bundle", str(tmp_path / "c"))
    stored = Calibration.from_dict(json.loads((tmp_path / "b" / "calibration.json").read_text()))
    without = Calibration.from_dict(json.loads((tmp_path / "c" / "calibration.json").read_text()))
    assert stored.levels == without.levels and "grouped_bounds" not in without.stats
    kept = stored.stats["grouped_bounds"]["copy"]
    assert kept["groups"] == 10 and kept["threshold"] == stored.levels["copy"].threshold
    assert f"bound {kept['bound_at_threshold']:.4f}" in line
    # a benchmark folder: its videos grouped by the source each was made from
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "benchmark.json").write_text(json.dumps({"derivations": [
        {"video": v, "source": g, "window": [0.0, 4.0], "edits": []} for v, g in groups.items()]}))
    from_bench = invoke(*base, "--groups", str(bench))
    assert from_bench.exit_code == 0 and line in from_bench.output
    # several sets (a benchmark drawn twice): one --groups each, merged; a video in two groups is refused
    items = sorted(groups.items())
    (tmp_path / "g1.csv").write_text("video,group\n" + "".join(f"{v},{g}\n" for v, g in items[::2]))
    (tmp_path / "g2.csv").write_text("video,group\n" + "".join(f"{v},{g}\n" for v, g in items[1::2]))
    split = invoke(*base, "--groups", str(tmp_path / "g1.csv"), "--groups", str(tmp_path / "g2.csv"))
    assert split.exit_code == 0 and line in split.output
    v0, g0 = items[0]
    (tmp_path / "clash.csv").write_text(f"video,group\n{v0},not-{g0}\n")
    clash = invoke(*base, "--groups", str(tmp_path / "g1.csv"), "--groups", str(tmp_path / "g2.csv"), "--groups", str(tmp_path / "clash.csv"))
    assert clash.exit_code == 2 and f"video {v0!r} is in group" in clash.output
    (tmp_path / "partial.csv").write_text("video,group\ns0-ref,source0\n")
    res = invoke(*base, "--groups", str(tmp_path / "partial.csv"))
    assert res.exit_code == 2 and "no group for" in res.output
    assert plain.exit_code == 0
