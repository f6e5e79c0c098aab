"""Training the copy head into a bundle (training.copy_head), and the benchmark builder options it
relies on (BenchmarkSpec.prefix / photo_pool, training_benchmark_spec / heldout_benchmark_spec)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.builder import BenchmarkSpec, build_benchmark
from detect.copy_head import CopyHeadError
from dupwatch.paths import REPO_ROOT

DEFAULT = REPO_ROOT / "models" / "default"
POOL = ("brick", "colorwheel", "gravel", "moon")


def tiny_spec(**overrides: object) -> BenchmarkSpec:
    kwargs: dict[str, object] = dict(seed=5, copies_per_source=1, footage_photos=1, footage_seconds=8.0, distractors=1,
                                     include_real_videos=False, fps=5.0, max_side=160)
    kwargs.update(overrides)
    return BenchmarkSpec(**kwargs)  # type: ignore[arg-type]


# ---- builder: prefix and photo pool ------------------------------------------------------------


def test_prefix_names_every_video_and_truth_row(tmp_path: Path) -> None:
    bench = build_benchmark(tmp_path / "b", tiny_spec(prefix="h7_", photo_pool=POOL), progress=False)
    names = {d.video for d in bench.derivations}
    assert names and all(n.startswith("h7_") for n in names)
    assert {p.stem for p in bench.videos_dir.glob("*.mp4")} == names
    with open(bench.truth_path) as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        assert row["query"].startswith("h7_") and row["reference"].startswith("h7_")
        assert row["query"] in names and row["reference"] in names
    meta = json.loads((bench.root / "benchmark.json").read_text())
    assert meta["spec"]["prefix"] == "h7_"
    assert {d["video"] for d in meta["derivations"]} == names
    # sources keep their own names (labels depend on them, not on the prefix)
    assert all(not d.source.startswith("h7_") for d in bench.derivations)
    # the same spec without a prefix makes the same videos under the bare names
    plain = build_benchmark(tmp_path / "p", tiny_spec(photo_pool=POOL), progress=False)
    assert {d.video for d in plain.derivations} == {n.removeprefix("h7_") for n in names}


def test_photo_pool_restricts_sources(tmp_path: Path) -> None:
    pool = ("astronaut", "camera", "cat")
    bench = build_benchmark(tmp_path / "b", tiny_spec(photo_pool=pool), progress=False)
    photos_used = {d.source.removeprefix("kb_").removeprefix("distractor_") for d in bench.derivations}
    assert photos_used and photos_used <= set(pool)
    kinds = {d.source.split("_")[0] for d in bench.derivations}
    assert kinds == {"kb", "distractor"}


def test_pool_without_filler_raises(tmp_path: Path) -> None:
    # 1 footage + 1 distractor from a pool of 2 leaves nothing for filler content
    with pytest.raises(ValueError, match="filler"):
        build_benchmark(tmp_path / "b", tiny_spec(photo_pool=("brick", "moon")), progress=False)
    with pytest.raises(ValueError, match="filler"):
        build_benchmark(tmp_path / "c", tiny_spec(photo_pool=("brick", "moon", "gravel"), distractors=2), progress=False)
    # names outside the known photos do not count
    with pytest.raises(ValueError, match="filler"):
        build_benchmark(tmp_path / "d", tiny_spec(photo_pool=("brick", "moon", "no_such_photo")), progress=False)


def test_training_and_heldout_specs_share_no_photo() -> None:
    from evaluation.sources import real_photos, real_videos
    from training.corpus import heldout_benchmark_spec, training_benchmark_spec

    train = training_benchmark_spec(seed=4)
    held = heldout_benchmark_spec()
    assert train.seed == 4 and held.prefix == f"h{held.seed}_"
    assert heldout_benchmark_spec(seed=9).prefix == "h9_"
    assert train.photo_pool and held.photo_pool
    assert not set(train.photo_pool) & set(held.photo_pool)
    assert set(train.photo_pool) | set(held.photo_pool) == set(real_photos())
    # each has a filler photo left over
    assert len(train.photo_pool) > train.footage_photos + train.distractors
    assert len(held.photo_pool) > held.footage_photos + held.distractors
    # the training spec leaves out the held-out videos, the held-out spec every training source
    all_videos = {v.name for v in real_videos()}
    train_out, held_out = set(train.exclude_sources) & all_videos, set(held.exclude_sources) & all_videos
    assert train_out and held_out and not train_out & held_out and train_out | held_out == all_videos
    assert all(f"kb_{p}" in held.exclude_sources for p in train.photo_pool)


# ---- train_copy_head ---------------------------------------------------------------------------


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Ken Burns footage source (ref, 2 copies, 2 cuts, a second camera) and 2 distractors."""
    torch.set_num_threads(1)
    bench_dir = tmp_path_factory.mktemp("copy_head") / "bench"
    build_benchmark(bench_dir, tiny_spec(copies_per_source=2, footage_seconds=12.0, distractors=2,
                                         photo_pool=("brick", "colorwheel", "gravel", "moon", "retina")), progress=False)
    return bench_dir


