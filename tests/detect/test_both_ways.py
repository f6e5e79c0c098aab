"""A pair's P(copy) is the higher of its two directions (:func:`detect.detector.both_ways`): the
worker scores the reference against the upload too, from the same indexed views, and the eval
harness does the same, so the threshold calibrated on eval scores is the one the worker applies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detect.copy_head import FEATURES, CopyHead
from detect.detector import (AlignmentParams, Detector, assess_views, both_ways, score_candidates,
                             score_candidates_both_ways)
from detect.levels import LevelThresholds
from dupwatch.config import DecodeConfig, DetectionConfig, MilvusConfig
from evaluation.sources import real_videos
from evaluation.video_io import read_clip, write_clip
from index.schema import IndexDims
from index.store import VideoIndex
from inference.embedder import VideoModels
from ingest.decode import decode_video

pytestmark = pytest.mark.timeout(300)


def _fine_head(weight: float = 6.0, bias: float = -3.0) -> CopyHead:
    """A logistic head on the fine score alone: P(copy) = sigmoid(weight · fine + bias)."""
    weights = np.zeros(len(FEATURES))
    weights[FEATURES.index("fine_score")] = weight
    return CopyHead(FEATURES, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), weights, bias, {})


@pytest.fixture(scope="module")
def models(chamfer_bundle: Path) -> VideoModels:
    return VideoModels.from_path(chamfer_bundle, device="cpu")


def _regions(seed: int, frames: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(frames, 9, 1752)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_p_copy_is_the_higher_direction_and_both_are_kept(models: VideoModels) -> None:
    views = {"main": _regions(0, 6)}
    times = np.arange(6, dtype=np.float64)
    forward = assess_views(models, views, views, times, times, AlignmentParams(), _fine_head())
    assert forward.copy_score is not None and forward.directions is None
    up = both_ways(forward, 1.0)
    assert up.copy_score == 1.0 and up.directions == (forward.copy_score, 1.0)
    assert up.segments == forward.segments and up.views == forward.views and up.fine == forward.fine
    down = both_ways(forward, 0.0)
    assert down.copy_score == forward.copy_score and down.directions == (forward.copy_score, 0.0)
    assert both_ways(forward, None) is forward
    no_head = assess_views(models, views, views, times, times, AlignmentParams())
    assert both_ways(no_head, 0.9) is no_head and no_head.copy_score is None


class _CompareOnly:
    """Models that only ``compare`` (the path without indexed views)."""

    def __init__(self, models: VideoModels) -> None:
        self._models = models

    def compare(self, query: np.ndarray, ref: np.ndarray) -> object:
        return self._models.compare(query, ref)


@pytest.mark.parametrize("indexed", [True, False])
def test_reverse_fine_scores_are_the_reference_compared_with_the_upload(models: VideoModels, indexed: bool) -> None:
    query = {"main": _regions(1, 5), "inset": _regions(2, 5)}
    short = _regions(3, 3)
    candidates = {"a": {"main": np.concatenate([query["main"][1:4], _regions(4, 6)])}, "b": {"main": short, "inset": short[::-1]}}
    scorer = models if indexed else _CompareOnly(models)
    forward, reverse = score_candidates_both_ways(scorer, query, candidates)
    assert {vid: {c: p.score for c, p in v.items()} for vid, v in forward.items()} == \
        {vid: {c: p.score for c, p in v.items()} for vid, v in score_candidates(scorer, query, candidates).items()}
    for vid, ref_views in candidates.items():
        assert list(reverse[vid]) == [(rv, qv) for rv in ref_views for qv in query]
        for (rv, qv), pair in reverse[vid].items():
            want = models.compare(ref_views[rv], query[qv])
            assert pair.score == pytest.approx(want.score, abs=1e-6)
            np.testing.assert_allclose(pair.frame_similarity, want.frame_similarity, atol=1e-6)
    # chamfer is not symmetric: three of the upload's five frames are three of the reference's nine
    assert forward["a"][("main", "main")].score > reverse["a"][("main", "main")].score + 0.1
    assert score_candidates_both_ways(scorer, query, candidates, reverse=False)[1] == {}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``bikes`` whole and a 4-second excerpt of it."""
    root = tmp_path_factory.mktemp("videos")
    bikes = {v.name: v.path for v in real_videos()}["bikes"]
    excerpt = write_clip(root / "excerpt.mp4", read_clip(bikes, fps=5.0, max_side=320).window(3.0, 7.0), crf=23)
    return {"whole": bikes, "excerpt": excerpt}


