"""The real test services work: Kafka offsets/consumer groups, Milvus server and Milvus Lite search,
and clear errors when a prerequisite is missing."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from dupwatch.testing.errors import ServiceUnavailable
from dupwatch.testing.kafka_broker import KafkaBroker

# ---- Kafka ------------------------------------------------------------------------------------


def _drain(consumer, want: int, timeout: float = 30.0) -> list:  # type: ignore[no-untyped-def]
    """Poll until ``want`` records arrived (or timeout); returns them in arrival order."""
    records: list = []
    deadline = time.monotonic() + timeout
    while len(records) < want and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def test_consumer_group_resumes_after_committed_offset(kafka_broker, kafka_topic_factory) -> None:  # type: ignore[no-untyped-def]
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    topic = kafka_topic_factory(partitions=2)
    assert kafka_broker.create_topic(topic, 2) == topic  # creating an existing topic is harmless
    group = f"group-{uuid.uuid4().hex[:8]}"
    per_partition = 10
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
    for i in range(per_partition):
        for partition in (0, 1):
            producer.send(topic, value=f"p{partition}-m{i}".encode(), partition=partition)
    producer.flush(timeout=30)
    producer.close()

    common = dict(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    first = KafkaConsumer(topic, **common)
    records = _drain(first, 2 * per_partition)
    assert len(records) == 2 * per_partition
    for partition in (0, 1):  # per-partition order is kept
        values = [r.value.decode() for r in records if r.partition == partition]
        assert values == [f"p{partition}-m{i}" for i in range(per_partition)]
    # Pretend only the first 4 (partition 0) and 7 (partition 1) records were processed.
    processed = {0: 4, 1: 7}
    tps = {p: TopicPartition(topic, p) for p in processed}
    first.commit({tps[p]: OffsetAndMetadata(n, "", -1) for p, n in processed.items()})
    assert {p: first.committed(tps[p]) for p in processed} == processed
    first.close()

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        offsets = admin.list_group_offsets({group: None})
    finally:
        admin.close()
    group_offsets = offsets[group] if group in offsets else offsets
    assert {tp.partition: meta.offset for tp, meta in group_offsets.items() if tp.topic == topic} == processed

    second = KafkaConsumer(topic, **common)
    try:
        resumed = _drain(second, sum(per_partition - n for n in processed.values()))
        time.sleep(0.5)
        resumed.extend(r for batch in second.poll(timeout_ms=500).values() for r in batch)  # nothing extra
    finally:
        second.close()
    for partition, done in processed.items():
        got = [(r.offset, r.value.decode()) for r in resumed if r.partition == partition]
        assert got == [(i, f"p{partition}-m{i}") for i in range(done, per_partition)]


def test_kafka_broker_address_log_and_topic_fixture(kafka_broker, kafka_topic) -> None:  # type: ignore[no-untyped-def]
    from kafka import KafkaAdminClient

    host, port = kafka_broker.bootstrap_servers.split(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert kafka_broker.is_running
    assert "Kafka Server started" in kafka_broker.log_path.read_text(errors="replace")
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        (meta,) = admin.describe_topics([kafka_topic])
    finally:
        admin.close()
    assert meta["error_code"] == 0 and len(meta["partitions"]) == 1
    assert kafka_topic.startswith("test.test_kafka_broker_address_log_and_topic_fixture.")


# ---- Milvus -----------------------------------------------------------------------------------


def _float_roundtrip(uri: str) -> None:
    """Create a COSINE float collection, insert, index, load, search; check the neighbours."""
    from pymilvus import DataType, MilvusClient

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((64, 16)).astype(np.float32)
    client = MilvusClient(uri=uri)
    name = f"floats_{uuid.uuid4().hex[:8]}"
    try:
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=16)
        index = client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
        client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
        result = client.insert(name, [{"id": 1000 + i, "vector": v.tolist()} for i, v in enumerate(vectors)])
        assert result["insert_count"] == len(vectors)
        client.flush(name)
        client.load_collection(name)
        # COSINE ignores scale: a scaled, slightly perturbed copy of vector 17 must find id 1017.
        queries = [(3.0 * vectors[17] + 0.01 * rng.standard_normal(16)).tolist(), (-vectors[5]).tolist()]
        hits = client.search(name, data=queries, limit=3, search_params={"metric_type": "COSINE"})
        assert hits[0][0]["id"] == 1017
        assert hits[0][0]["distance"] == pytest.approx(1.0, abs=1e-3)
        assert hits[0][0]["distance"] > hits[0][1]["distance"]
        # The exact farthest vector from -v5 is v5 itself, so it must not be among the nearest.
        assert 1005 not in [h["id"] for h in hits[1]]
        expected = np.argsort(-(vectors @ -vectors[5]) / np.linalg.norm(vectors, axis=1))[0]
        assert hits[1][0]["id"] == 1000 + int(expected)
    finally:
        client.drop_collection(name)
        client.close()


def test_milvus_server_float_cosine_search(milvus_server) -> None:  # type: ignore[no-untyped-def]
    assert milvus_server.uri.startswith("http://127.0.0.1:")
    _float_roundtrip(milvus_server.uri)


def test_milvus_server_binary_hamming_search(milvus_server) -> None:  # type: ignore[no-untyped-def]
    from pymilvus import DataType, MilvusClient

    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, size=(40, 8), dtype=np.uint8)  # 64-bit codes
    query = codes[5].copy()
    query[0] ^= 0b0000_0101  # flip two bits
    client = MilvusClient(uri=milvus_server.uri)
    name = f"codes_{uuid.uuid4().hex[:8]}"
    try:
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("code", DataType.BINARY_VECTOR, dim=64)
        index = client.prepare_index_params()
        index.add_index(field_name="code", index_type="BIN_FLAT", metric_type="HAMMING")
        client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
        client.insert(name, [{"id": i, "code": c.tobytes()} for i, c in enumerate(codes)])
        client.flush(name)
        client.load_collection(name)
        hits = client.search(name, data=[query.tobytes()], anns_field="code", limit=2,
                             search_params={"metric_type": "HAMMING"})
        assert hits[0][0]["id"] == 5
        assert hits[0][0]["distance"] == pytest.approx(2.0)
        bits = np.unpackbits(codes ^ query, axis=1).sum(axis=1)
        assert hits[0][1]["distance"] == pytest.approx(float(np.sort(bits)[1]))
    finally:
        client.drop_collection(name)
        client.close()


def test_milvus_lite_float_cosine_search(milvus_lite_uri) -> None:  # type: ignore[no-untyped-def]
    _float_roundtrip(milvus_lite_uri)
    assert Path(milvus_lite_uri).exists()


# ---- missing prerequisites --------------------------------------------------------------------


def _path_with_only(tmp_path: Path, *tools: str) -> str:
    """A PATH holding links to just ``tools`` (so others, like java or mvn, are missing)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed here")
        (folder / tool).symlink_to(os.path.realpath(found))
    return str(folder)


