"""Long pairs are compared tile by tile (:mod:`inference.fine_blocks`) with the whole pair's result.

Two 4-hour videos made the fine network ask for one ``[Tq, R, R, Tt]`` product of 67 GB; these
tests check that the tiles give the same similarity and frame similarity as one run, on the
default bundle's S²VS network (PyTorch and its shipped ONNX graph), and that no run exceeds the
budget (the README's reliability table has the measurement on long videos)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from dupwatch.paths import REPO_ROOT
from inference.fine_blocks import CELL_BUDGET, MARGIN, MAX_RUN_FRAMES, STRIDE, Tile, blockwise_pair, needs_tiles, tiles

DEFAULT = REPO_ROOT / "models" / "default"


def test_tiles_keep_every_frame_once_and_read_margins_at_stride_multiples() -> None:
    for length in (4, 17, 64, 65, 130, 131):
        got = list(tiles(length, 32))
        kept = [f for t in got for f in range(t.keep_start, t.keep_stop)]
        assert kept == list(range(length))
        for t in got:
            assert t.start % STRIDE == 0 and t.start == max(0, t.keep_start - MARGIN)
            assert t.stop == min(length, t.keep_stop + MARGIN)
        cells = [c for t in got for c in range(t.cell_start, t.cell_stop(length))]
        assert cells == list(range(length // STRIDE))
    assert list(tiles(10, 512)) == [Tile(0, 10, 0, 10)]
    with pytest.raises(ValueError, match="multiple of 4"):
        list(tiles(10, 30))


def test_pairs_over_the_budget_or_a_graph_side_go_tile_by_tile() -> None:
    assert not needs_tiles(1000, 500) and not needs_tiles(MAX_RUN_FRAMES, 4)
    assert needs_tiles(800, 700)  # 560,000 frame pairs
    assert needs_tiles(MAX_RUN_FRAMES + 1, 4)  # past the TensorRT profile, however short the other


@pytest.fixture(scope="module")
def fine() -> Any:
    from inference.bundle import load_bundle
    from inference.embedder import load_bundle_model

    bundle = load_bundle(DEFAULT)
    return load_bundle_model(bundle, "fine", bundle.entry("fine").arch)


def _pair(fine: Any, tq: int, tt: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Indexed features of two videos sharing a stretch (so the head's map has a real peak)."""
    rng = np.random.default_rng(seed)
    d = int(fine.dims)
    q = rng.standard_normal((tq, 9, d)).astype(np.float32)
    t = rng.standard_normal((tt, 9, d)).astype(np.float32)
    n = min(tq, tt) // 3
    a, b = (tt - n) // 2, (tq - n) // 3
    t[a:a + n] = q[b:b + n] + 0.05 * rng.standard_normal((n, 9, d)).astype(np.float32)
    q, t = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in (q, t))  # unit region vectors, as served
    with torch.inference_mode():
        qi, ti = (fine.index_video(torch.from_numpy(x)[None])[0].numpy() for x in (q, t))
    return qi, ti


