"""Fit the copy head (:mod:`detect.copy_head`) of a bundle on labelled pairs of training-source benchmarks.

The benchmarks come from :func:`training.corpus.training_benchmark_spec` (the training sources
only; several seeds give different edits, windows, cuts and second cameras), so the held-out
benchmark that reports the head's quality and the one that calibrates its threshold stay unseen.
Pairs are featurized by :func:`detect.detector.assess_pair`, the worker's own code path.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from detect.copy_head import FEATURES, CopyHead, fit_copy_head
from training.copy_trees import TreeParams, fit_copy_head_trees

__all__ = ["PairTable", "pair_table", "pooled_out_of_fold_uap", "select_l2", "select_l2_by_source", "select_trees_by_source",
           "source_group", "train_copy_head", "ensure_training_benchmarks"]

HEAD_FILE = "copy_head.json"

T = TypeVar("T")


@dataclass(frozen=True)
class PairTable:
    """Features and labels of every (query, other video) pair of some benchmarks."""

    features: np.ndarray
    labels: np.ndarray
    """``copy``, ``incident`` or ``unrelated`` per row."""
    pairs: list[tuple[str, str, str]]
    """(benchmark, query, reference) per row."""


def ensure_training_benchmarks(root: Path | str, seeds: Sequence[int], *, progress: bool = True) -> list[Path]:
    """Build (once) one training-source benchmark per seed under ``root``."""
    from evaluation.builder import build_benchmark
    from training.corpus import training_benchmark_spec

    out = []
    for seed in seeds:
        path = Path(root) / f"train_seed{seed}"
        if not (path / "truth.csv").is_file():
            build_benchmark(path, training_benchmark_spec(seed=seed), progress=progress)
        out.append(path)
    return out


def pair_table(bundle_dir: Path | str, benches: Sequence[Path | str], *, progress: bool = True) -> PairTable:
    """Featurize every scored pair of ``benches`` with the bundle's models (no head applied)."""
    from tqdm import tqdm

    from scoring.methods import FeatureCache, FrameCache, OursMethod
    from evaluation.truth import read_truth_csv
    from detect.detector import AlignmentParams, assess_views

    rows, labels, names = [], [], []
    for bench in map(Path, benches):
        # caches are keyed by video id, and benchmarks reuse ids: one method (and cache) per benchmark
        method = OursMethod(bundle_dir, FrameCache(), FeatureCache(), device="cpu", use_copy_head=False)
        meta = json.loads((bench / "benchmark.json").read_text())
        truth = read_truth_csv(bench / "truth.csv")
        videos = {d["video"]: bench / "videos" / f"{d['video']}.mp4" for d in meta["derivations"]}
        queries = [d["video"] for d in meta["derivations"] if d["is_query"]]
        method.prepare(videos)
        for q in tqdm(queries, desc=f"pairs {bench.name}", disable=not progress):
            for r in videos:
                if r == q:
                    continue
                a = assess_views(method.models, method.views(q), method.views(r), method._times[q], method._times[r],
                                 AlignmentParams(), None, query_thumbs=method.thumbs(q), ref_thumbs=method.thumbs(r))
                rows.append(a.features())
                labels.append(truth.level_of(q, r))
                names.append((bench.name, q, r))
    return PairTable(np.asarray(rows, np.float64), np.asarray(labels), names)


FEATURE_MODULES = ("ingest.decode", "ingest.borders", "ingest.inset", "ingest.reframe", "inference.flat_frames", "inference.thumbnails",
                   "inference.alignment", "detect.detector", "detect.copy_head")
"""The code that turns a benchmark's videos into pair features (decoding, crops, views, flat frames,
alignment, evidence): a cached pair table is only reused while their source is unchanged."""


def _code_digest(modules: Sequence[str]) -> str:
    import hashlib
    import importlib.util

    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(name)
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()


def _features_key(bundle_dir: Path | str, bench: Path) -> str:
    """What the pair features depend on: the bundle's artifacts except the head and the
    calibration (which do not change them), the benchmark's truth, the feature names, the
    decoder's settings (``DecodeConfig``: flat-frame cut, views, crops) and the source of
    :data:`FEATURE_MODULES` (a change of the border limits, say, changes the features too)."""
    import hashlib

    from detect.copy_head import FEATURES
    from dupwatch.config import DecodeConfig
    from inference.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    parts = sorted(f"{n}:{e.sha256}" for n, e in bundle.manifest.artifacts.items() if n not in ("copy_head", "calibration"))
    parts += [hashlib.sha256((bench / "truth.csv").read_bytes()).hexdigest(), ",".join(FEATURES),
              DecodeConfig().model_dump_json(), _code_digest(FEATURE_MODULES)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def cached_pair_table(bundle_dir: Path | str, bench: Path | str, *, progress: bool = True) -> PairTable:
    """:func:`pair_table` of one benchmark, kept in ``<bench>/pairs_<key>.npz`` (minutes of CPU per
    benchmark; a refit of the head, or a rerun after a crash, reads it back)."""
    bench = Path(bench)
    path = bench / f"pairs_{_features_key(bundle_dir, bench)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return PairTable(z["features"], z["labels"], [tuple(p) for p in z["pairs"].tolist()])  # type: ignore[misc]
    table = pair_table(bundle_dir, [bench], progress=progress)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, features=table.features, labels=table.labels.astype(str), pairs=np.array(table.pairs, dtype=str))
    tmp.replace(path)
    return table


