"""DnS distillation on cached features (digest §2.8–2.9): ``dupwatch train dns-students`` and ``dupwatch train selector``.

- :func:`mine_pairs`: clips = windows of every cached view; pairs = all clip pairs of the same
  source (positives: same window; another moment of the same footage is a hard pair too) plus
  sampled cross-source pairs. The teacher (our trained S²VS network) scores every pair **once**
  (:func:`teacher_similarities`); the students never see the teacher again.
- :func:`train_students`: the coarse student (:class:`inference.dns.CoarseGrainedStudent`, small
  NetVLAD) and the fine attention student (:class:`inference.dns.FineGrainedStudent`) trained with
  L1 to the teacher similarities; frame drop / fast forward / slow motion (p = 0.1 each) on the features.
- :func:`train_selector`: :class:`inference.dns.SelectorNetwork` trained with BCE on the
  disagreement label ``|coarse − (fine/2 + 0.5)| > t`` (t = 0.2), sampling the two classes equally.

Weights are bare state_dicts in the published key layouts (``coarse.pth``, ``fine_student.pth``, ``selector.pth``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from inference.dns import CoarseGrainedStudent, FineGrainedStudent, SelectorNetwork
from inference.s2vs import S2VSSimilarityNetwork
from training.tca import plot_losses, save_checkpoint

__all__ = ["PairSet", "mine_pairs", "teacher_similarities", "DnSTrainConfig", "train_students", "SelectorTrainConfig",
           "train_selector", "selector_labels", "disagreement", "feature_augment"]


@dataclass
class PairSet:
    clips: list[np.ndarray]
    """Whitened ``[T, R, D]`` float32 clips."""
    sources: list[str]
    pairs: np.ndarray
    """``[P, 2]`` clip indices."""
    teacher: np.ndarray | None = None
    """``[P]`` teacher similarities in [-1, 1]."""


def mine_pairs(videos: dict[str, list[np.ndarray]], clip_frames: int = 8, cross_per_clip: int = 6, seed: int = 0,
               stride: int | None = None) -> PairSet:
    rng = np.random.default_rng(seed)
    clips, sources = [], []
    for name in sorted(videos):
        for view in videos[name]:
            t = len(view)
            starts = list(range(0, max(1, t - clip_frames + 1), stride or clip_frames)) or [0]
            for s in starts:
                clips.append(view[s:s + clip_frames])
                sources.append(name)
    pairs = set()
    n = len(clips)
    for i in range(n):
        for j in range(i + 1, n):
            if sources[i] == sources[j]:
                pairs.add((i, j))
        others = [j for j in range(n) if sources[j] != sources[i]]
        for j in rng.choice(others, size=min(cross_per_clip, len(others)), replace=False):
            pairs.add((min(i, int(j)), max(i, int(j))))
    return PairSet(clips, sources, np.array(sorted(pairs), dtype=np.int64))


def _batch(clips: list[np.ndarray], idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad clips to the longest → ``[N, T, R, D]`` and mask ``[N, T]``."""
    t = max(len(clips[i]) for i in idx)
    x = np.zeros((len(idx), t) + clips[idx[0]].shape[1:], dtype=np.float32)
    m = np.zeros((len(idx), t), dtype=np.float32)
    for k, i in enumerate(idx):
        x[k, :len(clips[i])] = clips[i]
        m[k, :len(clips[i])] = 1
    return torch.from_numpy(x), torch.from_numpy(m)


def _fine_scores(net: torch.nn.Module, clips: list[np.ndarray], pairs: np.ndarray, batch: int = 256) -> torch.Tensor:
    out = []
    for s in range(0, len(pairs), batch):
        p = pairs[s:s + batch]
        q = torch.from_numpy(np.stack([_min4(clips[i]) for i in p[:, 0]])) if _same_len(clips, p[:, 0]) else None
        r = torch.from_numpy(np.stack([_min4(clips[i]) for i in p[:, 1]])) if _same_len(clips, p[:, 1]) else None
        if q is None or r is None:
            sims = [net.calculate_video_similarity(net.index_video(torch.from_numpy(clips[a])[None]),
                                                   net.index_video(torch.from_numpy(clips[b])[None])) for a, b in p]
            out.append(torch.cat(sims))
        else:
            out.append(net.calculate_video_similarity(net.index_video(q), net.index_video(r)))
    return torch.cat(out)