def test_train_copy_head_into_a_bundle(tmp_path: Path, tiny_bench: Path) -> None:
    from detect.copy_head import FEATURES, CopyHead, copy_head_for, copy_threshold_fits_head
    from inference.bundle import load_bundle, sha256_file
    from training.copy_head import pair_table, train_copy_head

    bench_dir = tiny_bench
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT, bundle)
    committed_sha = load_bundle(bundle).entry("copy_head").sha256

    table = pair_table(bundle, [bench_dir], progress=False)
    meta = json.loads((bench_dir / "benchmark.json").read_text())
    videos = [d["video"] for d in meta["derivations"]]
    queries = [d["video"] for d in meta["derivations"] if d["is_query"]]
    assert table.features.shape == (len(queries) * (len(videos) - 1), len(FEATURES))
    assert np.all(np.isfinite(table.features))
    labels = set(table.labels.tolist())
    assert {"copy", "unrelated"} <= labels
    # every compared view pair has its row; each pair's own row is its view pair of best fine score
    assert table.view_features is not None and table.view_owner is not None
    assert set(table.view_owner.tolist()) == set(range(len(table.labels)))
    for i in range(len(table.labels)):
        rows = table.view_features[table.view_owner == i]
        np.testing.assert_array_equal(table.features[i], rows[int(np.argmax(rows[:, FEATURES.index("fine_score")]))])

    head = train_copy_head(bundle, [bench_dir], l2=0.1, progress=False)
    path = bundle / "copy_head.json"
    assert path.is_file()
    assert head.info["pairs"] == len(table.labels)
    assert head.info["copies"] == int((table.labels == "copy").sum())
    assert head.info["incident_pairs"] == int((table.labels == "incident").sum())
    assert head.info["benchmarks"] == ["bench"]

    loaded = load_bundle(bundle, verify=True)  # the recorded sha256 matches the new file
    entry = loaded.entry("copy_head")
    assert entry.kind == "json" and entry.file == "copy_head.json"
    assert entry.sha256 == sha256_file(path) != committed_sha  # replaced by the new head
    assert entry.config["training_pairs"] == len(table.labels)
    assert entry.config["features"] == list(FEATURES)
    # the other artifacts are untouched
    committed = load_bundle(DEFAULT).manifest.artifacts
    for name, e in committed.items():
        if name != "copy_head":
            assert loaded.entry(name).sha256 == e.sha256

    from_bundle = copy_head_for(loaded)
    assert isinstance(from_bundle, CopyHead)
    np.testing.assert_allclose(from_bundle.probability(table.features), head.probability(table.features))
    assert from_bundle.to_dict() == CopyHead.load(path).to_dict()
    assert copy_threshold_fits_head(loaded)  # the copied calibration was fitted on copy_score

    p = head.probability(table.features)
    copies, unrelated = p[table.labels == "copy"], p[table.labels == "unrelated"]
    assert len(copies) and len(unrelated)
    auc = _auc(copies, unrelated)
    assert auc > 0.75, (auc, copies, unrelated)
    assert np.median(copies) > np.median(unrelated)


