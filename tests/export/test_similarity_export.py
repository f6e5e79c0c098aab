"""ONNX export + ORT-CPU parity of the DnS fine students (attention, binarization), S²VS and the selector."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from export.models import build_graphs, random_models
from export.onnx_export import OPSET, export_graph
from export.parity import check_parity

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """2 shared cores: one intra-op thread avoids OpenMP oversubscription (10x slower otherwise)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def specs():
    return build_graphs(random_models(["fine", "fine_bin", "s2vs", "selector"]))


@pytest.mark.parametrize("graph", ["fine", "fine_bin", "s2vs"])
def test_similarity_dynamic_tq_tt(specs, graph, tmp_path):
    spec = specs[graph]
    result = export_graph(spec, tmp_path)
    assert result.exporter == "torchscript" and result.opset == OPSET
    assert result.parity.ok and result.parity_max_abs_err < 1e-4
    shapes = {(c.sizes["Tq"], c.sizes["Tt"]) for c in result.parity.cases}
    assert (4, 4) in shapes and (300, 120) in shapes  # shortest and a long video, checked at export time
    # other shapes than the traced ones (batches of pairs too), in ONNX Runtime, against PyTorch
    report = check_parity(spec, result.path, [{"B": 1, "Tq": 4, "Tt": 300}, {"B": 5, "Tq": 17, "Tt": 9}], seed=7)
    assert report.ok, report.summary()
    model = onnx.load(str(result.path))
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == ["B", "Tq"]
    out = {o.name for o in model.graph.output}
    assert out == {"similarity", "frame_similarity", "similarity_map"}


@pytest.mark.parametrize("min_frames", [4, 16])
def test_s2vs_exports_at_any_min_frames(min_frames, tmp_path):
    """Short-video tiling happens outside the graph: the served path (tile, index graph, pair graph)
    matches the network's own ``calculate_video_similarity(index_video(q), index_video(r))`` for
    videos shorter and longer than ``min_frames``, whatever ``min_frames`` the graph was traced at."""
    from export.parity import SERVED_LENGTHS, check_served_fine

    model = random_models(["s2vs"])["s2vs"]
    model.min_frames = min_frames
    specs = build_graphs({"s2vs": model})
    index = export_graph(specs["s2vs_index"], tmp_path)
    pair = export_graph(specs["s2vs"], tmp_path)
    assert specs["s2vs"].config == {"min_frames": min_frames}
    check = check_served_fine(model, index.path, pair.path, min_frames)
    assert check["max_abs_err"] < 1e-4, check
    assert any(q < min_frames for q, _ in SERVED_LENGTHS) and any(q > min_frames for q, _ in SERVED_LENGTHS)


@pytest.mark.parametrize("graph", ["fine_index", "fine_bin_index", "s2vs_index"])
def test_indexers_batch_one_and_many(specs, graph, tmp_path):
    result = export_graph(specs[graph], tmp_path)
    assert result.parity.ok, result.parity.summary()
    sizes = [c.sizes for c in result.parity.cases]
    assert {"B": 1, "T": 4} in sizes and {"B": 4, "T": 33} in sizes and {"B": 1, "T": 300} in sizes


def test_selector_graphs(specs, tmp_path):
    for graph in ("selector_selfsim", "selector_mlp"):
        result = export_graph(specs[graph], tmp_path)
        assert result.parity.ok, result.parity.summary()
    probs = specs["selector_mlp"].torch_run({"x": np.zeros((2, 3), np.float32)})["probability"]
    assert probs.shape == (2, 1) and np.all((probs > 0) & (probs < 1))