def _min4(x: np.ndarray) -> np.ndarray:
    return x if len(x) >= 4 else np.concatenate([x] * int(np.ceil(4 / len(x))))[:max(4, len(x))]


def _same_len(clips: list[np.ndarray], idx: np.ndarray) -> bool:
    return len({len(_min4(clips[i])) for i in idx}) == 1


@torch.no_grad()
def teacher_similarities(teacher: S2VSSimilarityNetwork, pairs: PairSet) -> PairSet:
    teacher.eval()
    pairs.teacher = _fine_scores(teacher, pairs.clips, pairs.pairs).numpy()
    return pairs


def feature_augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """DnS student augmentation (videos > 6 frames): drop frames / fast forward ×2 / slow motion ×2, p = 0.1 each."""
    if len(x) <= 6:
        return x
    r = rng.random()
    if r < 0.1:
        keep = rng.random(len(x)) < 0.7
        return x[keep] if keep.sum() >= 4 else x
    if r < 0.2:
        return x[::2] if len(x) >= 8 else x
    if r < 0.3:
        return np.repeat(x, 2, axis=0)
    return x


@dataclass
class DnSTrainConfig:
    steps: int = 300
    batch_pairs: int = 64
    lr_coarse: float = 3e-4
    lr_fine: float = 1e-3
    netvlad_clusters: int = 16
    netvlad_outdims: int = 256
    seed: int = 0
    progress: bool = True


