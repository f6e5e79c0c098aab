"""Per-level score fields of the calibration (copy on the copy head's ``copy_score``, incident on the
fine score): fit, holdout, (de)serialization, the scores CSV, and ``dupwatch calibrate``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation.truth import GroundTruth, ScoreRow, TruthRow, read_scores_csv, write_scores_csv, write_truth_csv
from detect.calibration import Calibration, CalibrationError, LabelledPair, calibrate, evaluate
from tests.detect.test_cli import app
from dupwatch.paths import REPO_ROOT

DEFAULT = REPO_ROOT / "models" / "default"


def pair_set(seed: int, prefix: str, n_queries: int = 30) -> list[LabelledPair]:
    """Per query: 2 copies, 2 incidents, 10 unrelated. ``score`` and ``fine_score`` give copies and
    incidents the same distribution (they cannot separate copies from incidents); ``copy_score``
    separates copies from everything else perfectly. Both separate related from unrelated."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_queries):
        q = f"{prefix}{i}"
        for level, n in (("copy", 2), ("incident", 2), ("unrelated", 10)):
            for k in range(n):
                related = level != "unrelated"
                score = float(rng.uniform(0.6, 0.9) if related else rng.uniform(0.0, 0.4))
                fine = float(rng.uniform(0.6, 0.9) if related else rng.uniform(0.0, 0.4))
                copy_score = float(rng.uniform(0.8, 1.0) if level == "copy" else rng.uniform(0.0, 0.5))
                out.append(LabelledPair(q, f"{q}-{level}-{k}", level, score, fine, None, copy_score))  # type: ignore[arg-type]
    return out


FIELDS = {"copy": "copy_score", "incident": "fine_score"}
EXACT = {"copy": 1.0, "incident": 1.0}


def test_each_level_is_fitted_on_its_own_field() -> None:
    pairs = pair_set(1, "a")
    # on the plain score the copy target is out of reach (copies and incidents look alike)
    with pytest.raises(CalibrationError, match="copy"):
        calibrate(pairs, targets={"copy": 0.95}, score_field="score", clock=lambda: 0.0)
    # target 1.0: the lowest threshold with precision 1 is the lowest positive's value on the level's field
    cal = calibrate(pairs, targets=EXACT, score_field="score", level_fields=FIELDS, clock=lambda: 0.0)
    assert dict(cal.level_fields) == FIELDS
    assert cal.field_of("copy") == "copy_score" and cal.field_of("incident") == "fine_score"
    assert cal.score_field == "score"
    copy, incident = cal.levels["copy"], cal.levels["incident"]
    assert copy.precision == 1.0 and copy.recall == 1.0
    assert copy.threshold >= 0.8  # copies' copy_score is in [0.8, 1); their score is in [0.6, 0.9)
    min_copy_score = min(p.copy_score for p in pairs if p.level == "copy")  # type: ignore[type-var]
    assert copy.threshold == pytest.approx(min_copy_score)
    # incident on fine_score: related vs unrelated separates perfectly there too
    assert incident.precision == 1.0 and incident.recall == 1.0
    min_fine_related = min(p.fine_score for p in pairs if p.level != "unrelated")  # type: ignore[type-var]
    assert incident.threshold == pytest.approx(min_fine_related)
    min_score_related = min(p.score for p in pairs if p.level != "unrelated")  # type: ignore[type-var]
    assert incident.threshold != pytest.approx(min_score_related)


def test_holdout_uses_the_same_fields() -> None:
    cal = calibrate(pair_set(1, "a"), targets=EXACT, score_field="score", level_fields=FIELDS, holdout=pair_set(2, "b"),
                    clock=lambda: 0.0)
    for name in ("copy", "incident"):
        h = cal.levels[name].holdout
        assert h is not None and h.precision is not None
        assert h.micro_ap == pytest.approx(1.0)
    assert cal.levels["copy"].holdout.precision == 1.0  # type: ignore[union-attr]
    # evaluating the same calibration without its level fields scores copies on ``score``: worse
    plain = Calibration.from_dict({**cal.to_dict(), "level_fields": {}})
    again = evaluate(plain, pair_set(2, "b"))
    assert again.levels["copy"].holdout.micro_ap < 0.9  # type: ignore[union-attr]
    # holdout copy positives must be read from copy_score: a holdout pair without one is an error
    hold = pair_set(3, "c")
    hold[0] = LabelledPair(hold[0].query, hold[0].reference, hold[0].level, hold[0].score, hold[0].fine_score)
    with pytest.raises(CalibrationError, match="copy_score"):
        evaluate(cal, hold)


def test_round_trip_keeps_level_fields() -> None:
    cal = calibrate(pair_set(1, "a"), score_field="score", level_fields=FIELDS, clock=lambda: 0.0)
    d = json.loads(cal.to_json())
    assert d["level_fields"] == FIELDS
    again = Calibration.from_dict(d)
    assert dict(again.level_fields) == FIELDS
    assert again.thresholds == cal.thresholds
    assert again.field_of("copy") == "copy_score"
    # an old calibration without the key reads as "every level on score_field"
    old = {k: v for k, v in d.items() if k != "level_fields"}
    assert Calibration.from_dict(old).field_of("copy") == "score"


@pytest.mark.parametrize("fields", [{"copy": "bogus"}, {"incident": "copy"}, {"copy": ""}])
def test_unknown_field_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(CalibrationError, match="unknown score field"):
        calibrate(pair_set(1, "a"), level_fields=fields)


def test_missing_field_value_is_refused() -> None:
    pairs = pair_set(1, "a")
    pairs[0] = LabelledPair(pairs[0].query, pairs[0].reference, pairs[0].level, pairs[0].score, pairs[0].fine_score)
    with pytest.raises(CalibrationError, match="copy_score"):
        calibrate(pairs, level_fields=FIELDS)


