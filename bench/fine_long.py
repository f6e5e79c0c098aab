"""``dupwatch bench fine-long``: peak memory and time of the fine comparison of two long videos,
tile by tile (:mod:`inference.fine_blocks`) against one run of the whole pair, side by side.

The pair is the worst case for memory: the reference is a noisy copy of the whole query, shifted by
5 %, so the longest segment covers 95 % of the query and the copy head's evidence reads every row of
the ``[Tq, Tr]`` frame similarity (:func:`detect.detector.head_rows` focuses it only on shorter copies).
With ``reference_frames`` the reference is an unrelated short video instead: a long upload against a
short indexed one, where nothing matches and the copy head again reads every query row.

Each measurement runs in a fresh subprocess (peak RSS is per process): the worker's models
(``inference.served.build_embedder`` on the bundle, ONNX Runtime on CPU) index two videos of
random unit region vectors sharing a stretch and compare them the worker's way, ``models.compare``
(``served``: one run while the pair fits :data:`inference.fine_blocks.CELL_BUDGET`, tiles beyond),
or with one run of the fine graph on the whole pair (``one run``, what the worker did before; skipped
above ``whole_max`` frames a side, where it asks for more memory than a worker has). With
``assess``, a third row (``assessed``) runs what the detector does with a candidate
(:func:`detect.detector.assess_views`: the served comparison, then the segment search and the copy
head's evidence on the ``[Tq, Tr]`` frame similarity, with 32×32 thumbnails for its pixel evidence).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

__all__ = ["bench_fine_long", "format_report"]

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from dupwatch.config import ModelConfig, Settings
from inference.served import build_embedder
mode, n, bundle, threads, m = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
models = build_embedder(Settings(model=ModelConfig(bundle=bundle, engine="onnxruntime", heads_threads=threads))).models
rng = np.random.default_rng(0)
r, d = models.index_dims.regions, models.index_dims.region_dim
q = rng.standard_normal((n, r, d)).astype(np.float32)
if m:
    t = rng.standard_normal((m, r, d)).astype(np.float32)
else:
    t = np.roll(q, n // 20, axis=0) + np.float32(0.3) * rng.standard_normal((n, r, d)).astype(np.float32)
q, t = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in (q, t))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
start = time.perf_counter()
if mode == "served":
    score = models.compare(q, t).score
elif mode == "assessed":
    from detect.copy_head import copy_head_for
    from detect.detector import AlignmentParams, assess_views
    times = np.arange(n, dtype=np.float64)
    score = assess_views(models, {"main": q}, {"main": t}, times, np.arange(len(t), dtype=np.float64), AlignmentParams(),
                         copy_head_for(models.bundle), query_thumbs={"main": rng.integers(0, 256, (n, 32, 32), dtype=np.uint8)},
                         ref_thumbs={"main": rng.integers(0, 256, (len(t), 32, 32), dtype=np.uint8)}).fine
else:
    scorer = models.pairs
    a, b = scorer.index([q, t])
    score = float(scorer.engine.run(scorer.graph, {"query": a.tiled[None], "target": b.tiled[None]})["similarity"][0])
print(json.dumps({"mode": mode, "frames": n, "reference_frames": len(t), "score": round(score, 5), "seconds": round(time.perf_counter() - start, 2),
                  "rss_before_mib": before, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def bench_fine_long(bundle: str = "models/default", lengths: tuple[int, ...] = (600, 1200, 3600, 14400), whole_max: int = 1200,
                    threads: int = 2, assess: bool = True, reference_frames: int = 0) -> list[dict[str, Any]]:
    """One row per (length, mode): the query ``length`` frames long (1 fps: seconds), the reference
    a copy of it (``reference_frames`` 0) or an unrelated ``reference_frames``-frame video: a long
    upload against a short indexed one, where nothing matches and the copy head reads every query row."""
    out = []
    modes = ("one run", "served", "assessed") if assess else ("one run", "served")
    for n in lengths:
        for mode in modes:
            if mode == "one run" and (n > whole_max or reference_frames):
                continue
            res = subprocess.run([sys.executable, "-c", _CHILD, mode, str(n), bundle, str(threads), str(reference_frames)],
                                 capture_output=True, text=True, check=True)
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def format_report(rows: list[dict[str, Any]]) -> str:
    lines = ["| frames (query × reference) | mode | similarity | seconds | peak RSS MiB (before the pair) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['frames']:,} × {r['reference_frames']:,} | {r['mode']} | {r['score']:.5f} | {r['seconds']} "
                     f"| {r['peak_rss_mib']:,} ({r['rss_before_mib']:,}) |")
    return "\n".join(lines)
