"""The served models of a bundle, composed: frames → :class:`VideoRepresentation`, and pair scores.

One object loads everything a worker needs from a validated model bundle (``inference.bundle``):

- the frame feature extractor (backbone named by the manifest + the bundle's PCA) → ``[T, R, D]``;
- the DnS coarse student → one unit vector per video (for the first-stage Milvus search);
- the selector → the per-video self-similarity scalar, and the pair score that orders re-ranking;
- the fine-grained similarity network (S²VS or a DnS fine student) → the pair score and the
  frame-to-frame similarity matrix used to localize matched segments;
- clip vectors per 8-frame window for the clip collection: DRCA when the bundle carries one,
  otherwise the mean of the window's region vectors (a documented stand-in, not DRCA).

A component missing from the bundle falls back to a parameter-free method, and
:attr:`VideoModels.methods` says which was used, so no output claims a model that did not run:
coarse → mean of region vectors (L2), selector → coarse score order, fine → plain chamfer.
"""

from __future__ import annotations

import json

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dupwatch.records import DecodedVideo, VideoRepresentation, inset_id
from inference.bundle import Bundle, BundleError, load_bundle

if TYPE_CHECKING:
    from dupwatch.config import Settings

log = logging.getLogger(__name__)

CLIP_FRAMES = 8


@dataclass(frozen=True)
class PairScore:
    """Fine-grained comparison of two videos."""

    score: float
    """Similarity in [-1, 1] (fine network after hard tanh, or chamfer)."""
    frame_similarity: np.ndarray
    """``[Tq, Tr]`` frame-to-frame similarity (region chamfer of indexed features) for alignment."""


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_bundle_model(bundle: Bundle, name: str, arch: str) -> torch.nn.Module:
    """A bundle artifact as an eval-mode module: the architecture is rebuilt from the checkpoint
    (the manifest's ``config`` records how it was trained, not constructor arguments), and the
    serving-time option it carries (``min_frames``) is applied."""
    from inference.registry import get_model

    model = get_model(arch, checkpoint=bundle.path(name))
    entry = bundle.entry(name)
    if "min_frames" in entry.config and hasattr(model, "min_frames"):
        model.min_frames = max(int(model.min_frames), int(entry.config["min_frames"]))
    return model.eval()