def test_scores_csv_round_trip_with_copy_score(tmp_path: Path) -> None:
    rows = [ScoreRow("q", "r1", 0.5, 0.6, None, 0.75), ScoreRow("q", "r2", 0.1, None, 0.05, None),
            ScoreRow("q2", "r1", 0.123456789012345, 0.2, 0.3, 1e-7)]
    write_scores_csv(rows, tmp_path / "s.csv")
    header = (tmp_path / "s.csv").read_text().splitlines()[0].split(",")
    assert "copy_score" in header
    assert read_scores_csv(tmp_path / "s.csv") == rows
    # a file without the column reads with copy_score None
    (tmp_path / "old.csv").write_text("query,reference,score,fine_score\nq,r,0.5,0.4\n")
    assert read_scores_csv(tmp_path / "old.csv") == [ScoreRow("q", "r", 0.5, 0.4)]


# ---- dupwatch calibrate ------------------------------------------------------------------------


def write_files(tmp_path: Path, with_copy_score: bool = True) -> tuple[Path, Path]:
    pairs = pair_set(5, "a") + pair_set(6, "b")
    truth = [TruthRow(p.query, p.reference, p.level) for p in pairs if p.level != "unrelated"]  # type: ignore[arg-type]
    scores = [ScoreRow(p.query, p.reference, p.score, p.fine_score, None, p.copy_score if with_copy_score else None)  # type: ignore[arg-type]
              for p in pairs]
    write_truth_csv(GroundTruth(tuple(truth)), tmp_path / "truth.csv")
    write_scores_csv(scores, tmp_path / "scores.csv")
    return tmp_path / "truth.csv", tmp_path / "scores.csv"


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app(), ["calibrate", *args])


def test_cli_picks_copy_score_when_present(tmp_path: Path) -> None:
    truth, scores = write_files(tmp_path)
    res = invoke("--truth", str(truth), "--scores", str(scores), "--plot", str(tmp_path / "p.png"),
                 "--bundle", str(tmp_path / "plain"))
    assert res.exit_code == 0, res.output
    assert "copy: copy_score" in res.output and "incident: fine_score" in res.output
    cal = Calibration.from_dict(json.loads((tmp_path / "plain" / "calibration.json").read_text()))
    assert dict(cal.level_fields) == FIELDS
    assert cal.levels["copy"].precision >= 0.95
    assert not (tmp_path / "plain" / "manifest.json").exists()  # a plain folder is not made a bundle


def test_cli_without_copy_score_uses_one_field(tmp_path: Path) -> None:
    truth, scores = write_files(tmp_path, with_copy_score=False)
    res = invoke("--truth", str(truth), "--scores", str(scores), "--plot", str(tmp_path / "p.png"),
                 "--target-precision", "0.4", "--bundle", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    assert "(copy: score, incident: score)" in res.output
    cal = Calibration.from_dict(json.loads((tmp_path / "b" / "calibration.json").read_text()))
    assert dict(cal.level_fields) == {}


def test_cli_explicit_level_field(tmp_path: Path) -> None:
    truth, scores = write_files(tmp_path)
    res = invoke("--truth", str(truth), "--scores", str(scores), "--plot", str(tmp_path / "p.png"),
                 "--level-field", "incident=score", "--levels", "incident", "--bundle", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    assert "incident: score" in res.output
    cal = Calibration.from_dict(json.loads((tmp_path / "b" / "calibration.json").read_text()))
    assert dict(cal.level_fields) == {"incident": "score"}  # explicit fields replace the automatic ones


@pytest.mark.parametrize("arg, needle", [("copy=bogus", "unknown score field 'bogus'"), ("copy", "LEVEL=FIELD"),
                                         ("=copy_score", "LEVEL=FIELD")])
def test_cli_bad_level_field(tmp_path: Path, arg: str, needle: str) -> None:
    truth, scores = write_files(tmp_path)
    res = invoke("--truth", str(truth), "--scores", str(scores), "--plot", str(tmp_path / "p.png"), "--level-field", arg,
                 "--bundle", str(tmp_path / "b"))
    assert res.exit_code != 0
    assert needle in res.output
    assert not (tmp_path / "b" / "calibration.json").exists()


def test_cli_bundle_stores_calibration_in_manifest(tmp_path: Path) -> None:
    from detect.copy_head import copy_head_for, copy_threshold_fits_head
    from inference.bundle import load_bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT, bundle)
    before = load_bundle(bundle).thresholds()
    truth, scores = write_files(tmp_path)
    res = invoke("--truth", str(truth), "--scores", str(scores), "--plot", str(tmp_path / "p.png"), "--bundle", str(bundle))
    assert res.exit_code == 0, res.output
    assert "manifest.json" in res.output
    stored = Calibration.from_dict(json.loads((bundle / "calibration.json").read_text()))
    loaded = load_bundle(bundle)  # verify=True: the artifacts are untouched
    assert loaded.thresholds() == pytest.approx(stored.thresholds)
    assert loaded.thresholds() != pytest.approx(before)
    assert loaded.manifest.calibration["level_fields"] == FIELDS  # type: ignore[index]
    assert Calibration.from_dict(loaded.manifest.calibration).to_dict() == stored.to_dict()  # type: ignore[arg-type]
    # the rest of the manifest survives, and the worker's check accepts the new calibration
    assert set(loaded.manifest.artifacts) == set(load_bundle(DEFAULT).manifest.artifacts)
    assert copy_head_for(loaded) is not None and copy_threshold_fits_head(loaded)
