"""S²VS self-supervised training of the similarity network on cached features (``dupwatch train s2vs``).

Digest §3.4/§3.5. A batch holds ``N`` clips of ``T_B`` frames; each appears twice (a weak and a
strong cached view, then a temporal edit on the strong one) → ``B = 2N`` clips and the ``B × B``
similarity matrix of :class:`inference.s2vs.S2VSSimilarityNetwork` (published key layout).

- positives: the two views of the same clip;
- **hard negatives of another moment** (issue #12): clips are drawn as pairs of *non-overlapping*
  windows of the same source, so every row has the same footage at another moment among its
  negatives; windows overlapping in source time are never negatives (they are left out of the row);
- picture-in-picture views are neither positive nor negative to clips of the host source.

Warm start (``warm_start_steps``): the network first regresses (L1) onto plain chamfer similarity of the
same batch, so the self-supervised stage starts from a sensible similarity instead of a random comparator.

Loss: ``InfoNCE(τ = 0.03) + λ · SSHN (λ = 3) + r · similarity regularisation (r = 1)`` with
SSHN = ``-log S_ii - log(1 - max_neg S_ij)`` on similarities rescaled to [0, 1] (clamped at 1e-3),
and the regulariser on the comparator output before the hard tanh. AdamW, linear warmup then cosine
decay to 0.1 × lr. Resumable (``checkpoint.pt``), weights in ``s2vs.pth`` (bare state_dict), loss curve ``loss.png``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inference.s2vs import S2VSSimilarityNetwork
from inference.similarities import chamfer_similarity, hard_tanh
from training.augment import temporal_view
from training.corpus import FeatureCorpus
from training.losses import InfoNCELoss
from training.pca import pca_layer, whiten
from training.tca import load_checkpoint, plot_losses, save_checkpoint

__all__ = ["S2VSTrainConfig", "S2VSResult", "train_s2vs", "pairwise_similarity", "sshn_loss",
           "similarity_regularization", "whiten_corpus", "sample_batch", "lr_at", "chamfer_matrix"]

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "s2vs.pth"
CURVE_NAME = "loss.png"


@dataclass
class S2VSTrainConfig:
    steps: int = 400
    clips: int = 8
    """N: clips per batch (B = 2N); drawn as N/2 sources × 2 non-overlapping windows where possible."""
    clip_frames: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup: int = 40
    temperature: float = 0.03
    lam: float = 3.0
    reg: float = 1.0
    seed: int = 0
    save_every: int = 100
    warm_start_steps: int = 100
    """First steps regress the network onto plain chamfer similarity (L1), so S²VS starts from chamfer, not from noise."""
    warm_start_lr: float = 1e-3
    moment_negatives: bool = True
    """Non-overlapping windows of the same source are negatives (issue #12); off: one window per source, no such pairs."""
    progress: bool = True


@dataclass
class S2VSResult:
    model: S2VSSimilarityNetwork
    losses: list[float]
    weights: Path
    curve: Path


def whiten_corpus(corpus: FeatureCorpus, pca: dict[str, torch.Tensor]) -> dict[str, list[np.ndarray]]:
    """Every cached view whitened to ``[T, R, K]`` float32."""
    layer = pca_layer(pca)
    return {n: [whiten(layer, v).numpy() for v in views] for n, views in corpus.videos.items()}


def lr_at(step: int, cfg: S2VSTrainConfig) -> float:
    if step < cfg.warm_start_steps:
        return cfg.warm_start_lr
    step -= cfg.warm_start_steps
    if step < cfg.warmup:
        return cfg.lr * (0.01 + 0.99 * step / max(1, cfg.warmup))
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warm_start_steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, t))))


