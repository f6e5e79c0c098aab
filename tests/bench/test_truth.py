from __future__ import annotations

import io

import pytest

from evaluation.truth import GroundTruth, ScoreRow, TruthFormatError, TruthRow, read_scores_csv, read_truth_csv, write_scores_csv, write_truth_csv


def test_round_trip_with_segments(tmp_path):
    rows = (
        TruthRow("q1", "r1", "copy", 0.0, 10.0, 5.0, 15.0),
        TruthRow("q1", "r1", "copy", 20.0, 30.0, 25.0, 35.0),
        TruthRow("q2", "r7", "incident"),
    )
    path = tmp_path / "pairs.csv"
    write_truth_csv(GroundTruth(rows), path)
    gt = read_truth_csv(path)
    assert gt.rows == rows
    assert gt.level_of("q1", "r1") == "copy"
    assert gt.level_of("q2", "r7") == "incident"
    assert gt.level_of("q2", "r1") == "unrelated"
    assert gt.pairs("copy") == {("q1", "r1")}
    assert len(gt.segments()) == 2


def test_minimal_columns_and_extra_ignored():
    gt = read_truth_csv(io.StringIO("query,reference,level,note\nq,r,COPY,x\n"))
    assert gt.level_of("q", "r") == "copy"


@pytest.mark.parametrize(
    "text, message",
    [
        ("query,level\nq,copy\n", "missing column"),
        ("query,reference,level\nq,r,dup\n", "line 2: level must be copy or incident"),
        ("query,reference,level\nq,r,copy\nq,r,copy\n", "more than once"),
        ("query,reference,level,query_start,query_end,reference_start,reference_end\nq,r,copy,0,1,0,1\nq,r,incident,2,3,2,3\n", "both"),
        ("query,reference,level,query_start,query_end,reference_start,reference_end\nq,r,copy,0,1,,\n", "all filled or all empty"),
        ("query,reference,level,query_start,query_end,reference_start,reference_end\nq,r,copy,5,1,0,1\n", "ends before"),
        ("query,reference,level,query_start,query_end,reference_start,reference_end\nq,r,copy,a,1,0,1\n", "not a number"),
        ("query,reference,level\n,r,copy\n", "non-empty"),
    ],
)
def test_truth_errors(text, message):
    with pytest.raises(TruthFormatError, match=message):
        read_truth_csv(io.StringIO(text))


def test_scores(tmp_path):
    rows = [ScoreRow("q", "r", 0.5, 0.25, None), ScoreRow("q", "s", -0.1)]
    write_scores_csv(rows, tmp_path / "s.csv")
    assert read_scores_csv(tmp_path / "s.csv") == rows
    with pytest.raises(TruthFormatError, match="line 3: duplicate"):
        read_scores_csv(io.StringIO("query,reference,score\nq,r,1\nq,r,2\n"))
    with pytest.raises(TruthFormatError, match="not finite"):
        read_scores_csv(io.StringIO("query,reference,score\nq,r,nan\n"))
    with pytest.raises(TruthFormatError, match="cannot read"):
        read_scores_csv(tmp_path / "missing.csv")
