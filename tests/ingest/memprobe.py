"""Peak memory of the worker's pipeline on one batch of uploads, measured in a fresh process.

``python -m tests.ingest.memprobe ROOT FILE [FILE ...] [--crop N] [--timeout S] [--bundle DIR]`` runs
the real chain (``FileDecoder`` → ``Pipeline`` → an embedder, features only; index and sinks in
memory) on the files as one batch and prints one JSON line: peak RSS (``VmHWM`` from
``/proc/self/status``), wall time, and each upload's outcome (status, reason, frames embedded).

The embedder is the thumbnail test embedder by default: it keeps 27 floats per frame, so the number
measures what decoding and batching hold (pixels), not the size of a model's features. With
``--bundle`` it is the worker's own (``inference.served.build_embedder`` on that bundle, ONNX
Runtime on CPU), so the number includes the model, its region features and the heads computed on
them. Used by ``tests/ingest/test_long_uploads.py`` and for the README's reliability table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class _MemoryIndex:
    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def upsert(self, rep: Any) -> None:
        self.rows[rep.video_id] = int(rep.regions.shape[0])


class _Dead:
    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def send(self, job: Any, error: Any) -> None:
        self.reasons[str(job.offset)] = error.reason


def run(root: Path, files: list[str], *, crop: int = 224, timeout_s: float = 600.0, bundle: str | None = None) -> dict[str, Any]:
    from dupwatch.config import DecodeConfig, LimitsConfig, SourceConfig
    from ingest.metrics import WorkerMetrics
    from ingest.pipeline import CollectingAlertSink, FileDecoder, Job, NoDetector, Pipeline
    from ingest.worker import VersionedEmbedder
    from tests.ingest.embedders import ThumbnailEmbedder

    decode = DecodeConfig(short_side=max(crop, 32), crop=crop, timeout_s=timeout_s)
    inner: Any
    if bundle is None:
        inner = ThumbnailEmbedder()
    else:
        from dupwatch.config import ModelConfig, Settings
        from inference.served import build_embedder

        inner = build_embedder(Settings(model=ModelConfig(bundle=bundle)))
    index, dead = _MemoryIndex(), _Dead()
    pipeline = Pipeline(
        decoder=FileDecoder(SourceConfig(local_roots=[root]), decode),
        embedder=VersionedEmbedder(inner),
        detector=NoDetector(),
        alert_sink=CollectingAlertSink(),
        index=index,
        dead_letters=dead,
        limits=LimitsConfig(),
        metrics=WorkerMetrics(),
    )
    jobs = []
    for i, name in enumerate(files):
        event = {"schema_version": 1, "event_id": f"mem-{i}", "video_id": f"mem-{i}", "tenant": "t",
                 "uri": str(root / name), "uploaded_at": "2026-11-22T04:30:00Z"}
        jobs.append(Job(value=json.dumps(event).encode(), offset=i))
    started = time.monotonic()
    pipeline.process(jobs)
    return {
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "wall_s": round(time.monotonic() - started, 2),
        "jobs": [
            {"file": name, "status": job.status, "reason": job.reason, "frames": index.rows.get(f"mem-{i}")}
            for i, (name, job) in enumerate(zip(files, jobs))
        ],
        "streamed": getattr(inner, "streamed", None),
        "batched": getattr(inner, "batches", None),
        "embedder": type(inner).__name__ if bundle is None else f"bundle {bundle}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--bundle", default=None, help="the worker's embedder on this model bundle instead of the test embedder")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.root.resolve(), args.files, crop=args.crop, timeout_s=args.timeout, bundle=args.bundle)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
