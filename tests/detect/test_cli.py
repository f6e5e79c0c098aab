from __future__ import annotations

import json
import time

import numpy as np
import typer
from typer.testing import CliRunner

from evaluation.truth import GroundTruth, ScoreRow, TruthRow, write_scores_csv, write_truth_csv
from detect.calibration import Calibration
from detect.cli import register
from detect.signing import sign

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def app() -> typer.Typer:
    a = typer.Typer()

    @a.callback()
    def _root() -> None:
        pass

    register(a)
    return a


def write_set(tmp_path, name: str, seed: int):
    rng = np.random.default_rng(seed)
    truth, scores = [], []
    for i in range(30):
        q = f"{name}{i}"
        for level, mu, n in (("copy", 0.8, 2), ("incident", 0.5, 2), (None, 0.1, 12)):
            for k in range(n):
                r = f"{q}-{level}-{k}"
                if level:
                    truth.append(TruthRow(q, r, level))
                scores.append(ScoreRow(q, r, float(rng.normal(mu, 0.07))))
    return truth, scores


def test_calibrate_command(tmp_path):
    t1, s1 = write_set(tmp_path, "a", 1)
    t2, s2 = write_set(tmp_path, "b", 2)
    write_truth_csv(GroundTruth(tuple(t1 + t2)), tmp_path / "pairs.csv")
    write_scores_csv(s1, tmp_path / "scores.csv")
    write_scores_csv(s2, tmp_path / "second.csv")
    res = CliRunner().invoke(app(), [
        "calibrate", "--truth", str(tmp_path / "pairs.csv"), "--scores", str(tmp_path / "scores.csv"),
        "--holdout", str(tmp_path / "second.csv"), "--target-precision", "0.95",
        "--plot", str(tmp_path / "out" / "cal.png"), "--bundle", str(tmp_path / "bundle"),
    ])
    assert res.exit_code == 0, res.output
    assert "copy" in res.output and "holdout" in res.output
    assert (tmp_path / "out" / "cal.png").read_bytes()[:4] == b"\x89PNG"
    cal = Calibration.from_dict(json.loads((tmp_path / "bundle" / "calibration.json").read_text()))
    assert cal.levels["copy"].precision >= 0.95
    assert cal.levels["copy"].holdout is not None


def test_calibrate_fits_several_labelled_sets_together(tmp_path):
    """Two --truth/--scores pairs fit the thresholds one merged set would; a set without its scores is refused."""
    t1, s1 = write_set(tmp_path, "a", 1)
    t2, s2 = write_set(tmp_path, "b", 2)
    write_truth_csv(GroundTruth(tuple(t1)), tmp_path / "t1.csv")
    write_truth_csv(GroundTruth(tuple(t2)), tmp_path / "t2.csv")
    write_truth_csv(GroundTruth(tuple(t1 + t2)), tmp_path / "both.csv")
    write_scores_csv(s1, tmp_path / "s1.csv")
    write_scores_csv(s2, tmp_path / "s2.csv")
    write_scores_csv(s1 + s2, tmp_path / "s12.csv")

    def fit(*args: str, out: str) -> Calibration:
        res = CliRunner().invoke(app(), ["calibrate", *args, "--plot", str(tmp_path / f"{out}.png"), "--bundle", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
        return Calibration.from_dict(json.loads((tmp_path / out / "calibration.json").read_text()))

    two = fit("--truth", str(tmp_path / "t1.csv"), "--scores", str(tmp_path / "s1.csv"),
              "--truth", str(tmp_path / "t2.csv"), "--scores", str(tmp_path / "s2.csv"), out="two")
    merged = fit("--truth", str(tmp_path / "both.csv"), "--scores", str(tmp_path / "s12.csv"), out="merged")
    first = fit("--truth", str(tmp_path / "t1.csv"), "--scores", str(tmp_path / "s1.csv"), out="first")
    assert two.levels == merged.levels
    assert two.levels["copy"].positives == 2 * first.levels["copy"].positives
    # scores paired with the wrong truth would label every pair unrelated: the order matters, and a
    # missing --scores is a usage error, not a silent fit on fewer pairs
    res = CliRunner().invoke(app(), ["calibrate", "--truth", str(tmp_path / "t1.csv"), "--truth", str(tmp_path / "t2.csv"),
                                     "--scores", str(tmp_path / "s12.csv"), "--plot", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "one --scores per --truth" in res.output
    res = CliRunner().invoke(app(), ["calibrate", "--truth", str(tmp_path / "t1.csv"), "--scores", str(tmp_path / "s1.csv"),
                                     "--truth", str(tmp_path / "t2.csv"), "--scores", str(tmp_path / "s2.csv"),
                                     "--holdout", str(tmp_path / "s2.csv"), "--plot", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "--holdout-truth" in res.output


def test_calibrate_bad_input(tmp_path):
    (tmp_path / "pairs.csv").write_text("query,reference,level\nq,r,maybe\n")
    (tmp_path / "scores.csv").write_text("query,reference,score\nq,r,0.5\n")
    res = CliRunner().invoke(app(), ["calibrate", "--truth", str(tmp_path / "pairs.csv"), "--scores",
                                     str(tmp_path / "scores.csv"), "--plot", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "line 2" in res.output


def test_alerts_verify(tmp_path):
    body = b'{"alert_id":"a1"}'
    (tmp_path / "body.json").write_bytes(body)
    ts = int(time.time())
    sig = sign(SECRET, "a1", ts, body)
    base = ["alerts", "verify", "--secret", SECRET, "--id", "a1", "--timestamp", str(ts)]
    ok = CliRunner().invoke(app(), base + ["--signature", sig, "--body-file", str(tmp_path / "body.json")])
    assert ok.exit_code == 0 and "valid" in ok.output
    stdin = CliRunner().invoke(app(), base + ["--signature", sig], input=body)
    assert stdin.exit_code == 0
    tampered = CliRunner().invoke(app(), base + ["--signature", sig], input=body + b" ")
    assert tampered.exit_code == 1 and "no_valid_signature" in tampered.output
    old = CliRunner().invoke(app(), ["alerts", "verify", "--secret", SECRET, "--id", "a1", "--timestamp", str(ts - 600),
                                     "--signature", sign(SECRET, "a1", ts - 600, body)], input=body)
    assert old.exit_code == 1 and "timestamp_too_old" in old.output
    assert SECRET not in tampered.output + old.output


def test_alerts_sign_round_trip():
    res = CliRunner().invoke(app(), ["alerts", "sign", "--secret", SECRET, "--id", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                     "--timestamp", "1614265330"], input=b'{"test": 2432232314}')
    assert res.exit_code == 0
    assert json.loads(res.output)["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
