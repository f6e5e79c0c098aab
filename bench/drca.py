"""DRCA benchmarks: GFLOPs with/without DCCM, clips/s, and copy-detection mAP trained vs untrained.

GFLOPs follow the paper / fvcore convention (one multiply-add = 1 FLOP): the totals of
``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add) are halved. Counting runs on the
meta device, so no real forward pass is made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from inference.drca.config import DRCAConfig, drca_b, drca_s
from inference.drca.model import DRCA

if TYPE_CHECKING:
    from training.drca import ClipCorpus

# Paper numbers (seed Table 1 and Table 4): GFLOPs per 8-frame 224^2 clip, without and with DCCM.
PAPER_GFLOPS: dict[str, tuple[float, float]] = {
    "DRCA-S-K3": (50.8, 31.0),
    "DRCA-S-K4": (50.8, 33.6),
    "DRCA-B-K4": (196.0, 129.0),
}
VARIANTS: dict[str, DRCAConfig] = {"DRCA-S-K3": drca_s(3), "DRCA-S-K4": drca_s(4), "DRCA-B-K4": drca_b(4)}


def count_gflops(cfg: DRCAConfig, compress: bool) -> float:
    """GFLOPs (multiply-adds / 1e9) of one clip through the eval-mode model (hard top-K)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = DRCA(cfg).eval()
        clip = torch.empty(1, 3, cfg.num_frames, cfg.img_size, cfg.img_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(clip, compress=compress)
    return counter.get_total_flops() / 2e9


@dataclass(frozen=True)
class FlopsRow:
    name: str
    gflops_full: float
    gflops_dccm: float
    paper_full: float | None
    paper_dccm: float | None

    @property
    def ratio(self) -> float:
        return self.gflops_dccm / self.gflops_full

    @property
    def paper_ratio(self) -> float | None:
        if self.paper_full is None or self.paper_dccm is None:
            return None
        return self.paper_dccm / self.paper_full


def flops_table(names: list[str] | None = None) -> list[FlopsRow]:
    rows = []
    for name in names or list(VARIANTS):
        cfg = VARIANTS[name]
        paper = PAPER_GFLOPS.get(name, (None, None))
        rows.append(FlopsRow(name, count_gflops(cfg, False), count_gflops(cfg, True), paper[0], paper[1]))
    return rows


def format_flops_table(rows: list[FlopsRow]) -> str:
    lines = [f"{'model':<11} {'GFLOPs w/o DCCM':>16} {'GFLOPs DCCM':>12} {'ratio':>6} {'paper':>14} {'paper ratio':>12}"]
    for r in rows:
        paper = f"{r.paper_full}->{r.paper_dccm}" if r.paper_full else "-"
        pr = f"{r.paper_ratio:.3f}" if r.paper_ratio else "-"
        lines.append(f"{r.name:<11} {r.gflops_full:>16.2f} {r.gflops_dccm:>12.2f} {r.ratio:>6.3f} {paper:>14} {pr:>12}")
    return "\n".join(lines)


@torch.no_grad()
def measure_throughput(
    cfg: DRCAConfig, batch: int, device: str, compress: bool, iters: int = 5, warmup: int = 2, half: bool = False
) -> float:
    """Clips per second of the eval-mode model (random weights, random input) on ``device``."""
    dev = torch.device(device)
    model = DRCA(cfg).to(dev).eval()
    dtype = torch.float16 if half and dev.type == "cuda" else torch.float32
    model = model.to(dtype)
    clip = torch.randn(batch, 3, cfg.num_frames, cfg.img_size, cfg.img_size, device=dev, dtype=dtype)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        model(clip, compress=compress)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        model(clip, compress=compress)
    sync()
    return batch * iters / (time.perf_counter() - start)


def average_precision_single(scores: Tensor, relevant: int) -> float:
    """AP of a ranking with exactly one relevant item = 1 / its rank (ties count against it)."""
    rank = int((scores > scores[relevant]).sum()) + int((scores == scores[relevant]).sum())
    return 1.0 / rank


@torch.no_grad()
def copy_detection_map(
    model: DRCA, corpus: "ClipCorpus", img_size: int, queries_per_clip: int = 3, seed: int = 123, compress: bool | None = None
) -> float:
    """mAP of finding each held-out clip from an augmented copy of it.

    Database: every clip of the corpus (held-out and training clips, centre-cropped, clean).
    Queries: ``queries_per_clip`` augmented copies (crop/flip/colour/blur) of each held-out clip;
    the single relevant item is the query's source clip.
    """
    from training.drca import build_augment, clip_to_input

    if not corpus.heldout:
        raise ValueError("corpus has no held-out clips")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        db_ids = corpus.heldout + corpus.train
        db = torch.cat(
            [
                model(torch.stack([clip_to_input(corpus.clips[i], img_size) for i in db_ids[j : j + 16]]).to(device), compress=compress)
                for j in range(0, len(db_ids), 16)
            ]
        )
        torch.manual_seed(seed)
        augment = build_augment(img_size)
        aps = []
        for pos, clip_id in enumerate(corpus.heldout):
            queries = torch.stack([clip_to_input(corpus.clips[clip_id], img_size, augment) for _ in range(queries_per_clip)])
            for q in model(queries.to(device), compress=compress):
                aps.append(average_precision_single(db @ q, pos))
    finally:
        model.train(was_training)
    return float(sum(aps) / len(aps))


@dataclass(frozen=True)
class MapComparison:
    untrained: float
    trained: float
    num_queries: int


def compare_trained_vs_untrained(trained: DRCA, corpus: "ClipCorpus", img_size: int, seed: int = 0) -> MapComparison:
    """Copy-detection mAP of ``trained`` vs a freshly initialised network with the same config."""
    torch.manual_seed(seed)
    untrained = DRCA(trained.cfg).to(next(trained.parameters()).device)
    return MapComparison(
        untrained=copy_detection_map(untrained, corpus, img_size),
        trained=copy_detection_map(trained, corpus, img_size),
        num_queries=3 * len(corpus.heldout),
    )

