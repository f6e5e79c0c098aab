"""bench/models.py produces a table with positive throughputs (tiny sizes)."""

from __future__ import annotations

from bench.models import format_table, run_models_bench


def test_models_bench_tiny() -> None:
    rows = run_models_bench([1], [1], video_frames=6, devices=["cpu"], repeats=1, min_seconds=0.0,
                            extractors=["efficientnet_lite0_regions"])
    assert {r.task for r in rows} == {"features", "similarity T=6"}
    assert all(r.per_second > 0 for r in rows)
    table = format_table(rows)
    assert "frames/s" in table and "pairs/s" in table
