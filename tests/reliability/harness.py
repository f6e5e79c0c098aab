"""Fault-injection harness: a worker subprocess, event production, and the final bookkeeping.

The worker subprocess (``python -m tests.reliability.harness --config FILE``) is the real
``ingest.worker.Worker`` with the thumbnail stand-in embedder (``tests.ingest.embedders``), the
coarse-vector ``CopyDetector`` (so that reused files raise real ``copy`` alerts) and, when the
settings list webhooks, the product's webhook wiring (``ingest.worker.webhook_sinks``: the real
``WebhookSender`` with a SQLite delivery log at ``DUPWATCH_DELIVERY_LOG`` for Milvus Lite, or the
shared Milvus delivery log for a Milvus server).

The bookkeeping at the end of a scenario:

- events in = indexed (coarse row present) + dead-lettered (records on the DLQ topic);
- rows per video id: exactly one coarse row, frames/clips equal to the row's own counts;
- alerts: per ``alert_id`` on the alerts topic and per ``webhook-id`` acknowledged at the receiver.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from tests.detect.webhook_server import LoopbackHttpServer
from pathlib import Path
from typing import Any

from dupwatch.testing._process import ManagedProcess, free_ports
from tests.ingest.test_worker_helpers import (  # noqa: F401 - re-exported for the scenarios
    REPO,
    VIDEO_FILES,
    committed_offsets,
    end_offsets,
    http_get,
    make_settings,
    produce,
    read_topic,
    scrape,
    unique,
    upload_event,
    wait_for,
    write_config,
)

DELIVERY_LOG_ENV = "DUPWATCH_DELIVERY_LOG"


# -- the worker subprocess --------------------------------------------------------------------
def build_worker(settings: Any, delivery_log: Any = None, **kw: Any) -> Any:
    """The real Worker with the stand-in embedder, CopyDetector and (if configured) webhooks.

    ``delivery_log``: a path for a :class:`SqliteDeliveryLog`, or a ready delivery-log object."""
    from ingest.worker import WebhookAlertSink, Worker
    from tests.ingest.embedders import CopyDetector, ThumbnailEmbedder

    sinks: list[Any] = []
    if settings.webhooks and delivery_log is not None and not isinstance(delivery_log, (str, Path)):
        from detect.webhooks import WebhookSender

        sinks.append(WebhookAlertSink(WebhookSender(settings.webhooks, delivery_log)))
    elif settings.webhooks:  # the product wiring (``ingest.worker.webhook_sinks``), as ``serve`` does
        from ingest.worker import webhook_sinks

        path = Path(delivery_log or os.environ.get(DELIVERY_LOG_ENV, "deliveries.sqlite"))
        alerts = settings.alerts.model_copy(
            update={"sqlite_path": path, "milvus_collection": f"{settings.milvus.collection_prefix}_deliveries"}
        )
        sinks.extend(webhook_sinks(settings.model_copy(update={"alerts": alerts})))
    return Worker(
        settings,
        embedder=ThumbnailEmbedder(),
        detector_factory=lambda index: CopyDetector(index),
        alert_sinks=sinks,
        **kw,
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    from dupwatch.cli import configure_logging
    from dupwatch.config import load_settings
    from ingest.worker import install_signal_handlers

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    configure_logging(settings.log_level, settings.log_format)
    worker = build_worker(settings, Path(os.environ.get(DELIVERY_LOG_ENV, args.config.parent / "deliveries.sqlite")))
    install_signal_handlers(worker.stop)
    worker.run()
    return 0


class WorkerProcess:
    """``python -m tests.reliability.harness`` in its own process group (kill = SIGKILL the group)."""

    def __init__(self, config: Path, log_path: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.config, self.log_path, self.port = config, log_path, port
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = ManagedProcess(
            [sys.executable, "-m", "tests.reliability.harness", "--config", str(config)],
            log_path=log_path,
            cwd=REPO,
            env=full_env,
        )
        self.peak_rss_kib = 0

    def sample_rss(self) -> int:
        """VmHWM (peak resident set) of the worker process in KiB, read from /proc."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        return self.peak_rss_kib

    def alive(self) -> bool:
        if not self.proc.is_alive():
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}")
        return True

    def metrics(self) -> dict[str, float]:
        return scrape(self.port)

    def kill(self) -> int | None:
        self.sample_rss()
        return self.proc.kill()

    def stop(self, timeout: float = 30) -> int | None:
        self.sample_rss()
        return self.proc.stop(timeout=timeout)


def drained(settings: Any) -> bool:
    bootstrap, topic = settings.kafka.bootstrap_servers[0], settings.kafka.uploads_topic
    ends = end_offsets(bootstrap, topic)
    done = committed_offsets(bootstrap, settings.kafka.group_id, topic)
    return bool(ends) and all(done.get(p, 0) == end for p, end in ends.items())


