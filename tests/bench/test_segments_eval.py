"""Issue #18: ``dupwatch eval`` exports every predicted segment and scores segments per truth ``kind``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from evaluation.builder import Derivation, label_pair
from scoring.methods import EvalConfig, MethodRun, method_metrics, write_segments_csv
from evaluation.truth import TruthRow, read_truth_csv, write_truth_csv
from dupwatch.records import Segment

TRUTH = """query,reference,level,query_start,query_end,reference_start,reference_end,kind
fast,src,copy,0,5,10,20,speed
cut,src,copy,2,6,0,4,insert
cut,src,copy,6,8,30,32,insert
other,src,incident,,,,,
"""


def _run(segments: dict[tuple[str, str], tuple[Segment, ...]]) -> MethodRun:
    scores = {("fast", "src"): 0.9, ("cut", "src"): 0.8, ("other", "src"): 0.3, ("fast", "cut"): 0.1}
    return MethodRun("m", {}, scores, segments, None, {}, 0.0, 0.0)


def test_kind_column_round_trips_and_is_optional(tmp_path: Path) -> None:
    truth = read_truth_csv(io.StringIO(TRUTH))
    assert [r.kind for r in truth.rows] == ["speed", "insert", "insert", None]
    out = tmp_path / "t.csv"
    write_truth_csv(truth, out)
    assert read_truth_csv(out).rows == truth.rows
    plain = tmp_path / "plain.csv"
    write_truth_csv([TruthRow("a", "b", "copy")], plain)
    assert plain.read_text().splitlines()[0] == "query,reference,level"


def test_builder_names_the_edit_kind() -> None:
    ref = Derivation("ref", "s", (0.0, 20.0), is_query=False)
    assert label_pair(Derivation("a", "s", (4.0, 10.0), speed=2.0, edits=("crop", "speed2")), ref).kind == "speed_change"  # type: ignore[union-attr]
    assert label_pair(Derivation("b", "s", (4.0, 10.0), offset=1.0, edits=("insert",)), ref).kind == "embedded_excerpt"  # type: ignore[union-attr]
    assert label_pair(Derivation("c", "s", (4.0, 10.0), edits=("cut",)), ref).kind == "excerpt"  # type: ignore[union-attr]
    assert label_pair(Derivation("d", "s", (0.0, 20.0), edits=("crop",)), ref).kind == "spatial"  # type: ignore[union-attr]


def test_segment_metrics_per_kind_and_segments_csv(tmp_path: Path) -> None:
    truth = read_truth_csv(io.StringIO(TRUTH))
    run = _run({
        ("fast", "src"): (Segment(0, 5, 10, 20, 0.9),),  # exact
        ("cut", "src"): (Segment(2, 6, 0, 4, 0.8),),  # finds one of the two cut parts
        ("other", "src"): (),
        ("fast", "cut"): (Segment(0, 1, 0, 1, 0.4),),  # a false segment on an unrelated pair
    })
    m = method_metrics(run, truth, EvalConfig(segment_top_k=5))
    kinds = m["segment_by_kind"]
    assert set(kinds) == {"speed", "insert"}
    assert kinds["speed"]["segment_p"] == pytest.approx(1.0) and kinds["speed"]["segment_r"] == pytest.approx(1.0)
    assert kinds["insert"]["segment_p"] == pytest.approx(1.0)
    assert kinds["insert"]["segment_r"] == pytest.approx(4 / 6)  # 4 of 6 s on both axes
    assert kinds["insert"]["truth_segments"] == 2 and kinds["insert"]["pairs"] == 1
    assert m["segment_p"] < 1.0  # the false segment counts overall, not per kind

    path = write_segments_csv(run, tmp_path / "segments.csv")
    rows = list(csv.DictReader(path.open()))
    assert [(r["query"], r["reference"]) for r in rows] == [("cut", "src"), ("fast", "cut"), ("fast", "src")]
    assert list(rows[0]) == ["query", "reference", "query_start", "query_end", "ref_start", "ref_end", "score",
                             "segment_similarity"]
    assert (float(rows[2]["query_start"]), float(rows[2]["query_end"]), float(rows[2]["ref_start"]),
            float(rows[2]["ref_end"]), float(rows[2]["score"])) == (0.0, 5.0, 10.0, 20.0, 0.9)


def test_segment_metrics_count_a_pair_under_each_of_its_kinds() -> None:
    truth = read_truth_csv(io.StringIO(TRUTH.replace("fast,src,copy,0,5,10,20,speed", "fast,src,copy,0,5,10,20,letterbox+speed")))
    run = _run({("fast", "src"): (Segment(0, 5, 10, 20, 0.9),), ("cut", "src"): (Segment(2, 6, 0, 4, 0.8),)})
    m = method_metrics(run, truth, EvalConfig(segment_top_k=5))
    assert set(m["segment_by_kind"]) == {"letterbox", "speed", "insert"}
    assert m["segment_by_kind"]["letterbox"] == m["segment_by_kind"]["speed"]
    assert set(m["segment_localization"]) == {"all", "letterbox", "speed", "insert"}
    assert m["segment_localization"]["speed"]["segment_f"] == pytest.approx(1.0)