class VideoModels:
    """Everything the worker runs, loaded from one bundle."""

    def __init__(self, bundle: Bundle, *, device: str = "auto", batch_frames: int = 64,
                 feature_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        from inference.registry import get_model

        self.bundle = bundle
        self.device = _pick_device(device)
        self.batch_frames = batch_frames
        self.methods: dict[str, str] = {}
        spec = bundle.manifest.backbone
        pca = bundle.path("pca") if bundle.has("pca") else None
        if spec.name == "efficientnet_lite0_regions":
            extractor = get_model("efficientnet_lite0_regions", pca=pca)
        elif spec.name == "resnet50_l3imac":
            extractor = get_model("resnet50_l3imac", weights=bundle.path("backbone"), pca=pca)
        else:
            raise BundleError(f"bundle {bundle.root}: unknown backbone {spec.name!r}")
        self.extractor = extractor.eval().to(self.device)
        self._feature_fn = feature_fn
        self.methods["features"] = f"{spec.name}+pca" if pca else spec.name

        self.fine = self._optional("fine", ("s2vs", "dns_fg_att_student", "dns_fg_bin_student"))
        self.methods["fine"] = (bundle.entry("fine").arch or "fine") if self.fine is not None else "chamfer"
        self.coarse = self._optional("coarse", ("dns_cg_student",))
        self.methods["coarse"] = "dns_cg_student" if self.coarse is not None else "mean-regions"
        self.selector = self._optional("selector", ("dns_selector",))
        self.methods["selector"] = "dns_selector" if self.selector is not None else "coarse-order"
        self.drca = None
        if bundle.has("drca"):
            from inference.drca.checkpoint import load_bundle_drca

            self.drca = load_bundle_drca(bundle).to(self.device)
        self.methods["clips"] = "drca" if self.drca is not None else "mean-regions-8f"

    @classmethod
    def from_path(cls, root: Path | str, **kwargs: object) -> "VideoModels":
        return cls(load_bundle(root), **kwargs)  # type: ignore[arg-type]

    def _optional(self, name: str, allowed: Sequence[str]) -> torch.nn.Module | None:
        from inference.registry import get_model

        if not self.bundle.has(name):
            return None
        entry = self.bundle.entry(name)
        arch = entry.arch or allowed[0]
        if arch not in allowed:
            raise BundleError(f"bundle artifact {name!r} has arch {arch!r}; expected one of {', '.join(allowed)}")
        return load_bundle_model(self.bundle, name, arch).to(self.device)

    @property
    def version(self) -> str:
        return self.bundle.version

    # --- per video --------------------------------------------------------------------------

    @torch.inference_mode()
    def regions(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames ``[T, H, W, 3]`` → float32 region features ``[T, R, D]``."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.shape}")
        if self._feature_fn is not None:
            return np.asarray(self._feature_fn(frames), dtype=np.float32)
        out = []
        for start in range(0, len(frames), self.batch_frames):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + self.batch_frames])).to(self.device)
            out.append(self.extractor(batch).float().cpu())
        return torch.cat(out).numpy()

    @torch.inference_mode()
    def represent_regions(self, video_id: str, regions: np.ndarray, timestamps: np.ndarray, *, tenant: str = "default",
                          frames: np.ndarray | None = None) -> VideoRepresentation:
        """Index representation of a video from its region features."""
        x = torch.from_numpy(regions).float().to(self.device).unsqueeze(0)  # [1, T, R, D]
        if self.coarse is not None:
            coarse = self.coarse.index_video(x)[0]
        else:
            coarse = F.normalize(F.normalize(x.mean(dim=2), dim=-1).mean(dim=1), dim=-1)[0]
        selfsim = float(self.selector.index_video(x)[0, 0]) if self.selector is not None else 0.0
        clips, clip_times = self._clips(x[0], timestamps, frames)
        return VideoRepresentation(
            video_id=video_id,
            timestamps=np.asarray(timestamps, np.float32),
            regions=regions.astype(np.float16),
            coarse=coarse.float().cpu().numpy(),
            clips=clips,
            clip_times=clip_times,
            selfsim=selfsim,
            tenant=tenant,
            meta={"bundle_version": self.version},
        )

    def represent(self, video: DecodedVideo, *, tenant: str = "default") -> VideoRepresentation:
        return self.represent_batch([video], [tenant])[0]

    def represent_batch(self, videos: Sequence[DecodedVideo], tenants: Sequence[str]) -> list[VideoRepresentation]:
        """Frames of several videos (and of their picture-in-picture insets) go through the
        backbone together (fewer, fuller batches)."""
        if not videos:
            return []
        views = [v.frames for v in videos] + [v.inset for v in videos if v.inset is not None]
        regions = self.regions(np.concatenate(views))
        out, start = [], 0
        for video, tenant in zip(videos, tenants):
            end = start + video.num_frames
            out.append(self.represent_regions(video.video_id, regions[start:end], video.timestamps, tenant=tenant, frames=video.frames))
            if video.borders is not None:  # the bars the decoder cropped, for the alert evidence
                out[-1].meta["borders"] = json.dumps(video.borders, sort_keys=True)
            start = end
        for i, (video, tenant) in enumerate(zip(videos, tenants)):
            if video.inset is None:
                continue
            end = start + video.num_frames
            inset = self.represent_regions(inset_id(video.video_id), regions[start:end], video.timestamps, tenant=tenant,
                                           frames=video.inset)
            out[i] = replace(out[i], inset=inset)
            start = end
        return out

    def _clips(self, regions: torch.Tensor, timestamps: np.ndarray, frames: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Clip vectors ``[N, D]`` and their (start, end) seconds: the bundle's DRCA over the decoded
        frames (clips of its ``num_frames``), else the mean of 8 frames' region vectors."""
        t = regions.shape[0]
        length = int(self.drca.cfg.num_frames) if (self.drca is not None and frames is not None) else CLIP_FRAMES
        starts = list(range(0, t, length))
        times = np.asarray(timestamps, np.float32)
        step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
        clip_times = np.array([[times[s], times[min(s + length, t) - 1] + step] for s in starts], np.float32)
        if self.drca is not None and frames is not None:
            from inference.drca.embed import embed_video

            emb = embed_video(self.drca, frames).embeddings
            return np.asarray(emb, np.float32), clip_times
        per_frame = F.normalize(F.normalize(regions.float(), dim=-1).mean(dim=1), dim=-1)  # [T, D]
        clips = torch.stack([F.normalize(per_frame[s : s + CLIP_FRAMES].mean(dim=0), dim=-1) for s in starts])
        return clips.cpu().numpy(), clip_times

    # --- pairs -----------------------------------------------------------------------------

    @torch.inference_mode()
    def compare(self, query_regions: np.ndarray, ref_regions: np.ndarray) -> PairScore:
        """Fine-grained similarity of two videos' region features ``[T, R, D]``."""
        q = torch.from_numpy(np.asarray(query_regions, np.float32)).to(self.device).unsqueeze(0)
        r = torch.from_numpy(np.asarray(ref_regions, np.float32)).to(self.device).unsqueeze(0)
        if self.fine is not None:
            qi, ri = self.fine.index_video(q), self.fine.index_video(r)
            score = float(self.fine.calculate_video_similarity(qi, ri)[0])
            f2f = torch.einsum("iok,jpk->iojp", qi[0, : q.shape[1]], ri[0, : r.shape[1]]).amax(dim=3).mean(dim=1)
        else:
            f2f = torch.einsum("iok,jpk->iojp", q[0], r[0]).amax(dim=3).mean(dim=1)
            score = float(f2f.amax(dim=1).mean())
        return PairScore(score=score, frame_similarity=f2f.float().cpu().numpy())

    @torch.inference_mode()
    def selector_scores(self, query_selfsim: float, ref_selfsims: np.ndarray, coarse_scores: np.ndarray) -> np.ndarray:
        """Probability that re-ranking changes the decision, per candidate (higher = re-rank first)."""
        if self.selector is None:
            return np.asarray(coarse_scores, np.float32)
        n = len(coarse_scores)
        rows = np.stack([np.full(n, query_selfsim, np.float32), np.asarray(ref_selfsims, np.float32), np.asarray(coarse_scores, np.float32)], axis=1)
        return self.selector(torch.from_numpy(rows).to(self.device)).float().cpu().numpy()[:, 0]


class BundleEmbedder:
    """The worker's ``Embedder``: decoded video → representation, with cross-video frame batching."""

    def __init__(self, models: VideoModels) -> None:
        self.models = models

    @property
    def version(self) -> str:
        return self.models.version

    def embed(self, decoded: DecodedVideo, tenant: str = "default") -> VideoRepresentation:
        return self.models.represent(decoded, tenant=tenant)

    def embed_batch(self, videos: Sequence[DecodedVideo], tenants: Sequence[str]) -> list[VideoRepresentation]:
        return self.models.represent_batch(videos, tenants)


def engine_feature_fn(engine: object, batch_frames: int) -> Callable[[np.ndarray], np.ndarray]:
    """Run the exported ``features`` graph (uint8 frames → regions) on an engine, in bounded batches."""
    limit = max(1, min(batch_frames, 256))  # the export's optimisation profile allows N ≤ 256

    def run(frames: np.ndarray) -> np.ndarray:
        out = [engine.run("features", {"frames": np.ascontiguousarray(frames[i : i + limit])})["regions"]  # type: ignore[attr-defined]
               for i in range(0, len(frames), limit)]
        return np.concatenate(out).astype(np.float32)

    return run


def load_models(settings: Settings) -> VideoModels:
    """Load the configured bundle once, validated, on the configured device and engine.

    The frame feature extractor (most of the compute) runs on the best available engine
    (``inference.engines.select_engine``: TensorRT → ONNX Runtime → PyTorch) when the bundle holds
    its export; the small heads (coarse, selector, fine similarity with its frame matrix for
    alignment) run in PyTorch.
    """
    from inference.engines import select_engine

    bundle = load_bundle(settings.model.bundle)
    feature_fn = None
    engine_description = "torch"
    if settings.model.engine != "torch":
        try:
            engine, engine_description = select_engine(settings.model.engine, bundle)
        except Exception as exc:  # an explicit engine that cannot run is a start-up error
            if settings.model.engine != "auto":
                raise
            engine, engine_description = None, f"torch ({exc})"
        if engine is not None and "features" in engine.graphs() and getattr(engine, "name", "") != "torch":
            feature_fn = engine_feature_fn(engine, settings.limits.batch_frames)
        else:
            engine_description = f"torch (no exported feature graph; {engine_description})"
    models = VideoModels(bundle, device=settings.model.device, batch_frames=settings.limits.batch_frames, feature_fn=feature_fn)
    models.methods["engine"] = engine_description
    log.info("serving bundle %s on %s: %s", models.version, models.device, ", ".join(f"{k}={v}" for k, v in models.methods.items()))
    return models


def build_embedder(settings: Settings) -> BundleEmbedder:
    return BundleEmbedder(load_models(settings))
