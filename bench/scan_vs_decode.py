"""``dupwatch bench scan``: ``dupwatch scan`` of the real sample clips against their pure 1-fps
decode, side by side in one process.

For each clip: the decode alone (``ingest.decode.decode_video`` at the configured fps, frames
thrown away), then the whole scan of a folder holding only the clips (decode, embed, detect,
index into a fresh Milvus Lite file, the way ``dupwatch scan`` runs). The scan is reported with
its start-up (bundle load, engine sessions) and without it (files: decode, embed, detect, Milvus
collections and writes).
The ratio scan / decode is what the pipeline costs over the floor any pipeline pays.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["bench_scan"]


def bench_scan(bundle: Path | str = "models/default", *, engine: str = "auto", repeats: int = 2) -> dict[str, Any]:
    from evaluation.sources import real_videos
    from dupwatch.config import DecodeConfig, MilvusConfig, ModelConfig, Settings
    from ingest.decode import decode_video
    from ingest.worker import build_embedder_checked, scan_directory

    videos = real_videos()
    if not videos:
        raise RuntimeError("no real sample clips found (evaluation.sources.real_videos)")
    decode = DecodeConfig()
    decode_s: dict[str, float] = {}
    frames: dict[str, int] = {}
    for v in videos:
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            frames[v.name] = decode_video(v.path, decode, v.name).num_frames
            best = min(best, time.perf_counter() - t)
        decode_s[v.name] = best
    runs = []
    with tempfile.TemporaryDirectory(prefix="dupwatch-bench-scan-") as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        for v in videos:
            shutil.copy(v.path, folder / f"{v.name}{v.path.suffix}")
        for r in range(repeats):
            settings = Settings(model=ModelConfig(bundle=Path(bundle), engine=engine),
                                milvus=MilvusConfig(uri=str(Path(tmp) / f"run{r}.db"), collection_prefix="bench"))
            start = time.perf_counter()
            embedder = build_embedder_checked(settings)
            loaded = time.perf_counter()
            per_file: dict[str, float] = {}
            last = loaded
            for record in scan_directory(settings, folder, embedder=embedder):
                now = time.perf_counter()
                if record.get("type") in ("indexed", "dead_letter"):
                    per_file[Path(record["file"]).stem] = now - last
                last = now
            end = time.perf_counter()
            runs.append({"total_s": end - start, "startup_s": loaded - start, "files_s": end - loaded,
                         "engine": getattr(getattr(embedder, "models", None), "methods", {}).get("engine", "?")})
    best = min(runs, key=lambda x: x["total_s"])
    total_decode = sum(decode_s.values())
    processing = best["files_s"]
    return {
        "bundle": str(bundle),
        "engine": engine,
        "clips": {v.name: {"frames_at_1fps": frames[v.name], "decode_s": round(decode_s[v.name], 3)} for v in videos},
        "decode_s": round(total_decode, 3),
        "served_by": best["engine"],
        "scan_s (with start-up)": round(best["total_s"], 3),
        "start-up_s (bundle, engine sessions)": round(best["startup_s"], 3),
        "scan_s (files only: decode, embed, detect, index)": round(processing, 3),
        "scan_vs_decode (with start-up)": round(best["total_s"] / total_decode, 2),
        "scan_vs_decode (files only)": round(processing / total_decode, 2),
        "repeats": repeats,
    }


def format_report(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)
