"""The exporter and the engines bench load a trained bundle's heads the way the embedder does."""

from __future__ import annotations

from dupwatch.paths import REPO_ROOT
from export.models import load_torch_models
from inference.bundle import load_bundle


def test_default_bundle_heads_load_for_export() -> None:
    """The manifest's ``config`` records training (loss, steps, ...), not constructor arguments:
    passing it to the architecture once crashed ``dupwatch bench engines --bundle models/default``."""
    bundle = load_bundle(REPO_ROOT / "models" / "default")
    models = load_torch_models(bundle)
    assert {"features", "coarse", "fine", "selector"} <= set(models)
    assert all(not m.training for m in models.values())
    assert models["fine"].min_frames == int(bundle.entry("fine").config["min_frames"])
