"""A second worker joining the group mid-run: partitions move, nothing is lost or duplicated."""

from __future__ import annotations

import pytest

from index.store import VideoIndex
from tests.ingest.embedders import ThumbnailEmbedder
from tests.ingest.test_worker import RunningWorker, _drained
from tests.ingest.test_worker_helpers import VIDEO_FILES, make_settings, produce, scrape, unique, upload_event, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def test_rebalance_mid_run_keeps_every_upload_exactly_once(kafka_broker, milvus_lite_uri):
    topic = kafka_broker.create_topic(unique("uploads"), 4)
    settings = make_settings(kafka_broker.bootstrap_servers, topic, milvus_lite_uri, max_in_flight_videos=2)
    ids = [f"reb-{i:03d}" for i in range(40)]
    produce(kafka_broker.bootstrap_servers, topic, [upload_event(v, VIDEO_FILES[i % len(VIDEO_FILES)]) for i, v in enumerate(ids)])

    with RunningWorker(settings) as first:
        wait_for(lambda: scrape(first.port).get("dupwatch_videos_indexed_total", 0) >= 4, 60, "first worker progressing")
        with RunningWorker(settings) as second:  # same group: triggers a rebalance
            wait_for(lambda: _drained(settings), 90, "both workers committing everything")
            consumed_second = scrape(second.port).get("dupwatch_events_consumed_total", 0)
        consumed_first = scrape(first.port).get("dupwatch_events_consumed_total", 0)
    assert consumed_first + consumed_second >= len(ids)
    assert consumed_second > 0, "the second worker never got a partition"

    index = VideoIndex(settings.milvus, ThumbnailEmbedder.index_dims)
    try:
        assert set(index.video_info(ids)) == set(ids)
        assert all(index.count(v).coarse == 1 for v in ids)
    finally:
        index.close()
