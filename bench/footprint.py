"""``dupwatch bench footprint``: start-up time, peak RSS and whether PyTorch was imported, for the
worker's embedder on each engine, each in a fresh subprocess (so one engine's imports do not count
for the other).

The subprocess builds the worker's default embedder (``inference.served:build_embedder``) with
``model.engine`` set, reads the index dimensions the way the worker does, embeds one 40-frame
video and scores it against itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

__all__ = ["bench_footprint"]

_CHILD = r"""
import json, resource, sys, time
t = time.perf_counter()
from dupwatch.config import ModelConfig, Settings
from inference.served import build_embedder
from ingest.worker import index_dims_of
e = build_embedder(Settings(model=ModelConfig(bundle=sys.argv[2], engine=sys.argv[1])))
index_dims_of(e)
start = time.perf_counter() - t
import numpy as np
from dupwatch.records import DecodedVideo
frames = np.random.default_rng(0).integers(0, 256, (40, 224, 224, 3), np.uint8)
v = DecodedVideo(video_id="x", frames=frames, timestamps=np.arange(40.0), duration_s=40.0, source_width=224, source_height=224)
t = time.perf_counter()
r = e.embed(v, "default")
e.models.compare(r.regions.astype(np.float32), r.regions.astype(np.float32))
first = time.perf_counter() - t
print(json.dumps({"engine": sys.argv[1], "served_by": e.models.engine_description, "start_s": round(start, 2),
                  "first_video_s": round(first, 2), "torch_imported": "torch" in sys.modules,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def bench_footprint(bundle: str = "models/default", engines: tuple[str, ...] = ("auto", "torch")) -> list[dict[str, Any]]:
    out = []
    for engine in engines:
        res = subprocess.run([sys.executable, "-c", _CHILD, engine, bundle], capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out