def test_kafka_broker_without_java_says_what_to_install(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", _path_with_only(tmp_path))
    broker = KafkaBroker(data_dir=tmp_path / "kafka", cache_dir=tmp_path / "cache")
    with pytest.raises(ServiceUnavailable) as info:
        broker.start()
    message = str(info.value)
    assert "Java 17+ not found on PATH" in message and "openjdk-17-jre-headless" in message
    assert "\n" not in message
    assert not broker.is_running


def test_kafka_broker_without_maven_and_no_cached_jars(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", _path_with_only(tmp_path, "java"))
    broker = KafkaBroker(data_dir=tmp_path / "kafka", cache_dir=tmp_path / "empty-cache")
    with pytest.raises(ServiceUnavailable) as info:
        broker.start()
    message = str(info.value)
    assert "Maven (mvn) not found on PATH" in message and "apt-get install maven" in message
    assert str(tmp_path / "empty-cache") in message
    assert "\n" not in message
    assert not broker.is_running


# ---- restarts (what fault-injection tests build on) --------------------------------------------


@pytest.mark.slow
def test_kafka_hard_restart_keeps_ports_messages_and_offsets(kafka_broker_factory) -> None:  # type: ignore[no-untyped-def]
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    broker = kafka_broker_factory()
    address, log_path = broker.bootstrap_servers, broker.log_path
    topic = broker.create_topic("restart.check", 1)
    producer = KafkaProducer(bootstrap_servers=address, acks="all")
    for i in range(6):
        producer.send(topic, value=str(i).encode())
    producer.flush(timeout=30)
    producer.close()
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=address, group_id="g", enable_auto_commit=False)
    consumer.assign([tp])
    consumer.commit({tp: OffsetAndMetadata(4, "", -1)})
    consumer.close()

    old_pid = broker.pid
    broker.restart(hard=True)  # SIGKILL, then start on the same ports and data
    assert broker.bootstrap_servers == address and broker.log_path == log_path
    assert broker.pid != old_pid and broker.is_running

    consumer = KafkaConsumer(bootstrap_servers=address, group_id="g", enable_auto_commit=False,
                             auto_offset_reset="earliest")
    consumer.assign([tp])
    try:
        assert consumer.committed(tp) == 4
        assert [r.value for r in _drain(consumer, 2)] == [b"4", b"5"]
    finally:
        consumer.close()
    assert "exited with -9" in log_path.read_text(errors="replace")


@pytest.mark.slow
def test_milvus_hard_restart_keeps_uri_and_data(milvus_server_factory) -> None:  # type: ignore[no-untyped-def]
    from pymilvus import MilvusClient

    server = milvus_server_factory()
    uri = server.uri
    client = MilvusClient(uri=uri)
    client.create_collection("survivor", dimension=4, consistency_level="Strong")
    client.insert("survivor", [{"id": 7, "vector": [0.0, 1.0, 0.0, 0.0]}])
    client.flush("survivor")
    client.close()

    server.restart(hard=True)
    assert server.uri == uri
    client = MilvusClient(uri=uri)
    try:
        client.load_collection("survivor")
        assert [row["id"] for row in client.query("survivor", filter="id >= 0")] == [7]
    finally:
        client.close()