L2_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
"""Penalties :func:`select_l2` tries."""


def _copy_uap(table: PairTable, scores: np.ndarray) -> float:
    """Copy µAP with incident and unrelated pairs as negatives (the worker's ranking)."""
    from evaluation.metrics import ScoredPair, micro_average_precision

    preds = [ScoredPair(q, r, float(x)) for (_, q, r), x in zip(table.pairs, scores)]
    copies = {(q, r) for (_, q, r), lab in zip(table.pairs, table.labels) if lab == "copy"}
    return float(micro_average_precision(preds, copies).ap)


def select_l2(tables: Sequence[PairTable], grid: Sequence[float] = L2_GRID,
              features: Sequence[str] = FEATURES) -> tuple[float, dict[str, float]]:
    """Leave-one-benchmark-out choice of the L2 penalty: fit on all benchmarks but one, score copy
    µAP on the one left out, average; the best mean wins (ties: the larger penalty). Held-out
    benchmarks never take part, so the choice cannot fit them."""
    if len(tables) < 2:
        raise ValueError("choosing l2 by leave-one-benchmark-out needs at least two benchmarks")
    scores: dict[str, float] = {}
    for l2 in grid:
        folds = []
        for i, held in enumerate(tables):
            rest = [t for j, t in enumerate(tables) if j != i]
            x = np.concatenate([t.features for t in rest])
            y = np.concatenate([t.labels == "copy" for t in rest])
            if y.all() or not y.any() or not (held.labels == "copy").any():
                continue
            folds.append(_copy_uap(held, fit_copy_head(x, y, l2=l2, features=features).probability(held.features)))
        if folds:
            scores[f"{l2:g}"] = float(np.mean(folds))
    if not scores:
        raise ValueError("no benchmark fold had both copy and non-copy pairs")
    best = max(grid, key=lambda l2: (scores.get(f"{l2:g}", -1.0), l2))
    return float(best), scores


def source_group(video: str) -> str:
    """The real source a benchmark video comes from: the corpus source of a footage video
    (``[prefix]fg_<source>__<file>__<role>`` → ``<source>``), else the builder's source name."""
    base = video.rsplit("__", 1)[0]
    if "fg_" in base:
        return base[base.index("fg_") + 3:].split("__", 1)[0]
    return base


def _source_folds(table: PairTable) -> tuple[np.ndarray, np.ndarray, list[str]]:
    qs = np.array([source_group(q) for _, q, _ in table.pairs])
    rs = np.array([source_group(r) for _, _, r in table.pairs])
    groups = sorted(set(qs))
    if len(groups) < 2:
        raise ValueError("leave-one-source-out needs pairs from at least two sources")
    return qs, rs, groups


def pooled_out_of_fold_uap(table: PairTable, fit: Callable[[np.ndarray, np.ndarray], CopyHead]) -> float | None:
    """Leave-one-source-out copy µAP of the heads ``fit(x, is_copy)`` makes: for each real source, fit
    on the pairs that do not involve it (as query or reference) and score the pairs whose query comes
    from it; the out-of-fold scores of all sources are then ranked together. Pooled, not averaged per
    source: the worker applies one threshold to every source, so a head whose scores rank well within
    each source but sit higher on some sources than on others (another moment of static footage
    above copies of lively footage) must score low. ``None`` when no fold has both classes."""
    qs, rs, groups = _source_folds(table)
    held_out = np.zeros(len(table.labels), bool)
    oof = np.zeros(len(table.labels))
    for g in groups:
        train = (qs != g) & (rs != g)
        test = qs == g
        y = table.labels[train] == "copy"
        if y.all() or not y.any():
            continue
        oof[test] = fit(table.features[train], y).probability(table.features[test])
        held_out |= test
    if not (table.labels[held_out] == "copy").any():
        return None
    held = PairTable(table.features[held_out], table.labels[held_out], [p for p, t in zip(table.pairs, held_out) if t])
    return _copy_uap(held, oof[held_out])


def _choose_by_source(table: PairTable, grid: Sequence[T], name: Callable[[T], str],
                      fit: Callable[[np.ndarray, np.ndarray, T], CopyHead],
                      tiebreak: Callable[[T], Any]) -> tuple[T, dict[str, float], list[str]]:
    """The ``grid`` entry whose heads ``fit(x, is_copy, entry)`` have the best
    :func:`pooled_out_of_fold_uap` (ties: the larger ``tiebreak``), every entry's score by ``name``,
    and the sources left out in turn."""
    groups = _source_folds(table)[2]
    scores: dict[str, float] = {}
    for entry in grid:
        score = pooled_out_of_fold_uap(table, lambda x, y, entry=entry: fit(x, y, entry))
        if score is not None:
            scores[name(entry)] = score
    if not scores:
        raise ValueError("no source fold had both copy and non-copy pairs")
    best = max(grid, key=lambda entry: (scores.get(name(entry), -1.0), tiebreak(entry)))
    return best, scores, groups


