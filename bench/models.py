"""Model-zoo throughput: frames/s of frame-feature extraction and pairs/s of fine-grained similarity.

Random-initialised weights (speed does not depend on them). CPU float32 always; CUDA float16 when
a GPU is present. ``run_models_bench`` returns rows; ``format_table`` prints them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["BenchRow", "run_models_bench", "format_table"]


@dataclass(frozen=True)
class BenchRow:
    task: str
    model: str
    device: str
    dtype: str
    batch: int
    unit: str
    per_second: float
    ms_per_batch: float


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], device: str, repeats: int, min_seconds: float) -> float:
    """Seconds per call: one warm-up call, then at least ``repeats`` calls and ``min_seconds``."""
    with torch.inference_mode():
        fn()
        _sync(device)
        n, start = 0, time.perf_counter()
        while n < repeats or time.perf_counter() - start < min_seconds:
            fn()
            n += 1
        _sync(device)
        return (time.perf_counter() - start) / n


def _extractors() -> dict[str, Callable[[], torch.nn.Module]]:
    from inference.backbones import EfficientNetLite0Taps, ResNet50Taps
    from inference.features import FrameFeatureExtractor
    from inference.layers import PCALayer

    def with_pca(backbone: torch.nn.Module) -> torch.nn.Module:
        dims = backbone.region_dims
        pca = PCALayer(dims, 512)
        return FrameFeatureExtractor(backbone, pca)

    return {
        "efficientnet_lite0_regions": lambda: with_pca(EfficientNetLite0Taps(pretrained=False)),
        "resnet50_l3imac": lambda: with_pca(ResNet50Taps()),
    }


def _similarity_models() -> dict[str, Callable[[], torch.nn.Module]]:
    from inference.dns import FineGrainedStudent
    from inference.s2vs import S2VSSimilarityNetwork

    return {
        "s2vs": lambda: S2VSSimilarityNetwork(),
        "dns_fg_bin_student": lambda: FineGrainedStudent(binarization=True),
    }


def run_models_bench(batch_sizes: Sequence[int] = (1, 8, 32), pair_batches: Sequence[int] = (1, 16, 64),
                     video_frames: int = 30, devices: Sequence[str] | None = None, repeats: int = 3,
                     min_seconds: float = 0.5, image_size: int = 224,
                     extractors: Sequence[str] | None = None) -> list[BenchRow]:
    """Time every extractor over ``batch_sizes`` frames and every similarity network over
    ``pair_batches`` pairs of ``video_frames``-frame videos (9 regions × 512)."""
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows: list[BenchRow] = []
    torch.manual_seed(0)
    for device in devices:
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        dname = str(dtype).replace("torch.", "")
        for name, build in _extractors().items():
            if extractors is not None and name not in extractors:
                continue
            model = build().eval().to(device)
            if dtype == torch.float16:
                model = model.half()
            for b in batch_sizes:
                frames = torch.randint(0, 256, (b, image_size, image_size, 3), dtype=torch.uint8, device=device)

                def run(m: torch.nn.Module = model, x: torch.Tensor = frames) -> object:
                    x = x.half() if dtype == torch.float16 else x
                    return m(x)

                sec = _time(run, device, repeats, min_seconds)
                rows.append(BenchRow("features", name, device, dname, b, "frames/s", b / sec, sec * 1e3))
            del model
        for name, build in _similarity_models().items():
            model = build().eval().to(device=device, dtype=dtype)
            for b in pair_batches:
                q = torch.nn.functional.normalize(torch.randn(b, video_frames, 9, 512, device=device), dim=-1).to(dtype)
                t = torch.nn.functional.normalize(torch.randn(b, video_frames, 9, 512, device=device), dim=-1).to(dtype)
                with torch.inference_mode():
                    qi, ti = model.index_video(q), model.index_video(t)

                def run(m: torch.nn.Module = model, a: torch.Tensor = qi, c: torch.Tensor = ti) -> object:
                    return m.calculate_video_similarity(a, c)

                sec = _time(run, device, repeats, min_seconds)
                rows.append(BenchRow(f"similarity T={video_frames}", name, device, dname, b, "pairs/s", b / sec, sec * 1e3))
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    head = f"{'task':<18} {'model':<28} {'device':<6} {'dtype':<8} {'batch':>5} {'throughput':>14} {'ms/batch':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.task:<18} {r.model:<28} {r.device:<6} {r.dtype:<8} {r.batch:>5} "
                     f"{r.per_second:>9.1f} {r.unit:<4} {r.ms_per_batch:>10.2f}")
    return "\n".join(lines)