def test_cli_train_copy_head(tmp_path: Path, tiny_bench: Path) -> None:
    from typer.testing import CliRunner

    from detect.copy_head import CopyHead
    from inference.bundle import load_bundle
    from training.cli import train_app

    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT, bundle)
    before = load_bundle(bundle).entry("copy_head").sha256
    res = CliRunner().invoke(train_app, ["copy-head", "--bundle", str(bundle), "--bench", str(tiny_bench), "--l2", "0.5"])
    assert res.exit_code == 0, res.output
    assert "copy head on" in res.output and "recalibrate" in res.output
    loaded = load_bundle(bundle, verify=True)
    assert loaded.entry("copy_head").sha256 != before
    assert loaded.entry("copy_head").config["l2"] == 0.5
    head = CopyHead.load(bundle / "copy_head.json")
    assert head.info["l2"] == 0.5 and head.info["benchmarks"] == [tiny_bench.name]
    # a head on some features only (an ablation); the pair table is cached, so this refit is quick
    res = CliRunner().invoke(train_app, ["copy-head", "--bundle", str(bundle), "--bench", str(tiny_bench), "--l2", "0.5",
                                         "--features", "fine_score,motion_agreement"])
    assert res.exit_code == 0, res.output
    assert CopyHead.load(bundle / "copy_head.json").features == ("fine_score", "motion_agreement")
    # refitted on the view pairs the first fit scores highest
    res = CliRunner().invoke(train_app, ["copy-head", "--bundle", str(bundle), "--bench", str(tiny_bench), "--l2", "0.5",
                                         "--view-rounds", "1"])
    assert res.exit_code == 0, res.output
    assert "views: the view pair of highest P(copy)" in res.output
    assert load_bundle(bundle, verify=True).entry("copy_head").config["view_rounds"] == 1
    assert CopyHead.load(bundle / "copy_head.json").info["view_rounds"] == 1
    res = CliRunner().invoke(train_app, ["copy-head", "--bundle", str(bundle), "--bench", str(tiny_bench), "--view-rounds", "-1"])
    assert res.exit_code == 2
    res = CliRunner().invoke(train_app, ["copy-head", "--bundle", str(bundle), "--bench", str(tiny_bench), "--features", "fine_score,nope"])
    assert res.exit_code == 2 and "unknown --features ['nope']" in res.output
    res = CliRunner().invoke(train_app, ["copy-head", "--bundle", str(bundle), "--bench", str(tiny_bench), "--model", "forest"])
    assert res.exit_code == 2 and "--model must be linear or trees" in res.output


def test_cli_train_a_boosted_trees_copy_head(tmp_path: Path, tiny_bench: Path) -> None:
    """``--model trees``: the bundle's head file holds the trees (format /2), which the worker's loader
    scores without scikit-learn. One footage source here, so the default shape (the leave-one-source-out
    choice is tested in tests/detect/test_copy_trees.py)."""
    from typer.testing import CliRunner

    from detect.copy_head import TREES_FORMAT, copy_head_for
    from inference.bundle import load_bundle
    from training.cli import train_app
    from training.copy_head import pair_table
    from training.copy_trees import fit_copy_head_trees

    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT, bundle)
    res = CliRunner().invoke(train_app, ["copy-head", "--bundle", str(bundle), "--bench", str(tiny_bench), "--model", "trees"])
    assert res.exit_code == 0, res.output
    assert "trees depth3-leaf20" in res.output and "tree chosen by one source: the default shape" in res.output
    loaded = load_bundle(bundle, verify=True)
    assert loaded.entry("copy_head").config["model"] == "trees"
    assert json.loads((bundle / "copy_head.json").read_text())["format"] == TREES_FORMAT
    head = copy_head_for(loaded)
    assert head is not None and head.trees is not None and not head.weights.any()
    table = pair_table(bundle, [tiny_bench], progress=False)
    np.testing.assert_allclose(head.probability(table.features),
                               fit_copy_head_trees(table.features, table.labels == "copy").probability(table.features))


