"""``dupwatch bench pipeline``: its command line and its choice of real footage (the run itself
takes a minute with the real bundle; its result is in the README)."""

from __future__ import annotations

import pytest


def test_pipeline_bench_cli_help():
    from typer.testing import CliRunner

    from dupwatch.cli import app

    out = CliRunner().invoke(app, ["bench", "pipeline", "--help"])
    assert out.exit_code == 0 and "--events" in out.output and "--embedder" in out.output


def test_pipeline_bench_uses_real_footage_but_not_the_held_out_clips():
    from bench.pipeline import pipeline_videos

    names = [p.stem for p in pipeline_videos()]
    assert names and "s2vs_example_video1" in names
    assert not {"bikes", "carphone_pristine", "carphone_distorted"} & set(names)


def test_pipeline_bench_refuses_an_unknown_embedder():
    from bench.pipeline import run_pipeline_bench

    with pytest.raises(ValueError, match="unknown embedder"):
        run_pipeline_bench(2, embedder="thumbnail")


def test_pipeline_bench_runs_both_modes_with_the_default_bundle():
    """Two passes of four real uploads: both modes decide every upload once, raise the same alerts,
    and the report carries every pass and the median ratio."""
    from bench.pipeline import run_pipeline_bench

    report = run_pipeline_bench(4, embedder="default", repeat=2)
    assert report["identical_alerts"] and report["lost"] == 0 and report["duplicates"] == 0
    assert [run["first"] for run in report["runs"]] == ["serial", "pipelined"]
    assert report["ratio_min"] <= report["ratio_videos_per_hour"] <= report["ratio_max"]
    for mode in ("serial", "pipelined"):
        assert report[mode]["events"] == 4 and report[mode]["alerts"] > 0  # later uploads copy earlier ones
        assert report[mode]["cpu_s"] > 0 and report[mode]["cores_busy"] > 0
