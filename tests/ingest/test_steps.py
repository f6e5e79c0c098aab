"""The chain of steps (ingest.steps): cross-upload batching, backpressure, order, commits, wrappers."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import pytest

from dupwatch.config import LimitsConfig
from dupwatch.errors import TransientError
from dupwatch.records import DecodedVideo
from ingest.consumer import OffsetTracker
from ingest.metrics import WorkerMetrics
from ingest.pipeline import CollectingAlertSink, Job, Pipeline, StepContext
from ingest.steps import Envelope, FaultInjection, MessageRejected, StageClock, Timed
from ingest.worker import IndexWriteFault
from tests.ingest.embedders import ThumbnailEmbedder

FRAMES = 4
"""Frames per fake upload: 4 × 32² × 3 bytes."""


class FakeDecoder:
    """Decodes ``uri`` ``colour:N`` into FRAMES flat frames of grey level N; ``gate`` holds decodes."""

    def __init__(self, gate: threading.Event | None = None, fail_first: set[str] = frozenset()) -> None:
        self.gate = gate
        self.calls: list[str] = []
        self.fail_first = set(fail_first)
        self.lock = threading.Lock()

    def decode(self, video_id: str, uri: str) -> DecodedVideo:
        with self.lock:
            self.calls.append(video_id)
            fail = video_id in self.fail_first
            self.fail_first.discard(video_id)
        if self.gate is not None:
            assert self.gate.wait(10)
        if fail:
            raise TransientError("flaky download", reason="download_failed")
        level = int(uri.split(":")[1])
        return DecodedVideo(video_id=video_id, frames=np.full((FRAMES, 32, 32, 3), level, np.uint8),
                            timestamps=np.arange(FRAMES, dtype=np.float32), duration_s=float(FRAMES), source_width=32,
                            source_height=32)


class RecordingEmbedder(ThumbnailEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def embed(self, decoded, tenant):  # type: ignore[override]
        self.calls.append([decoded.video_id])
        return super().embed(decoded, tenant)

    def embed_batch(self, videos, tenants):  # type: ignore[override]
        self.calls.append([v.video_id for v in videos])
        return [ThumbnailEmbedder.embed(self, v, t) for v, t in zip(videos, tenants)]


class MemoryIndex:
    def __init__(self) -> None:
        self.reps: dict[str, Any] = {}
        self.order: list[str] = []

    def upsert(self, rep: Any) -> None:
        self.reps[rep.video_id] = rep
        self.order.append(rep.video_id)


LEVELS: dict[str, int] = {}
"""Grey level of each fake upload by video id (what the detector compares)."""


class SameColourDetector:
    """Alerts on every earlier indexed upload of the same grey level: needs them indexed first."""

    def __init__(self, index: MemoryIndex) -> None:
        self.index = index

    def detect(self, rep: Any) -> list[Any]:
        from dupwatch.events import make_alert_id

        out = []
        for vid in self.index.reps:
            if vid != rep.video_id and LEVELS[vid] == LEVELS[rep.video_id]:
                out.append(_Alert(make_alert_id("t", rep.video_id, vid, "copy", "v"), rep.video_id, vid))
        return out


class _Alert:
    level = "copy"

    def __init__(self, alert_id: str, video_id: str, matched: str) -> None:
        self.alert_id, self.video_id, self.matched_video_id = alert_id, video_id, matched


class Dead:
    def __init__(self) -> None:
        self.reasons: dict[int, str] = {}

    def send(self, job: Any, error: Any) -> None:
        self.reasons[job.offset] = error.reason


def event(i: int, level: int) -> bytes:
    return json.dumps({"schema_version": 1, "event_id": f"e{i}", "video_id": f"v{i}", "tenant": "t", "uri": f"colour:{level}",
                       "uploaded_at": "2026-12-01T00:00:00Z"}).encode()


def make(*, decoder: Any = None, threads: int = 0, wait: float | None = None, limits: LimitsConfig | None = None,
         wrap: Any = None) -> tuple[Pipeline, RecordingEmbedder, MemoryIndex, CollectingAlertSink, Dead]:
    embedder, index, alerts, dead = RecordingEmbedder(), MemoryIndex(), CollectingAlertSink(), Dead()
    pipeline = Pipeline(decoder=decoder or FakeDecoder(), embedder=embedder, detector=SameColourDetector(index), alert_sink=alerts,
                        index=index, dead_letters=dead, limits=limits or LimitsConfig(retry_backoff_initial_s=0.01),
                        metrics=WorkerMetrics(), decode_threads=threads, embed_max_wait_s=wait, wrap=wrap)
    return pipeline, embedder, index, alerts, dead


def jobs_for(levels: list[int]) -> list[Job]:
    LEVELS.update({f"v{i}": level for i, level in enumerate(levels)})
    return [Job(value=event(i, level), topic="uploads", partition=0, offset=i) for i, level in enumerate(levels)]


def test_frames_of_several_uploads_share_one_embed_call() -> None:
    pipeline, embedder, index, _, _ = make(threads=0)
    jobs = jobs_for([10, 20, 10, 30])
    pipeline.process(jobs)
    assert [j.status for j in jobs] == ["indexed"] * 4
    assert embedder.calls == [["v0", "v1", "v2", "v3"]]  # 16 frames < batch_frames: one call
    assert index.order == ["v0", "v1", "v2", "v3"]


class SlowDetector(SameColourDetector):
    def detect(self, rep: Any) -> list[Any]:
        time.sleep(0.3)
        return super().detect(rep)


def test_uploads_decoded_while_one_is_decided_share_an_embed_call() -> None:
    pipeline, embedder, index, _, _ = make(threads=2)
    pipeline.detector = SlowDetector(index)
    jobs = jobs_for([10, 20, 10, 30, 40, 50])
    pipeline.process(jobs)
    pipeline.close()
    assert [j.status for j in jobs] == ["indexed"] * 6
    assert max(len(call) for call in embedder.calls) >= 2, embedder.calls
    assert index.order == [f"v{i}" for i in range(6)]  # decided in event order


def test_embed_batches_up_to_the_frame_budget() -> None:
    pipeline, embedder, _, _, _ = make(threads=2, limits=LimitsConfig(batch_frames=2 * FRAMES))
    pipeline.process(jobs_for([1, 2, 3, 4, 5]))
    pipeline.close()
    assert all(len(call) <= 2 for call in embedder.calls)
    assert sum(len(call) for call in embedder.calls) == 5 and max(len(call) for call in embedder.calls) == 2


def test_a_full_decode_step_rejects_until_a_decode_finishes() -> None:
    gate = threading.Event()
    pipeline, _, _, _, _ = make(decoder=FakeDecoder(gate=gate), threads=1)
    chain = pipeline.chain
    running, queued, second = jobs_for([1, 2, 3])
    chain.submit(Envelope.of(running))
    chain.submit(Envelope.of(queued))  # one thread: one decoding, one waiting for it
    with pytest.raises(MessageRejected):
        chain.submit(Envelope.of(second))
    assert second.event is not None and second.status == "pending"  # parsed once, kept by the caller
    gate.set()
    deadline = time.monotonic() + 10
    while True:
        try:
            chain.submit(Envelope.of(second))
            break
        except MessageRejected:
            assert time.monotonic() < deadline
            chain.poll()
            time.sleep(0.01)
    chain.join()
    assert [e.job.status for e in chain.drain()] == ["indexed"] * 3
    pipeline.close()


def test_a_full_decoded_bytes_budget_rejects() -> None:
    pipeline, _, _, _, _ = make(threads=2, wait=None)
    chain = pipeline.chain
    chain.budget.add(chain.budget.limit)  # what embed holds fills the budget
    with pytest.raises(MessageRejected):
        chain.submit(Envelope.of(jobs_for([1])[0]))
    chain.budget.release(chain.budget.limit)
    pipeline.close()


@pytest.mark.parametrize("threads", [0, 2])
def test_serial_and_pipelined_raise_the_same_alerts(threads: int) -> None:
    levels = [1, 2, 1, 3, 2, 1, 4, 1]
    serial, _, _, serial_alerts, _ = make(threads=0)
    for job in jobs_for(levels):
        serial.process([job])  # one upload in flight
    pipelined, _, _, pipelined_alerts, _ = make(threads=threads, wait=0.0)
    pipelined.process(jobs_for(levels))
    pipelined.close()
    assert sorted(serial_alerts.alerts) == sorted(pipelined_alerts.alerts)
    assert len(serial_alerts.alerts) == 1 + 2 + 3 + 1  # level 1: 1+2+3 earlier copies; level 2: 1


def test_offsets_commit_only_past_finished_work() -> None:
    pipeline, _, _, _, _ = make(threads=2)
    jobs = jobs_for([1, 2, 3, 4])
    revoked = {2}
    pipeline.process(jobs, StepContext(revoked=lambda job: job.offset in revoked))
    pipeline.close()
    assert [j.status for j in jobs] == ["indexed", "indexed", "aborted", "indexed"]
    tracker = OffsetTracker()
    for job in jobs:
        tracker.add(job.tp, job.offset)
    for job in jobs:
        if job.finished:
            tracker.finish(job.tp, job.offset)
    assert tracker.committable() == {("uploads", 0): 2}  # never past the aborted offset 2


def test_a_failed_first_decode_on_the_pool_is_retried_on_the_calling_thread() -> None:
    decoder = FakeDecoder(fail_first={"v1"})
    pipeline, _, index, _, dead = make(decoder=decoder, threads=2)
    jobs = jobs_for([1, 2, 3])
    pipeline.process(jobs)
    pipeline.close()
    assert [j.status for j in jobs] == ["indexed"] * 3 and not dead.reasons
    assert decoder.calls.count("v1") == 2 and jobs[1].attempts == 1
    assert index.order == ["v0", "v1", "v2"]


def test_fault_injection_and_timing_are_wrapper_steps() -> None:
    entered: list[str] = []
    clock = StageClock()

    def wrap(name: str, step: Any) -> Any:
        step = Timed(step, name, clock)
        return FaultInjection(step, name, entered.append) if name in ("decode", "decide") else step

    pipeline, _, _, _, _ = make(threads=2, wrap=wrap)
    pipeline.process(jobs_for([1, 2, 3]))
    pipeline.close()
    assert entered.count("decode") == 3 and entered.count("decide") == 3
    assert set(clock.seconds) >= {"parse", "skip_replay", "decode", "embed", "decide"}


def test_the_index_write_fault_is_a_milvus_call_wrapper() -> None:
    from dupwatch.config import MilvusConfig
    from index.schema import IndexDims
    from index.store import VideoIndex

    index = VideoIndex(MilvusConfig(uri="http://127.0.0.1:1"), IndexDims(coarse=4, clip=4, regions=1, region_dim=4))
    hits: list[str] = []
    index.add_call_wrapper(IndexWriteFault(hits.append))
    index._call_client = lambda what, fn: what  # type: ignore[method-assign] - no Milvus here
    assert index._call("upsert frames", lambda c: None) == "upsert frames"
    assert index._call("query coarse", lambda c: None) == "query coarse"
    assert index._call("insert clips", lambda c: None) == "insert clips"
    assert hits == ["index_write", "index_write"]
    assert "_call" not in vars(index)  # the method itself is never replaced


class TimedEmbedder(RecordingEmbedder):
    """Records on which thread and when each embedder call ran; the first ``fail`` calls raise."""

    def __init__(self, seconds: float = 0.0, fail: int = 0) -> None:
        super().__init__()
        self.seconds, self.fail = seconds, fail
        self.spans: list[tuple[int, float, float]] = []

    def _call(self, fn: Any) -> Any:
        t0 = time.monotonic()
        try:
            if self.fail:
                self.fail -= 1
                raise TransientError("model server hiccup", reason="inference_failed")
            time.sleep(self.seconds)
            return fn()
        finally:
            self.spans.append((threading.get_ident(), t0, time.monotonic()))

    def embed(self, decoded, tenant):  # type: ignore[override]
        return self._call(lambda: super(TimedEmbedder, self).embed(decoded, tenant))

    def embed_batch(self, videos, tenants):  # type: ignore[override]
        return self._call(lambda: super(TimedEmbedder, self).embed_batch(videos, tenants))


class SpanDetector(SameColourDetector):
    def __init__(self, index: MemoryIndex, seconds: float) -> None:
        super().__init__(index)
        self.seconds = seconds
        self.spans: list[tuple[int, float, float]] = []

    def detect(self, rep: Any) -> list[Any]:
        t0 = time.monotonic()
        time.sleep(self.seconds)
        out = super().detect(rep)
        self.spans.append((threading.get_ident(), t0, time.monotonic()))
        return out


def test_embed_runs_on_its_own_thread_while_the_calling_thread_decides() -> None:
    pipeline, _, index, alerts, _ = make(threads=2, wait=0.0)
    embedder = TimedEmbedder(seconds=0.15)
    pipeline.embedder = embedder
    detector = SpanDetector(index, seconds=0.15)
    pipeline.detector = detector
    jobs = jobs_for([1, 2, 1, 3, 1, 4, 2, 5])
    pipeline.process(jobs)
    pipeline.close()
    assert [j.status for j in jobs] == ["indexed"] * 8
    assert index.order == [f"v{i}" for i in range(8)]  # decided in event order
    assert len(alerts.alerts) == 1 + 2 + 1  # level 1: 1+2 earlier copies; level 2: 1
    me = threading.get_ident()
    assert {t for t, _, _ in detector.spans} == {me}
    assert all(t != me for t, _, _ in embedder.spans), "every embedder call ran off the calling thread"
    overlapped = any(e0 < d1 and d0 < e1 for _, e0, e1 in embedder.spans for _, d0, d1 in detector.spans)
    assert overlapped, "an embed batch ran while an earlier upload was being decided"


def test_a_failed_embed_on_the_embed_thread_is_retried_on_the_calling_thread() -> None:
    pipeline, _, index, _, dead = make(threads=2, wait=0.0)
    embedder = TimedEmbedder(fail=1)
    pipeline.embedder = embedder
    jobs = jobs_for([1, 2, 3])
    pipeline.process(jobs)
    pipeline.close()
    assert [j.status for j in jobs] == ["indexed"] * 3 and not dead.reasons
    me = threading.get_ident()
    assert embedder.spans[0][0] != me  # the first call, on the embed thread, failed
    assert any(t == me for t, _, _ in embedder.spans[1:])  # its retry ran on the calling thread
    assert index.order == ["v0", "v1", "v2"]


def test_an_idle_embed_thread_takes_held_frames_without_waiting_for_the_timer() -> None:
    pipeline, embedder, index, _, _ = make(threads=2, wait=10.0, limits=LimitsConfig(batch_frames=4 * FRAMES))
    t0 = time.monotonic()
    pipeline.process(jobs_for([1, 2, 3, 4, 5, 6]))
    pipeline.close()
    assert time.monotonic() - t0 < 5  # nothing waited for the 10 s timer
    assert len(embedder.calls) >= 2, embedder.calls  # not one call at the join
    assert len(embedder.calls[0]) >= 2, embedder.calls  # 16 frames (IDLE_BATCH_FRAMES) are 4 uploads
    assert index.order == [f"v{i}" for i in range(6)]