def test_train_copy_head_restores_a_missing_head(tmp_path: Path, tiny_bench: Path) -> None:
    from detect.copy_head import copy_head_for, copy_threshold_fits_head
    from inference.bundle import load_bundle
    from training.copy_head import train_copy_head

    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["artifacts"].pop("copy_head")
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (bundle / "copy_head.json").unlink()
    train_copy_head(bundle, [tiny_bench], progress=False)
    loaded = load_bundle(bundle, verify=True)
    assert copy_head_for(loaded) is not None and copy_threshold_fits_head(loaded)


# ---- select_l2 ---------------------------------------------------------------------------------


def _table(seed: int, n: int = 60, noise: float = 1.0):  # type: ignore[no-untyped-def]
    from detect.copy_head import FEATURES
    from training.copy_head import PairTable

    rng = np.random.default_rng(seed)
    labels = np.array(["copy", "incident", "unrelated"] * (n // 3))
    x = rng.standard_normal((n, len(FEATURES)))
    x[:, 0] += np.where(labels == "copy", 2.0, 0.0)  # the fine score carries the signal, the rest is noise
    x[:, 1:] *= noise
    pairs = [(f"b{seed}", f"q{i}", f"r{i}") for i in range(n)]
    return PairTable(x, labels, pairs)


def test_select_l2_is_leave_one_benchmark_out() -> None:
    from training.copy_head import L2_GRID, select_l2

    tables = [_table(s) for s in range(3)]
    best, scores = select_l2(tables)
    assert best in L2_GRID and set(scores) == {f"{g:g}" for g in L2_GRID}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores[f"{best:g}"] == max(scores.values())
    with pytest.raises(ValueError):
        select_l2(tables[:1])


def test_select_l2_scores_are_the_left_out_benchmarks_copy_uap() -> None:
    """Recompute one grid point by hand: fit on two benchmarks, score the third, average."""
    from evaluation.metrics import ScoredPair, micro_average_precision
    from detect.copy_head import fit_copy_head
    from training.copy_head import select_l2

    tables = [_table(s) for s in range(3)]
    _, scores = select_l2(tables, grid=(0.1,))
    folds = []
    for i, held in enumerate(tables):
        rest = [t for j, t in enumerate(tables) if j != i]
        head = fit_copy_head(np.concatenate([t.features for t in rest]), np.concatenate([t.labels == "copy" for t in rest]), l2=0.1)
        p = head.probability(held.features)
        preds = [ScoredPair(q, r, float(x)) for (_, q, r), x in zip(held.pairs, p)]
        copies = {(q, r) for (_, q, r), lab in zip(held.pairs, held.labels) if lab == "copy"}
        folds.append(micro_average_precision(preds, copies).ap)
    assert scores["0.1"] == pytest.approx(float(np.mean(folds)))


# ---- the held-out comparison behind the README (dupwatch train evaluate) ------------------------


def test_evaluate_fine_similarity_compares_like_with_like(tiny_bench: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from training.bundle import evaluate_fine_similarity

    monkeypatch.setenv("DUPWATCH_CACHE_DIR", str(tmp_path))  # its feature cache is keyed by the (temporary) bench path

    res = evaluate_fine_similarity(REPO_ROOT / "models" / "default", tiny_bench, progress=False)
    methods = ("fine_trained", "fine_untrained", "chamfer_backbone", "chamfer_pca", "fine_trained_views",
               "chamfer_pca_views", "bundle_copy_head")
    assert set(methods) <= set(res)
    for m in methods:
        assert set(res[m]) == {"mAP", "uAP", "mAP_no_incidents", "uAP_no_incidents"}
        assert all(0.0 <= v <= 1.0 for v in res[m].values()), (m, res[m])
    assert res["benchmark"]["pairs"] > 0 and res["benchmark"]["copy_pairs"] > 0


def test_bench_gates_replays_the_eval_decisions(tiny_bench: Path) -> None:
    """``dupwatch bench gates`` on a real (tiny) benchmark: its "off" row is the eval's own copy
    decisions (the default bundle decides with the gate off), and stricter gates only remove alerts."""
    from bench.gates import GateSetting, run_gates
    from evaluation.truth import read_truth_csv
    from scoring.methods import FeatureCache, FrameCache, OursMethod, run_method

    data = run_gates([tiny_bench], DEFAULT, [tiny_bench.name], progress=False)
    table = data["table"]
    meta = json.loads((tiny_bench / "benchmark.json").read_text())
    videos = {d["video"]: tiny_bench / "videos" / f"{d['video']}.mp4" for d in meta["derivations"]}
    run = run_method(OursMethod(DEFAULT, FrameCache(), FeatureCache(), device="cpu"), videos,
                     [d["video"] for d in meta["derivations"] if d["is_query"]])
    truth = read_truth_csv(tiny_bench / "truth.csv")
    copies = [pair for pair, level in run.levels.items() if level == "copy"]
    off = table[GateSetting(None, 0.0)][tiny_bench.name]
    assert off["alerts"] == len(copies) and off["true"] == sum(truth.level_of(*p) == "copy" for p in copies)
    assert all(row[tiny_bench.name]["alerts"] <= off["alerts"] for row in table.values())
    assert data["chosen"] in table


# ---- the view pair the head is fitted on ----------------------------------------------------------


def _head_on_fine_score():  # type: ignore[no-untyped-def]
    """A linear head whose P(copy) rises with the fine score (column 0) alone."""
    from detect.copy_head import FEATURES, CopyHead

    n = len(FEATURES)
    return CopyHead(FEATURES, np.zeros(n), np.ones(n), np.eye(n)[0] * 4.0, 0.0, {})


def _views_table():  # type: ignore[no-untyped-def]
    """Two pairs: the first with three view pairs (its main views first, an inset view pair scoring
    higher, a tie after it), the second with its main views only."""
    from detect.copy_head import FEATURES
    from training.copy_head import PairTable

    n = len(FEATURES)
    views = np.zeros((4, n))
    views[:, 0] = [0.2, 0.9, 0.9, 0.5]
    views[:, 1] = [1.0, 2.0, 3.0, 4.0]  # tells the rows apart
    return PairTable(views[[0, 3]], np.array(["copy", "unrelated"]), [("b", "q", "r1"), ("b", "q", "r2")],
                     views, np.array([0, 0, 0, 1]))


def test_chosen_by_takes_each_pairs_view_pair_of_highest_p_copy() -> None:
    table = _views_table()
    chosen = table.chosen_by(_head_on_fine_score())
    np.testing.assert_array_equal(chosen.features[:, 1], [2.0, 4.0])  # the first of the tied inset rows; the only row
    assert list(chosen.labels) == list(table.labels) and chosen.pairs == table.pairs
    np.testing.assert_array_equal(table.features[:, 1], [1.0, 4.0])  # the table itself is unchanged
    from training.copy_head import PairTable

    plain = PairTable(table.features, table.labels, table.pairs)
    assert plain.chosen_by(_head_on_fine_score()) is plain  # no view rows: nothing to choose


def test_detector_scores_are_the_best_view_pairs_p_copy() -> None:
    """What the leave-one-source-out choice ranks: each pair's P(copy) as the detector gives it."""
    from training.copy_head import PairTable

    table, head = _views_table(), _head_on_fine_score()
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    np.testing.assert_allclose(table.detector_scores(head), [sigmoid(3.6), sigmoid(2.0)])
    np.testing.assert_allclose(table.detector_scores(head, np.array([False, True])), [sigmoid(2.0)])
    plain = PairTable(table.features, table.labels, table.pairs)  # without view rows: its own rows
    np.testing.assert_allclose(plain.detector_scores(head), [sigmoid(0.8), sigmoid(2.0)])


def test_concat_tables_keeps_each_view_row_with_its_pair() -> None:
    from training.copy_head import concat_tables

    both = concat_tables([_views_table(), _views_table()])
    assert both.view_owner is not None and both.view_features is not None
    np.testing.assert_array_equal(both.view_owner, [0, 0, 0, 1, 2, 2, 2, 3])
    np.testing.assert_array_equal(both.chosen_by(_head_on_fine_score()).features[:, 1], [2.0, 4.0, 2.0, 4.0])


def test_train_copy_head_refits_on_the_view_pairs_its_fit_scores_highest(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    """With ``view_rounds=1`` the second fit reads each pair on the view pair the first fit scores
    highest (what the detector with that head keeps); with 0 the best fine score's view pair only."""
    import training.copy_head as ch

    rng = np.random.default_rng(0)
    base = _table(0, n=90)
    # every pair gets a second view row: copies' is a clear copy, the others' noise
    second = rng.standard_normal(base.features.shape)
    second[:, 0] += np.where(base.labels == "copy", 4.0, -1.0)
    views = np.concatenate([base.features, second])
    owner = np.concatenate([np.arange(90), np.arange(90)])
    table = ch.PairTable(base.features, base.labels, base.pairs, views, owner)
    monkeypatch.setattr(ch, "cached_pair_table", lambda bundle, bench, progress=True: table)
    seen: list[np.ndarray] = []
    fit = ch._fit_head

    def recording(tables, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(np.concatenate([t.features for t in tables]))
        return fit(tables, *args, **kwargs)

    monkeypatch.setattr(ch, "_fit_head", recording)
    first = ch.train_copy_head(tmp_path, [tmp_path / "b"], l2=0.1, write=False, progress=False, view_rounds=0)
    assert len(seen) == 1 and first.info["view_rounds"] == 0
    np.testing.assert_array_equal(seen[0], base.features)
    seen.clear()
    head = ch.train_copy_head(tmp_path, [tmp_path / "b"], l2=0.1, write=False, progress=False, view_rounds=1)
    assert len(seen) == 2 and head.info["view_rounds"] == 1 and "highest P(copy)" in head.info["views"]
    np.testing.assert_array_equal(seen[1], table.chosen_by(first).features)
    assert not np.array_equal(seen[1], base.features)
    with pytest.raises(ValueError, match="view_rounds"):
        ch.train_copy_head(tmp_path, [tmp_path / "b"], write=False, progress=False, view_rounds=-1)


def test_leave_one_source_out_ranks_held_out_pairs_by_their_best_view_pair() -> None:
    """The shape and penalty choice ranks what the detector serves: a copy whose main views look
    unrelated but whose inset view pair is a clear copy counts as found."""
    from detect.copy_head import FEATURES, fit_copy_head
    from training.copy_head import PairTable, pooled_out_of_fold_uap

    rng = np.random.default_rng(1)
    pairs, labels, rows, views, owner = [], [], [], [], []
    for src in ("a", "b", "c"):
        for k in range(60):
            label = ("copy", "incident", "unrelated")[k % 3]
            hidden = label == "copy" and k % 2 == 0  # a copy that only its inset view pair shows
            row = rng.standard_normal(len(FEATURES)) * 0.1
            row[0] = rng.normal(2.0 if label == "copy" and not hidden else 0.0, 0.3)
            own = len(rows)
            pairs.append(("b0", f"fg_{src}__f__q{k}", f"fg_{src}__f__ref"))
            labels.append(label)
            rows.append(row)
            views.append(row)
            owner.append(own)
            if k % 2 == 0:  # a second view pair: the hidden copy's inset, noise for the others
                extra = rng.standard_normal(len(FEATURES)) * 0.1
                extra[0] = rng.normal(3.0 if hidden else 0.0, 0.3)
                views.append(extra)
                owner.append(own)
    plain = PairTable(np.asarray(rows), np.asarray(labels), pairs)
    table = PairTable(np.asarray(rows), np.asarray(labels), pairs, np.asarray(views), np.asarray(owner))
    fit = lambda x, y: fit_copy_head(x, y, l2=0.1)  # noqa: E731
    with_views, own_rows = pooled_out_of_fold_uap(table, fit), pooled_out_of_fold_uap(plain, fit)
    assert with_views is not None and own_rows is not None
    assert with_views > 0.95 and own_rows < 0.8, (with_views, own_rows)
