"""Which alert each webhook receiver has acknowledged, so a replayed event (crash, rebalance)
never sends the same alert twice to a receiver that answered 2xx.

:class:`SqliteDeliveryLog` keeps this in one SQLite file (WAL journal, survives restarts). It is
per-host: several worker pods need a shared log (a Milvus collection keyed by
``alert_id/receiver``, or a compacted Kafka topic) — not implemented here.

Semantics are at-least-once: a crash between the receiver's 2xx and :meth:`mark_delivered` sends
the alert again on replay, with the same ``webhook-id`` so the receiver can drop the duplicate.
Dead-lettered deliveries are recorded for audit but do not block a later re-send.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

__all__ = ["DeliveryRecord", "DeliveryLog", "SqliteDeliveryLog", "InMemoryDeliveryLog"]

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


class SqliteDeliveryLog:
    """Delivery log in a SQLite file (created with its folder if missing). Thread-safe."""

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
        with self._lock:
            row = self._conn.execute(
                "SELECT alert_id, receiver, state, status_code, attempts, reason, updated_at "
                "FROM webhook_deliveries WHERE alert_id = ? AND receiver = ?",
                (alert_id, receiver),
            ).fetchone()
        return None if row is None else DeliveryRecord(*row)

    def mark_delivered(self, alert_id: str, receiver: str, *, status_code: int, attempts: int, at: float) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO webhook_deliveries VALUES (?, ?, 'delivered', ?, ?, NULL, ?) "
                "ON CONFLICT (alert_id, receiver) DO UPDATE SET state = 'delivered', "
                "status_code = excluded.status_code, attempts = excluded.attempts, reason = NULL, "
                "updated_at = excluded.updated_at",
                (alert_id, receiver, status_code, attempts, at),
            )

    def mark_dead_letter(self, alert_id: str, receiver: str, *, reason: str, status_code: int | None, attempts: int, at: float) -> None:
        with self._lock:
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
