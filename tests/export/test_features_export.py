"""Frame feature extractor (EfficientNet-Lite0 packaged weights + L3-iMAC + PCA): uint8 frames, dynamic N."""

from __future__ import annotations

import numpy as np
import pytest

from export.models import build_graphs, random_models
from export.onnx_export import export_graph
from inference.engines import OnnxRuntimeEngine

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """2 shared cores: one intra-op thread avoids OpenMP oversubscription (10x slower otherwise)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_features_dynamic_frames(tmp_path):
    spec = build_graphs(random_models(["features"]))["features"]
    assert spec.inputs[0][1] == "uint8" and spec.inputs[0][2] == ["N", 224, 224, 3]
    result = export_graph(spec, tmp_path)
    assert result.exporter == "dynamo"
    assert result.parity.ok and result.parity_max_abs_err < 1e-4
    assert {c.sizes["N"] for c in result.parity.cases} == {1, 3}
    frames = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    out = OnnxRuntimeEngine({"features": result.path}, providers=["CPUExecutionProvider"]).run("features", {"frames": frames})
    assert out["regions"].shape == (2, 9, 512)
    np.testing.assert_allclose(np.linalg.norm(out["regions"], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["regions"], spec.torch_run({"frames": frames})["regions"], atol=1e-4)