def select_l2_by_source(table: PairTable, grid: Sequence[float] = L2_GRID,
                        features: Sequence[str] = FEATURES) -> tuple[float, dict[str, float], list[str]]:
    """The L2 penalty with the best :func:`pooled_out_of_fold_uap` (ties: the larger penalty)."""
    best, scores, groups = _choose_by_source(table, grid, lambda l2: f"{l2:g}",
                                             lambda x, y, l2: fit_copy_head(x, y, l2=l2, features=features),
                                             lambda l2: l2)
    return float(best), scores, groups


TREE_GRID: tuple[TreeParams, ...] = tuple(TreeParams(depth=d, min_leaf=m) for d in (2, 3, 4) for m in (20, 50))
"""Tree shapes :func:`select_trees_by_source` tries (300 rounds at learning rate 0.05 each)."""


def tree_grid(monotone: bool = False) -> tuple[TreeParams, ...]:
    """:data:`TREE_GRID`, with or without the monotone constraint."""
    return tuple(dataclasses.replace(p, monotone=monotone) for p in TREE_GRID)


def select_trees_by_source(table: PairTable, grid: Sequence[TreeParams] = TREE_GRID,
                           features: Sequence[str] = FEATURES) -> tuple[TreeParams, dict[str, float], list[str]]:
    """The tree shape with the best :func:`pooled_out_of_fold_uap` (ties: the shallower, then the
    larger leaves: the simpler ensemble)."""
    return _choose_by_source(table, grid, lambda p: p.name,
                             lambda x, y, p: fit_copy_head_trees(x, y, params=p, features=features),
                             lambda p: (-p.depth, p.min_leaf))


def train_copy_head(bundle_dir: Path | str, benches: Sequence[Path | str], *, l2: float | None = 0.1, write: bool = True,
                    progress: bool = True, folds: str = "benchmark", features: Sequence[str] = FEATURES,
                    model: str = "linear", monotone: bool = False) -> CopyHead:
    """Fit P(copy) on the benches' pairs (incident and unrelated pairs are the negatives) and, with
    ``write``, store it in the bundle as the ``copy_head`` artifact. ``model`` is ``linear`` (logistic
    regression; ``l2=None`` chooses the penalty by :func:`select_l2`, leave one benchmark out, or with
    ``folds="source"`` by :func:`select_l2_by_source`) or ``trees`` (boosted trees, the shape chosen
    by :func:`select_trees_by_source`, or :class:`TreeParams` defaults when the pairs come from one
    source; ``l2`` and ``folds`` are not used; ``monotone`` constrains them, see
    :data:`training.copy_trees.INCREASING`)."""
    if model not in ("linear", "trees"):
        raise ValueError(f"model must be linear or trees, got {model!r}")
    tables = [cached_pair_table(bundle_dir, b, progress=progress) for b in benches]
    table = PairTable(np.concatenate([t.features for t in tables]), np.concatenate([t.labels for t in tables]),
                      [p for t in tables for p in t.pairs])
    info: dict[str, object] = {"benchmarks": [Path(b).name for b in benches],
                               "incident_pairs": int((table.labels == "incident").sum()), "command": "dupwatch train copy-head"}
    if model == "trees":
        groups = sorted({source_group(q) for _, q, _ in table.pairs})
        if len(groups) > 1:
            params, cv, groups = select_trees_by_source(table, grid=tree_grid(monotone), features=features)
            info["tree_selection"] = {"rule": "leave one source out, pooled out-of-fold copy µAP", "copy_uap_by_shape": cv,
                                      "sources": groups}
        else:  # nothing to leave out
            params = TreeParams(monotone=monotone)
            info["tree_selection"] = {"rule": "one source: the default shape", "copy_uap_by_shape": {}, "sources": groups}
        head = fit_copy_head_trees(table.features, table.labels == "copy", params=params, info=info, features=features)
        l2 = None
    else:
        if l2 is None and folds == "source":
            l2, cv, groups = select_l2_by_source(table, features=features)
            info["l2_selection"] = {"rule": "leave one source out, pooled out-of-fold copy µAP", "copy_uap_by_l2": cv,
                                    "sources": groups}
        elif l2 is None:
            l2, cv = select_l2(tables, features=features)
            info["l2_selection"] = {"rule": "leave one benchmark out, mean copy µAP", "copy_uap_by_l2": cv}
        head = fit_copy_head(table.features, table.labels == "copy", l2=l2, info=info, features=features)
    if write:
        from inference.bundle import BundleWriter

        path = head.save(Path(bundle_dir).resolve() / HEAD_FILE)
        writer = BundleWriter.update(bundle_dir)
        writer.add("copy_head", path, kind="json", arch="dupwatch-copy-head", source="dupwatch train copy-head",
                   config={"features": list(head.features), "model": model, "l2": l2, "trees": head.info.get("trees"),
                           "training_pairs": int(len(table.labels))})
        writer.write()
    return head
