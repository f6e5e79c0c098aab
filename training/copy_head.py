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
    """Features and labels of every (query, other video) pair of some benchmarks.

    ``features`` holds one row per pair: its view pair with the best fine score, the one the
    detector assesses without a head. With a head, the detector assesses every view pair and keeps
    the highest P(copy) (:func:`detect.detector.assess_scored_views`); ``view_features`` holds every
    compared view pair's row so that :meth:`chosen_by` can make the same choice."""

    features: np.ndarray
    labels: np.ndarray
    """``copy``, ``incident`` or ``unrelated`` per row."""
    pairs: list[tuple[str, str, str]]
    """(benchmark, query, reference) per row."""
    view_features: np.ndarray | None = None
    """Features of every compared view pair (main/inset × main/inset); ``None``: ``features`` only."""
    view_owner: np.ndarray | None = None
    """Row of ``features`` (the pair) each ``view_features`` row belongs to, in the detector's view order."""

    def detector_scores(self, head: CopyHead, pairs: np.ndarray | None = None) -> np.ndarray:
        """P(copy) of the pairs (a boolean mask; default all) as the detector gives it with ``head``:
        the highest over each pair's view pairs (its own row when the table has no view rows)."""
        mask = np.ones(len(self.labels), bool) if pairs is None else np.asarray(pairs, bool)
        if self.view_features is None or self.view_owner is None:
            return head.probability(self.features[mask])
        rows = np.flatnonzero(mask[self.view_owner])
        p = head.probability(self.view_features[rows])
        return p[_best_view_rows(self.view_owner[rows], p)]

    def chosen_by(self, head: CopyHead) -> "PairTable":
        """The table with each pair's row replaced by its view pair of highest ``head`` P(copy)
        (ties: the first, main before inset), the detector's choice with that head."""
        if self.view_features is None or self.view_owner is None:
            return self
        best = _best_view_rows(self.view_owner, head.probability(self.view_features))
        features = self.features.copy()
        features[self.view_owner[best]] = self.view_features[best]
        return dataclasses.replace(self, features=features)


def _best_view_rows(owner: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Index of each pair's view row with the highest ``p``, pairs in ascending order (every pair
    of ``owner`` has at least one row; ties: the first row, main before inset)."""
    if len(p) == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((np.arange(len(p)), -p, owner))
    return order[np.r_[True, owner[order][1:] != owner[order][:-1]]]


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
    from detect.detector import AlignmentParams, assess_views, view_combos

    rows, labels, names, view_rows, owners = [], [], [], [], []
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
                qv, rv = method.views(q), method.views(r)
                assessed = [assess_views(method.models, {c[0]: qv[c[0]]}, {c[1]: rv[c[1]]}, method._times[q], method._times[r],
                                         AlignmentParams(), None, query_thumbs=method.thumbs(q), ref_thumbs=method.thumbs(r))
                            for c in view_combos(qv, rv)]
                view_rows += [a.features() for a in assessed]
                owners += [len(rows)] * len(assessed)
                # without a head the detector assesses the best fine score (ties: the first, main)
                rows.append(view_rows[-len(assessed) + int(np.argmax([a.fine for a in assessed]))])
                labels.append(truth.level_of(q, r))
                names.append((bench.name, q, r))
    return PairTable(np.asarray(rows, np.float64), np.asarray(labels), names,
                     np.asarray(view_rows, np.float64).reshape(len(view_rows), -1), np.asarray(owners, np.int64))


FEATURE_MODULES = ("ingest.decode", "ingest.borders", "ingest.inset", "ingest.reframe", "inference.flat_frames", "inference.thumbnails",
                   "inference.alignment", "detect.detector", "detect.copy_head")
"""The code that turns a benchmark's videos into pair features (decoding, crops, views, flat frames,
alignment, evidence): a cached pair table is only reused while their source is unchanged."""


TABLE_LAYOUT = "pairs+views"
"""What a cached table holds (one row per pair, and every view pair's row): part of its key."""


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
              DecodeConfig().model_dump_json(), _code_digest(FEATURE_MODULES), TABLE_LAYOUT]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def cached_pair_table(bundle_dir: Path | str, bench: Path | str, *, progress: bool = True) -> PairTable:
    """:func:`pair_table` of one benchmark, kept in ``<bench>/pairs_<key>.npz`` (minutes of CPU per
    benchmark; a refit of the head, or a rerun after a crash, reads it back)."""
    bench = Path(bench)
    path = bench / f"pairs_{_features_key(bundle_dir, bench)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            views = (z["view_features"], z["view_owner"]) if "view_owner" in z.files else (None, None)
            return PairTable(z["features"], z["labels"], [tuple(p) for p in z["pairs"].tolist()], *views)  # type: ignore[misc]
    table = pair_table(bundle_dir, [bench], progress=progress)
    tmp = path.with_name(path.name + ".tmp.npz")
    views = {} if table.view_owner is None else {"view_features": table.view_features, "view_owner": table.view_owner}
    np.savez(tmp, features=table.features, labels=table.labels.astype(str), pairs=np.array(table.pairs, dtype=str), **views)
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
    from it as the detector does (:meth:`PairTable.detector_scores`: the best of their view pairs);
    the out-of-fold scores of all sources are then ranked together. Pooled, not averaged per
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
        oof[test] = table.detector_scores(fit(table.features[train], y), test)
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


