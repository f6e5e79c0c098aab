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


import logging
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dupwatch.config import DEFAULT_FLAT_LUMA_STD
from dupwatch.records import DecodedVideo, FrameChunk, VideoRepresentation, inset_id
from inference.bundle import Bundle, BundleError, load_bundle
from inference.flat_frames import blank_flat_frames
from inference.frame_budget import coarse_by_windows, evenly_spaced
from inference.thumbnails import thumbnails_of
from inference.served import BundleEmbedder, ClipAccumulator, IndexedVideo, clip_spans, PairScore, PairScorer, represent_stream, with_borders

if TYPE_CHECKING:
    from dupwatch.config import Settings
    from index.schema import IndexDims

log = logging.getLogger(__name__)

CLIP_FRAMES = 8


def set_torch_threads(threads: int) -> None:
    """``torch.set_num_threads`` (0 leaves PyTorch's default)."""
    if threads:
        torch.set_num_threads(int(threads))


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` intra-op threads (small per-video ops), then restore."""
    before = torch.get_num_threads()
    if not threads or threads == before:
        yield
        return
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _TorchPairGraphs:
    """The ``fine_index`` and ``fine`` graphs of :class:`inference.served.PairScorer` on a PyTorch fine network."""

    def __init__(self, fine: torch.nn.Module, device: torch.device) -> None:
        self.fine, self.device = fine, device

    @torch.inference_mode()
    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from inference.similarities import pair_similarity

        if graph == "fine_index":
            x = self.fine.index_video(torch.from_numpy(inputs["features"]).to(self.device))
            return {"indexed": x.float().cpu().numpy()}
        q, t = (torch.from_numpy(inputs[k]).to(self.device) for k in ("query", "target"))
        score, f2f, head = pair_similarity(self.fine, q, t)
        return {"similarity": score.float().cpu().numpy(), "frame_similarity": f2f.float().cpu().numpy(),
                "similarity_map": head.float().cpu().numpy()}


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
                 feature_fn: Callable[[np.ndarray], np.ndarray] | None = None, heads_threads: int | None = None) -> None:
        from inference.registry import get_model

        self.bundle = bundle
        self.device = _pick_device(device)
        self.batch_frames = batch_frames
        self.flat_luma_std = DEFAULT_FLAT_LUMA_STD
        """Frames flatter than this get zero region vectors (:mod:`inference.flat_frames`)."""
        self.methods: dict[str, str] = {}
        self.engine_description = "torch"
        """How the feature extractor runs and why (long: logged once at start-up, never put in alerts)."""
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
        self.heads_threads = heads_threads
        fine = self.fine
        self.pairs = PairScorer(_TorchPairGraphs(fine, self.device) if fine is not None else None,
                                "fine" if fine is not None else None,
                                (lambda: fine.min_frames) if fine is not None and hasattr(fine, "min_frames") else 4)
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

    @property
    def index_dims(self) -> IndexDims:
        """Vector sizes of the index, from the loaded models and the backbone contract (nothing is run)."""
        from index.schema import IndexDims

        spec = self.bundle.manifest.backbone
        coarse = int(self.coarse.output_dims) if self.coarse is not None else spec.dim
        clip = int(self.drca.cfg.embed_dim) if self.drca is not None else spec.dim
        return IndexDims(coarse=coarse, clip=clip, regions=spec.regions, region_dim=spec.dim)

    # --- per video --------------------------------------------------------------------------

    @torch.inference_mode()
    def regions(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames ``[T, H, W, 3]`` → float32 region features ``[T, R, D]``."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.shape}")
        if self._feature_fn is not None:
            regions = np.asarray(self._feature_fn(frames), dtype=np.float32)
        else:
            out = []
            for start in range(0, len(frames), self.batch_frames):
                batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + self.batch_frames])).to(self.device)
                out.append(self.extractor(batch).float().cpu())
            regions = torch.cat(out).numpy()
        return blank_flat_frames(frames, regions, self.flat_luma_std)

    @torch.inference_mode()
    def represent_regions(self, video_id: str, regions: np.ndarray, timestamps: np.ndarray, *, tenant: str = "default",
                          frames: np.ndarray | None = None, drca_clips: np.ndarray | None = None,
                          thumbs: np.ndarray | None = None) -> VideoRepresentation:
        """Index representation of a video from its region features (``drca_clips``: the DRCA clip
        vectors already computed chunk by chunk, used instead of ``frames``)."""
        x = torch.from_numpy(regions).float().to(self.device).unsqueeze(0)  # [1, T, R, D]
        with torch_threads(self.heads_threads):
            if self.coarse is not None:
                coarse = coarse_by_windows(self._coarse_run, regions)
            else:
                coarse = F.normalize(F.normalize(x.mean(dim=2), dim=-1).mean(dim=1), dim=-1)[0].float().cpu().numpy()
            selfsim = float(self.selector.index_video(x[:, evenly_spaced(np.arange(x.shape[1]))])[0, 0]) if self.selector is not None else 0.0
        clips, clip_times = self._clips(x[0], timestamps, frames, drca_clips)
        return VideoRepresentation(
            video_id=video_id,
            timestamps=np.asarray(timestamps, np.float32),
            regions=regions.astype(np.float16),
            coarse=coarse,
            clips=clips,
            clip_times=clip_times,
            selfsim=selfsim,
            tenant=tenant,
            meta={"bundle_version": self.version},
            thumbs=thumbs if thumbs is not None else thumbnails_of(frames),
        )

    def _coarse_run(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The coarse student on a batch of windows (:func:`inference.frame_budget.coarse_by_windows`);
        a batch without padding runs unmasked, as a whole short video always did."""
        assert self.coarse is not None
        x = torch.from_numpy(features).float().to(self.device)
        m = None if mask.all() else torch.from_numpy(mask).to(self.device)
        return self.coarse.index_video(x, m).float().cpu().numpy()

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
            out.append(with_borders(self.represent_regions(video.video_id, regions[start:end], video.timestamps, tenant=tenant,
                                                           frames=video.frames), video.borders))
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

    def represent_stream(self, stream: Iterable[FrameChunk], *, tenant: str = "default") -> VideoRepresentation:
        """:func:`inference.served.represent_stream` with DRCA clips cut across chunks."""
        return represent_stream(self, stream, tenant=tenant)

    def drca_clip_accumulator(self) -> ClipAccumulator | None:
        """Collects DRCA clip vectors chunk by chunk (``None`` without a DRCA network)."""
        if self.drca is None:
            return None
        from inference.drca.embed import embed_video

        model = self.drca
        return ClipAccumulator(lambda frames: embed_video(model, frames).embeddings, int(model.cfg.num_frames))

    def _clips(self, regions: torch.Tensor, timestamps: np.ndarray, frames: np.ndarray | None,
               drca_clips: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Clip vectors ``[N, D]`` and their (start, end) seconds: the bundle's DRCA over the decoded
        frames (clips of its ``num_frames``), else the mean of 8 frames' region vectors."""
        t = regions.shape[0]
        drca_used = self.drca is not None and (frames is not None or drca_clips is not None)
        length = int(self.drca.cfg.num_frames) if drca_used else CLIP_FRAMES
        starts, clip_times = clip_spans(timestamps, t, length)
        if self.drca is not None and drca_clips is not None:
            return np.asarray(drca_clips, np.float32), clip_times
        if self.drca is not None and frames is not None:
            from inference.drca.embed import embed_video

            emb = embed_video(self.drca, frames).embeddings
            return np.asarray(emb, np.float32), clip_times
        per_frame = F.normalize(F.normalize(regions.float(), dim=-1).mean(dim=1), dim=-1)  # [T, D]
        clips = torch.stack([F.normalize(per_frame[s : s + CLIP_FRAMES].mean(dim=0), dim=-1) for s in starts])
        return clips.cpu().numpy(), clip_times

    # --- pairs -----------------------------------------------------------------------------

    def index_fine(self, videos: Sequence[np.ndarray]) -> list[IndexedVideo]:
        """Region features ``[T, R, D]`` → the fine network's indexed form, each video once."""
        with torch_threads(self.heads_threads):
            return self.pairs.index(videos)

    def score_indexed(self, query: IndexedVideo, refs: Sequence[IndexedVideo]) -> list[PairScore]:
        """Fine scores and frame similarities of one indexed query against indexed references."""
        with torch_threads(self.heads_threads):
            return self.pairs.score(query, refs)

    def compare(self, query_regions: np.ndarray, ref_regions: np.ndarray) -> PairScore:
        """Fine-grained similarity of two videos' region features ``[T, R, D]``."""
        return self.compare_many(query_regions, [ref_regions])[0]

    def compare_many(self, query_regions: np.ndarray, refs: Sequence[np.ndarray]) -> list[PairScore]:
        """One query against several references: every video indexed once, same-shape pairs batched."""
        with torch_threads(self.heads_threads):
            return self.pairs.compare_many(query_regions, refs)

    @torch.inference_mode()
    def selector_scores(self, query_selfsim: float, ref_selfsims: np.ndarray, coarse_scores: np.ndarray) -> np.ndarray:
        """Probability that re-ranking changes the decision, per candidate (higher = re-rank first)."""
        if self.selector is None:
            return np.asarray(coarse_scores, np.float32)
        n = len(coarse_scores)
        rows = np.stack([np.full(n, query_selfsim, np.float32), np.asarray(ref_selfsims, np.float32), np.asarray(coarse_scores, np.float32)], axis=1)
        with torch_threads(self.heads_threads):
            return self.selector(torch.from_numpy(rows).to(self.device)).float().cpu().numpy()[:, 0]



def engine_feature_fn(engine: object, batch_frames: int) -> Callable[[np.ndarray], np.ndarray]:
    """Run the exported ``features`` graph (uint8 frames → regions) on an engine, in bounded batches."""
    limit = max(1, min(batch_frames, 256))  # the export's optimisation profile allows N ≤ 256

    def run(frames: np.ndarray) -> np.ndarray:
        out = [engine.run("features", {"frames": np.ascontiguousarray(frames[i : i + limit])})["regions"]  # type: ignore[attr-defined]
               for i in range(0, len(frames), limit)]
        return np.concatenate(out).astype(np.float32)

    return run


def load_models(settings: Settings) -> Any:
    """:func:`inference.served.load_models` (ONNX Runtime without PyTorch when the bundle has its graphs)."""
    from inference.served import load_models as served_load_models

    return served_load_models(settings)


def build_embedder(settings: Settings) -> BundleEmbedder:
    return BundleEmbedder(load_models(settings))
