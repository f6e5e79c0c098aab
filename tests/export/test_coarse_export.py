"""DnS coarse student: dynamo export with dynamic B and T (+ padding mask), ORT-CPU parity."""

from __future__ import annotations

import pytest

from export.models import build_graphs, random_models
from export.onnx_export import export_graph
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


def test_coarse_dynamic_batch_and_length(tmp_path):
    spec = build_graphs(random_models(["coarse"]))["coarse"]
    result = export_graph(spec, tmp_path)
    assert result.exporter == "dynamo"
    assert result.parity.ok and result.parity_max_abs_err < 1e-4
    sizes = [c.sizes for c in result.parity.cases]
    assert {"B": 1, "T": 4} in sizes and {"B": 1, "T": 300} in sizes and {"B": 3, "T": 40} in sizes
    report = check_parity(spec, result.path, [{"B": 5, "T": 7}], seed=3)  # padded batch, untraced shape
    assert report.ok, report.summary()
