"""``dupwatch bench engine-settings``: intra-op threads and batch sizes per engine, side by side.

Measures, in one process on the bundle's own graphs, what the ``model.features_threads``,
``model.heads_threads`` and ``model.features_batch`` defaults were chosen from:

- the frame feature extractor (frames/s) for each batch size × thread count, on ONNX Runtime and
  on PyTorch (``torch.set_num_threads``);
- the small per-video work (coarse vector + selector self-similarity of one video) and the
  per-upload fine re-scoring (one query against ``pairs`` references) on ONNX Runtime, at each
  thread count.

Timings are the best of a few windows (:func:`bench.engines.timed`), so a busy shared host biases
them less; the ratios within one run are what to read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bench_engine_settings"]


def bench_engine_settings(bundle_dir: Path | str, *, batches: tuple[int, ...] = (8, 16, 32, 64),
                          threads: tuple[int, ...] = (1, 2), frames: int = 64, length: int = 40, pairs: int = 16,
                          min_seconds: float = 2.0, torch_too: bool = True, seed: int = 0) -> dict[str, Any]:
    from bench.engines import timed
    from inference.bundle import load_bundle
    from inference.engines import OnnxRuntimeEngine, onnx_graphs
    from inference.served import EngineModels

    bundle = load_bundle(bundle_dir)
    files = onnx_graphs(bundle)
    if "features" not in files:
        raise ValueError(f"bundle {bundle_dir} has no ONNX graphs: run `dupwatch export --bundle {bundle_dir}` first")
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, 256, (frames, 224, 224, 3), dtype=np.uint8)
    out: dict[str, Any] = {"bundle": str(bundle_dir), "frames": frames, "video_length": length, "pairs": pairs,
                           "features_frames_per_s": {}, "heads": {}}
    regions = None
    for n in threads:
        engine = OnnxRuntimeEngine(files, providers=["CPUExecutionProvider"], threads=n)
        for b in batches:
            models = EngineModels(bundle, engine, batch_frames=b)
            out["features_frames_per_s"][f"onnxruntime threads={n} batch={b}"] = round(
                timed(lambda m=models: m.regions(clip), frames, min_seconds), 1)
        models = EngineModels(bundle, engine, batch_frames=16)
        if regions is None:
            regions = models.regions(clip)
        video = regions[:length]
        refs = [np.roll(regions, i, axis=0)[:length] for i in range(pairs)]
        ts = np.arange(len(video), dtype=np.float32)
        out["heads"][f"onnxruntime threads={n}"] = {
            "videos_per_s (coarse + selfsim)": round(timed(lambda m=models: m.represent_regions("v", video, ts), 1, min_seconds), 2),
            "uploads_per_s (fine re-scoring of all pairs)": round(timed(lambda m=models: m.compare_many(video, refs), 1, min_seconds), 2),
        }
    out["flat_frames"] = _flat_frame_cost(bundle, files, clip, min_seconds)
    if torch_too:
        import torch

        from inference.embedder import VideoModels

        before = torch.get_num_threads()
        models = VideoModels(bundle, device="cpu")
        try:
            for n in threads:
                torch.set_num_threads(n)
                for b in batches:
                    models.batch_frames = b
                    out["features_frames_per_s"][f"torch threads={n} batch={b}"] = round(
                        timed(lambda m=models: m.regions(clip), frames, min_seconds), 1)
        finally:
            torch.set_num_threads(before)
    return out


def _flat_frame_cost(bundle: Any, files: Any, clip: np.ndarray, min_seconds: float) -> dict[str, float]:
    """Feature frames/s with the flat-frame rule (:mod:`inference.flat_frames`) off and on, side by
    side (ONNX Runtime, 1 thread, batches of 16): what measuring every frame's luma costs."""
    from bench.engines import timed
    from dupwatch.config import DEFAULT_FLAT_LUMA_STD
    from inference.engines import OnnxRuntimeEngine
    from inference.served import EngineModels

    models = EngineModels(bundle, OnnxRuntimeEngine(files, providers=["CPUExecutionProvider"], threads=1), batch_frames=16)
    rates = {}
    for cut in (0.0, DEFAULT_FLAT_LUMA_STD):
        models.flat_luma_std = cut
        rates[cut] = timed(lambda m=models: m.regions(clip), len(clip), min_seconds)
    return {"frames_per_s rule off": round(rates[0.0], 1), "frames_per_s rule on": round(rates[DEFAULT_FLAT_LUMA_STD], 1),
            "ratio on/off": round(rates[DEFAULT_FLAT_LUMA_STD] / rates[0.0], 3)}


def format_report(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)
