"""DnS-style selection for fine re-scoring (``selector_threshold``, ``rerank_fraction``,
``rerank_top_n`` as a cap, the best coarse hits always), candidates left out keep their coarse
score; ``tenant_isolation`` (issue #8, items 2 and 3). Real Milvus Lite, synthetic vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detect.detector import Detector, select_for_rerank
from detect.levels import LevelThresholds
from dupwatch.config import DetectionConfig, MilvusConfig
from dupwatch.records import VideoRepresentation
from index.schema import IndexDims
from index.store import VideoIndex
from inference.embedder import VideoModels

DIMS = IndexDims(coarse=16, clip=8, regions=9, region_dim=4)
N_REFS = 8
ALL_INCIDENT = LevelThresholds(copy=None, incident=-10.0, min_aligned_s=0.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _rep(video_id: str, coarse: np.ndarray, selfsim: float, tenant: str = "t1", seed: int = 0) -> VideoRepresentation:
    rng = np.random.default_rng(seed)
    return VideoRepresentation(
        video_id=video_id, timestamps=np.arange(6, dtype=np.float32),
        regions=_unit(rng.standard_normal((6, DIMS.regions, DIMS.region_dim))), coarse=coarse,
        clips=np.zeros((0, DIMS.clip), np.float32), clip_times=np.zeros((0, 2), np.float32),
        selfsim=selfsim, tenant=tenant, meta={"bundle_version": "t"},
    )


@pytest.fixture(scope="module")
def models(chamfer_bundle: Path) -> VideoModels:
    m = VideoModels.from_path(chamfer_bundle, device="cpu")
    # a selector whose score is the reference's self-similarity: every candidate's selector score is
    # set by the test, independently of its coarse score
    m.selector_scores = lambda q_selfsim, ref_selfsims, coarse: np.asarray(ref_selfsims, np.float32)  # type: ignore[method-assign]
    return m


@pytest.fixture(scope="module")
def world(models: VideoModels, tmp_path_factory: pytest.TempPathFactory):
    """ref-i: coarse similarity to the query decreasing with i; selector score (selfsim) rising with i."""
    index = VideoIndex(MilvusConfig(uri=str(tmp_path_factory.mktemp("m") / "m.db")), DIMS)
    e = np.eye(DIMS.coarse, dtype=np.float32)
    query = _rep("query", e[0], 0.3, seed=99)
    for i in range(N_REFS):
        index.upsert(_rep(f"ref-{i}", _unit(e[0] + 0.15 * (i + 1) * e[1]), selfsim=0.1 * (i + 1), seed=i))
    # another tenant's exact copy of the query's coarse vector
    index.upsert(_rep("other-tenant", e[0].copy(), selfsim=0.05, tenant="t2", seed=50))
    yield index, query
    index.close()


def _by_id(dets):
    return {d.ref_id: d for d in dets}


def test_select_for_rerank_modes() -> None:
    coarse = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], np.float32)
    sel = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], np.float32)
    # budget (no threshold, no fraction): top coarse first, then the selector's order, cut at the cap
    assert select_for_rerank(coarse, sel, DetectionConfig(rerank_top_n=4, rerank_always_top_coarse=2)) == [0, 1, 7, 6]
    # threshold: selector ≥ 0.55, plus the best coarse hit
    assert select_for_rerank(coarse, sel, DetectionConfig(selector_threshold=0.55, rerank_always_top_coarse=1)) == [0, 7, 6, 5]
    # fraction: the top 25 % by selector (2 of 8), plus the best coarse hit
    assert select_for_rerank(coarse, sel, DetectionConfig(rerank_fraction=0.25, rerank_always_top_coarse=1)) == [0, 7, 6]
    # either rule selects; the cap still holds
    both = DetectionConfig(selector_threshold=0.75, rerank_fraction=0.5, rerank_always_top_coarse=0)
    assert select_for_rerank(coarse, sel, both) == [7, 6, 5, 4]
    assert select_for_rerank(coarse, sel, both.model_copy(update={"rerank_top_n": 2})) == [7, 6]
    assert select_for_rerank(coarse, sel, DetectionConfig(rerank_top_n=0)) == []


def test_select_for_rerank_best_clip_hits_after_the_best_coarse() -> None:
    coarse = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], np.float32)
    sel = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], np.float32)
    clips = [3, 0, 2]  # candidates found by the clip search, best clip similarity first
    budget = DetectionConfig(rerank_top_n=4, rerank_always_top_coarse=1, rerank_always_top_clips=0)
    assert select_for_rerank(coarse, sel, budget, clips) == [0, 7, 6, 5]  # 0: clip hits only add candidates
    assert DetectionConfig().rerank_always_top_clips == 5  # the default: measured on the real sets (README)
    two = budget.model_copy(update={"rerank_always_top_clips": 2})
    assert select_for_rerank(coarse, sel, two, clips) == [0, 3, 7, 6]  # 0 is already in; 3 comes right after it
    assert select_for_rerank(coarse, sel, two.model_copy(update={"rerank_top_n": 1}), clips) == [0]
    assert select_for_rerank(coarse, sel, two) == [0, 7, 6, 5]  # no clip hits


def test_threshold_mode_rescores_selected_and_keeps_the_rest_with_coarse(models: VideoModels, world) -> None:
    index, query = world
    config = DetectionConfig(selector_threshold=0.55, rerank_always_top_coarse=1, rerank_top_n=20)
    detector = Detector(models, index, config, thresholds=ALL_INCIDENT)
    dets = detector.detect(query)
    by = _by_id(dets)
    assert set(by) == {f"ref-{i}" for i in range(N_REFS)}  # nothing dropped, no other tenant
    reranked = {d.ref_id for d in dets if d.reranked}
    assert reranked == {"ref-0", "ref-5", "ref-6", "ref-7"}  # best coarse hit + selector ≥ 0.55
    for d in dets:
        expected = float(np.dot(query.coarse, index.fetch_coarse([d.ref_id])[d.ref_id]))
        assert d.coarse == pytest.approx(expected, abs=1e-5)
        if d.reranked:
            assert d.fine is not None and d.normalized is not None and d.level == "incident"
        else:  # thresholds are on the fine score: reported with the coarse score, never alerted on
            assert d.fine is None and d.normalized is None and d.level == "none"
            assert d.evidence["not_reranked"] == "not selected for re-scoring"
            assert d.to_record()["scores"] == {"coarse": round(d.coarse, 5), "fine": None, "normalized": None}
    # re-scored first, then the others by coarse score
    assert [d.reranked for d in dets] == [True] * 4 + [False] * 4
    assert [d.ref_id for d in dets[4:]] == ["ref-1", "ref-2", "ref-3", "ref-4"]
    alerts = detector.alerts(query, dets)
    assert {a.matched_video_id for a in alerts} == reranked


def test_fraction_mode_and_cap(models: VideoModels, world) -> None:
    index, query = world
    fraction = Detector(models, index, DetectionConfig(rerank_fraction=0.25, rerank_always_top_coarse=2), thresholds=ALL_INCIDENT)
    dets = fraction.detect(query)
    assert {d.ref_id for d in dets if d.reranked} == {"ref-0", "ref-1", "ref-6", "ref-7"}
    assert len(dets) == N_REFS
    capped = Detector(models, index, DetectionConfig(rerank_fraction=1.0, rerank_always_top_coarse=2, rerank_top_n=3),
                      thresholds=ALL_INCIDENT)
    dets = capped.detect(query)
    assert [d.ref_id for d in dets if d.reranked] and {d.ref_id for d in dets if d.reranked} == {"ref-0", "ref-1", "ref-7"}
    assert sum(not d.reranked for d in dets) == N_REFS - 3
    # the budget of before (neither option): top coarse, then selector order, up to rerank_top_n
    budget = Detector(models, index, DetectionConfig(rerank_top_n=3, rerank_always_top_coarse=1), thresholds=ALL_INCIDENT)
    assert {d.ref_id for d in budget.detect(query) if d.reranked} == {"ref-0", "ref-7", "ref-6"}


def test_tenant_isolation_setting(models: VideoModels, world) -> None:
    index, query = world
    isolated = Detector(models, index, DetectionConfig(), thresholds=ALL_INCIDENT)
    assert "other-tenant" not in _by_id(isolated.detect(query))
    shared = Detector(models, index, DetectionConfig(tenant_isolation=False), thresholds=ALL_INCIDENT)
    by = _by_id(shared.detect(query))
    assert "other-tenant" in by and by["other-tenant"].coarse == pytest.approx(1.0, abs=1e-5)
    assert by["other-tenant"].evidence["reference_tenant"] == "t2"
    assert by["other-tenant"].tenant == "t1"  # the alert belongs to the uploader's tenant
    assert [v for v, _ in index.search_coarse(query.coarse, None, 3)][0] == "other-tenant"
