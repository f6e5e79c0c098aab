"""Train the clip autoencoder of seed 004 in its three stages (Algorithm 1).

1. ``pretrain`` — reconstruction (MSE between clip features and their reconstruction; the seed's
   "softmax loss" for reconstruction is not meaningful for real-valued features).
2. ``triplet`` — seed Eq. (4)/(5): ``max(0, ||a − p||² − ||a − n||² + τ)``; L2 regularization as
   Adam ``weight_decay`` (seed: λ = 0.001, SGD — Adam converges in the short runs we can afford).
   Without class labels the **video is the class**: anchor and positive are augmented clips of
   the same video (feature noise, ±1 frame temporal shift, frame drop by repeating a neighbour),
   the negative is a clip of another video.
3. ``hard`` — at the start of the stage a fixed pool of triplets is scored, the top 20 % by
   triplet loss form the challenging set, and each batch takes 50 % from it and 50 % from the
   rest of the pool (seed Algorithm 1, steps 3–4).

``--steps N`` is split 40 % / 40 % / 20 % across the stages. Batches depend only on
``(seed, step)``, so a resumed run sees the same data. Checkpoints hold only tensors and
primitives (``weights_only=True``); ``loss.png`` shows all stages with their boundaries.
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

from inference.clip_autoencoder import ClipAutoencoder, split_clips
from training.losses import TripletLoss
from training.tca import load_checkpoint, load_feature_npz, plot_losses, save_checkpoint

__all__ = ["ClipAeTrainConfig", "load_clip_ae", "stage_bounds", "train_clip_ae"]

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
CURVE_NAME = "loss.png"


@dataclass(frozen=True)
class ClipAeTrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-3
    clip_len: int = 8
    hidden: int = 64
    embed_dim: int = 128
    blocks: int = 2
    margin: float = 0.2
    noise_std: float = 0.05
    hard_fraction: float = 0.2
    hard_pool: int = 1024
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.steps < 3 or self.batch_size < 2:
            raise ValueError("need steps >= 3 (one per stage) and batch_size >= 2")
        if not 0 < self.hard_fraction < 1:
            raise ValueError("hard_fraction must be in (0, 1)")


def stage_bounds(steps: int) -> tuple[int, int]:
    """Steps ``[0, a)`` pretrain, ``[a, b)`` triplet, ``[b, steps)`` hard."""
    a = max(1, int(round(0.4 * steps)))
    b = max(a + 1, int(round(0.8 * steps)))
    return a, min(b, steps - 1)


def _model(cfg: dict[str, Any]) -> ClipAutoencoder:
    return ClipAutoencoder(
        feature_dim=int(cfg["feature_dim"]),
        clip_len=int(cfg["clip_len"]),
        hidden=int(cfg["hidden"]),
        embed_dim=int(cfg["embed_dim"]),
        blocks=int(cfg["blocks"]),
    )


def load_clip_ae(path: str | os.PathLike[str]) -> ClipAutoencoder:
    """A ClipAutoencoder in eval mode from a ``checkpoint.pt`` written by :func:`train_clip_ae`."""
    ck = load_checkpoint(path)
    model = _model(ck["config"])
    model.load_state_dict(ck["model"])
    return model.eval()


def _augment(clips: np.ndarray, idx: np.ndarray, rng: np.random.Generator, noise_std: float) -> torch.Tensor:
    """Augmented copies of ``clips[idx]`` ``[B, k, D]``: ±1 frame shift, one frame repeated, noise."""
    x = clips[idx].copy()
    k = x.shape[1]
    for b in range(len(x)):
        s = int(rng.integers(-1, 2))
        if s:
            x[b] = x[b][np.clip(np.arange(k) + s, 0, k - 1)]
        if k > 1 and rng.random() < 0.5:
            j = int(rng.integers(1, k))
            x[b, j] = x[b, j - 1]
    rms = float(np.sqrt(np.mean(x * x))) or 1.0
    return torch.from_numpy((x + rng.normal(0.0, noise_std * rms, x.shape)).astype(np.float32))


def _sample_triplets(owner: np.ndarray, by_video: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` (anchor, positive, negative) clip indices; positive from the anchor's video."""
    a = rng.integers(0, len(owner), n)
    p = np.array([rng.choice(by_video[owner[i]]) for i in a])
    n_videos = len(by_video)
    neg_v = (owner[a] + rng.integers(1, n_videos, n)) % n_videos
    neg = np.array([rng.choice(by_video[v]) for v in neg_v])
    return np.stack([a, p, neg], 1)


