"""Clip autoencoder (seed 004): model contract and the three-stage trainer on tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference.clip_autoencoder import ClipAutoencoder, split_clips, video_distance
from training.clip_ae import ClipAeTrainConfig, load_clip_ae, stage_bounds, train_clip_ae
from training.tca import load_checkpoint
from tests.training.test_tca_training import write_tiny_features

SMALL = dict(batch_size=16, clip_len=4, hidden=32, embed_dim=32, hard_pool=128, checkpoint_every=100)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_split_clips_disjoint_and_tail_padding() -> None:
    x = np.arange(10, dtype=np.float32)[:, None].repeat(2, 1)
    clips, starts = split_clips(x, 4)
    assert clips.shape == (3, 4, 2) and starts.tolist() == [0, 4, 8]
    assert clips[2, :, 0].tolist() == [8, 9, 9, 9]
    assert split_clips(x[:2], 4)[0].shape == (1, 4, 2)
    assert split_clips(x, 4, stride=2)[1].tolist() == [0, 2, 4, 6]  # clip 6..9 already reaches the end


def test_model_shapes_and_contract() -> None:
    model = ClipAutoencoder(feature_dim=32, clip_len=5, hidden=16, embed_dim=8, blocks=2).eval()
    recon, z = model(torch.randn(3, 5, 32))
    assert recon.shape == (3, 5, 32) and z.shape == (3, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match=r"\[B, 5, 32\]"):
        model(torch.randn(3, 4, 32))
    emb = model.embed_video(np.random.default_rng(0).normal(size=(12, 32)).astype(np.float32))
    assert emb.shape == (3, 8)
    assert video_distance(emb, emb) == pytest.approx(0.0, abs=1e-9)


def test_three_stages_lower_loss_and_checkpoint_roundtrips(tmp_path: Path) -> None:
    feats = write_tiny_features(tmp_path / "f.npz")
    out = tmp_path / "run"
    steps = 60
    losses = train_clip_ae(feats, out, ClipAeTrainConfig(steps=steps, **SMALL), progress=False)
    a, b = stage_bounds(steps)
    assert len(losses) == steps and (a, b) == (24, 48)
    assert np.mean(losses[a - 4 : a]) < 0.9 * np.mean(losses[:4])  # reconstruction
    assert np.mean(losses[b - 6 : b]) < 0.7 * np.mean(losses[a : a + 6])  # triplet
    for name in ("checkpoint.pt", "model.pt", "loss.png"):
        assert (out / name).stat().st_size > 0
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["step"] == steps
    assert ck["hard"].shape == (26, 3) and ck["easy"].shape == (102, 3)  # top 20 % of a 128 pool

    m1, m2 = load_clip_ae(out / "checkpoint.pt"), load_clip_ae(out / "checkpoint.pt")
    x = torch.randn(5, 4, 32)
    torch.testing.assert_close(m1(x)[1], m2(x)[1], rtol=0, atol=0)
    # same video (shifted, noisy) is closer under Bi-DTW than another video
    v = np.load(feats)
    e0 = m1.embed_video(v["v00"])
    e0_noisy = m1.embed_video(v["v00"] + 0.05 * np.random.default_rng(1).normal(size=v["v00"].shape).astype(np.float32))
    assert video_distance(e0, e0_noisy) < min(video_distance(e0, m1.embed_video(v[f"v{i:02d}"])) for i in range(1, 16))


def test_resume_keeps_history(tmp_path: Path) -> None:
    feats = write_tiny_features(tmp_path / "f.npz")
    out = tmp_path / "run"
    first = train_clip_ae(feats, out, ClipAeTrainConfig(steps=5, **SMALL), progress=False)
    again = train_clip_ae(feats, out, ClipAeTrainConfig(steps=5, **SMALL), progress=False)
    assert again == first  # nothing left to do


def test_cli_train_clip_ae(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from training.cli import train_app

    feats = write_tiny_features(tmp_path / "f.npz")
    res = CliRunner().invoke(
        train_app,
        ["clip-ae", "--features", str(feats), "--out", str(tmp_path / "cli"), "--steps", "4", "--clip-len", "4",
         "--batch-size", "4", "--embed-dim", "16", "--hard-pool", "32"],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli" / "checkpoint.pt").exists()
