"""The default bundle served from its ONNX graphs (:mod:`inference.served`) gives the PyTorch
models' outputs, short videos included, and the worker's factory picks it without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dupwatch.paths import REPO_ROOT
from inference.bundle import load_bundle
from inference.engines import OnnxRuntimeEngine, onnx_graphs
from inference.served import EngineModels, tile_frames

DEFAULT = REPO_ROOT / "models" / "default"


@pytest.fixture(scope="module")
def both():  # type: ignore[no-untyped-def]
    import torch

    from inference.embedder import VideoModels

    torch.set_num_threads(1)
    bundle = load_bundle(DEFAULT)
    onnx = EngineModels(bundle, OnnxRuntimeEngine(onnx_graphs(bundle), threads=1), batch_frames=4)
    return onnx, VideoModels(bundle, device="cpu")


@pytest.fixture(scope="module")
def regions(both) -> np.ndarray:  # type: ignore[no-untyped-def]
    frames = np.random.default_rng(0).integers(0, 256, (11, 224, 224, 3), dtype=np.uint8)
    onnx, torch_models = both
    a, b = onnx.regions(frames), torch_models.regions(frames)
    assert a.shape == b.shape == (11, 9, 512)
    np.testing.assert_allclose(a, b, atol=1e-4)  # 11 frames in batches of 4: 4 + 4 + 3
    return b


def test_default_bundle_has_every_served_graph() -> None:
    bundle = load_bundle(DEFAULT)
    graphs = onnx_graphs(bundle)
    assert {"features", "coarse", "fine_index", "fine", "selector_selfsim", "selector_mlp"} <= set(graphs)
    for name in graphs:
        entry = bundle.entry(f"onnx/{name}")
        assert entry.parity_max_abs_err is not None and entry.parity_max_abs_err <= 1e-4
    fine = bundle.entry("onnx/fine").config
    assert fine["min_frames"] == bundle.entry("fine").config["min_frames"] == 16
    assert fine["served_parity"]["max_abs_err"] <= 1e-4
    assert min(q for q, _ in fine["served_parity"]["lengths"]) < 16 < max(q for q, _ in fine["served_parity"]["lengths"])


@pytest.mark.parametrize("frames", [1, 3, 5, 11])
def test_video_vectors_match_pytorch(both, regions: np.ndarray, frames: int) -> None:  # type: ignore[no-untyped-def]
    onnx, torch_models = both
    x, t = regions[:frames], np.arange(frames, dtype=np.float32)
    a, b = onnx.represent_regions("v", x, t), torch_models.represent_regions("v", x, t)
    np.testing.assert_allclose(a.coarse, b.coarse, atol=1e-5)
    assert a.selfsim == pytest.approx(b.selfsim, abs=1e-5)
    np.testing.assert_allclose(a.clips, b.clips, atol=1e-6)
    np.testing.assert_allclose(a.clip_times, b.clip_times)


@pytest.mark.parametrize(("tq", "tt"), [(1, 3), (3, 11), (5, 5), (11, 11), (11, 2)])
def test_pair_scores_match_the_network(both, regions: np.ndarray, tq: int, tt: int) -> None:  # type: ignore[no-untyped-def]
    """Shorter than ``min_frames`` (16) and not: the same score as the network's own path."""
    import torch

    onnx, torch_models = both
    q, r = regions[:tq], regions[-tt:]
    a, b = onnx.compare(q, r), torch_models.compare(q, r)
    fine = torch_models.fine
    with torch.inference_mode():
        want = float(fine.calculate_video_similarity(fine.index_video(torch.from_numpy(q)[None]),
                                                     fine.index_video(torch.from_numpy(r)[None]))[0])
    assert a.score == pytest.approx(want, abs=1e-5) and b.score == pytest.approx(want, abs=1e-5)
    assert a.frame_similarity.shape == b.frame_similarity.shape == (tq, tt)
    np.testing.assert_allclose(a.frame_similarity, b.frame_similarity, atol=1e-5)


