"""DRCA self-supervised training: the loss goes down, checkpoints load and resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from inference.drca import DRCA, load_published_checkpoint
from training.drca import (
    ClipCorpus,
    DRCATrainConfig,
    default_videos,
    info_nce_with_queue,
    load_trained_model,
    train_drca,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus() -> ClipCorpus:
    # a short stretch of one real video keeps decoding cheap
    return ClipCorpus.from_videos(default_videos()[:1], 8, fps=4.0, short_side=40, stride=2, holdout_fraction=0.25)


def _cfg(**kw: object) -> DRCATrainConfig:
    base = dict(img_size=32, steps_full=14, steps_dccm=6, batch_size=6, lr=2e-3, queue_size=0, warmup_steps=2,
                num_samples=50, checkpoint_every=5, device="cpu", fps=4.0)
    base.update(kw)
    return DRCATrainConfig(**base)  # type: ignore[arg-type]


def test_info_nce_masks_queue_entries_of_the_same_clip() -> None:
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    ids = torch.tensor([0, 10, 20])  # clip start positions; overlap window 1 = same clip only
    loss = info_nce_with_queue(a, p, ids, p.clone(), ids.clone(), 0.1, exclude_within=1)
    expected = []
    for i in range(3):  # row i sees all batch positives plus the queue entries of *other* clips
        keys = torch.cat([p, p[[j for j in range(3) if j != i]]])
        expected.append(torch.nn.functional.cross_entropy((a[i] @ keys.T / 0.1)[None], torch.tensor([i])))
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    # a window of 11 frames also drops the neighbouring clips (10 frames apart) as negatives
    wide = info_nce_with_queue(a, p, ids, p.clone(), ids.clone(), 0.1, exclude_within=11)
    assert wide < loss


def test_short_training_lowers_loss_and_writes_loadable_checkpoint(tmp_path: Path, corpus: ClipCorpus) -> None:
    cfg = _cfg()
    result = train_drca(cfg, tmp_path, corpus=corpus, progress=False)
    losses = result.losses
    assert len(losses) == cfg.total_steps and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:4]) / 4, sum(losses[cfg.steps_full - 4 : cfg.steps_full]) / 4
    assert last < first, losses
    assert result.loss_curve.stat().st_size > 0

    model = load_trained_model(result.checkpoint)
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(clips), result.model.eval()(clips))
        published = load_published_checkpoint(DRCA(model.cfg), result.published).eval()
        torch.testing.assert_close(published(clips), model(clips))

    # resuming a finished run is a no-op; extending it continues from the saved step
    again = train_drca(_cfg(steps_dccm=8), tmp_path, corpus=corpus, progress=False)
    assert again.losses[: cfg.total_steps] == losses and len(again.losses) == cfg.total_steps + 2


@pytest.mark.slow
def test_trained_drca_beats_untrained_on_copy_detection(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if not (request.config.getoption("--runslow", default=False) or os.environ.get("DUPWATCH_RUNSLOW")):
        pytest.skip("slow: run with --runslow or DUPWATCH_RUNSLOW=1")
    from bench.drca import compare_trained_vs_untrained

    cfg = DRCATrainConfig(steps_full=150, steps_dccm=50, lr=1e-3, queue_size=64, device="cpu")
    result = train_drca(cfg, tmp_path, progress=False)
    mc = cfg.model_config()
    full = ClipCorpus.from_videos(default_videos(), mc.num_frames, cfg.fps, 80, cfg.clip_stride, cfg.holdout_fraction)
    cmp = compare_trained_vs_untrained(result.model, full, cfg.img_size)
    print(f"copy-detection mAP untrained {cmp.untrained:.3f} trained {cmp.trained:.3f} ({cmp.num_queries} queries)")
    assert cmp.trained > cmp.untrained
