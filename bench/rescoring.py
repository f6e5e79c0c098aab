"""``dupwatch bench rescoring``: the detector's re-scoring of an upload's candidates vs the fine
network's own batched forward pass on the same pairs, per engine, side by side.

- ``network``: the fine network alone on a batch of pairs of equal length (both videos indexed
  and compared in single batched calls: ``fine_index`` + ``fine`` graphs on ONNX Runtime,
  ``model(query, target)`` in PyTorch);
- ``detector``: :func:`detect.detector.score_candidates`, what ``Detector.detect`` runs for one
  upload against its candidates (query indexed once, references once, pairs batched, the frame
  similarity matrix that alignment reads cropped out per pair);
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
    from detect.detector import score_candidates
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
        per_pair = timed(lambda m=models: [m.compare(query, r) for r in refs], pairs, min_seconds)
        got = score_candidates(models, {"main": query}, candidates)
        one = [models.compare(query, r).score for r in refs]
        out[name] = {
            "network_pairs_per_s": round(net, 1),
            "detector_pairs_per_s": round(det, 1),
            "per_pair_compare_pairs_per_s": round(per_pair, 1),
            "similarity_only_pairs_per_s (videos indexed beforehand)": round(head_only, 1),
            "detector_vs_network": round(det / net, 3),
            "max_score_diff_detector_vs_compare": float(max(abs(got[f"ref{i}"][("main", "main")].score - s) for i, s in enumerate(one))),
        }
    return out


def format_report(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)
