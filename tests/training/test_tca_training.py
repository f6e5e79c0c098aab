"""TCA trainer mechanics on tiny structured data, and the contrastive losses it uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.losses import CircleLoss, InfoNCELoss, TripletLoss, moco_logits
from training.tca import (
    AugmentConfig,
    TcaTrainConfig,
    augment_view,
    load_checkpoint,
    load_feature_npz,
    load_tca,
    train_tca,
)


def write_tiny_features(path: Path, n: int = 16, t: int = 12, d: int = 32, seed: int = 0) -> Path:
    """16 videos of 12 × 32-d: 3 "scenes" per video (a base vector held for 4 frames) + noise."""
    rng = np.random.default_rng(seed)
    vids = {}
    for v in range(n):
        base = rng.normal(size=(3, d))
        vids[f"v{v:02d}"] = (np.repeat(base, t // 3, axis=0) + 0.3 * rng.normal(size=(t, d))).astype(np.float32)
    np.savez(path, **vids)
    return path


SMALL = dict(batch_size=8, lr=1e-3, nhead=4, dim_feedforward=64, checkpoint_every=10)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------- losses


def test_infonce_single_positive_is_cross_entropy() -> None:
    sim = torch.randn(4, 6)
    pos = torch.zeros(4, 6, dtype=torch.bool)
    pos[:, 0] = True
    got = InfoNCELoss(0.1)(sim, pos)
    assert got == pytest.approx(float(F.cross_entropy(sim / 0.1, torch.zeros(4, dtype=torch.long))), rel=1e-5)


def test_infonce_ignores_invalid_columns() -> None:
    sim = torch.randn(2, 5)
    pos = torch.zeros(2, 5, dtype=torch.bool)
    pos[:, 0] = True
    valid = torch.tensor([[True, True, True, False, False]] * 2)
    got = InfoNCELoss(0.5)(sim, pos, valid)
    assert got == pytest.approx(float(InfoNCELoss(0.5)(sim[:, :3], pos[:, :3])), rel=1e-5)


def test_circle_loss_closed_form_and_ordering() -> None:
    g, m = 256.0, 0.25
    sim = torch.tensor([[0.9, 0.1, 0.3]])
    pos = torch.tensor([[True, False, False]])
    sp, sn = 0.9, torch.tensor([0.1, 0.3])
    expected = F.softplus(
        torch.logsumexp(g * torch.clamp_min(sn + m, 0) * (sn - m), 0) - g * max(1 + m - sp, 0) * (sp - (1 - m))
    )
    assert CircleLoss(g, m)(sim, pos) == pytest.approx(float(expected), rel=1e-5)
    easy = CircleLoss()(torch.tensor([[0.95, -0.2, -0.3]]), pos)
    hard = CircleLoss()(torch.tensor([[0.3, 0.6, -0.3]]), pos)
    assert easy < hard


def test_loss_contract_errors() -> None:
    with pytest.raises(ValueError, match="positive"):
        InfoNCELoss()(torch.randn(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="negative"):
        CircleLoss()(torch.randn(2, 1), torch.ones(2, 1, dtype=torch.bool))
    with pytest.raises(ValueError):
        TripletLoss()(torch.randn(2, 3), torch.randn(2, 3), torch.randn(3, 3))


def test_moco_logits_layout() -> None:
    q, k, bank = F.normalize(torch.randn(3, 4), dim=1), F.normalize(torch.randn(3, 4), dim=1), torch.randn(5, 4)
    sim, pos = moco_logits(q, k, bank)
    assert sim.shape == (3, 6) and pos[:, 0].all() and not pos[:, 1:].any()
    torch.testing.assert_close(sim[:, 0], (q * k).sum(1))


# ----------------------------------------------------------------------------- data


def test_augment_view_shapes() -> None:
    rng = np.random.default_rng(0)
    x = np.random.default_rng(1).normal(size=(12, 32)).astype(np.float32)
    for _ in range(50):
        y = augment_view(x, rng, AugmentConfig(max_len=10))
        assert y.ndim == 2 and y.shape[1] == 32 and 1 <= y.shape[0] <= 10 and y.dtype == np.float32


def test_npz_stacked_layout_with_lengths(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", features=np.ones((3, 5, 4), np.float32), lengths=np.array([5, 2, 1]))
    assert [v.shape for v in load_feature_npz(tmp_path / "s.npz")] == [(5, 4), (2, 4), (1, 4)]


# ----------------------------------------------------------------------------- trainer


def test_train_lowers_loss_and_checkpoint_roundtrips(tmp_path: Path) -> None:
    feats = write_tiny_features(tmp_path / "f.npz")
    out = tmp_path / "run"
    losses = train_tca(feats, out, TcaTrainConfig(steps=30, **SMALL), progress=False)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    for name in ("checkpoint.pt", "model.pt", "loss.png"):
        assert (out / name).stat().st_size > 0

    ck = load_checkpoint(out / "checkpoint.pt")  # weights_only=True
    assert ck["step"] == 30 and ck["bank"].shape == (4096, 32) and int((ck["bank_ids"] >= 0).sum()) == 240
    fresh = load_tca(out / "checkpoint.pt")
    fresh2 = load_tca(out / "checkpoint.pt")
    fresh2.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    x = torch.from_numpy(load_feature_npz(feats)[0])[None]
    torch.testing.assert_close(fresh(x)[1], fresh2(x)[1], rtol=0, atol=0)
    # the trained model separates videos better than chance: own augmented view ranks first mostly
    videos = load_feature_npz(feats)
    with torch.no_grad():
        z = torch.cat([fresh(torch.from_numpy(v)[None])[1] for v in videos])
        zc = torch.cat([fresh(torch.from_numpy(v[2:10])[None])[1] for v in videos])
    top1 = (zc @ z.T).argmax(1) == torch.arange(len(videos))
    assert top1.float().mean() >= 0.75


def test_resume_continues_from_checkpoint(tmp_path: Path) -> None:
    feats = write_tiny_features(tmp_path / "f.npz")
    out = tmp_path / "run"
    first = train_tca(feats, out, TcaTrainConfig(steps=10, **SMALL), progress=False)
    both = train_tca(feats, out, TcaTrainConfig(steps=15, **SMALL), progress=False)
    assert len(both) == 15 and both[:10] == first
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 15


@pytest.mark.parametrize(("loss", "level"), [("infonce", "video"), ("circle", "frame"), ("infonce", "frame")])
def test_other_losses_and_levels_run(tmp_path: Path, loss: str, level: str) -> None:
    feats = write_tiny_features(tmp_path / "f.npz")
    cfg = TcaTrainConfig(steps=4, loss=loss, level=level, temperature=0.1, **SMALL)
    losses = train_tca(feats, tmp_path / "run", cfg, progress=False)
    assert len(losses) == 4 and all(np.isfinite(losses))


def test_cli_train_tca(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from training.cli import train_app

    feats = write_tiny_features(tmp_path / "f.npz")
    res = CliRunner().invoke(
        train_app,
        ["tca", "--features", str(feats), "--out", str(tmp_path / "cli"), "--steps", "3", "--batch-size", "4",
         "--nhead", "4", "--dim-feedforward", "64"],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli" / "checkpoint.pt").exists()