def _windows(length: int, t: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Two non-overlapping windows ``[start, end)`` of ``t`` frames when the video is long enough, else one."""
    if length >= 2 * t:
        a = int(rng.integers(0, length - 2 * t + 1))
        b = int(rng.integers(a + t, length - t + 1))
        return [(a, a + t), (b, b + t)]
    start = int(rng.integers(0, max(0, length - t) + 1))
    return [(start, min(length, start + t))]


def sample_batch(videos: dict[str, list[np.ndarray]], hosts: dict[str, list[str]], cfg: S2VSTrainConfig,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """→ clips ``[2N, T_B, R, D]``, positive ``[2N, 2N]`` and valid ``[2N, 2N]`` masks (diagonal invalid)."""
    names = sorted(videos)
    items: list[tuple[str, tuple[int, int]]] = []
    order = list(rng.permutation(len(names)))
    while len(items) < cfg.clips:
        if not order:
            order = list(rng.permutation(len(names)))
        name = names[order.pop()]
        windows = _windows(len(videos[name][0]), cfg.clip_frames, rng)
        for w in (windows if cfg.moment_negatives else windows[:1]):
            if len(items) < cfg.clips:
                items.append((name, w))
    clips, meta = [], []
    span = cfg.clip_frames
    for idx, (name, (a, b)) in enumerate(items):
        views = videos[name]
        weak = views[int(rng.integers(0, min(2, len(views))))][a:b]
        k = int(rng.integers(1, len(views))) if len(views) > 1 else 0
        # the strong view gets a temporal edit drawn around the same window (it may look beyond for fast forward)
        lo, hi = max(0, a - span // 2), min(len(views[k]), b + span)
        strong = temporal_view(views[k][lo:hi] if rng.random() < 0.5 else views[k][a:b], span, rng)
        clips += [_pad(weak, span), _pad(strong, span)]
        host = hosts.get(name, [""] * len(views))[k] if name in hosts else ""
        meta += [(idx, name, (a, b), ""), (idx, name, (lo, hi), host)]
    n = len(clips)
    positive = torch.zeros(n, n, dtype=torch.bool)
    valid = ~torch.eye(n, dtype=torch.bool)
    for i, (ii, ni, wi, hi) in enumerate(meta):
        for j, (ij, nj, wj, hj) in enumerate(meta):
            if i == j:
                continue
            if ii == ij:
                positive[i, j] = True
            elif ni == nj and (min(wi[1], wj[1]) > max(wi[0], wj[0]) or not cfg.moment_negatives):
                valid[i, j] = False  # overlapping source time: not a clean negative
            elif (hi and hi == nj) or (hj and hj == ni):
                valid[i, j] = False  # picture-in-picture host content
    return torch.from_numpy(np.stack(clips)).float(), positive, valid


def _pad(x: np.ndarray, t: int) -> np.ndarray:
    if len(x) >= t:
        return x[:t]
    reps = int(np.ceil(t / max(1, len(x))))
    return np.concatenate([x] * reps)[:t]


def pairwise_similarity(net: S2VSSimilarityNetwork, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs of ``[B, T, R, D]`` clips → (similarities ``[B, B]`` in [-1, 1], regulariser scalar)."""
    x = net.index_video(clips)
    b = x.shape[0]
    q = x.repeat_interleave(b, dim=0)
    t = x.repeat(b, 1, 1, 1)
    f2f = net.frame_to_frame_similarity(q, t)  # [B*B, 1, T, T]
    out, _ = net.visil_head(f2f, None)
    reg = (torch.clamp(out + 1.0, max=0.0).abs() + torch.clamp(out - 1.0, min=0.0)).sum() / b
    sim = chamfer_similarity(hard_tanh(out), max_axis=3, mean_axis=2).reshape(b, b)
    return sim, reg


@torch.no_grad()
def chamfer_matrix(clips: torch.Tensor) -> torch.Tensor:
    """Plain chamfer (region max, mean; frame max, mean) between all clips ``[B, T, R, D]`` → ``[B, B]``."""
    sim = torch.einsum("aiok,bjpk->abiopj", clips, clips)  # [B, B, T, R, R, T]
    return sim.max(dim=4).values.mean(dim=3).max(dim=3).values.mean(dim=2)


def similarity_regularization(out: torch.Tensor) -> torch.Tensor:
    """ViSiL regulariser: ``Σ |min(0, M + 1)| + Σ |max(0, M − 1)|`` on comparator outputs before hard tanh."""
    return (torch.clamp(out + 1.0, max=0.0).abs() + torch.clamp(out - 1.0, min=0.0)).sum()


def sshn_loss(sim01: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor, eps: float = 1e-3,
              rows: torch.Tensor | None = None) -> torch.Tensor:
    """``-log S_ii - log(1 - max_{j ∉ p(i) ∪ {i}} S_ij)`` averaged over rows; ``sim01`` in [0, 1]."""
    self_term = -torch.log(torch.diagonal(sim01).clamp_min(eps))
    neg = valid & ~positive
    hardest = sim01.masked_fill(~neg, -1.0).max(dim=1).values
    per_row = self_term - torch.log((1.0 - hardest).clamp_min(eps))
    return per_row.mean() if rows is None else per_row[rows].mean()


def train_s2vs(corpus: FeatureCorpus, pca: dict[str, torch.Tensor], out_dir: str | Path,
               cfg: S2VSTrainConfig = S2VSTrainConfig(), *, resume: bool = True) -> S2VSResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    videos = whiten_corpus(corpus, pca)
    dims = next(iter(videos.values()))[0].shape[-1]
    net = S2VSSimilarityNetwork(dims=dims)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    nce = InfoNCELoss(cfg.temperature)
    losses: list[float] = []
    start = 0
    ck_path = out / CHECKPOINT_NAME
    if resume and ck_path.is_file():
        ck = load_checkpoint(ck_path)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        losses = [float(v) for v in ck["losses"].tolist()]
        start = int(ck["step"])
    rng = np.random.default_rng([cfg.seed, start])

    def save(step: int) -> None:
        save_checkpoint(ck_path, {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                  "losses": torch.tensor(losses), "config": json.dumps(asdict(cfg))})

    net.train()
    for step in tqdm(range(start, cfg.steps), desc="s2vs", initial=start, total=cfg.steps, disable=not cfg.progress):
        for g in opt.param_groups:
            g["lr"] = float(lr_at(step, cfg))
        clips, positive, valid = sample_batch(videos, corpus.hosts, cfg, rng)
        sim, reg = pairwise_similarity(net, clips)
        if step < cfg.warm_start_steps:
            loss = (sim - chamfer_matrix(clips)).abs().mean() + cfg.reg * reg
        else:
            keep = (positive & valid).any(1) & (~positive & valid).any(1)  # rows with a positive and a negative
            loss = (nce(sim[keep], positive[keep], valid[keep])
                    + cfg.lam * sshn_loss((sim + 1) / 2, positive, valid, rows=keep) + cfg.reg * reg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if (step + 1) % cfg.save_every == 0:
            save(step + 1)
    save(cfg.steps)
    net.eval()
    weights = out / WEIGHTS_NAME
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, weights)
    curve = out / CURVE_NAME
    if losses:
        plot_losses(losses, curve, f"S²VS: chamfer warm start ({cfg.warm_start_steps} steps), then InfoNCE + {cfg.lam:g}·SSHN + reg")
    return S2VSResult(net, losses, weights, curve)
