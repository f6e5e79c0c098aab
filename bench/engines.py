"""``dupwatch bench engines``: frames/s (feature extractor) and pairs/s (fine similarity) per engine.

PyTorch and ONNX Runtime on CPU always run side by side in one process (ratios vs PyTorch CPU);
on a GPU host also PyTorch fp32/fp16 on CUDA, ONNX Runtime with the CUDA provider and TensorRT
when they are available. The table ends with the largest parity error per exported graph: the
one recorded at export time and the one measured on the benchmark inputs.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EngineTiming", "bench_engines", "format_report", "timed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineTiming:
    engine: str
    graph: str
    unit: str
    rate: float
    max_abs_err_vs_torch: float | None


def timed(fn: Callable[[], Any], items: int, min_seconds: float = 1.0, min_iters: int = 2, windows: int = 3) -> float:
    """Items per second of ``fn``: one warm-up call, then the best of ``windows`` windows of at least
    ``min_iters`` calls and ``min_seconds / windows`` seconds each (robust to a busy shared host)."""
    fn()
    best = 0.0
    for _ in range(windows):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if n >= min_iters and elapsed >= min_seconds / windows:
                break
        best = max(best, items * n / elapsed)
    return best


def _err(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) if a[k].size else 0.0 for k in b)


def _engines(bundle: Any, gpu: bool, threads: int | None) -> list[tuple[str, Any]]:
    from inference.engines import EngineUnavailable, OnnxRuntimeEngine, TorchEngine, onnx_graphs, ort_providers

    from inference.graphs import build_graphs, load_torch_models

    specs = build_graphs(load_torch_models(bundle, ["features", "fine"]), regions=bundle.manifest.backbone.regions)
    out: list[tuple[str, Any]] = [("torch-cpu", TorchEngine.from_specs(specs))]
    files = onnx_graphs(bundle)
    if files:
        out.append(("ort-cpu", OnnxRuntimeEngine(files, providers=["CPUExecutionProvider"], threads=threads)))
    if gpu:
        out.append(("torch-cuda-fp32", TorchEngine.from_specs(build_graphs(load_torch_models(bundle, ["features", "fine"]),
                                                                          bundle.manifest.backbone.regions), "cuda")))
        out.append(("torch-cuda-fp16", TorchEngine.from_specs(build_graphs(load_torch_models(bundle, ["features", "fine"]),
                                                                          bundle.manifest.backbone.regions), "cuda",
                                                              half=True)))
        if files and "CUDAExecutionProvider" in ort_providers():
            out.append(("ort-cuda", OnnxRuntimeEngine(files, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])))
        try:
            from inference.engines import TensorRTEngine

            from inference.tensorrt_builder import TensorRTUnavailable, build_bundle_engines

            out.append(("tensorrt-fp16", TensorRTEngine(build_bundle_engines(bundle, graphs=["features", "fine"]))))
        except (EngineUnavailable, ImportError, RuntimeError) as exc:
            log.warning("TensorRT not benchmarked: %s", exc)
            out.append(("tensorrt-fp16", exc))
    return out


def bench_engines(bundle_dir: Path | str | None = None, frames: int = 16, length: int = 64, pairs: int = 8,
                  min_seconds: float = 1.0, seed: int = 0, threads: int | None = 1) -> tuple[list[EngineTiming], dict[str, float], list[str]]:
    """Timings per engine, manifest parity errors per exported graph, and notes (skipped engines).

    Without ``bundle_dir`` a temporary bundle with random-init real architectures (EfficientNet-Lite0
    features + DnS fine attention student) is built and exported first. ``threads`` sets both
    PyTorch's and ONNX Runtime's intra-op threads (equal for a fair ratio; ``None`` keeps the defaults).
    """
    import torch

    from inference.bundle import load_bundle
    from inference.engines import ONNX_PREFIX

    if threads:
        torch.set_num_threads(threads)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    notes: list[str] = []
    if bundle_dir is None:
        from inference.graphs import make_random_bundle
        from export.onnx_export import export_bundle

        tmp = tempfile.TemporaryDirectory(prefix="dupwatch-bench-")
        make_random_bundle(tmp.name, ["features", "fine"], seed=seed)
        export_bundle(tmp.name, progress=False)
        bundle_dir = tmp.name
        notes.append("random-init bundle: EfficientNet-Lite0 (packaged ImageNet weights) + random PCA, DnS fine attention")
    try:
        bundle = load_bundle(bundle_dir)
        gpu = torch.cuda.is_available()
        rng = np.random.default_rng(seed)
        feat_in = {"frames": rng.integers(0, 256, (frames, 224, 224, 3), dtype=np.uint8)}
        regions, dim = bundle.manifest.backbone.regions, bundle.manifest.backbone.dim
        q = rng.standard_normal((length, regions, dim)).astype(np.float32)
        t = rng.standard_normal((length, regions, dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=-1, keepdims=True)
        t /= np.linalg.norm(t, axis=-1, keepdims=True)
        pair_in = {"query": q[None], "target": t[None]}  # one pair: the graph takes a batch of pairs
        timings: list[EngineTiming] = []
        reference: dict[str, dict[str, np.ndarray]] = {}
        for label, engine in _engines(bundle, gpu, threads):
            if isinstance(engine, Exception):
                notes.append(f"{label}: not run ({engine})")
                continue
            for graph, inputs, unit, items in (("features", feat_in, "frames/s", frames),
                                               ("fine", pair_in, "pairs/s", 1)):
                if graph not in engine.graphs():
                    continue
                out = engine.run(graph, inputs)
                if label == "torch-cpu":
                    reference[graph] = out
                err = _err(out, reference[graph]) if graph in reference and label != "torch-cpu" else None
                rate = timed(lambda e=engine, g=graph, i=inputs: e.run(g, i), items, min_seconds)
                timings.append(EngineTiming(label, graph, unit, rate, err))
        parity = {name[len(ONNX_PREFIX):]: float(e.parity_max_abs_err) for name, e in bundle.manifest.artifacts.items()
                  if e.kind == "onnx" and name.startswith(ONNX_PREFIX) and e.parity_max_abs_err is not None}
        notes.append(f"inputs: {frames} frames 224x224 per call; pairs of {length}-frame videos ({regions} regions x {dim})"
                     f"; intra-op threads: torch {torch.get_num_threads()}, onnxruntime {threads or 'default'}")
        if not gpu:
            notes.append("no CUDA GPU: PyTorch fp16, ORT-CUDA and TensorRT not measured")
        return timings, parity, notes
    finally:
        if tmp is not None:
            tmp.cleanup()


def format_report(timings: list[EngineTiming], parity: dict[str, float], notes: list[str]) -> str:
    lines = [f"{'engine':<16} {'graph':<9} {'rate':>12} {'unit':<9} {'x torch-cpu':>11} {'max|err| vs torch':>18}"]
    base = {t.graph: t.rate for t in timings if t.engine == "torch-cpu"}
    for t in timings:
        ratio = f"x{t.rate / base[t.graph]:.2f}" if t.graph in base and base[t.graph] > 0 else "-"
        err = f"{t.max_abs_err_vs_torch:.2e}" if t.max_abs_err_vs_torch is not None else "(reference)"
        lines.append(f"{t.engine:<16} {t.graph:<9} {t.rate:>12.2f} {t.unit:<9} {ratio:>11} {err:>18}")
    if parity:
        lines.append("largest parity error at export (ONNX Runtime CPU vs PyTorch):")
        for g in sorted(parity):
            lines.append(f"  {g:<18} {parity[g]:.2e}")
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)
