"""Which alert each webhook receiver has acknowledged, so a replayed event (crash, rebalance)
never sends the same alert twice to a receiver that answered 2xx.

:class:`SqliteDeliveryLog` keeps this in one SQLite file (WAL journal, survives restarts). It is
per-host. Several worker pods need a shared log: :class:`MilvusDeliveryLog` keeps the same rows in
a Milvus collection (scalar primary key ``receiver + alert_id``, a dummy 2-d vector because Milvus
requires one); a compacted Kafka topic would be the other option (not implemented).

Semantics are at-least-once: a crash between the receiver's 2xx and :meth:`mark_delivered` sends
the alert again on replay, with the same ``webhook-id`` so the receiver can drop the duplicate.
Dead-lettered deliveries are recorded for audit but do not block a later re-send.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dupwatch.errors import TransientError
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

__all__ = ["DeliveryRecord", "DeliveryLog", "SqliteDeliveryLog", "InMemoryDeliveryLog", "MilvusDeliveryLog"]

State = Literal["delivered", "dead_letter"]


@dataclass(frozen=True)
class DeliveryRecord:
    alert_id: str
    receiver: str
    state: State
    status_code: int | None
    attempts: int
    reason: str | None
    updated_at: float


@runtime_checkable
class DeliveryLog(Protocol):
    def is_delivered(self, alert_id: str, receiver: str) -> bool: ...

    def mark_delivered(self, alert_id: str, receiver: str, *, status_code: int, attempts: int, at: float) -> None: ...

    def mark_dead_letter(self, alert_id: str, receiver: str, *, reason: str, status_code: int | None, attempts: int, at: float) -> None: ...

    def get(self, alert_id: str, receiver: str) -> DeliveryRecord | None: ...


class InMemoryDeliveryLog:
    """For tests and one-shot tools; forgets everything at exit."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], DeliveryRecord] = {}
        self._lock = threading.Lock()

    def is_delivered(self, alert_id: str, receiver: str) -> bool:
        rec = self._rows.get((alert_id, receiver))
        return rec is not None and rec.state == "delivered"

    def mark_delivered(self, alert_id: str, receiver: str, *, status_code: int, attempts: int, at: float) -> None:
        with self._lock:
            self._rows[(alert_id, receiver)] = DeliveryRecord(alert_id, receiver, "delivered", status_code, attempts, None, at)

    def mark_dead_letter(self, alert_id: str, receiver: str, *, reason: str, status_code: int | None, attempts: int, at: float) -> None:
        with self._lock:
            if self.is_delivered(alert_id, receiver):
                return
            self._rows[(alert_id, receiver)] = DeliveryRecord(alert_id, receiver, "dead_letter", status_code, attempts, reason, at)

    def get(self, alert_id: str, receiver: str) -> DeliveryRecord | None:
        return self._rows.get((alert_id, receiver))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    alert_id    TEXT NOT NULL,
    receiver    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('delivered', 'dead_letter')),
    status_code INTEGER,
    attempts    INTEGER NOT NULL,
    reason      TEXT,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (alert_id, receiver)
)
"""


@contextlib.contextmanager
def _sqlite_errors(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:  # locked, disk I/O, disk full: retry later
        raise TransientError(f"delivery log {what} failed: {exc}", reason="delivery_log_unavailable") from exc


class SqliteDeliveryLog:
    """Delivery log in a SQLite file (created with its folder if missing). Thread-safe.
    Locked or failing storage raises :class:`~dupwatch.errors.TransientError`."""

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=timeout_s, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(_SCHEMA)

    def is_delivered(self, alert_id: str, receiver: str) -> bool:
        rec = self.get(alert_id, receiver)
        return rec is not None and rec.state == "delivered"

    def get(self, alert_id: str, receiver: str) -> DeliveryRecord | None:
        with self._lock, _sqlite_errors("read"):
            row = self._conn.execute(
                "SELECT alert_id, receiver, state, status_code, attempts, reason, updated_at "
                "FROM webhook_deliveries WHERE alert_id = ? AND receiver = ?",
                (alert_id, receiver),
            ).fetchone()
        return None if row is None else DeliveryRecord(*row)

    def mark_delivered(self, alert_id: str, receiver: str, *, status_code: int, attempts: int, at: float) -> None:
        with self._lock, _sqlite_errors("write"):
            self._conn.execute(
                "INSERT INTO webhook_deliveries VALUES (?, ?, 'delivered', ?, ?, NULL, ?) "
                "ON CONFLICT (alert_id, receiver) DO UPDATE SET state = 'delivered', "
                "status_code = excluded.status_code, attempts = excluded.attempts, reason = NULL, "
                "updated_at = excluded.updated_at",
                (alert_id, receiver, status_code, attempts, at),
            )

    def mark_dead_letter(self, alert_id: str, receiver: str, *, reason: str, status_code: int | None, attempts: int, at: float) -> None:
        with self._lock, _sqlite_errors("write"):
            # never downgrade an acknowledged delivery
            self._conn.execute(
                "INSERT INTO webhook_deliveries VALUES (?, ?, 'dead_letter', ?, ?, ?, ?) "
                "ON CONFLICT (alert_id, receiver) DO UPDATE SET state = 'dead_letter', "
                "status_code = excluded.status_code, attempts = excluded.attempts, reason = excluded.reason, "
                "updated_at = excluded.updated_at WHERE webhook_deliveries.state != 'delivered'",
                (alert_id, receiver, status_code, attempts, reason, at),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "SqliteDeliveryLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteDeliveryLog({str(self.path)!r})"


class MilvusDeliveryLog:
    """Delivery log in a Milvus collection, shared by every worker pod.

    ``client`` is a ``pymilvus.MilvusClient`` (server or Milvus Lite). Rows are upserted by the
    primary key ``"{len(receiver)}:{receiver}:{alert_id}"``; reads use Strong consistency so a pod
    sees another pod's acknowledgement. ``mark_dead_letter`` reads before it writes, so two pods
    racing on one alert could overwrite a fresh ``delivered`` row with ``dead_letter``: the cost is
    one duplicate send on a later replay (receivers dedupe by ``webhook-id``).
    """

    FIELDS = ("alert_id", "receiver", "state", "status_code", "attempts", "reason", "updated_at")
    MAX_ID_CHARS = 512

    def __init__(self, client: Any, collection: str = "dupwatch_webhook_deliveries", *, timeout_s: float = 30.0) -> None:
        self._client = client
        self.collection = collection
        self._timeout = timeout_s
        self._lock = threading.Lock()
        if not client.has_collection(collection, timeout=timeout_s):
            self._create()
        client.load_collection(collection, timeout=timeout_s)

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=self.MAX_ID_CHARS + 80)
        schema.add_field("alert_id", DataType.VARCHAR, max_length=self.MAX_ID_CHARS)
        schema.add_field("receiver", DataType.VARCHAR, max_length=64)
        schema.add_field("state", DataType.VARCHAR, max_length=16)
        schema.add_field("status_code", DataType.INT64)
        schema.add_field("attempts", DataType.INT64)
        schema.add_field("reason", DataType.VARCHAR, max_length=128)
        schema.add_field("updated_at", DataType.DOUBLE)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
        index = self._client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
        self._client.create_collection(self.collection, schema=schema, index_params=index,
                                       consistency_level="Strong", timeout=self._timeout)

    @contextlib.contextmanager
    def _milvus_errors(self, what: str) -> Iterator[None]:
        from pymilvus.exceptions import MilvusException

        with self._lock:
            try:
                yield
            except (MilvusException, ConnectionError, TimeoutError) as exc:
                raise TransientError(f"delivery log {what} failed: {type(exc).__name__}", reason="delivery_log_unavailable") from exc

    @staticmethod
    def _pk(alert_id: str, receiver: str) -> str:
        return f"{len(receiver)}:{receiver}:{alert_id}"

    def get(self, alert_id: str, receiver: str) -> DeliveryRecord | None:
        if len(alert_id) > self.MAX_ID_CHARS:
            raise ValueError(f"alert_id longer than {self.MAX_ID_CHARS} characters")
        with self._milvus_errors("read"):
            rows = self._client.get(self.collection, ids=[self._pk(alert_id, receiver)],
                                    output_fields=list(self.FIELDS), timeout=self._timeout)
        if not rows:
            return None
        r = rows[0]
        return DeliveryRecord(
            alert_id=r["alert_id"], receiver=r["receiver"], state=r["state"],
            status_code=None if int(r["status_code"]) < 0 else int(r["status_code"]),
            attempts=int(r["attempts"]), reason=r["reason"] or None, updated_at=float(r["updated_at"]),
        )

    def is_delivered(self, alert_id: str, receiver: str) -> bool:
        rec = self.get(alert_id, receiver)
        return rec is not None and rec.state == "delivered"

    def _upsert(self, alert_id: str, receiver: str, state: str, status_code: int | None, attempts: int,
                reason: str | None, at: float) -> None:
        if len(alert_id) > self.MAX_ID_CHARS:
            raise ValueError(f"alert_id longer than {self.MAX_ID_CHARS} characters")
        row = {
            "id": self._pk(alert_id, receiver), "alert_id": alert_id, "receiver": receiver, "state": state,
            "status_code": -1 if status_code is None else int(status_code), "attempts": int(attempts),
            "reason": (reason or "")[:128], "updated_at": float(at), "vector": [0.0, 0.0],
        }
        with self._milvus_errors("write"):
            self._client.upsert(self.collection, [row], timeout=self._timeout)

    def mark_delivered(self, alert_id: str, receiver: str, *, status_code: int, attempts: int, at: float) -> None:
        self._upsert(alert_id, receiver, "delivered", status_code, attempts, None, at)

    def mark_dead_letter(self, alert_id: str, receiver: str, *, reason: str, status_code: int | None, attempts: int, at: float) -> None:
        if self.is_delivered(alert_id, receiver):
            return
        self._upsert(alert_id, receiver, "dead_letter", status_code, attempts, reason, at)

    def __repr__(self) -> str:
        return f"MilvusDeliveryLog({self.collection!r})"