# -- final bookkeeping -------------------------------------------------------------------------
@dataclass
class Tally:
    events_in: int
    indexed: int
    dead_lettered: int
    lost: int
    duplicate_rows: int
    alert_ids: int = 0
    duplicate_alerts_topic: int = 0
    webhook_ids: int = 0
    duplicate_webhook_acks: int = 0
    dlq_reasons: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> str:
        return (
            f"events_in={self.events_in} indexed={self.indexed} dead_lettered={self.dead_lettered} lost={self.lost} "
            f"duplicate_rows={self.duplicate_rows} alerts={self.alert_ids} duplicate_alerts={self.duplicate_alerts_topic}"
            f" webhook_ids={self.webhook_ids} duplicate_webhook_acks={self.duplicate_webhook_acks} {self.extra}"
        )


def dead_letters(settings: Any, expected: int = 0, timeout: float = 10.0) -> dict[str, str]:
    """``{video_id or offset: reason}`` of the uploads on the DLQ topic (later duplicates keep the
    first); webhook dead letters (an alert a receiver refused, ``webhook_*``) are not uploads and
    are read by :func:`webhook_dead_letters`."""
    out: dict[str, str] = {}
    for rec in read_topic(settings.kafka.bootstrap_servers[0], settings.kafka.dead_letter_topic, expected, timeout):
        body = json.loads(rec.value)
        if str(body.get("reason", "")).startswith("webhook_"):
            continue
        key = None
        try:
            event = json.loads(body.get("payload_text") or "")
            key = event.get("video_id") if isinstance(event, dict) else None
        except ValueError:
            pass
        if not isinstance(key, str):
            key = f"offset-{body.get('source_partition')}-{body.get('source_offset')}"
        out.setdefault(key, body.get("reason", "?"))
    return out


