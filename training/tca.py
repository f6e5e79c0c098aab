"""Train TCA (seed 003) by contrastive learning with a memory bank of negatives.

Data
----
An ``.npz`` of cached frame features, one array ``[T, D]`` per video (key = video id), or a
single ``[N, T, D]`` array with an optional ``lengths`` ``[N]`` array (see
:func:`load_feature_npz`). No labels are needed: **positives are two augmented views of the same
video** (self-supervised instance discrimination, a stand-in for VCDB's annotated copies):

- temporal crop: a random window keeping ``crop_min``..100 % of the frames;
- speed change: resample the frame index at a rate in ``[1/max_speed, max_speed]``
  (nearest frame; rate > 1 skips frames, < 1 repeats them);
- frame drop: each frame dropped with probability ``drop_p`` (at least one kept);
- feature noise: Gaussian noise of ``noise_std`` × the per-video feature RMS.

Negatives are the other videos of the batch plus the memory bank (``bank_size`` = 4096,
momentum 0 — the slides' best setting, Table 1(e) — so the "key encoder" *is* the current
model and the bank simply stores the latest detached key embeddings, FIFO). Bank entries and
batch entries of the anchor's own video are masked out.

Loss: ``circle`` (γ = 256, m = 0.25, slides' best) or ``infonce`` (τ selectable), on the
video-level output (TCA_c, ``level="video"``, with the bank) or on frame-level outputs
(TCA_f, ``level="frame"``: chamfer similarity between views; in-batch negatives only, because a
bank of whole frame sequences is too large).

Checkpoints (``checkpoint.pt``) hold only tensors, ints, floats and strings
(``torch.load(..., weights_only=True)`` works): model, optimizer, step, bank, losses, config.
``model.pt`` is the bare TCA state_dict in the official key layout. ``loss.png`` is the curve.

The npz loader, checkpoint I/O and plotting here are reused by ``training/clip_ae.py``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from inference.tca import TCA, chamfer_similarity
from training.losses import CircleLoss, InfoNCELoss

__all__ = [
    "AugmentConfig",
    "TcaTrainConfig",
    "augment_view",
    "load_checkpoint",
    "load_feature_npz",
    "load_tca",
    "pad_batch",
    "plot_losses",
    "save_checkpoint",
    "train_tca",
]

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
CURVE_NAME = "loss.png"


# --------------------------------------------------------------------------------------------
# shared helpers (also used by training/clip_ae.py)


def load_feature_npz(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """Videos as a list of float32 ``[T, D]`` arrays (sorted by key).

    Layouts: one ``[T, D]`` array per key, or one ``[N, T, D]`` array (+ optional ``lengths`` ``[N]``).
    """
    with np.load(path, allow_pickle=False) as z:
        keys = sorted(k for k in z.files if k != "lengths")
        lengths = z["lengths"] if "lengths" in z.files else None
        arrays = {k: np.asarray(z[k], dtype=np.float32) for k in keys}
    videos: list[np.ndarray] = []
    for k in keys:
        a = arrays[k]
        if a.ndim == 3:
            n = a.shape[0]
            lens = lengths if lengths is not None else np.full(n, a.shape[1])
            if len(lens) != n:
                raise ValueError(f"lengths {len(lens)} does not match {k} {a.shape}")
            videos.extend(a[i, : int(lens[i])] for i in range(n))
        elif a.ndim == 2:
            videos.append(a)
        else:
            raise ValueError(f"{k}: expected [T, D] or [N, T, D], got {a.shape}")
    if not videos:
        raise ValueError(f"{path}: no feature arrays")
    dims = {v.shape[1] for v in videos}
    if len(dims) != 1 or any(v.shape[0] == 0 for v in videos):
        raise ValueError(f"{path}: all videos need T >= 1 and the same D, got D in {dims}")
    return videos


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomic save (write then rename) so an interrupted run never leaves a torn checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def plot_losses(losses: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=0.8, label="loss")
    if len(losses) >= 10:
        w = max(len(losses) // 20, 5)
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(w, len(losses) + 1), smooth, lw=1.5, label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# augmentation


@dataclass(frozen=True)
class AugmentConfig:
    crop_min: float = 0.6
    max_speed: float = 2.0
    drop_p: float = 0.1
    noise_std: float = 0.05
    max_len: int = 300


def augment_view(x: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """One augmented view of ``x`` ``[T, D]`` → ``[T', D]`` (T' >= 1)."""
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be [T, D] with T >= 1, got {x.shape}")
    t = x.shape[0]
    keep = max(1, int(np.ceil(t * rng.uniform(cfg.crop_min, 1.0))))
    start = int(rng.integers(0, t - keep + 1))
    y = x[start : start + keep]
    rate = float(np.exp(rng.uniform(-np.log(cfg.max_speed), np.log(cfg.max_speed))))
    idx = np.clip(np.round(np.arange(0.0, len(y), rate)).astype(np.int64), 0, len(y) - 1)
    y = y[idx]
    kept = rng.random(len(y)) >= cfg.drop_p
    if not kept.any():
        kept[rng.integers(len(y))] = True
    y = y[kept][: cfg.max_len]
    rms = float(np.sqrt(np.mean(y * y))) or 1.0
    return (y + rng.normal(0.0, cfg.noise_std * rms, y.shape)).astype(np.float32)


def pad_batch(videos: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of ``[T_i, D]`` → (``[B, T_max, D]`` zero-padded, mask ``[B, T_max]`` True = frame)."""
    t_max = max(v.shape[0] for v in videos)
    d = videos[0].shape[1]
    x = np.zeros((len(videos), t_max, d), dtype=np.float32)
    m = np.zeros((len(videos), t_max), dtype=bool)
    for i, v in enumerate(videos):
        x[i, : len(v)] = v
        m[i, : len(v)] = True
    return torch.from_numpy(x), torch.from_numpy(m)