def train_clip_ae(
    features: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: ClipAeTrainConfig = ClipAeTrainConfig(),
    *,
    resume: bool = True,
    progress: bool = True,
) -> list[float]:
    """Run (or resume) the three stages; returns the per-step losses (reconstruction MSE during
    ``pretrain``, triplet loss afterwards)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    videos = load_feature_npz(features)
    if len(videos) < 2:
        raise ValueError("need at least 2 videos (negatives come from other videos)")
    parts = [split_clips(v, config.clip_len)[0] for v in videos]
    clips = np.concatenate(parts)
    owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    by_video = [np.flatnonzero(owner == i) for i in range(len(videos))]
    cfg_dict: dict[str, Any] = dataclasses.asdict(config) | {"feature_dim": int(clips.shape[2])}

    torch.manual_seed(config.seed)
    dev = torch.device(config.device)
    model = _model(cfg_dict).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    triplet = TripletLoss(config.margin)
    per_triplet = TripletLoss(config.margin, reduction="none")
    step, losses = 0, []
    hard = torch.empty(0, 3, dtype=torch.long)
    easy = torch.empty(0, 3, dtype=torch.long)

    ck_path = out / CHECKPOINT_NAME
    if resume and ck_path.exists():
        ck = load_checkpoint(ck_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step = int(ck["step"])
        losses = [float(v) for v in ck["losses"].tolist()]
        hard, easy = ck["hard"], ck["easy"]

    a_end, t_end = stage_bounds(config.steps)

    def save(plot: bool = True) -> None:
        save_checkpoint(
            ck_path,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "losses": torch.tensor(losses, dtype=torch.float64),
                "hard": hard,
                "easy": easy,
                "config": cfg_dict,
            },
        )
        torch.save(model.state_dict(), out / MODEL_NAME)
        if plot:
            plot_losses(losses, out / CURVE_NAME, f"clip AE: pretrain <{a_end} | triplet <{t_end} | hard")

    bs = config.batch_size
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc="train clip-ae")
    while step < config.steps:
        rng = np.random.default_rng([config.seed, step])
        model.train()
        if step < a_end:
            x = _augment(clips, rng.integers(0, len(clips), bs), rng, config.noise_std).to(dev)
            recon, _ = model(x)
            loss = F.mse_loss(recon, x)  # seed Eq. (1): L(v, h(f(v)))
            stage = "pretrain"
        else:
            if step >= t_end and len(hard) == 0:
                pool = _sample_triplets(owner, by_video, config.hard_pool, np.random.default_rng([config.seed, 1, 0]))
                model.eval()
                with torch.no_grad():
                    prng = np.random.default_rng([config.seed, 2, 0])
                    views = [_augment(clips, pool[:, c], prng, config.noise_std).to(dev) for c in range(3)]
                    scores = per_triplet(*(model.encode(v) for v in views))
                order = torch.argsort(scores, descending=True).cpu()
                n_hard = max(1, int(round(config.hard_fraction * len(pool))))
                pool_t = torch.from_numpy(pool).long()
                hard, easy = pool_t[order[:n_hard]], pool_t[order[n_hard:]]
                model.train()
            if step < t_end:
                trip = _sample_triplets(owner, by_video, bs, rng)
                stage = "triplet"
            else:
                h = bs // 2
                pick_h = hard[torch.from_numpy(rng.integers(0, len(hard), h))]
                src = easy if len(easy) else hard
                pick_e = src[torch.from_numpy(rng.integers(0, len(src), bs - h))]
                trip = torch.cat([pick_h, pick_e]).numpy()
                stage = "hard"
            emb = [model.encode(_augment(clips, trip[:, c], rng, config.noise_std).to(dev)) for c in range(3)]
            loss = triplet(*emb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        bar.update(1)
        bar.set_postfix(stage=stage, loss=f"{losses[-1]:.4f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            save()
        elif step in (a_end, t_end):
            save(plot=False)  # stage boundary: resumable, but skip the plot
    bar.close()
    if not ck_path.exists():
        save()
    return losses