def _torch_run(fine: Any, calls: list[tuple[int, int]]) -> Any:
    from inference.similarities import pair_similarity

    def run(q: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        calls.append((q.shape[1], t.shape[1]))
        with torch.inference_mode():
            score, f2f, head = pair_similarity(fine, torch.from_numpy(q), torch.from_numpy(t))
        return {"similarity": score.numpy(), "frame_similarity": f2f.numpy(), "similarity_map": head.numpy()}
    return run


@pytest.mark.parametrize(("tq", "tt", "tile"), [(301, 203, 64), (130, 131, 32), (64, 250, 16), (40, 41, 512)])
def test_tiles_give_the_whole_pairs_result(fine: Any, tq: int, tt: int, tile: int) -> None:
    q, t = _pair(fine, tq, tt)
    calls: list[tuple[int, int]] = []
    run = _torch_run(fine, calls)
    whole = run(q[None], t[None])
    score, f2f = blockwise_pair(run, q, t, tile_frames=tile)
    assert max(a for a, _ in calls[1:]) <= tile + 2 * MARGIN and max(b for _, b in calls[1:]) <= tile + 2 * MARGIN
    np.testing.assert_allclose(f2f, whole["frame_similarity"][0], rtol=0, atol=1e-5)
    assert score == pytest.approx(float(whole["similarity"][0]), abs=1e-5)
    assert whole["similarity_map"].max() == 1.0 and whole["similarity_map"].min() < 0  # a peak on the shared stretch


def test_narrower_margins_would_change_the_result(fine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The margin is what makes tiles exact: with none, cut edges reach kept cells."""
    import inference.fine_blocks as fb

    q, t = _pair(fine, 301, 203)
    run = _torch_run(fine, [])
    whole = float(run(q[None], t[None])["similarity"][0])
    monkeypatch.setattr(fb, "MARGIN", 0)
    score, _ = fb.blockwise_pair(run, q, t, tile_frames=32)
    assert abs(score - whole) > 1e-4


def test_a_graph_without_the_map_output_is_refused_clearly() -> None:
    def old(q: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        return {"similarity": np.zeros(1, np.float32), "frame_similarity": np.zeros((1, q.shape[1], t.shape[1]), np.float32)}

    with pytest.raises(KeyError, match="re-export"):
        blockwise_pair(old, np.zeros((20, 9, 4), np.float32), np.zeros((20, 9, 4), np.float32), tile_frames=8)


class _Recording:
    """An engine that records the size of every fine-graph run."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.cells = engine, []

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "query" in inputs:
            b, tq = inputs["query"].shape[:2]
            self.cells.append(b * tq * inputs["target"].shape[1])
        return self.engine.run(graph, inputs)


def test_served_scorer_bounds_every_run_and_matches_one_run(fine: Any) -> None:
    """The shipped ONNX graph through :class:`inference.served.PairScorer`: a pair over the budget
    goes tile by tile with the one-run similarity; short references still share batched runs."""
    from inference.bundle import load_bundle
    from inference.engines import OnnxRuntimeEngine, onnx_graphs
    from inference.served import IndexedVideo, PairScorer

    engine = _Recording(OnnxRuntimeEngine(onnx_graphs(load_bundle(DEFAULT)), threads=1))
    scorer = PairScorer(engine, "fine")
    q, t = _pair(fine, 1000, 620)
    assert len(q) * len(t) > CELL_BUDGET
    short = [IndexedVideo(30, t[:30]), IndexedVideo(30, t[30:60])]
    long_ref = IndexedVideo(len(t), t)
    got = scorer.score(IndexedVideo(len(q), q), [short[0], long_ref, short[1]])
    assert max(engine.cells) <= CELL_BUDGET
    assert engine.cells.count(len(q) * 2 * 30) == 1  # the two short references in one run
    whole = _torch_run(fine, [])(q[None], t[None])
    assert got[1].score == pytest.approx(float(whole["similarity"][0]), abs=1e-4)
    np.testing.assert_allclose(got[1].frame_similarity, whole["frame_similarity"][0], atol=1e-4)
    assert got[1].frame_similarity.shape == (1000, 620)


def test_a_video_longer_than_a_graph_run_is_indexed_in_pieces(fine: Any) -> None:
    """The index graph works frame by frame, so pieces of at most MAX_RUN_FRAMES give the whole result."""
    from inference.bundle import load_bundle
    from inference.engines import OnnxRuntimeEngine, onnx_graphs
    from inference.served import PairScorer

    class Lengths(_Recording):
        def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.cells.append(inputs["features"].shape[1])
            return self.engine.run(graph, inputs)

    engine = Lengths(OnnxRuntimeEngine(onnx_graphs(load_bundle(DEFAULT)), threads=1))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((MAX_RUN_FRAMES + 300, 9, int(fine.dims))).astype(np.float32)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    got = PairScorer(engine, "fine").index([x])[0]
    assert engine.cells == [MAX_RUN_FRAMES, 300]
    with torch.inference_mode():
        whole = fine.index_video(torch.from_numpy(x)[None])[0].numpy()
    assert got.frames == len(x)
    np.testing.assert_allclose(got.tiled, whole, atol=1e-5)
