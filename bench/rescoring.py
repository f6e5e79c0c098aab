"""``dupwatch bench rescoring``: the detector's re-scoring of an upload's candidates vs the fine
network's own batched forward pass on the same pairs, per engine, side by side.

- ``network``: the fine network alone on a batch of pairs of equal length (both videos indexed
  and compared in single batched calls: ``fine_index`` + ``fine`` graphs on ONNX Runtime,
  ``model(query, target)`` in PyTorch);
- ``detector``: :func:`detect.detector.score_candidates`, what ``Detector.detect`` runs for one
  upload against its candidates (query indexed once, references once, pairs batched, the frame
  similarity matrix that alignment reads cropped out per pair);
- ``detector_both_ways``: :func:`detect.detector.score_candidates_both_ways`, what the detector runs
  with a copy head (each reference also scored against the upload, from the same indexed views);
- ``assessed_one_way`` / ``assessed_both_ways`` (bundles with a copy head): the re-scoring plus
  what the detector does with each pair after it (alignment, the head's evidence and P(copy)),
  the upload against each candidate only, and both ways as the detector runs it;
- ``per_pair``: ``models.compare`` once per candidate (the path before batching), for reference;
- ``similarity_only``: the batched pair graph on videos indexed beforehand (an upper bound).

Inputs are region features of real sample clips (``evaluation.sources.real_videos``) embedded by the
bundle, cut into windows of ``length`` frames; one window is the query, ``pairs`` others the references.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bench_rescoring"]


def _windows(models: Any, length: int, count: int) -> list[np.ndarray]:
    from evaluation.sources import real_videos
    from dupwatch.config import DecodeConfig
    from ingest.decode import decode_video

    regions = [models.regions(decode_video(v.path, DecodeConfig(), v.name).frames) for v in real_videos()]
    feats = np.concatenate(regions)
    reps = -(-(length + count) // len(feats))
    feats = np.concatenate([feats] * max(1, reps))
    return [feats[i : i + length] for i in range(count + 1)]


def bench_rescoring(bundle_dir: Path | str = "models/default", *, pairs: int = 32, length: int = 30,
                    min_seconds: float = 2.0, threads: int = 1) -> dict[str, Any]:
    import torch

    from bench.engines import timed
    from detect.copy_head import copy_head_for
    from detect.detector import score_candidates, score_candidates_both_ways
    from inference.bundle import load_bundle
    from inference.embedder import VideoModels
    from inference.engines import OnnxRuntimeEngine, onnx_graphs
    from inference.served import EngineModels

    torch.set_num_threads(threads)
    bundle = load_bundle(bundle_dir)
    out: dict[str, Any] = {"bundle": str(bundle_dir), "pairs": pairs, "frames_per_video": length, "threads": threads}
    backends: list[tuple[str, Any]] = [("torch", VideoModels(bundle, device="cpu"))]
    files = onnx_graphs(bundle)
    if {"fine", "fine_index"} <= set(files):
        backends.append(("onnxruntime", EngineModels(bundle, OnnxRuntimeEngine(files, providers=["CPUExecutionProvider"], threads=threads))))
    windows = _windows(backends[-1][1], length, pairs)
    query, refs = windows[0], windows[1:]
    queries = np.stack([query] * pairs)
    targets = np.stack(refs)
    candidates = {f"ref{i}": {"main": r} for i, r in enumerate(refs)}
    head = copy_head_for(bundle)
    for name, models in backends:
        if name == "torch":
            fine = models.fine
            q_t, r_t = torch.from_numpy(queries), torch.from_numpy(targets)

            def network(fine: Any = fine, q_t: Any = q_t, r_t: Any = r_t) -> Any:
                with torch.inference_mode():
                    return fine(q_t, r_t)
        else:
            engine = models.engine

            def network(engine: Any = engine) -> Any:
                qi = engine.run("fine_index", {"features": queries})["indexed"]
                ri = engine.run("fine_index", {"features": targets})["indexed"]
                return engine.run("fine", {"query": qi, "target": ri})

        net = timed(network, pairs, min_seconds)
        q_idx, r_idx = models.index_fine([query]), models.index_fine(refs)
        head_only = timed(lambda m=models: m.score_indexed(q_idx[0], r_idx), pairs, min_seconds)
        det = timed(lambda m=models: score_candidates(m, {"main": query}, candidates), pairs, min_seconds)
        both = timed(lambda m=models: score_candidates_both_ways(m, {"main": query}, candidates), pairs, min_seconds)
        per_pair = timed(lambda m=models: [m.compare(query, r) for r in refs], pairs, min_seconds)
        if head is not None:
            one_way = timed(lambda m=models: _assess(m, head, query, candidates, both=False), pairs, min_seconds)
            two_ways = timed(lambda m=models: _assess(m, head, query, candidates, both=True), pairs, min_seconds)
        got = score_candidates(models, {"main": query}, candidates)
        one = [models.compare(query, r).score for r in refs]
        out[name] = {
            "network_pairs_per_s": round(net, 1),
            "detector_pairs_per_s": round(det, 1),
            "per_pair_compare_pairs_per_s": round(per_pair, 1),
            "similarity_only_pairs_per_s (videos indexed beforehand)": round(head_only, 1),
            "detector_both_ways_pairs_per_s": round(both, 1),
            "detector_vs_network": round(det / net, 3),
            "both_ways_vs_one_way": round(both / det, 3),
            **({} if head is None else {
                "assessed_one_way_pairs_per_s": round(one_way, 1),
                "assessed_both_ways_pairs_per_s": round(two_ways, 1),
                "assessed_both_ways_vs_one_way": round(two_ways / one_way, 3)}),
            "max_score_diff_detector_vs_compare": float(max(abs(got[f"ref{i}"][("main", "main")].score - s) for i, s in enumerate(one))),
        }
    return out


def _assess(models: Any, head: Any, query: np.ndarray, candidates: dict[str, dict[str, np.ndarray]], *,
            both: bool) -> list[float | None]:
    """P(copy) of every candidate as the detector computes it (one sample per second)."""
    from detect.detector import AlignmentParams, assess_scored_views, both_ways, score_candidates_both_ways
    from scoring.methods import frame_intervals

    def times(frames: int) -> np.ndarray:
        return frame_intervals(np.arange(frames, dtype=np.float64), float(frames), 1.0)

    upload = {"main": query}
    forward, reverse = score_candidates_both_ways(models, upload, candidates, reverse=both)
    out: list[float | None] = []
    for vid, views in candidates.items():
        tq, tr = times(len(query)), times(len(views["main"]))
        a = assess_scored_views(forward[vid], upload, views, tq, tr, AlignmentParams(), head)
        if both:
            a = both_ways(a, assess_scored_views(reverse[vid], views, upload, tr, tq, AlignmentParams(), head).copy_score)
        out.append(a.copy_score)
    return out


def format_report(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)