def _sample_pairs(pairs: PairSet, n: int, rng: np.random.Generator) -> np.ndarray:
    """Half from the pairs the teacher finds similar (> 0), half from the rest (DnS: one positive + one negative per anchor)."""
    t = pairs.teacher
    pos, neg = np.flatnonzero(t > 0), np.flatnonzero(t <= 0)
    if len(pos) == 0 or len(neg) == 0:
        return rng.choice(len(t), n)
    return np.concatenate([rng.choice(pos, n // 2), rng.choice(neg, n - n // 2)])


def train_students(pairs: PairSet, out_dir: str | Path, cfg: DnSTrainConfig = DnSTrainConfig()
                   ) -> tuple[CoarseGrainedStudent, FineGrainedStudent, dict[str, list[float]]]:
    if pairs.teacher is None:
        raise ValueError("train_students: compute teacher_similarities first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dims = pairs.clips[0].shape[-1]
    coarse = CoarseGrainedStudent(dims=dims, netvlad_clusters=cfg.netvlad_clusters, netvlad_outdims=cfg.netvlad_outdims)
    fine = FineGrainedStudent(dims=dims, attention=True)
    opt_c = torch.optim.Adam(coarse.parameters(), lr=cfg.lr_coarse)
    opt_f = torch.optim.Adam(fine.parameters(), lr=cfg.lr_fine)
    target = torch.from_numpy(pairs.teacher).float()
    losses: dict[str, list[float]] = {"coarse": [], "fine": []}
    coarse.train()
    fine.train()
    for _ in tqdm(range(cfg.steps), desc="dns students", disable=not cfg.progress):
        idx = _sample_pairs(pairs, cfg.batch_pairs, rng)
        p = pairs.pairs[idx]
        aug = [feature_augment(pairs.clips[i], rng) for i in p.reshape(-1)]
        q, qm = _batch(aug[0::2], np.arange(len(p)))
        r, rm = _batch(aug[1::2], np.arange(len(p)))
        y = target[idx]
        sc = (coarse.index_video(q, qm) * coarse.index_video(r, rm)).sum(-1)
        lc = F.l1_loss(sc, y)
        opt_c.zero_grad()
        lc.backward()
        opt_c.step()
        sf = fine.calculate_video_similarity(fine.index_video(q, qm), fine.index_video(r, rm), qm, rm)
        lf = F.l1_loss(sf, y)
        opt_f.zero_grad()
        lf.backward()
        opt_f.step()
        losses["coarse"].append(float(lc.detach()))
        losses["fine"].append(float(lf.detach()))
    coarse.eval()
    fine.eval()
    torch.save({k: v.detach().clone() for k, v in coarse.state_dict().items()}, out / "coarse.pth")
    torch.save({k: v.detach().clone() for k, v in fine.state_dict().items()}, out / "fine_student.pth")
    save_checkpoint(out / "checkpoint.pt", {"coarse": coarse.state_dict(), "fine": fine.state_dict(),
                                            "losses_coarse": torch.tensor(losses["coarse"]),
                                            "losses_fine": torch.tensor(losses["fine"])})
    plot_losses(losses["coarse"], out / "loss_coarse.png", "DnS coarse student: L1 to teacher")
    plot_losses(losses["fine"], out / "loss_fine.png", "DnS fine attention student: L1 to teacher")
    return coarse, fine, losses


@torch.no_grad()
def _coarse_scores(coarse: CoarseGrainedStudent, pairs: PairSet) -> torch.Tensor:
    emb = []
    for s in range(0, len(pairs.clips), 64):
        x, m = _batch(pairs.clips, np.arange(s, min(len(pairs.clips), s + 64)))
        emb.append(coarse.index_video(x, m))
    e = torch.cat(emb)
    return (e[pairs.pairs[:, 0]] * e[pairs.pairs[:, 1]]).sum(-1)


@torch.no_grad()
def disagreement(coarse: CoarseGrainedStudent, fine: torch.nn.Module, pairs: PairSet) -> tuple[torch.Tensor, torch.Tensor]:
    """(coarse similarities ``[P]``, ``|coarse − (fine/2 + 0.5)|`` ``[P]``)."""
    coarse.eval()
    fine.eval()
    c = _coarse_scores(coarse, pairs)
    f = _fine_scores(fine, pairs.clips, pairs.pairs) / 2 + 0.5
    return c, (c - f).abs()


def selector_labels(coarse: CoarseGrainedStudent, fine: torch.nn.Module, pairs: PairSet, threshold: float = 0.2
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(coarse similarities ``[P]``, labels ``[P]``): 1 where ``|coarse − (fine/2 + 0.5)| > t``."""
    c, d = disagreement(coarse, fine, pairs)
    return c, (d > threshold).float()


@dataclass
class SelectorTrainConfig:
    steps: int = 200
    batch_pairs: int = 64
    lr: float = 1e-3
    threshold: float = 0.2
    seed: int = 0
    progress: bool = True


def train_selector(pairs: PairSet, coarse: CoarseGrainedStudent, fine: torch.nn.Module, out_dir: str | Path,
                   cfg: SelectorTrainConfig = SelectorTrainConfig()) -> tuple[SelectorNetwork, list[float], dict[str, float]]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    csim, dis = disagreement(coarse, fine, pairs)
    threshold = cfg.threshold
    labels = (dis > threshold).float()
    if labels.min() == labels.max():
        # one class empty at t (tiny corpora): fall back to the median disagreement, and say so in the stats
        threshold = float(dis.median())
        labels = (dis > threshold).float()
    pos, neg = np.flatnonzero(labels.numpy() > 0.5), np.flatnonzero(labels.numpy() < 0.5)
    stats = {"pairs": float(len(labels)), "positive_fraction": float(labels.mean()), "threshold": threshold,
             "requested_threshold": cfg.threshold}
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"train_selector: one class is empty ({stats})")
    dims = pairs.clips[0].shape[-1]
    selector = SelectorNetwork(dims=dims)
    opt = torch.optim.Adam(selector.parameters(), lr=cfg.lr)
    losses: list[float] = []
    selector.train()
    for _ in tqdm(range(cfg.steps), desc="selector", disable=not cfg.progress):
        idx = np.concatenate([rng.choice(pos, cfg.batch_pairs // 2), rng.choice(neg, cfg.batch_pairs - cfg.batch_pairs // 2)])
        p = pairs.pairs[idx]
        q, qm = _batch(pairs.clips, p[:, 0])
        r, rm = _batch(pairs.clips, p[:, 1])
        feats = torch.cat([selector.index_video(q, qm), selector.index_video(r, rm), csim[idx].unsqueeze(-1)], dim=1)
        loss = F.binary_cross_entropy(selector(feats).squeeze(-1).clamp(1e-6, 1 - 1e-6), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    selector.eval()
    torch.save({k: v.detach().clone() for k, v in selector.state_dict().items()}, out / "selector.pth")
    plot_losses(losses, out / "loss_selector.png", f"DnS selector: BCE on disagreement (t = {cfg.threshold})")
    return selector, losses, stats
