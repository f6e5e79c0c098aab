"""``dupwatch bench fine-long`` runs both ways in fresh processes and they agree (tiny sizes here;
the README's figures come from the command's defaults)."""

from __future__ import annotations

from bench.fine_long import bench_fine_long, format_report


def test_fine_long_bench_rows_agree_and_format() -> None:
    rows = bench_fine_long(lengths=(40,), whole_max=40, threads=1)
    assert [r["mode"] for r in rows] == ["one run", "served", "assessed"]
    assert rows[0]["score"] == rows[1]["score"] == rows[2]["score"]
    assert all(r["peak_rss_mib"] >= r["rss_before_mib"] > 0 for r in rows)
    assert "| 40 × 40 | served |" in format_report(rows)
    short = bench_fine_long(lengths=(40,), threads=1, reference_frames=12)
    assert [(r["mode"], r["reference_frames"]) for r in short] == [("served", 12), ("assessed", 12)]
    assert short[0]["score"] == short[1]["score"]