@pytest.fixture(scope="module")
def uploads(models: VideoModels, files: dict[str, Path]) -> dict[str, object]:
    """The two videos represented as the worker represents uploads."""
    decode = DecodeConfig()
    return {name: models.represent(decode_video(path, decode, name), tenant="t1") for name, path in files.items()}


def _detect(models: VideoModels, uploads: dict[str, object], indexed: str, query: str, tmp_path: Path,
            head: CopyHead | None) -> dict:
    tmp_path.mkdir(exist_ok=True)
    index = VideoIndex(MilvusConfig(uri=str(tmp_path / f"{indexed}.db")),
                       IndexDims(coarse=1752, clip=1752, regions=9, region_dim=1752))
    index.upsert(uploads[indexed])  # type: ignore[arg-type]
    detector = Detector(models, index, DetectionConfig(rerank_top_n=5),
                        thresholds=LevelThresholds(copy=0.5, incident=None, min_aligned_s=1.0))
    detector.copy_head = head
    [det] = detector.detect(uploads[query])  # type: ignore[arg-type]
    assert det.ref_id == indexed
    return det.evidence


def test_the_worker_scores_both_directions(models: VideoModels, uploads: dict[str, object], tmp_path: Path) -> None:
    head = _fine_head()
    whole_first = _detect(models, uploads, "whole", "excerpt", tmp_path, head)
    excerpt_first = _detect(models, uploads, "excerpt", "whole", tmp_path, head)
    # the whole video against its excerpt matches weakly (most of its frames are not in the excerpt),
    # the excerpt against the whole fully: either upload order gets the strong direction
    weak = excerpt_first["copy_score_directions"]["query_to_reference"]
    strong = excerpt_first["copy_score_directions"]["reference_to_query"]
    assert strong > weak + 0.03
    assert excerpt_first["copy_score"] == pytest.approx(strong, abs=1e-5)
    assert whole_first["copy_score_directions"] == {"query_to_reference": pytest.approx(strong, abs=1e-4),
                                                    "reference_to_query": pytest.approx(weak, abs=1e-4)}
    assert whole_first["copy_score"] == pytest.approx(excerpt_first["copy_score"], abs=1e-4)
    # without a head there is no P(copy), so nothing is scored twice
    plain = _detect(models, uploads, "excerpt", "whole", tmp_path / "plain", None)
    assert plain["copy_score"] is None and plain["copy_score_directions"] is None


def test_the_eval_scores_both_directions_once_each(files: dict[str, Path], chamfer_bundle: Path) -> None:
    from scoring.methods import FeatureCache, FrameCache, OursMethod, run_method

    method = OursMethod(chamfer_bundle, FrameCache(), FeatureCache(), device="cpu")
    method.copy_head = _fine_head()
    assessed: list[tuple[str, str]] = []
    one_way = method._assess

    def counted(query: str, reference: str) -> object:
        assessed.append((query, reference))
        return one_way(query, reference)

    method._assess = counted  # type: ignore[method-assign]
    run = run_method(method, files, ["excerpt", "whole"])
    weak, strong = method._one_way[("whole", "excerpt")], method._one_way[("excerpt", "whole")]
    assert strong > weak + 0.03
    assert run.scores[("excerpt", "whole")] == run.scores[("whole", "excerpt")] == strong
    # the reverse of the first pair is computed once; the second pair assesses itself for its segments
    assert assessed == [("excerpt", "whole"), ("whole", "excerpt"), ("whole", "excerpt")]
    assert run.segments[("whole", "excerpt")] and run.segments[("excerpt", "whole")]