def concat_tables(tables: Sequence[PairTable]) -> PairTable:
    """The pairs of ``tables`` in one table (view rows kept when every table has them)."""
    with_views = all(t.view_owner is not None for t in tables)
    offsets = np.cumsum([0, *(len(t.labels) for t in tables)])[:-1]
    return PairTable(np.concatenate([t.features for t in tables]), np.concatenate([t.labels for t in tables]),
                     [p for t in tables for p in t.pairs],
                     np.concatenate([t.view_features for t in tables]) if with_views else None,  # type: ignore[misc]
                     np.concatenate([t.view_owner + o for t, o in zip(tables, offsets)]) if with_views else None)  # type: ignore[operator]


VIEW_ROUNDS = 0
"""Refits of the copy head on the view pairs its previous fit scores highest (:func:`train_copy_head`).
None by default: measured on the real benchmarks (README, *Real footage*), one or two refits changed
the pooled out-of-fold copy µAP of the train split by less than 0.003 and the calibrate draws' copy
µAP by less than 0.003 either way."""


def train_copy_head(bundle_dir: Path | str, benches: Sequence[Path | str], *, l2: float | None = 0.1, write: bool = True,
                    progress: bool = True, folds: str = "benchmark", features: Sequence[str] = FEATURES,
                    model: str = "linear", monotone: bool = False, view_rounds: int = VIEW_ROUNDS) -> CopyHead:
    """Fit P(copy) on the benches' pairs (incident and unrelated pairs are the negatives) and, with
    ``write``, store it in the bundle as the ``copy_head`` artifact. ``model`` is ``linear`` (logistic
    regression; ``l2=None`` chooses the penalty by :func:`select_l2`, leave one benchmark out, or with
    ``folds="source"`` by :func:`select_l2_by_source`) or ``trees`` (boosted trees, the shape chosen
    by :func:`select_trees_by_source`, or :class:`TreeParams` defaults when the pairs come from one
    source; ``l2`` and ``folds`` are not used; ``monotone`` constrains them, see
    :data:`training.copy_trees.INCREASING`).

    Views: the first fit reads each pair's view pair of best fine score. The detector with a head
    keeps the view pair of highest P(copy) instead (for a picture-in-picture copy, often its inset;
    for another moment of static footage, whichever looks most like a copy), so ``view_rounds``
    times the pairs are re-read on the view pair the last fit scores highest
    (:meth:`PairTable.chosen_by`) and the head, its shape or penalty chosen again, is refitted."""
    if model not in ("linear", "trees"):
        raise ValueError(f"model must be linear or trees, got {model!r}")
    if view_rounds < 0:
        raise ValueError(f"view_rounds must be >= 0, got {view_rounds}")
    tables = [cached_pair_table(bundle_dir, b, progress=progress) for b in benches]

    def fit(tables: Sequence[PairTable]) -> tuple[CopyHead, float | None, PairTable]:
        return _fit_head(tables, [Path(b).name for b in benches], l2=l2, folds=folds, features=features, model=model,
                         monotone=monotone)

    head, penalty, table = fit(tables)
    for _ in range(view_rounds):
        tables = [t.chosen_by(head) for t in tables]
        head, penalty, table = fit(tables)
    head.info["views"] = ("the view pair of best fine score" if view_rounds == 0 else
                          f"the view pair of highest P(copy) of the previous fit, {view_rounds} round(s) after the best fine score")
    head.info["view_rounds"] = view_rounds
    if write:
        from inference.bundle import BundleWriter

        path = head.save(Path(bundle_dir).resolve() / HEAD_FILE)
        writer = BundleWriter.update(bundle_dir)
        writer.add("copy_head", path, kind="json", arch="dupwatch-copy-head", source="dupwatch train copy-head",
                   config={"features": list(head.features), "model": model, "l2": penalty, "trees": head.info.get("trees"),
                           "training_pairs": int(len(table.labels)), "view_rounds": view_rounds})
        writer.write()
    return head


def _fit_head(tables: Sequence[PairTable], names: list[str], *, l2: float | None, folds: str, features: Sequence[str],
              model: str, monotone: bool) -> tuple[CopyHead, float | None, PairTable]:
    """One fit of :func:`train_copy_head` on ``tables`` (shape or penalty chosen as it says)."""
    table = concat_tables(tables)
    info: dict[str, object] = {"benchmarks": names,
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
        return fit_copy_head_trees(table.features, table.labels == "copy", params=params, info=info, features=features), None, table
    if l2 is None and folds == "source":
        l2, cv, groups = select_l2_by_source(table, features=features)
        info["l2_selection"] = {"rule": "leave one source out, pooled out-of-fold copy µAP", "copy_uap_by_l2": cv,
                                "sources": groups}
    elif l2 is None:
        l2, cv = select_l2(tables, features=features)
        info["l2_selection"] = {"rule": "leave one benchmark out, mean copy µAP", "copy_uap_by_l2": cv}
    return fit_copy_head(table.features, table.labels == "copy", l2=l2, info=info, features=features), l2, table
