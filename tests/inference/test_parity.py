"""Every output listed in the fixture README is reproduced within 1e-4, and a broken layer fails."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inference.parity import default_parity_dir, run_parity

PARITY = default_parity_dir()

EXPECTED = {
    ("dns_cg_student", "embeddings"), ("dns_cg_student", "batch_embeddings"), ("dns_cg_student", "similarity"),
    ("dns_fg_att_student", "indexed"), ("dns_fg_att_student", "similarity"), ("dns_fg_att_student", "similarity_matrix_2_1"),
    ("dns_fg_bin_student", "indexed"), ("dns_fg_bin_student", "similarity"), ("dns_fg_bin_student", "similarity_matrix_2_1"),
    ("dns_selector_cg-fg_att", "self_similarity"), ("dns_selector_cg-fg_att", "mlp_output"),
    ("s2vs_similarity_network", "indexed"), ("s2vs_similarity_network", "similarity"),
    ("s2vs_similarity_network", "similarity_matrix_3_1"), ("s2vs_similarity_network", "frame_to_frame_3_1"),
    ("features", "regions"), ("features", "pca_output"),
}


def test_all_fixture_outputs_reproduced() -> None:
    results = run_parity(PARITY)
    assert {(r.fixture, r.case) for r in results} == EXPECTED
    bad = [r.line() for r in results if not r.ok]
    assert not bad, bad
    assert all(r.max_abs_err <= 1e-4 for r in results)


def _replicate_padding(name: str, model: nn.Module) -> None:
    if hasattr(model, "visil_head"):
        model.visil_head.padding = "replicate"


def _transpose_attention(name: str, model: nn.Module) -> None:
    if hasattr(model, "attention") and hasattr(model.attention, "transform"):
        with torch.no_grad():
            model.attention.transform.weight.copy_(model.attention.transform.weight.t().clone())


@pytest.mark.parametrize("perturb,fixture", [
    (_replicate_padding, "dns_fg_att_student"),
    (_transpose_attention, "s2vs_similarity_network"),
])
def test_perturbed_layer_fails_parity(perturb, fixture: str) -> None:
    results = run_parity(PARITY, perturb=perturb, only=[fixture])
    assert results and any(not r.ok for r in results)


def test_wrong_region_kernel_fails_parity() -> None:
    def perturb(name: str, module: nn.Module) -> None:
        if name == "features":
            module.kernels = [28, 14, 7, 3]  # RMAC-style layer3 kernel instead of 6

    results = {r.case: r for r in run_parity(PARITY, perturb=perturb, only=["features"])}
    assert not results["regions"].ok and results["pca_output"].ok
