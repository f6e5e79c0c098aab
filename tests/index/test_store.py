"""VideoIndex against Milvus Lite and (one test, over gRPC) the Milvus standalone server."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from dupwatch.config import MilvusConfig
from dupwatch.errors import TransientError
from dupwatch.records import VideoRepresentation
from index.schema import IndexDims, row_id
from index.store import VideoIndex

DIMS = IndexDims(coarse=16, clip=8, regions=9, region_dim=4)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_rep(video_id: str, frames: int, clips: int, *, tenant: str = "acme", seed: int = 0, coarse=None) -> VideoRepresentation:
    rng = np.random.default_rng(seed)
    return VideoRepresentation(
        video_id=video_id,
        timestamps=np.arange(frames, dtype=np.float32),
        regions=_unit(rng.standard_normal((frames, DIMS.regions, DIMS.region_dim))),
        coarse=_unit(rng.standard_normal(DIMS.coarse)) if coarse is None else coarse,
        clips=_unit(rng.standard_normal((clips, DIMS.clip))),
        clip_times=np.stack([np.arange(clips) * 8.0, np.arange(clips) * 8.0 + 8.0], axis=1),
        selfsim=0.25,
        tenant=tenant,
        meta={"bundle_version": "test-1"},
    )


@pytest.fixture
def lite_index(milvus_lite_uri):
    index = VideoIndex(MilvusConfig(uri=milvus_lite_uri, collection_prefix="t"), DIMS)
    index.ensure_collections()
    yield index
    index.close()


def test_replayed_upsert_keeps_one_row_per_part_and_drops_stale_rows(lite_index):
    rep = make_rep("vid-a", frames=20, clips=3)
    lite_index.upsert(rep)
    lite_index.upsert(rep)  # a replayed event
    counts = lite_index.count("vid-a")
    assert (counts.coarse, counts.clips, counts.frames) == (1, 3, 20)
    shorter = make_rep("vid-a", frames=7, clips=1, seed=1)
    lite_index.upsert(shorter)  # re-indexed with fewer clips/frames: the tail goes
    counts = lite_index.count("vid-a")
    assert (counts.coarse, counts.clips, counts.frames) == (1, 1, 7)
    fine = lite_index.fetch_fine(["vid-a", "missing"])
    assert set(fine) == {"vid-a"}
    assert fine["vid-a"].dtype == np.float32 and fine["vid-a"].shape == (7, 9, 4)
    np.testing.assert_array_equal(fine["vid-a"], shorter.regions)  # bit-exact
    assert lite_index.video_info(["vid-a"])["vid-a"]["num_frames"] == 7
    # by primary key with the frame count from video_info (the detector's path): the same rows
    keyed = lite_index.fetch_fine(["vid-a", "missing"], {"vid-a": 7, "missing": 3})
    assert set(keyed) == {"vid-a"}
    np.testing.assert_array_equal(keyed["vid-a"], shorter.regions)
    # a wrong count (stale metadata) falls back to the filter query instead of returning a partial video
    np.testing.assert_array_equal(lite_index.fetch_fine(["vid-a"], {"vid-a": 20})["vid-a"], shorter.regions)
    assert lite_index.has_video("vid-a") and not lite_index.has_video("vid-b")
    assert lite_index.delete_video("vid-a") == 9
    assert lite_index.count("vid-a").total == 0 and not lite_index.has_video("vid-a")


def test_fine_fetch_pages_long_videos(lite_index):
    rep = make_rep("long", frames=700, clips=2, seed=3)
    lite_index.upsert(rep)
    np.testing.assert_array_equal(lite_index.fetch_fine(["long"])["long"], rep.regions)
    np.testing.assert_array_equal(lite_index.fetch_fine(["long"], {"long": 700})["long"], rep.regions)


def test_searches_are_tenant_isolated_and_ranked(lite_index):
    base = make_rep("q", frames=8, clips=2, seed=10)
    near = base.coarse + 0.05 * np.ones(DIMS.coarse, dtype=np.float32)
    lite_index.upsert(make_rep("near", frames=8, clips=2, seed=11, coarse=_unit(near)))
    lite_index.upsert(make_rep("far", frames=8, clips=2, seed=12))
    lite_index.upsert(make_rep("other-tenant", frames=8, clips=2, seed=13, tenant="globex", coarse=base.coarse))
    lite_index.upsert(base)
    hits = lite_index.search_coarse(base.coarse, "acme", 10, exclude_video_id="q")
    assert [v for v, _ in hits][:1] == ["near"]
    assert "other-tenant" not in {v for v, _ in hits} and "q" not in {v for v, _ in hits}
    assert hits[0][1] > 0.9
    assert [v for v, _ in lite_index.search_coarse(base.coarse, "globex", 10)] == ["other-tenant"]
    clip_hits = lite_index.search_clips(base.clips, "acme", 3)
    assert clip_hits[0].video_id == "q" and clip_hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert {m.query_clip for m in clip_hits[0].matches} == {0, 1}
    assert all(c.video_id != "other-tenant" for c in clip_hits)
    rng = np.random.default_rng(0)
    background = _unit(rng.standard_normal((20, DIMS.coarse)))
    lite_index.add_background([f"bg{i}" for i in range(20)], background)
    top = lite_index.search_background(base.coarse, 5)
    np.testing.assert_allclose(top, np.sort(background @ base.coarse)[::-1][:5], atol=1e-5)


def test_unreachable_milvus_is_a_transient_error(unused_port=None):
    from dupwatch.testing._process import free_ports

    index = VideoIndex(MilvusConfig(uri=f"http://127.0.0.1:{free_ports(1)[0]}", timeout_s=2), DIMS)
    with pytest.raises(TransientError) as info:
        index.upsert(make_rep("x", 2, 1))
    assert info.value.reason == "milvus_unavailable"
    assert index.ping() is False


def test_wrong_dimension_is_a_bug_not_an_outage(lite_index):
    bad = VideoIndex(lite_index.config, IndexDims(coarse=32, clip=8, regions=9, region_dim=4))
    with pytest.raises(ValueError, match="dim"):
        bad.ensure_collections()


@pytest.mark.timeout(180)
def test_server_over_grpc_upsert_search_fetch(milvus_server):
    prefix = "s" + uuid.uuid4().hex[:8]
    index = VideoIndex(MilvusConfig(uri=milvus_server.uri, collection_prefix=prefix), DIMS)
    try:
        index.ensure_collections()
        rep = make_rep("srv-a", frames=12, clips=2)
        index.upsert(rep)
        index.upsert(rep)
        other = make_rep("srv-b", frames=5, clips=1, seed=4, tenant="globex")
        index.upsert(other)
        counts = index.count("srv-a")
        assert (counts.coarse, counts.clips, counts.frames) == (1, 2, 12)
        np.testing.assert_array_equal(index.fetch_fine(["srv-a"])["srv-a"], rep.regions)
        hits = index.search_coarse(rep.coarse, "acme", 5)
        assert hits[0][0] == "srv-a" and all(v != "srv-b" for v, _ in hits)
        index.upsert(make_rep("srv-a", frames=4, clips=1, seed=5))
        counts = index.count("srv-a")
        assert (counts.coarse, counts.clips, counts.frames) == (1, 1, 4)
        assert index.has_video(row_id("srv-a", "v").split("#")[0])
        index.drop_all()
    finally:
        index.close()


def _background_round_trip(index: VideoIndex) -> None:
    rng = np.random.default_rng(5)
    q = _unit(rng.standard_normal(DIMS.coarse))
    first = _unit(rng.standard_normal((6, DIMS.coarse)))
    index.add_background([f"a{i}" for i in range(6)], first, collection="bg_named")
    index.add_background([f"a{i}" for i in range(6)], first, collection="bg_named")  # upsert by id
    assert index.count_background("bg_named") == 6
    assert index.count_background() == 0  # the default background collection is another one
    assert index.search_background(q, 3).size == 0
    np.testing.assert_allclose(index.search_background(q, 3, collection="bg_named"), np.sort(first @ q)[::-1][:3], atol=1e-5)
    second = _unit(rng.standard_normal((2, DIMS.coarse)))
    index.replace_background(["b0", "b1"], second, collection="bg_named")  # --rebuild
    assert index.count_background("bg_named") == 2
    np.testing.assert_allclose(index.search_background(q, 5, collection="bg_named"), np.sort(second @ q)[::-1], atol=1e-5)
    assert index.drop_background("bg_named") and index.count_background("bg_named") == 0
    assert index.search_background(q, 5, collection="bg_named").size == 0  # recreated empty, not an error
    with pytest.raises(ValueError):
        index.background_name("video_coarse")
    with pytest.raises(ValueError):
        index.background_name("bad name")


def test_named_background_collection_build_rebuild_count(lite_index):
    _background_round_trip(lite_index)


def test_search_across_tenants_when_not_isolated(lite_index):
    base = make_rep("q", frames=4, clips=2, seed=20)
    lite_index.upsert(make_rep("mine", frames=4, clips=2, seed=21))
    lite_index.upsert(make_rep("theirs", frames=4, clips=2, seed=22, tenant="globex", coarse=base.coarse, ))
    assert "theirs" not in {v for v, _ in lite_index.search_coarse(base.coarse, "acme", 5)}
    hits = lite_index.search_coarse(base.coarse, None, 5, exclude_video_id="q")
    assert hits[0][0] == "theirs" and {v for v, _ in hits} == {"mine", "theirs"}
    assert {c.video_id for c in lite_index.search_clips(base.clips, None, 5)} == {"mine", "theirs"}


@pytest.mark.timeout(180)
def test_server_named_background_collection(milvus_server):
    index = VideoIndex(MilvusConfig(uri=milvus_server.uri, collection_prefix="s" + uuid.uuid4().hex[:8]), DIMS)
    try:
        index.ensure_collections()
        _background_round_trip(index)
        index.drop_all()
    finally:
        index.close()


def test_background_collection_is_created_on_first_use(lite_index):
    """The video collections exist after ``ensure_collections``; the background set (only read when
    normalization is on) is created the first time it is searched or written."""
    background = lite_index.background_name()

    def exists(name: str) -> bool:
        return lite_index._call("has", lambda c: c.has_collection(name))

    assert all(exists(name) for name in lite_index.names.values() if name != background)
    assert not exists(background)
    assert lite_index.search_background(_unit(np.ones(DIMS.coarse)), 5).size == 0
    assert exists(background)
    lite_index.add_background(["b1"], _unit(np.ones((1, DIMS.coarse))))
    assert lite_index.count_background() == 1


def test_thumbnails_round_trip_and_follow_the_video(lite_index):
    from dataclasses import replace

    rng = np.random.default_rng(5)
    rep = replace(make_rep("vid-t", frames=6, clips=1), thumbs=rng.integers(0, 256, (6, 32, 32), dtype=np.uint8))
    lite_index.upsert(rep)
    lite_index.upsert(make_rep("vid-none", frames=4, clips=1))  # indexed without thumbnails
    info = lite_index.video_info(["vid-t", "vid-none"])
    got = lite_index.fetch_thumbs(["vid-t", "vid-none", "missing"], rows=info)
    assert set(got) == {"vid-t"} and got["vid-t"].dtype == np.uint8
    np.testing.assert_array_equal(got["vid-t"], rep.thumbs)
    shorter = replace(rep, timestamps=rep.timestamps[:3], regions=rep.regions[:3], thumbs=rep.thumbs[:3])
    lite_index.upsert(shorter)  # the tail's thumbnails go with its frames
    assert lite_index._count_where("video_thumbs", 'video_id == "vid-t"') == 3
    np.testing.assert_array_equal(lite_index.fetch_thumbs(["vid-t"], rows=lite_index.video_info(["vid-t"]))["vid-t"],
                                  rep.thumbs[:3])
    lite_index.upsert(replace(shorter, thumbs=None))  # re-indexed without thumbnails: none are left to mismatch
    assert lite_index.fetch_thumbs(["vid-t"], rows=lite_index.video_info(["vid-t"])) == {}
    lite_index.upsert(shorter)
    lite_index.delete_video("vid-t")
    assert lite_index._count_where("video_thumbs", 'video_id == "vid-t"') == 0
    with pytest.raises(ValueError, match="thumbnails hold"):
        lite_index.upsert(replace(rep, thumbs=np.zeros((6, 16, 16), np.uint8)))
    assert lite_index.count("vid-t").frames == 0  # refused before any row was written


RELEASE_SCRIPT = """
import shutil, sys
from pathlib import Path
from dupwatch.config import MilvusConfig
from index.store import VideoIndex, release_lite_server
from tests.index.test_store import DIMS, make_rep
work = Path(sys.argv[1])
db = str(work / "t.db")
index = VideoIndex(MilvusConfig(uri=db, collection_prefix="rel"), DIMS)
index.ensure_collections()
index.upsert(make_rep("v1", frames=4, clips=2))
index.close()
if sys.argv[2] == "release":
    release_lite_server(db)
shutil.rmtree(work)
"""


@pytest.mark.parametrize("release", [True, False])
def test_released_lite_server_does_not_write_a_deleted_file_back_at_exit(tmp_path, release):
    """A temporary Lite file deleted after :func:`release_lite_server` stays deleted; without the
    release, Milvus Lite's exit-time flush writes it back (the control case, so the test can fail)."""
    import subprocess
    import sys
    from pathlib import Path

    work = tmp_path / "work"
    work.mkdir()
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", RELEASE_SCRIPT, str(work), "release" if release else "keep"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert work.exists() is not release
