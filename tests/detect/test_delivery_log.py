"""The delivery-log contract, run against every implementation (SQLite, in-memory, Milvus Lite)."""

from __future__ import annotations

import pytest

from detect.delivery_log import DeliveryLog, InMemoryDeliveryLog, MilvusDeliveryLog, SqliteDeliveryLog


@pytest.fixture(params=["memory", "sqlite", "milvus_lite"])
def make_log(request, tmp_path):
    opened = []

    def make():
        if request.param == "memory":
            if not opened:
                opened.append(InMemoryDeliveryLog())
            return opened[0]  # "reopening" an in-memory log is the same object
        if request.param == "sqlite":
            log = SqliteDeliveryLog(tmp_path / "d.sqlite")
            opened.append(log)
            return log
        pymilvus = pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
        client = pymilvus.MilvusClient(uri=str(tmp_path / "milvus.db"))
        opened.append(client)
        return MilvusDeliveryLog(client, collection="deliveries_test")

    yield make
    for item in opened:
        item.close() if hasattr(item, "close") else None


def test_contract(make_log):
    log = make_log()
    assert isinstance(log, DeliveryLog)
    assert log.get("a1", "mod") is None and not log.is_delivered("a1", "mod")
    log.mark_dead_letter("a1", "mod", reason="http_500", status_code=500, attempts=3, at=1.0)
    rec = log.get("a1", "mod")
    assert (rec.state, rec.reason, rec.status_code, rec.attempts) == ("dead_letter", "http_500", 500, 3)
    assert not log.is_delivered("a1", "mod")  # a dead letter does not block a later send
    log.mark_delivered("a1", "mod", status_code=204, attempts=1, at=2.0)
    assert log.is_delivered("a1", "mod")
    # never downgraded
    log.mark_dead_letter("a1", "mod", reason="http_410", status_code=410, attempts=1, at=3.0)
    assert log.get("a1", "mod").state == "delivered"
    # per receiver; ids that could collide when naively joined do not
    assert not log.is_delivered("a1", "other")
    log.mark_delivered("x:y", "r", status_code=200, attempts=1, at=4.0)
    assert not log.is_delivered("y", "r:x") and log.is_delivered("x:y", "r")
    # survives reopening
    again = make_log()
    assert again.is_delivered("a1", "mod")
    assert again.get("a1", "mod").status_code == 204


def test_sqlite_failure_is_transient(tmp_path):
    from dupwatch.errors import TransientError

    log = SqliteDeliveryLog(tmp_path / "d.sqlite")
    log._conn.execute("DROP TABLE webhook_deliveries")  # simulate broken storage
    with pytest.raises(TransientError) as info:
        log.mark_delivered("a", "b", status_code=200, attempts=1, at=0.0)
    assert info.value.reason == "delivery_log_unavailable"
    log.close()
