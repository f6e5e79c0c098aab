"""``dupwatch bench gates``: the worker's copy decision replayed per motion-gate setting, and the
choice made on the selecting benchmarks only."""

from __future__ import annotations

import pytest

from bench.gates import GateSetting, PairEvidence, _pooled, choose, format_table, sweep
from detect.levels import AlignmentEvidence


def _pair(level: str, agreement: float, magnitude: float = 0.5, kind: str = "", copy_score: float = 0.9) -> PairEvidence:
    ev = AlignmentEvidence(aligned_length_s=6.0, query_coverage=1.0, reference_coverage=1.0, fine_score=0.9,
                           motion_agreement=agreement, motion_magnitude=magnitude)
    return PairEvidence(0.9, copy_score, ev, level, kind)


THRESHOLDS = {"copy": 0.6, "incident": 0.5}


def _sets() -> dict[str, tuple[list[PairEvidence], dict[str, float]]]:
    # train: 10 copies (one with motion agreement 0.02) and 4 other moments that move differently
    train = [_pair("copy", 0.4) for _ in range(9)] + [_pair("copy", 0.02)]
    train += [_pair("incident", a, kind="another_moment") for a in (-0.1, 0.0, 0.03, 0.12)]
    train += [_pair("unrelated", 0.0, copy_score=0.1)]
    # held out: a static other moment (magnitude 0.1) the gate must leave alone at magnitude ≥ 0.3
    held = [_pair("copy", 0.3) for _ in range(5)] + [_pair("incident", 0.0, magnitude=0.1, kind="another_moment")]
    return {"train": (train, THRESHOLDS), "held": (held, THRESHOLDS)}


def test_sweep_replays_the_worker_rule_per_setting() -> None:
    table = sweep(_sets(), max_degenerate=0.9, agreements=(None, 0.05, 0.15), magnitudes=(0.0, 0.3))
    off = table[GateSetting(None, 0.0)]
    assert off["train"] == {"alerts": 14, "true": 10, "positives": 10, "precision": 10 / 14, "recall": 1.0, "another_moment": 4}
    gated = table[GateSetting(0.05, 0.3)]["train"]
    assert gated["alerts"] == 10 and gated["true"] == 9 and gated["another_moment"] == 1  # 0.12 passes, 0.02 copy lost
    # the static other moment is gated only when the magnitude bound lets it
    assert table[GateSetting(0.05, 0.3)]["held"]["another_moment"] == 1
    assert table[GateSetting(0.05, 0.0)]["held"]["another_moment"] == 0
    assert len(table) == 1 + 2 * 2  # "off" once, not once per magnitude


def test_choice_keeps_recall_within_the_allowed_loss() -> None:
    table = sweep(_sets(), max_degenerate=0.9, agreements=(None, 0.05, 0.15), magnitudes=(0.0, 0.3))
    # every gate here loses the 0.02 copy (10 % recall): with a 1-point allowance none may be chosen
    assert choose(table, ["train"]) == GateSetting(None, 0.0)
    chosen = choose(table, ["train"], max_recall_loss=0.2)
    assert chosen.min_motion_agreement == 0.15  # the 0.12 other moment goes too: precision 1.0
    text = format_table(table, ["train"], chosen)
    assert "train (chooses)" in text and "**(chosen)**" in text and text.count("\n") == len(table) + 1


def test_pooled_recall_counts_the_copies_of_a_set_with_no_hit() -> None:
    """A selecting set whose copies are all missed still counts its copies in the pooled recall."""
    sets = _sets()
    sets["missed"] = ([_pair("copy", 0.4, copy_score=0.1) for _ in range(10)], THRESHOLDS)
    table = sweep(sets, max_degenerate=0.9, agreements=(None,), magnitudes=(0.0,))
    row = table[GateSetting(None, 0.0)]
    assert row["missed"]["true"] == 0 and row["missed"]["positives"] == 10
    assert _pooled(row, ["train", "missed"]) == (10 / 14, 10 / 20)


@pytest.mark.parametrize("select", [[], ["nope"]])
def test_select_must_name_given_benchmarks(tmp_path, select) -> None:  # type: ignore[no-untyped-def]
    from bench.gates import run_gates

    with pytest.raises(ValueError):
        run_gates([], tmp_path, select)


def test_cli_refuses_a_selection_it_was_not_given(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from bench.cli import bench_app

    res = CliRunner().invoke(bench_app, ["gates", "--bench", str(tmp_path / "calibrate"), "--select", "train_seed1"])
    assert res.exit_code == 2 and "--select must name benchmarks given with --bench" in res.output
