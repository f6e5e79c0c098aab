"""The fine-tensor cache in front of Milvus: what re-scoring reads is what Milvus holds, always."""

from __future__ import annotations

import numpy as np
import pytest

from dupwatch.config import MilvusConfig
from index.fine_cache import FineFeatureCache, cache_key
from index.store import VideoIndex
from tests.index.test_store import DIMS, make_rep


@pytest.fixture
def index(milvus_lite_uri):
    ticks = iter(range(1_000, 10_000))
    index = VideoIndex(MilvusConfig(uri=milvus_lite_uri, collection_prefix="fc"), DIMS, clock=lambda: float(next(ticks)))
    index.ensure_collections()
    yield index
    index.close()


def _reads(index: VideoIndex) -> list[str]:
    calls: list[str] = []

    def meter(what, proceed):
        calls.append(what)
        return proceed()

    index.add_call_wrapper(meter)
    return calls


def test_detector_path_serves_written_tensors_without_reading_milvus(index):
    rep = make_rep("vid-a", frames=12, clips=2, seed=4)
    index.upsert(rep)
    rows = index.video_info(["vid-a", "missing"])
    calls = _reads(index)
    got = index.fetch_fine(["vid-a"], {"vid-a": 12}, rows=rows)
    assert set(got) == {"vid-a"} and not calls  # written by this process: no Milvus read
    np.testing.assert_array_equal(got["vid-a"], rep.regions)
    assert not got["vid-a"].flags.writeable
    assert set(index.fetch_fine(["vid-a", "missing"], {"vid-a": 12}, rows=rows)) == {"vid-a"}
    # a second process (empty cache) reads Milvus once, then serves the same bits from memory
    other = VideoIndex(index.config, DIMS)
    other_calls = _reads(other)
    first = other.fetch_fine(["vid-a"], rows=rows)  # the frame count comes from the row: read by primary key
    assert "get fc_video_frames" in other_calls and not any(c.startswith("query") for c in other_calls), other_calls
    assert not first["vid-a"].flags.writeable  # what was read is the cached array
    other_calls.clear()
    again = other.fetch_fine(["vid-a"], {"vid-a": 12}, rows=rows)
    assert not other_calls
    np.testing.assert_array_equal(first["vid-a"], again["vid-a"])
    np.testing.assert_array_equal(first["vid-a"], rep.regions)
    assert other.fine_cache.hits == 1
    other.close()


def test_reindexed_video_is_read_again_never_served_stale(index):
    index.upsert(make_rep("vid-a", frames=12, clips=2, seed=1))
    stale_rows = index.video_info(["vid-a"])
    reader = VideoIndex(index.config, DIMS)  # another worker, caching the first version
    reader.fetch_fine(["vid-a"], {"vid-a": 12}, rows=stale_rows)
    newer = make_rep("vid-a", frames=12, clips=2, seed=2)  # same length, other content
    index.upsert(newer)
    rows = index.video_info(["vid-a"])
    assert cache_key("vid-a", rows["vid-a"]) != cache_key("vid-a", stale_rows["vid-a"])
    got = reader.fetch_fine(["vid-a"], {"vid-a": 12}, rows=rows)
    np.testing.assert_array_equal(got["vid-a"], newer.regions)
    reader.close()


def test_deleted_and_dropped_videos_leave_the_cache(index):
    index.upsert(make_rep("vid-a", frames=5, clips=1))
    assert len(index.fine_cache) == 1
    index.delete_video("vid-a")
    assert len(index.fine_cache) == 0
    index.upsert(make_rep("vid-b", frames=5, clips=1))
    index.drop_all()
    assert len(index.fine_cache) == 0


def test_cache_is_bounded_by_bytes_least_recently_used_first():
    one = np.zeros((10, 9, 4), np.float32)  # 1440 bytes
    cache = FineFeatureCache(max_bytes=3 * one.nbytes)
    keys = [cache_key(f"v{i}", {"indexed_at_ms": i, "num_frames": 10, "event_id": "e", "bundle_version": "b"}) for i in range(4)]
    for key in keys[:3]:
        cache.put(key, one)
    assert cache.get(keys[0]) is not None  # v0 is now the most recent
    cache.put(keys[3], one)
    assert cache.get(keys[1]) is None and cache.get(keys[0]) is not None
    assert cache.nbytes == 3 * one.nbytes
    cache.put(keys[0], np.zeros((100, 9, 4), np.float32))  # larger than the whole cache: not kept
    assert cache.nbytes <= cache.max_bytes
    off = FineFeatureCache(0)
    off.put(keys[0], one)
    assert off.get(keys[0]) is None and len(off) == 0
    assert cache_key("v", {"num_frames": 3}) is None  # a row without its write stamp is never cached
