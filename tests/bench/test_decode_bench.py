"""`dupwatch bench decode`: the four rows per video, measured on a real clip."""

from __future__ import annotations

from bench.decode import format_table, run
from evaluation.sources import real_videos


def test_decode_bench_rows_side_by_side() -> None:
    path = {v.name: v.path for v in real_videos()}["bikes"]
    rows = run([path], repeat=1)
    assert [r.mode for r in rows] == ["full", "seek", "auto", "inset"]
    auto, inset = rows[2], rows[3]
    assert inset.sampled == auto.sampled and inset.decoded == auto.decoded  # the inset search decodes nothing more
    assert all(r.wall_s > 0 and r.sampled > 0 for r in rows)
    table = format_table(rows)
    assert "inset" in table and "bikes" in table
