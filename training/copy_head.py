"""Fit the copy head (:mod:`detect.copy_head`) of a bundle on labelled pairs of training-source benchmarks.

The benchmarks come from :func:`training.corpus.training_benchmark_spec` (the training sources
only; several seeds give different edits, windows, cuts and second cameras), so the held-out
benchmark that reports the head's quality and the one that calibrates its threshold stay unseen.
Pairs are featurized by :func:`detect.detector.assess_pair`, the worker's own code path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detect.copy_head import CopyHead, fit_copy_head

__all__ = ["PairTable", "pair_table", "train_copy_head", "ensure_training_benchmarks"]

HEAD_FILE = "copy_head.json"


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
    from bench.builder import build_benchmark
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

    from bench.eval import FeatureCache, FrameCache, OursMethod
    from bench.truth import read_truth_csv
    from detect.detector import AlignmentParams, assess_pair

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
                a = assess_pair(method.models, method._regions[q], method._regions[r], method._times[q], method._times[r],
                                AlignmentParams(), None)
                rows.append(a.features())
                labels.append(truth.level_of(q, r))
                names.append((bench.name, q, r))
    return PairTable(np.asarray(rows, np.float64), np.asarray(labels), names)


def train_copy_head(bundle_dir: Path | str, benches: Sequence[Path | str], *, l2: float = 0.1, write: bool = True,
                    progress: bool = True) -> CopyHead:
    """Fit P(copy) on the benches' pairs (incident and unrelated pairs are the negatives) and, with
    ``write``, store it in the bundle as the ``copy_head`` artifact."""
    table = pair_table(bundle_dir, benches, progress=progress)
    info = {"benchmarks": [Path(b).name for b in benches], "incident_pairs": int((table.labels == "incident").sum()),
            "command": "dupwatch train copy-head"}
    head = fit_copy_head(table.features, table.labels == "copy", l2=l2, info=info)
    if write:
        from inference.bundle import BundleWriter

        path = head.save(Path(bundle_dir).resolve() / HEAD_FILE)
        writer = BundleWriter.update(bundle_dir)
        writer.add("copy_head", path, kind="json", arch="dupwatch-copy-head", source="dupwatch train copy-head",
                   config={"features": list(head.features), "l2": l2, "training_pairs": int(len(table.labels))})
        writer.write()
    return head
