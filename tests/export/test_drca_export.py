"""DRCA clip encoder (tiny config) with DCCM hard top-K: dynamo export, dynamic B, ORT-CPU parity."""

from __future__ import annotations

import pytest
import torch

from export.models import build_graphs, export_split_indices, random_models
from export.onnx_export import export_graph
from inference.drca.rank import split_indices

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """2 shared cores: one intra-op thread avoids OpenMP oversubscription (10x slower otherwise)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_export_split_indices_matches_stable_sort():
    g = torch.Generator().manual_seed(0)
    for k in (1, 3, 4, 7):
        scores = torch.rand(16, 8, generator=g)
        for a, b in zip(split_indices(scores, k), export_split_indices(scores, k), strict=True):
            assert torch.equal(a, b)


def test_drca_hard_topk_export(tmp_path):
    spec = build_graphs(random_models(["drca"], drca_preset="tiny"))["drca"]
    assert spec.inputs[0][2][:3] == ["B", 8, 3]
    result = export_graph(spec, tmp_path, shapes=[{"B": 1}, {"B": 3}])
    assert result.exporter == "dynamo"
    assert result.parity.ok and result.parity_max_abs_err < 1e-4, result.parity.summary()
    # the reference is the unmodified eval-mode model (DCCM with the library's split_indices)
    assert not hasattr(spec.module.model.transformer_layers.dccm, "inner")
