"""``dupwatch bench engine-settings`` reports the flat-frame rule's cost side by side."""

from __future__ import annotations

import numpy as np

from dupwatch.paths import REPO_ROOT

DEFAULT = REPO_ROOT / "models" / "default"


def test_the_engine_settings_bench_reports_the_rule_cost_side_by_side():
    from bench.engine_settings import _flat_frame_cost
    from inference.bundle import load_bundle
    from inference.engines import onnx_graphs

    bundle = load_bundle(DEFAULT)
    clip = np.random.default_rng(0).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    got = _flat_frame_cost(bundle, onnx_graphs(bundle), clip, 0.01)
    assert got["frames_per_s rule off"] > 0 and got["frames_per_s rule on"] > 0 and got["ratio on/off"] > 0