# --------------------------------------------------------------------------------------------
# trainer


@dataclass(frozen=True)
class TcaTrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    loss: str = "circle"  # "circle" | "infonce"
    gamma: float = 256.0
    margin: float = 0.25
    temperature: float = 1.0 / 256.0
    level: str = "video"  # "video" | "frame"
    bank_size: int = 4096
    nlayers: int = 1
    nhead: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.loss not in ("circle", "infonce"):
            raise ValueError(f"loss must be 'circle' or 'infonce', got {self.loss!r}")
        if self.level not in ("video", "frame"):
            raise ValueError(f"level must be 'video' or 'frame', got {self.level!r}")
        if self.batch_size < 2 or self.steps < 1 or self.bank_size < 0:
            raise ValueError("need batch_size >= 2, steps >= 1, bank_size >= 0")


def _model_from_config(cfg: dict[str, Any]) -> TCA:
    return TCA(
        feature_size=int(cfg["feature_size"]),
        nlayers=int(cfg["nlayers"]),
        nhead=int(cfg["nhead"]),
        dim_feedforward=int(cfg["dim_feedforward"]),
        dropout=float(cfg["dropout"]),
    )


def load_tca(path: str | os.PathLike[str]) -> TCA:
    """A TCA in eval mode from a ``checkpoint.pt`` written by :func:`train_tca`."""
    ck = load_checkpoint(path)
    model = _model_from_config(ck["config"])
    model.load_state_dict(ck["model"])
    return model.eval()


def train_tca(
    features: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: TcaTrainConfig = TcaTrainConfig(),
    augment: AugmentConfig = AugmentConfig(),
    *,
    resume: bool = True,
    progress: bool = True,
) -> list[float]:
    """Train for ``config.steps`` total steps (resuming from ``out_dir/checkpoint.pt`` if present);
    returns the per-step losses of the whole run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    videos = load_feature_npz(features)
    n, d = len(videos), videos[0].shape[1]
    if n < 2:
        raise ValueError("need at least 2 videos for contrastive training")
    cfg_dict: dict[str, Any] = dataclasses.asdict(config) | {"feature_size": d}
    torch.manual_seed(config.seed)
    dev = torch.device(config.device)
    model = _model_from_config(cfg_dict).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn: torch.nn.Module = (
        CircleLoss(config.gamma, config.margin) if config.loss == "circle" else InfoNCELoss(config.temperature)
    )
    bank = torch.zeros(config.bank_size, d, device=dev)
    bank_ids = torch.full((config.bank_size,), -1, dtype=torch.long, device=dev)
    bank_ptr, step, losses = 0, 0, []

    ck_path = out / CHECKPOINT_NAME
    if resume and ck_path.exists():
        ck = load_checkpoint(ck_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, bank_ptr = int(ck["step"]), int(ck["bank_ptr"])
        bank, bank_ids = ck["bank"].to(dev), ck["bank_ids"].to(dev)
        losses = [float(v) for v in ck["losses"].tolist()]

    def save() -> None:
        save_checkpoint(
            ck_path,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "bank": bank,
                "bank_ids": bank_ids,
                "bank_ptr": bank_ptr,
                "losses": torch.tensor(losses, dtype=torch.float64),
                "config": cfg_dict,
            },
        )
        torch.save(model.state_dict(), out / MODEL_NAME)
        plot_losses(losses, out / CURVE_NAME, f"TCA ({config.loss}, {config.level}-level)")

    batch = min(config.batch_size, n)
    model.train()
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc="train tca")
    while step < config.steps:
        rng = np.random.default_rng([config.seed, step])  # batch depends only on (seed, step): resumable
        ids = rng.choice(n, size=batch, replace=False)
        x1, m1 = (t.to(dev) for t in pad_batch([augment_view(videos[i], rng, augment) for i in ids]))
        x2, m2 = (t.to(dev) for t in pad_batch([augment_view(videos[i], rng, augment) for i in ids]))
        ids_t = torch.from_numpy(ids).long().to(dev)
        f1, z1 = model(x1, m1)
        if config.level == "video":
            with torch.no_grad():  # momentum 0: the key encoder is the current model
                z2 = model(x2, m2)[1]
            cand = torch.cat([z2, bank])
            cand_ids = torch.cat([ids_t, bank_ids])
            sim = z1 @ cand.T
        else:
            f2, _ = model(x2, m2)
            cand_ids = ids_t
            sim = chamfer_similarity(f1, f2, m1, m2)
        positive = torch.zeros_like(sim, dtype=torch.bool)
        positive[:, :batch] = torch.eye(batch, dtype=torch.bool, device=dev)
        valid = positive | ((cand_ids[None, :] != ids_t[:, None]) & (cand_ids[None, :] >= 0))
        loss = loss_fn(sim, positive, valid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if config.level == "video" and config.bank_size > 0:
            with torch.no_grad():
                slots = (bank_ptr + torch.arange(batch, device=dev)) % config.bank_size
                bank[slots] = F.normalize(z2.detach(), dim=-1)
                bank_ids[slots] = ids_t
                bank_ptr = int((bank_ptr + batch) % config.bank_size)
        losses.append(float(loss.detach()))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            save()
    bar.close()
    if not ck_path.exists():
        save()
    return losses