def test_compare_many_is_compare_per_pair(both, regions: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    onnx, torch_models = both
    refs = [regions[i : i + 6] for i in range(5)] + [regions[:2], regions]  # one batch of five, two singles
    for models in (onnx, torch_models):
        many = models.compare_many(regions[:7], refs)
        for ref, got in zip(refs, many):
            one = models.compare(regions[:7], ref)
            assert got.score == pytest.approx(one.score, abs=1e-6)
            np.testing.assert_allclose(got.frame_similarity, one.frame_similarity, atol=1e-6)


def test_index_dims_without_running_a_model(both) -> None:  # type: ignore[no-untyped-def]
    onnx, torch_models = both
    assert onnx.index_dims == torch_models.index_dims
    assert (onnx.index_dims.coarse, onnx.index_dims.regions, onnx.index_dims.region_dim) == (256, 9, 512)


def test_selector_matches(both) -> None:  # type: ignore[no-untyped-def]
    onnx, torch_models = both
    args = (0.3, np.array([0.1, 0.2, 0.9], np.float32), np.array([0.5, 0.9, 0.1], np.float32))
    np.testing.assert_allclose(onnx.selector_scores(*args), torch_models.selector_scores(*args), atol=1e-6)


def test_tile_frames_doubles_like_pytorch() -> None:
    x = np.arange(3)[:, None]
    assert len(tile_frames(x, 16)) == 24  # 3 → 6 → 12 → 24, as repeat_to_min_length
    assert tile_frames(x, 2) is x


def test_worker_factory_serves_onnx_without_torch() -> None:
    """``inference.served:build_embedder`` with default settings: ONNX Runtime, no ``import torch``."""
    code = (
        "import json, sys\n"
        "from dupwatch.config import Settings\n"
        "from inference.served import build_embedder\n"
        "e = build_embedder(Settings())\n"
        "import numpy as np\n"
        "from dupwatch.records import DecodedVideo\n"
        "v = DecodedVideo(video_id='x', frames=np.zeros((3, 224, 224, 3), np.uint8), timestamps=np.arange(3.0),"
        " duration_s=3.0, source_width=224, source_height=224)\n"
        "rep = e.embed(v, 'default')\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'type': type(e.models).__name__,"
        " 'engine': e.models.engine_description, 'coarse': int(rep.coarse.shape[0])}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"torch": False, "type": "EngineModels", "engine": result["engine"], "coarse": 256}
    assert result["engine"].startswith("onnxruntime")


def test_stale_graphs_are_not_served(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A graph exported from other weights than the bundle now holds (retrained, not re-exported)
    is refused: the bundle is served by PyTorch and the engine description says why."""
    import shutil

    from dupwatch.config import ModelConfig, Settings
    from inference.served import load_models, stale_graphs

    copy = tmp_path / "bundle"
    shutil.copytree(DEFAULT, copy)
    assert stale_graphs(load_bundle(copy)) == []
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"]["onnx/coarse"]["config"]["source_sha256"]["coarse"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert stale_graphs(load_bundle(copy)) == ["coarse"]
    models = load_models(Settings(model=ModelConfig(bundle=copy)))
    assert type(models).__name__ == "VideoModels"
    assert "stale ONNX graphs: coarse" in models.engine_description


def test_a_fine_graph_without_the_similarity_map_is_stale(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A fine graph exported before long pairs were compared in tiles lacks ``similarity_map``: it is
    not served (PyTorch serves the bundle) instead of failing on the first long pair."""
    import shutil

    from inference.served import stale_graphs

    copy = tmp_path / "bundle"
    shutil.copytree(DEFAULT, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    entry = manifest["artifacts"]["onnx/fine"]
    entry["outputs"] = [o for o in entry["outputs"] if o["name"] != "similarity_map"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert stale_graphs(load_bundle(copy)) == ["fine"]
