"""The bad-input corpus and malformed events through the worker process, good events interleaved.

Every corpus file (``tests/ingest/corpus.py``) gets its documented outcome end to end: ``Ok`` →
indexed, ``Refused(reason)`` → one dead-letter record with that reason. Malformed events (invalid
JSON, wrong types, missing fields, a huge string, an unknown schema version) are dead-lettered
with their reasons; a duplicated event id is indexed once. Good uploads between them all proceed.
The worker's peak RSS (VmHWM) stays bounded.
"""

from __future__ import annotations

import json

import pytest

from dupwatch.config import DecodeConfig
from tests.ingest.corpus import CASES, Ok, write_corpus
from tests.reliability.harness import (
    VIDEO_FILES,
    count_rows,
    dead_letters_by_offset,
    drained,
    make_settings,
    produce,
    start_worker,
    unique,
    upload_event,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]
PEAK_RSS_LIMIT_MIB = 768


def _malformed() -> list[tuple[bytes, str]]:
    base = json.loads(upload_event("x", VIDEO_FILES[0]))
    wrong_types = {**base, "event_id": 123, "video_id": ["a", "b"], "tenant": {"x": 1}}
    missing = {k: v for k, v in base.items() if k not in ("uri", "video_id")}
    huge = {**base, "video_id": "huge", "uri": "x" * 200_000}
    long_field = {**base, "video_id": "v" * 5000, "event_id": "long-field"}
    future = {**base, "schema_version": 99, "video_id": "from-the-future", "event_id": "future"}
    return [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
        (b"[1, 2, 3]", "invalid_json"),
        (json.dumps(wrong_types).encode(), "invalid_event"),
        (json.dumps(missing).encode(), "invalid_event"),
        (json.dumps(huge).encode(), "event_too_large"),
        (json.dumps(long_field).encode(), "invalid_event"),
        (json.dumps(future).encode(), "unsupported_schema_version"),
    ]


def test_corpus_and_malformed_events_get_their_outcomes(kafka_broker, milvus_lite_uri, tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    topic = kafka_broker.create_topic(unique("badinput"), 1)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, extra_roots=[tmp_path / "corpus"])
    # Limits as the corpus's SMALL_LIMITS for height/pixels (refuses the 720p case), wide enough
    # for the 4000×16 extreme-aspect case that the corpus expects to decode.
    settings = settings.model_copy(
        update={"decode": DecodeConfig(fps=1.0, short_side=64, crop=64, max_frames=60, max_width=4096, max_height=480, max_pixels=640 * 480)}
    )
    payloads: list[bytes] = []
    expected_dead: dict[int, str] = {}
    expected_indexed: list[str] = []
    good = 0

    def add_good() -> None:
        nonlocal good
        vid = f"good-{good:03d}"
        good += 1
        payloads.append(upload_event(vid, VIDEO_FILES[good % len(VIDEO_FILES)]))
        expected_indexed.append(vid)

    for case in CASES:
        add_good()
        vid = f"corpus-{case.name}"
        if isinstance(case.expected, Ok):
            expected_indexed.append(vid)
        else:
            expected_dead[len(payloads)] = case.expected.reason
        payloads.append(upload_event(vid, corpus[case.name]))
    for raw, reason in _malformed():
        add_good()
        expected_dead[len(payloads)] = reason
        payloads.append(raw)
    add_good()
    payloads.append(payloads[-1])  # the same event (same event id) twice
    produce(kafka_broker.bootstrap_servers, topic, payloads)

    worker = start_worker(settings, tmp_path)
    try:
        wait_for(lambda: worker.alive() and worker.sample_rss() and drained(settings), 180, "the whole stream committed")
    finally:
        code = worker.stop()
    assert code == 0, worker.log_path.read_text()[-3000:]

    dead = dead_letters_by_offset(settings, len(expected_dead))
    records = dead.pop("records")
    got = {off: body["reason"] for (_, off), body in dead.items()}
    assert got == expected_dead
    assert records == len(expected_dead)  # one record per bad event
    indexed, dup_rows, total = count_rows(settings, expected_indexed)
    assert indexed == set(expected_indexed) and dup_rows == 0 and total == len(expected_indexed)
    peak_mib = worker.peak_rss_kib / 1024
    print(
        f"\nRELIABILITY bad-input: events_in={len(payloads)} indexed={len(indexed)} (+1 duplicate event) "
        f"dead_lettered={len(got)} lost={len(payloads) - 1 - len(indexed) - len(got)} duplicate_rows={dup_rows} "
        f"peak_rss_mib={peak_mib:.0f}"
    )
    assert len(payloads) - 1 == len(indexed) + len(got)
    assert 0 < peak_mib < PEAK_RSS_LIMIT_MIB
