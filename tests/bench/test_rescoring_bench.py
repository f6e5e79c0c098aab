"""``dupwatch bench rescoring`` times the detector's two-way assessment beside the one-way one."""

from __future__ import annotations

import numpy as np

from dupwatch.paths import REPO_ROOT

DEFAULT = REPO_ROOT / "models" / "default"


def test_the_two_way_assessment_is_the_higher_of_both_directions() -> None:
    from bench.rescoring import _assess
    from detect.copy_head import copy_head_for
    from inference.bundle import load_bundle
    from inference.embedder import VideoModels

    bundle = load_bundle(DEFAULT)
    models = VideoModels(bundle, device="cpu")
    rng = np.random.default_rng(0)
    regions = rng.normal(size=(14, bundle.manifest.backbone.regions, bundle.manifest.backbone.dim)).astype(np.float32)
    query = regions[:6]
    candidates = {"inside": {"main": regions[2:14]}, "other": {"main": regions[[9, 1, 12, 4, 7]]}}
    head = copy_head_for(bundle)
    one_way = _assess(models, head, query, candidates, both=False)
    two_ways = _assess(models, head, query, candidates, both=True)
    reverse = [_assess(models, head, views["main"], {"q": {"main": query}}, both=False)[0] for views in candidates.values()]
    assert two_ways == [max(a, b) for a, b in zip(one_way, reverse, strict=True)]
