"""``dupwatch bench clip-recall``: does the true reference of a copy reach fine re-scoring?

For each bundle, every video of a benchmark folder (``DIR/videos``, ``DIR/truth.csv``, read as
``dupwatch eval`` reads them: :func:`scoring.methods.resolve_videos`, the worker's decoder through
:class:`scoring.methods.FrameCache`) is represented with the bundle (:meth:`VideoModels.represent`:
coarse vector, clip vectors — DRCA when the bundle has it, else the mean of 8 frames' region
vectors — picture-in-picture inset view) and indexed in a private Milvus Lite database. Then each
query with a copy pair in the truth is run through the detector's own candidate stage
(:meth:`detect.detector.Detector.plan_rerank`, the upload itself excluded) with the detection
settings given (default :class:`dupwatch.config.DetectionConfig`: ``coarse_top_k`` 50,
``clip_top_k`` 100, ``rerank_top_n`` 20), and for every copy pair ``(query, reference)`` of the
truth it records:

- ``candidate``: the reference is among the candidates (coarse top-k ∪ videos behind the clip hits);
- ``rescored``: it is among those chosen for fine re-scoring (at most ``rerank_top_n``): the
  pairs the fine network and the copy head can still alert on; with ``top_clips`` also with
  ``rerank_always_top_clips`` set to each value (the best clip hits re-scored whatever the
  selector says; with few videos indexed every video is a coarse candidate, so clip vectors change
  nothing unless they take part in the selection);
- its rank in the clip search alone (videos ordered by their best clip similarity to any of the
  query's clips, both views) and in the coarse search alone, reported as recall@k.

Recall is the share of copy pairs, per ``kind`` (the truth's optional column; ``-`` when absent)
and overall. Nothing is fine-scored, so this measures the candidate cascade only.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_KS = (1, 5, 10, 20)
TENANT = "bench"
NO_KIND = "-"


def _ranks(hits: Sequence[tuple[str, float]], exclude: str) -> dict[str, int]:
    """Video → 1-based rank in a best-first list of (video or inset view id, score); a video keeps its best view."""
    from dupwatch.records import parent_id

    best: dict[str, float] = {}
    for vid, score in hits:
        p = parent_id(vid)
        if p != exclude:
            best[p] = max(best.get(p, -np.inf), float(score))
    order = sorted(best, key=lambda v: -best[v])
    return {v: i + 1 for i, v in enumerate(order)}


def run_clip_recall(bench_dir: Path | str, bundles: Sequence[Path | str], *, ks: Sequence[int] = DEFAULT_KS,
                    detection: Any = None, top_clips: Sequence[int] = (), device: str = "cpu", progress: bool = False,
                    workdir: Path | str | None = None) -> dict[str, Any]:
    """The measurement of the module docstring for each bundle; a JSON-ready dict. Each value of
    ``top_clips`` also records whether the reference is re-scored with ``rerank_always_top_clips``
    set to it (``rescored_top_clips``)."""
    from tqdm import tqdm

    from detect.detector import Detector
    from detect.levels import LevelThresholds
    from dupwatch.config import DecodeConfig, DetectionConfig, MilvusConfig
    from evaluation.truth import read_truth_csv
    from index.store import VideoIndex, release_lite_server
    from inference.embedder import VideoModels
    from scoring.methods import EvalInputError, FrameCache, resolve_videos

    root = Path(bench_dir)
    if not (root / "videos").is_dir() or not (root / "truth.csv").is_file():
        raise EvalInputError(f"{root} is not a benchmark folder (expected {root / 'videos'}/ and {root / 'truth.csv'})")
    truth = read_truth_csv(root / "truth.csv")
    videos = resolve_videos(root / "videos", truth)
    copy_pairs = sorted(truth.pairs("copy"))
    if not copy_pairs:
        raise EvalInputError(f"{root / 'truth.csv'} lists no copy pair")
    kinds = truth.kinds("copy")
    detection = detection or DetectionConfig()
    frames = FrameCache()
    tmp = tempfile.TemporaryDirectory(prefix="clip-recall-", dir=workdir)
    out: dict[str, Any] = {
        "bench": str(root), "videos": len(videos), "copy_pairs": len(copy_pairs),
        "queries": len({q for q, _ in copy_pairs}), "ks": list(ks),
        "detection": {"coarse_top_k": detection.coarse_top_k, "clip_top_k": detection.clip_top_k,
                      "rerank_top_n": detection.rerank_top_n,
                      "rerank_always_top_coarse": detection.rerank_always_top_coarse,
                      "rerank_always_top_clips": detection.rerank_always_top_clips,
                      "selector_threshold": detection.selector_threshold, "rerank_fraction": detection.rerank_fraction},
        "top_clips": [int(v) for v in top_clips],
        "bundles": {},
    }
    try:
        for b_idx, bundle in enumerate(bundles):
            start = time.perf_counter()
            models = VideoModels.from_path(bundle, device=device)
            spec = models.bundle.manifest.backbone
            decode = DecodeConfig(fps=spec.fps, short_side=spec.short_side, crop=spec.crop)
            reps = {}
            for vid, path in tqdm(videos.items(), desc=f"represent {Path(bundle).name}", disable=not progress):
                reps[vid] = models.represent(frames.get(vid, path, decode), tenant=TENANT)
            db = str(Path(tmp.name) / f"b{b_idx}.db")
            index = VideoIndex(MilvusConfig(uri=db, collection_prefix=f"cr{b_idx}"), models.index_dims)
            try:
                for rep in reps.values():
                    index.upsert(rep)
                no_levels = LevelThresholds(copy=None, incident=None)
                detector = Detector(models, index, detection, thresholds=no_levels)
                variants = {int(v): Detector(models, index, detection.model_copy(update={"rerank_always_top_clips": int(v)}),
                                             thresholds=no_levels) for v in top_clips}
                rows = []
                by_query: dict[str, list[str]] = {}
                for q, r in copy_pairs:
                    by_query.setdefault(q, []).append(r)
                for q, refs in tqdm(by_query.items(), desc=f"queries {Path(bundle).name}", disable=not progress):
                    rep = reps[q]
                    plan = detector.plan_rerank(rep)
                    with_clips = {v: set(d.plan_rerank(rep).rerank) for v, d in variants.items()}
                    views = [rep] + ([rep.inset] if rep.inset is not None else [])
                    clip_hits = [(c.video_id, c.score) for v in views
                                 for c in index.search_clips(v.clips, TENANT, detection.clip_top_k, exclude_video_id=q)]
                    coarse_hits = [h for v in views
                                   for h in index.search_coarse(v.coarse, TENANT, len(videos) * 2, exclude_video_id=q)]
                    clip_rank, coarse_rank = _ranks(clip_hits, q), _ranks(coarse_hits, q)
                    for r in refs:
                        rows.append({"query": q, "reference": r, "kind": kinds.get((q, r), NO_KIND),
                                     "candidate": r in plan.coarse, "rescored": r in plan.rerank,
                                     "candidates": len(plan.coarse), "clip_rank": clip_rank.get(r),
                                     "coarse_rank": coarse_rank.get(r),
                                     "rescored_top_clips": {str(v): r in got for v, got in with_clips.items()}})
            finally:
                index.close()
                release_lite_server(db)
            out["bundles"][str(bundle)] = {
                "version": models.version, "clips": models.methods.get("clips"), "clip_dim": models.index_dims.clip,
                "seconds": round(time.perf_counter() - start, 1),
                "overall": summarize(rows, ks),
                "per_kind": {k: summarize([x for x in rows if x["kind"] == k], ks)
                             for k in sorted({x["kind"] for x in rows})},
                "pairs": rows,
            }
    finally:
        tmp.cleanup()
    return out


def summarize(rows: Sequence[dict[str, Any]], ks: Sequence[int]) -> dict[str, Any]:
    n = len(rows)

    def share(hit: Any) -> float | None:
        return round(sum(1 for x in rows if hit(x)) / n, 4) if n else None

    return {
        "pairs": n,
        "candidate_recall": share(lambda x: x["candidate"]),
        "rescored_recall": share(lambda x: x["rescored"]),
        "rescored_recall_top_clips": {v: share(lambda x, v=v: x["rescored_top_clips"][v])
                                      for v in (rows[0].get("rescored_top_clips", {}) if rows else {})},
        "clip_recall_at": {str(k): share(lambda x, k=k: x["clip_rank"] is not None and x["clip_rank"] <= k) for k in ks},
        "coarse_recall_at": {str(k): share(lambda x, k=k: x["coarse_rank"] is not None and x["coarse_rank"] <= k)
                             for k in ks},
    }


def format_table(data: dict[str, Any]) -> str:
    """One row per (kind, bundle): pairs, re-scored / candidate recall, clip and coarse recall@k."""
    ks = [str(k) for k in data["ks"]]
    tops = [str(v) for v in data.get("top_clips", [])]
    names = {b: f"{Path(b).name} ({d['clips']})" for b, d in data["bundles"].items()}
    width = max([len(n) for n in names.values()] + [6])
    kinds = sorted({k for d in data["bundles"].values() for k in d["per_kind"]})
    head = (f"{'kind':<20} {'bundle':<{width}} {'pairs':>5} {'rescored':>8} "
            + "".join(f"{'+clips' + v:>9} " for v in tops) + f"{'cand':>5} "
            + " ".join(f"{'clip@' + k:>7}" for k in ks) + " " + " ".join(f"{'coarse@' + k:>9}" for k in ks))
    lines = [f"{data['bench']}: {data['videos']} videos indexed, {data['copy_pairs']} copy pairs, "
             f"rerank_top_n {data['detection']['rerank_top_n']}", head, "-" * len(head)]

    def cell(v: float | None, w: int) -> str:
        return f"{'-':>{w}}" if v is None else f"{v:>{w}.3f}"

    for kind in [*kinds, "overall"]:
        for b, d in data["bundles"].items():
            s = d["overall"] if kind == "overall" else d["per_kind"].get(kind)
            if s is None:
                continue
            lines.append(f"{kind:<20} {names[b]:<{width}} {s['pairs']:>5} {cell(s['rescored_recall'], 8)} "
                         + "".join(cell(s["rescored_recall_top_clips"].get(v), 9) + " " for v in tops)
                         + f"{cell(s['candidate_recall'], 5)} " + " ".join(cell(s['clip_recall_at'][k], 7) for k in ks)
                         + " " + " ".join(cell(s['coarse_recall_at'][k], 9) for k in ks))
    return "\n".join(lines)