def webhook_dead_letters(settings: Any, expected: int = 0, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The webhook dead letters on the DLQ topic: ``{"alert_id", "receiver", "reason", "record"}``."""
    out = []
    for rec in read_topic(settings.kafka.bootstrap_servers[0], settings.kafka.dead_letter_topic, expected, timeout):
        body = json.loads(rec.value)
        if str(body.get("reason", "")).startswith("webhook_"):
            headers = {k: v.decode() for k, v in (rec.headers or [])}
            out.append({"alert_id": rec.key.decode(), "receiver": headers.get("dupwatch.webhook.receiver"),
                        "reason": body["reason"], "record": body})
    return out


def dead_letters_by_offset(settings: Any, expected: int, timeout: float = 20.0) -> dict[tuple[int, int], dict[str, Any]]:
    """``{(partition, offset): DeadLetterRecord JSON}`` (first record per source offset) and the
    number of records read (a second record for one offset would be a duplicate)."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    recs = read_topic(settings.kafka.bootstrap_servers[0], settings.kafka.dead_letter_topic, expected, timeout)
    for rec in recs:
        body = json.loads(rec.value)
        out.setdefault((body.get("source_partition"), body.get("source_offset")), body)
    out["records"] = len(recs)  # type: ignore[index]
    return out


def alerts_on_topic(settings: Any, timeout: float = 5.0) -> Counter:
    recs = read_topic(settings.kafka.bootstrap_servers[0], settings.kafka.alerts_topic, 10**9, timeout)
    return Counter(r.key.decode() for r in recs)


def count_rows(settings: Any, video_ids: list[str]) -> tuple[set[str], int, int]:
    """(indexed ids, duplicate-row count, total coarse rows in the collection)."""
    from index.store import VideoIndex
    from tests.ingest.embedders import ThumbnailEmbedder

    index = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        info = index.video_info(video_ids)
        duplicates = 0
        for vid in info:
            counts = index.count(vid)
            duplicates += max(0, counts.coarse - 1)
            duplicates += max(0, counts.frames - info[vid]["num_frames"]) + max(0, counts.clips - info[vid]["num_clips"])
        coarse = index.names["video_coarse"]
        total = index._call("count", lambda c: c.query(coarse, filter="", output_fields=["count(*)"]))
        return set(info), duplicates, int(total[0]["count(*)"])
    finally:
        index.close()


def tally(settings: Any, video_ids: list[str], receiver: "WebhookReceiver | None" = None, dlq_expected: int = 0) -> Tally:
    indexed, dup_rows, total = count_rows(settings, video_ids)
    dlq = dead_letters(settings, dlq_expected)
    dead = {v for v in dlq if v in set(video_ids)} | {v for v in dlq if v.startswith("offset-")}
    lost = len(set(video_ids) - indexed - set(dlq))
    alerts = alerts_on_topic(settings)
    t = Tally(
        events_in=len(video_ids),
        indexed=len(indexed),
        dead_lettered=len(dead),
        lost=lost,
        duplicate_rows=dup_rows + max(0, total - len(indexed)),
        alert_ids=len(alerts),
        duplicate_alerts_topic=sum(n - 1 for n in alerts.values()),
        dlq_reasons=dlq,
    )
    if receiver is not None:
        acked = Counter(receiver.acked)
        t.webhook_ids = len(acked)
        t.duplicate_webhook_acks = sum(n - 1 for n in acked.values())
    return t


# -- a webhook receiver whose behaviour the test switches at run time ---------------------------
class WebhookReceiver(LoopbackHttpServer):
    """Modes: ``ok`` (200), an int status (e.g. 500, 410), ``hang`` (sleep past the client's
    timeout), ``reset`` (abort the TCP connection). ``acked`` lists the ``webhook-id`` of every
    2xx answer, ``attempts`` of every request; signatures are checked with ``secret``."""

    def __init__(self, secret: str, mode: Any = "ok", hang_s: float = 2.0) -> None:
        from detect.signing import SigningKey

        self.mode = mode
        self.hang_s = hang_s
        self.acked: list[str] = []
        self.attempts: list[tuple[str, Any]] = []
        self.bad_signatures = 0
        self._key = SigningKey(secret)
        self._lock = threading.Lock()
        self.start(poll_interval=0.05)

    def handle(self, request: Any, body: bytes) -> None:
        wid = request.headers.get("webhook-id", "")
        mode = self.mode
        with self._lock:
            self.attempts.append((wid, mode))
        if mode == "reset":
            self.reset(request)
            return
        if mode == "hang":
            time.sleep(self.hang_s)
            request.close_connection = True
            return
        status = 200 if mode == "ok" else int(mode)
        if status == 200:
            if not self._verify(wid, body, request.headers):
                self.bad_signatures += 1
                status = 401
            else:
                with self._lock:
                    self.acked.append(wid)
        self.reply(request, status)

    def _verify(self, wid: str, body: bytes, headers: Any) -> bool:
        try:
            ts = int(headers.get("webhook-timestamp", "0"))
            expected = self._key.sign(wid, ts, body)
        except Exception:  # noqa: BLE001
            return False
        return expected in headers.get("webhook-signature", "").split()


def webhook_settings(settings: Any, receiver: WebhookReceiver, secret: str, name: str = "moderation", **kw: Any) -> Any:
    """``settings`` with one more webhook receiver (appended to those it has).

    The request timeout is 5 s unless a test that needs timeouts sets a shorter one: a receiver's 200
    arriving after the timeout is rightly retried and acked twice, so a short timeout on a loaded
    machine would show up as a duplicate delivery that the worker did not cause."""
    from dupwatch.config import WebhookConfig

    hook = WebhookConfig(
        name=name,
        url=receiver.url,
        secret=secret,
        **{"timeout_s": 5.0, "max_attempts": 3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2, **kw},
    )
    return settings.model_copy(update={"webhooks": [*settings.webhooks, hook]})


class InProcessWorker:
    """:func:`build_worker` on a thread of this process (for caplog and fault hooks)."""

    def __init__(self, settings: Any, delivery_log: Any) -> None:
        self.port = free_ports(1)[0]
        settings = settings.model_copy(update={"server": settings.server.model_copy(update={"port": self.port})})
        self.worker = build_worker(settings, delivery_log)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def alive(self) -> bool:
        if not self.thread.is_alive():
            raise AssertionError(f"worker thread ended: {self.error!r}")
        return True

    def __enter__(self) -> "InProcessWorker":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error is not None and exc[0] is None:
            raise self.error


def start_worker(settings: Any, tmp: Path, name: str = "worker", env: dict[str, str] | None = None) -> WorkerProcess:
    import yaml

    port = free_ports(1)[0]
    s = settings.model_copy(update={"server": settings.server.model_copy(update={"port": port})})
    data = s.model_dump(mode="json", by_alias=True)
    for i, hook in enumerate(data.get("webhooks", [])):  # secrets dump as '****': pass them as files
        secret_file = tmp / f"{name}-webhook-{i}.secret"
        secret_file.write_text(s.webhooks[i].secret.get_secret_value())
        hook.pop("secret", None)
        hook["secret_file"] = str(secret_file)
        hook["previous_secrets"] = []
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump(data))
    return WorkerProcess(config, tmp / f"{name}.log", port, {DELIVERY_LOG_ENV: str(tmp / "deliveries.sqlite"), **(env or {})})


if __name__ == "__main__":
    sys.exit(main())
