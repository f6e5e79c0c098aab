"""The worker's models run through an engine's graphs, on numpy arrays, without importing PyTorch.

:class:`EngineModels` has the public surface of :class:`inference.embedder.VideoModels`
(``regions``, ``represent_batch``, ``compare``, ``selector_scores``, ``bundle``, ``methods``) and
runs the bundle's exported graphs (:mod:`inference.graphs`) on an :class:`inference.engines.Engine`:
ONNX Runtime by default, TensorRT on a GPU. :func:`load_models` picks it whenever the bundle carries
the graphs of every model it has, and falls back to the PyTorch ``VideoModels`` otherwise.

Fine scores go through :class:`PairScorer`: each video is indexed once (the query once per upload,
each reference once), the frame similarity is computed once, inside the graph, and pairs of the
same tiled shape run as one batch. Videos shorter than the network's ``min_frames`` (a serving
option recorded with the graph in the manifest) are tiled here, outside the graph, exactly as
``repeat_to_min_length`` tiles them in PyTorch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from dupwatch.config import DEFAULT_FLAT_LUMA_STD
from dupwatch.records import DecodedVideo, FrameChunk, VideoRepresentation, inset_id
from inference.fine_blocks import CELL_BUDGET, MAX_RUN_FRAMES, blockwise_pair, needs_tiles
from inference.flat_frames import blank_flat_frames
from inference.frame_budget import coarse_by_windows, evenly_spaced
from inference.thumbnails import thumbnails_of

if TYPE_CHECKING:
    from dupwatch.config import Settings
    from index.schema import IndexDims
    from inference.bundle import Bundle

__all__ = ["CLIP_FRAMES", "ClipAccumulator", "clip_spans", "drca_clip_inputs", "PairScore", "IndexedVideo", "PairScorer", "EngineModels", "tile_frames", "region_chamfer",
           "served_graphs", "load_models", "build_embedder"]

log = logging.getLogger(__name__)

CLIP_FRAMES = 8
HEAD_MIN_FRAMES = 4
"""The least length the ViSiL head accepts (two 2x2 max-pools)."""


@dataclass(frozen=True)
class PairScore:
    """Fine-grained comparison of two videos."""

    score: float
    """Similarity in [-1, 1] (fine network after hard tanh, or chamfer)."""
    frame_similarity: np.ndarray
    """``[Tq, Tr]`` frame-to-frame similarity (region chamfer of indexed features) for alignment."""


@dataclass(frozen=True)
class IndexedVideo:
    """A video's indexed features ``[T, R, D']`` and the same tiled to the network's ``min_frames``."""

    frames: int
    tiled: np.ndarray


def tile_frames(x: np.ndarray, min_len: int, axis: int = 0) -> np.ndarray:
    """Concatenate a too-short video with itself (doubling, as S²VS's ``repeat_to_min_length``) until
    it has at least ``min_len`` frames along ``axis``."""
    if x.shape[axis] == 0:
        raise ValueError(f"empty video: 0 frames along axis {axis} of {x.shape}")
    while x.shape[axis] < min_len:
        x = np.concatenate([x, x], axis=axis)
    return x


def _l2(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def _aa_bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` weights of PyTorch's antialiased bilinear resize along one axis
    (``F.interpolate(mode="bilinear", align_corners=False, antialias=True)``, PIL's triangle filter
    widened by the downscale factor)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    out = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        j = np.arange(lo, hi)
        w = np.clip(1.0 - np.abs((j - center + 0.5) / support), 0.0, None)
        total = w.sum()
        out[i, lo:hi] = w / total if total > 0 else w
    return out


def drca_clip_inputs(frames: np.ndarray, size: int, num_frames: int) -> np.ndarray:
    """uint8 frames ``[T, H, W, 3]`` → the DRCA graph's input ``[N, num_frames, 3, size, size]``,
    as :func:`inference.drca.embed.embed_video` prepares them in PyTorch: short side resized to
    ``size`` (antialiased bilinear), centre crop, ``(x - 127.5) / 127.5``, consecutive clips, the
    last one padded by repeating its last frame."""
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0:
        raise ValueError(f"frames must be non-empty uint8 [T, H, W, 3], got {x.shape}")
    t, h, w, _ = x.shape
    x = x.astype(np.float32)
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        top, left = (nh - size) // 2, (nw - size) // 2
        wh = _aa_bilinear_weights(h, nh)[top : top + size].astype(np.float32)
        ww = _aa_bilinear_weights(w, nw)[left : left + size].astype(np.float32)
        x = np.einsum("ih,thwc,jw->tijc", wh, x, ww, optimize=True)
    x = ((x - 127.5) / 127.5).transpose(0, 3, 1, 2)  # [T, 3, S, S]
    n = -(-t // num_frames)
    if n * num_frames > t:
        x = np.concatenate([x, np.repeat(x[-1:], n * num_frames - t, axis=0)])
    return np.ascontiguousarray(x.reshape(n, num_frames, 3, size, size), dtype=np.float32)


def clip_spans(timestamps: np.ndarray, t: int, length: int) -> tuple[list[int], np.ndarray]:
    """The first frame of each consecutive clip of ``length`` frames among ``t``, and the clips'
    (start, end) seconds ``[N, 2]``: end is the last frame's time plus one sampling step."""
    starts = list(range(0, t, length))
    times = np.asarray(timestamps, np.float32)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    return starts, np.array([[times[s], times[min(s + length, t) - 1] + step] for s in starts], np.float32)


class ClipAccumulator:
    """Clip vectors of a video fed chunk by chunk: whole clips are embedded as they complete, the
    frames of an unfinished clip are carried over, so the clips are those of the whole video."""

    def __init__(self, embed: Callable[[np.ndarray], np.ndarray], length: int) -> None:
        self.embed, self.length = embed, int(length)
        self.rest: np.ndarray | None = None
        self.out: list[np.ndarray] = []

    def add(self, frames: np.ndarray) -> None:
        if self.rest is not None:
            frames = np.concatenate([self.rest, frames])
        whole = len(frames) // self.length * self.length
        if whole:
            self.out.append(np.asarray(self.embed(frames[:whole]), np.float32))
        self.rest = frames[whole:].copy() if whole < len(frames) else None

    def finish(self) -> np.ndarray:
        if self.rest is not None:
            self.out.append(np.asarray(self.embed(self.rest), np.float32))
            self.rest = None
        return np.concatenate(self.out)


def region_chamfer(query: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``[Tq, R, D]`` × ``[Tt, R, D]`` → ``[Tq, Tt]``: max over the reference's regions, mean over the
    query's; in blocks of query frames so one product holds at most ``CELL_BUDGET · R²`` values."""
    tq, r, d = query.shape
    tt, r2, _ = ref.shape
    flat_ref = ref.reshape(tt * r2, d).T
    out = np.empty((tq, tt), np.result_type(query, ref))
    step = max(1, CELL_BUDGET // max(1, tt))
    for a in range(0, tq, step):
        b = min(tq, a + step)
        sim = (query[a:b].reshape((b - a) * r, d) @ flat_ref).reshape(b - a, r, tt, r2)
        out[a:b] = sim.max(axis=3).mean(axis=1)
    return out


class PairScorer:
    """Fine scores of a query against references on an engine's ``<fine>_index`` and ``<fine>`` graphs.

    Without a fine network (``graph=None``) the score is the plain chamfer of the region features.
    """

    def __init__(self, engine: Any, graph: str | None, min_frames: int | Callable[[], int] = HEAD_MIN_FRAMES,
                 max_batch: int = 64) -> None:
        self.engine = engine
        self.graph = graph
        self._min_frames = min_frames
        self.max_batch = max_batch

    @property
    def min_frames(self) -> int:
        """Videos shorter than this are tiled before indexing (a callable reads the model's current option)."""
        n = self._min_frames() if callable(self._min_frames) else self._min_frames
        return max(HEAD_MIN_FRAMES, int(n))

    def index(self, videos: Sequence[np.ndarray]) -> list[IndexedVideo]:
        """Region features ``[T, R, D]`` of several videos → indexed, videos of one tiled length in one run
        (a video longer than :data:`inference.fine_blocks.MAX_RUN_FRAMES` in pieces of that length)."""
        out: list[IndexedVideo | None] = [None] * len(videos)
        if self.graph is None:
            return [IndexedVideo(len(v), tile_frames(np.asarray(v, np.float32), HEAD_MIN_FRAMES)) for v in videos]
        tiled = [tile_frames(np.asarray(v, np.float32), self.min_frames) for v in videos]
        for length, members in _groups(len(t) for t in tiled).items():
            if length > MAX_RUN_FRAMES:  # the index graph works frame by frame: index a long video in pieces
                for i in members:
                    pieces = [self.engine.run(f"{self.graph}_index", {"features": tiled[i][None, a:a + MAX_RUN_FRAMES]})["indexed"][0]
                              for a in range(0, length, MAX_RUN_FRAMES)]
                    out[i] = IndexedVideo(len(videos[i]), np.concatenate(pieces))
                continue
            for chunk in _chunks(members, self.max_batch):
                batch = np.stack([tiled[i] for i in chunk])
                indexed = self.engine.run(f"{self.graph}_index", {"features": batch})["indexed"]
                for j, i in enumerate(chunk):
                    out[i] = IndexedVideo(len(videos[i]), indexed[j])
        return out  # type: ignore[return-value]

    def score(self, query: IndexedVideo, refs: Sequence[IndexedVideo]) -> list[PairScore]:
        """One query against many references; references of one tiled length run as one batch."""
        out: list[PairScore | None] = [None] * len(refs)
        q_untiled = query.tiled[: query.frames]
        if self.graph is None:
            for i, ref in enumerate(refs):
                f2f = region_chamfer(q_untiled, ref.tiled[: ref.frames])
                out[i] = PairScore(float(f2f.max(axis=1).mean()), f2f)
            return out  # type: ignore[return-value]
        tq = len(query.tiled)
        for length, members in _groups(len(r.tiled) for r in refs).items():
            if needs_tiles(tq, length):
                for i in members:
                    out[i] = self._score_long(query, refs[i])
                continue
            for chunk in _chunks(members, min(self.max_batch, CELL_BUDGET // (tq * length))):
                targets = np.stack([refs[i].tiled for i in chunk])
                queries = np.repeat(query.tiled[None], len(chunk), axis=0)
                res = self.engine.run(self.graph, {"query": queries, "target": targets})
                for j, i in enumerate(chunk):
                    f2f = res["frame_similarity"][j, : query.frames, : refs[i].frames]
                    out[i] = PairScore(float(res["similarity"][j]), np.ascontiguousarray(f2f, dtype=np.float32))
        return out  # type: ignore[return-value]

    def _score_long(self, query: IndexedVideo, ref: IndexedVideo) -> PairScore:
        """A pair too long for one run (:data:`inference.fine_blocks.CELL_BUDGET`), tile by tile."""
        def run(q: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
            return self.engine.run(self.graph, {"query": q, "target": t})

        score, f2f = blockwise_pair(run, query.tiled, ref.tiled)
        return PairScore(score, np.ascontiguousarray(f2f[: query.frames, : ref.frames]))

    def compare_many(self, query: np.ndarray, refs: Sequence[np.ndarray]) -> list[PairScore]:
        indexed = self.index([query, *refs])
        return self.score(indexed[0], indexed[1:])


def _groups(lengths: Any) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(int(n), []).append(i)
    return groups


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def served_graphs(bundle: Bundle) -> dict[str, tuple[str, ...]]:
    """The graphs each model of ``bundle`` needs to be served from an engine (artifact → graphs)."""
    from inference.engines import ARTIFACT_GRAPHS

    needed: dict[str, tuple[str, ...]] = {"features": ARTIFACT_GRAPHS["features"]}
    for artifact in ("coarse", "selector", "fine", "drca"):
        if bundle.has(artifact):
            needed[artifact] = ARTIFACT_GRAPHS[artifact]
    return needed


class EngineModels:
    """Everything the worker runs, as graphs of one engine (see module docstring)."""

    def __init__(self, bundle: Bundle, engine: Any, *, batch_frames: int = 16, pair_batch: int = 64) -> None:
        graphs = set(engine.graphs())
        missing = {a: [g for g in gs if g not in graphs] for a, gs in served_graphs(bundle).items()}
        missing = {a: gs for a, gs in missing.items() if gs}
        if missing:
            names = "; ".join(f"{a}: {', '.join(g)}" for a, g in missing.items())
            raise ValueError(f"engine {engine.description} lacks graphs ({names})")
        self.bundle = bundle
        self.engine = engine
        self.batch_frames = max(1, min(int(batch_frames), 256))  # the features export allows N <= 256
        self.flat_luma_std = DEFAULT_FLAT_LUMA_STD
        """Frames flatter than this get zero region vectors (:mod:`inference.flat_frames`)."""
        spec = bundle.manifest.backbone
        self.methods: dict[str, str] = {"features": f"{spec.name}+pca" if bundle.has("pca") else spec.name}
        self.has_coarse = bundle.has("coarse")
        self.methods["coarse"] = "dns_cg_student" if self.has_coarse else "mean-regions"
        self.has_selector = bundle.has("selector")
        self.methods["selector"] = "dns_selector" if self.has_selector else "coarse-order"
        self.methods["clips"] = "drca" if bundle.has("drca") else "mean-regions-8f"
        self.drca_input: tuple[int, int] | None = None
        """(num_frames, img_size) of the DRCA graph's clips (``None``: no DRCA network)."""
        if bundle.has("drca"):
            from inference.engines import ONNX_PREFIX

            shape = bundle.entry(f"{ONNX_PREFIX}drca").inputs[0].shape  # ["B", T, 3, S, S]
            self.drca_input = (int(shape[1]), int(shape[-1]))
        fine = "fine" if bundle.has("fine") else None
        self.methods["fine"] = (bundle.entry("fine").arch or "fine") if fine else "chamfer"
        min_frames = HEAD_MIN_FRAMES
        if fine is not None:
            from inference.engines import ONNX_PREFIX

            # the fine artifact's serving option wins (tiling is outside the graph, any value works);
            # the value recorded at export is the fallback
            entry = bundle.manifest.artifacts.get(f"{ONNX_PREFIX}{fine}")
            min_frames = int(bundle.entry(fine).config.get("min_frames")
                             or (entry.config if entry is not None else {}).get("min_frames") or HEAD_MIN_FRAMES)
        self.pairs = PairScorer(engine, fine, min_frames, max_batch=pair_batch)
        self.engine_description = engine.description

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def fine_min_frames(self) -> int:
        return self.pairs.min_frames

    @property
    def index_dims(self) -> IndexDims:
        """Vector sizes, read from the manifest (graph output shapes and the backbone contract)."""
        from index.schema import IndexDims
        from inference.engines import ONNX_PREFIX

        spec = self.bundle.manifest.backbone
        coarse = spec.dim
        if self.has_coarse:
            out = self.bundle.entry(f"{ONNX_PREFIX}coarse").outputs
            coarse = int(out[0].shape[-1])
        clip = spec.dim
        if self.bundle.has("drca"):
            clip = int(self.bundle.entry(f"{ONNX_PREFIX}drca").outputs[0].shape[-1])
        return IndexDims(coarse=coarse, clip=clip, regions=spec.regions, region_dim=spec.dim)

    # --- per video --------------------------------------------------------------------------

    def regions(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames ``[T, H, W, 3]`` → float32 region features ``[T, R, D]``, ``batch_frames`` at a time."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.shape}")
        return self._regions_of([frames])[0]

    def _regions_of(self, views: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Frames of several views through the feature graph in shared batches of ``batch_frames``
        (no copy of all frames at once: a batch is assembled from slices of the views)."""
        out: list[list[np.ndarray]] = [[] for _ in views]
        pending: list[tuple[int, np.ndarray]] = []

        def flush() -> None:
            if not pending:
                return
            batch = np.concatenate([p for _, p in pending]) if len(pending) > 1 else pending[0][1]
            regions = self.engine.run("features", {"frames": np.ascontiguousarray(batch)})["regions"]
            regions = blank_flat_frames(batch, regions, self.flat_luma_std)
            start = 0
            for view, part in pending:
                out[view].append(regions[start : start + len(part)])
                start += len(part)
            pending.clear()

        filled = 0
        for v, frames in enumerate(views):
            start = 0
            while start < len(frames):
                take = min(self.batch_frames - filled, len(frames) - start)
                pending.append((v, frames[start : start + take]))
                filled += take
                start += take
                if filled == self.batch_frames:
                    flush()
                    filled = 0
        flush()
        spec = self.bundle.manifest.backbone
        return [np.concatenate(parts).astype(np.float32, copy=False) if parts
                else np.zeros((0, spec.regions, spec.dim), np.float32) for parts in out]

    def represent_regions(self, video_id: str, regions: np.ndarray, timestamps: np.ndarray, *, tenant: str = "default",
                          frames: np.ndarray | None = None, drca_clips: np.ndarray | None = None,
                          thumbs: np.ndarray | None = None) -> VideoRepresentation:
        """Index representation of a video from its region features (DRCA clip vectors from
        ``frames``, or ``drca_clips`` already computed chunk by chunk)."""
        x = np.asarray(regions, np.float32)
        if self.has_coarse:
            coarse = coarse_by_windows(lambda f, m: self.engine.run("coarse", {"features": f, "mask": m})["embedding"],
                                       tile_frames(x, 2))
        else:
            coarse = _l2(_l2(x.mean(axis=1)).mean(axis=0))  # as VideoModels: mean of regions, L2, mean, L2
        selfsim = 0.0
        if self.has_selector:
            head_frames = tile_frames(evenly_spaced(x), HEAD_MIN_FRAMES)
            selfsim = float(self.engine.run("selector_selfsim", {"features": head_frames[None]})["self_similarity"][0, 0])
        clips, clip_times = self._clips(x, timestamps, frames, drca_clips)
        return VideoRepresentation(
            video_id=video_id,
            timestamps=np.asarray(timestamps, np.float32),
            regions=x.astype(np.float16),
            coarse=np.asarray(coarse, np.float32),
            clips=clips,
            clip_times=clip_times,
            selfsim=selfsim,
            tenant=tenant,
            meta={"bundle_version": self.version},
            thumbs=thumbs if thumbs is not None else thumbnails_of(frames),
        )

    def represent(self, video: DecodedVideo, *, tenant: str = "default") -> VideoRepresentation:
        return self.represent_batch([video], [tenant])[0]

    def represent_batch(self, videos: Sequence[DecodedVideo], tenants: Sequence[str]) -> list[VideoRepresentation]:
        """Frames of several videos (and of their picture-in-picture insets) share feature batches."""
        if not videos:
            return []
        views = [v.frames for v in videos] + [v.inset for v in videos if v.inset is not None]
        regions = self._regions_of(views)
        out = [with_borders(self.represent_regions(v.video_id, regions[i], v.timestamps, tenant=t, frames=v.frames), v.borders)
               for i, (v, t) in enumerate(zip(videos, tenants))]
        k = len(videos)
        for i, (video, tenant) in enumerate(zip(videos, tenants)):
            if video.inset is None:
                continue
            inset = self.represent_regions(inset_id(video.video_id), regions[k], video.timestamps, tenant=tenant,
                                           frames=video.inset)
            out[i] = replace(out[i], inset=inset)
            k += 1
        return out

    def drca_clips(self, frames: np.ndarray, batch: int = 8) -> np.ndarray:
        """DRCA clip vectors ``[N, C]`` of uint8 frames (clips of the graph's ``num_frames``)."""
        assert self.drca_input is not None
        clips = drca_clip_inputs(frames, self.drca_input[1], self.drca_input[0])
        return np.concatenate([self.engine.run("drca", {"clips": clips[i : i + batch]})["embedding"]
                               for i in range(0, len(clips), batch)]).astype(np.float32)

    def drca_clip_accumulator(self) -> ClipAccumulator | None:
        """Collects DRCA clip vectors chunk by chunk (``None`` without a DRCA network)."""
        return ClipAccumulator(self.drca_clips, self.drca_input[0]) if self.drca_input is not None else None

    def _clips(self, regions: np.ndarray, timestamps: np.ndarray, frames: np.ndarray | None,
               drca_clips: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Clip vectors and their (start, end) seconds: the bundle's DRCA graph over the decoded
        frames (clips of its ``num_frames``), else the mean of 8 frames' region vectors (as
        :meth:`inference.embedder.VideoModels._clips`)."""
        t = regions.shape[0]
        drca_used = self.drca_input is not None and (frames is not None or drca_clips is not None)
        length = self.drca_input[0] if drca_used and self.drca_input is not None else CLIP_FRAMES
        starts, clip_times = clip_spans(timestamps, t, length)
        if drca_used:
            return (np.asarray(drca_clips, np.float32) if drca_clips is not None else self.drca_clips(frames)), clip_times  # type: ignore[arg-type]
        per_frame = _l2(_l2(regions).mean(axis=1))
        clips = np.stack([_l2(per_frame[s : s + CLIP_FRAMES].mean(axis=0)) for s in starts])
        return clips.astype(np.float32), clip_times

    # --- pairs -----------------------------------------------------------------------------

    def index_fine(self, videos: Sequence[np.ndarray]) -> list[IndexedVideo]:
        return self.pairs.index(videos)

    def score_indexed(self, query: IndexedVideo, refs: Sequence[IndexedVideo]) -> list[PairScore]:
        return self.pairs.score(query, refs)

    def compare(self, query_regions: np.ndarray, ref_regions: np.ndarray) -> PairScore:
        """Fine-grained similarity of two videos' region features ``[T, R, D]``."""
        return self.pairs.compare_many(query_regions, [ref_regions])[0]

    def compare_many(self, query_regions: np.ndarray, refs: Sequence[np.ndarray]) -> list[PairScore]:
        return self.pairs.compare_many(query_regions, refs)

    def selector_scores(self, query_selfsim: float, ref_selfsims: np.ndarray, coarse_scores: np.ndarray) -> np.ndarray:
        """Probability that re-ranking changes the decision, per candidate (higher = re-rank first)."""
        if not self.has_selector:
            return np.asarray(coarse_scores, np.float32)
        n = len(coarse_scores)
        rows = np.stack([np.full(n, query_selfsim, np.float32), np.asarray(ref_selfsims, np.float32),
                         np.asarray(coarse_scores, np.float32)], axis=1)
        return self.engine.run("selector_mlp", {"x": rows})["probability"][:, 0]


class BundleEmbedder:
    """The worker's ``Embedder``: decoded video → representation, with cross-video frame batching."""

    def __init__(self, models: Any) -> None:
        self.models = models

    @property
    def version(self) -> str:
        return self.models.version

    @property
    def index_dims(self) -> IndexDims:
        return self.models.index_dims

    def embed(self, decoded: DecodedVideo, tenant: str = "default") -> VideoRepresentation:
        return self.models.represent(decoded, tenant=tenant)

    def embed_batch(self, videos: Sequence[DecodedVideo], tenants: Sequence[str]) -> list[VideoRepresentation]:
        return self.models.represent_batch(videos, tenants)

    def embed_stream(self, stream: Iterable[FrameChunk], tenant: str = "default") -> VideoRepresentation:
        return represent_stream(self.models, stream, tenant=tenant)


def with_borders(rep: VideoRepresentation, borders: dict[str, object] | None) -> VideoRepresentation:
    """``rep`` carrying the bars the decoder cropped (``meta["borders"]``, for the alert evidence)."""
    if borders is not None:
        rep.meta["borders"] = json.dumps(borders, sort_keys=True)
    return rep


def represent_stream(models: Any, stream: Iterable[FrameChunk], *, tenant: str = "default") -> VideoRepresentation:
    """A chunked decode (``ingest.decode.FrameStream``) → representation, keeping only features.

    Each chunk's frames (and inset view) go through ``models.regions`` (and, where the models have
    one, a DRCA clip accumulator in whole clips) before the next chunk is decoded into the same
    buffer, so pixels never accumulate. The result equals ``models.represent`` on the whole video.
    """
    new_clips = getattr(models, "drca_clip_accumulator", None)
    clips = new_clips() if new_clips is not None else None
    inset_clips = new_clips() if new_clips is not None else None
    parts: list[np.ndarray] = []
    inset_parts: list[np.ndarray] | None = []
    thumbs: list[np.ndarray | None] = []
    inset_thumbs: list[np.ndarray | None] = []
    times: list[np.ndarray] = []
    for chunk in stream:
        parts.append(models.regions(chunk.frames))
        thumbs.append(thumbnails_of(chunk.frames))
        times.append(np.array(chunk.timestamps, np.float64))
        if clips is not None:
            clips.add(chunk.frames)
        if chunk.inset is None or inset_parts is None:
            inset_parts, inset_clips = None, None  # an inset missing from one chunk is dropped
        else:
            inset_parts.append(models.regions(chunk.inset))
            inset_thumbs.append(thumbnails_of(chunk.inset))
            if inset_clips is not None:
                inset_clips.add(chunk.inset)
    summary = getattr(stream, "summary", None)
    if summary is None or not parts:
        raise ValueError("represent_stream needs a finished stream of at least one chunk")
    regions = parts[0] if len(parts) == 1 else np.concatenate(parts)
    del parts
    timestamps = np.concatenate(times)

    def index(video_id: str, feats: np.ndarray, acc: Any, small: list[np.ndarray | None]) -> VideoRepresentation:
        known = [t for t in small if t is not None]
        return models.represent_regions(video_id, feats, timestamps, tenant=tenant,
                                        thumbs=np.concatenate(known) if len(known) == len(small) else None,
                                        drca_clips=None if acc is None else acc.finish())

    rep = with_borders(index(summary.video_id, regions, clips, thumbs), summary.borders)
    if summary.inset_box is not None and inset_parts:
        rep = replace(rep, inset=index(inset_id(summary.video_id), np.concatenate(inset_parts), inset_clips, inset_thumbs))
    return rep


def stale_graphs(bundle: Bundle) -> list[str]:
    """ONNX graphs this build must not serve: exported from other weights than the artifact's now
    (``source_sha256`` in the graph's manifest entry against the artifact's current sha256), or a
    fine pair graph (one with ``frame_similarity``) exported before it had the ``similarity_map``
    output that long pairs are stitched from (:mod:`inference.fine_blocks`)."""
    from inference.engines import ONNX_PREFIX

    stale = []
    for name, entry in bundle.manifest.artifacts.items():
        if entry.kind != "onnx" or not name.startswith(ONNX_PREFIX):
            continue
        outputs = {o.name for o in entry.outputs}
        moved = any(not bundle.has(source) or bundle.entry(source).sha256 != sha
                    for source, sha in (entry.config.get("source_sha256") or {}).items())
        if moved or ("frame_similarity" in outputs and "similarity_map" not in outputs):
            stale.append(name[len(ONNX_PREFIX):])
    return stale


def engine_threads(settings: Settings) -> dict[str, int]:
    """Intra-op threads per graph: the feature extractor gets ``model.features_threads``, every other
    graph (small per-video and per-pair work) ``model.heads_threads``; 0 leaves the library default."""
    from inference.engines import ARTIFACT_GRAPHS

    m = settings.model
    out = {g: m.heads_threads for graphs in ARTIFACT_GRAPHS.values() for g in graphs}
    out["features"] = m.features_threads
    return out


def load_models(settings: Settings) -> Any:
    """Load the configured bundle once, validated, on the configured engine.

    A bundle that carries the exported graphs of all its models is served by :class:`EngineModels`
    on the engine :func:`inference.engines.select_engine` picks (TensorRT → ONNX Runtime), without
    importing PyTorch. Otherwise the PyTorch :class:`inference.embedder.VideoModels` serves it
    (with the feature graph on the engine when only that one was exported). With ``engine: auto``
    and no ONNX graph in the bundle no other engine is built.
    """
    from inference.bundle import load_bundle
    from inference.engines import onnx_graphs, select_engine

    m = settings.model
    bundle = load_bundle(m.bundle)
    threads = engine_threads(settings)
    engine, description = None, "torch"
    if m.engine != "torch" and (m.engine != "auto" or onnx_graphs(bundle)):
        try:
            engine, description = select_engine(m.engine, bundle, graph_threads=threads, allow_torch=False)
        except Exception as exc:  # an explicit engine that cannot run is a start-up error
            if m.engine != "auto":
                raise
            engine, description = None, f"torch ({exc})"
    stale = stale_graphs(bundle)
    if engine is not None and stale:
        log.warning("bundle %s: ONNX graphs %s were exported from other weights than the bundle's or by an "
                    "older build: serving it with PyTorch (run `dupwatch export %s`)", bundle.root, ", ".join(stale), bundle.root)
        engine, description = None, f"torch (stale ONNX graphs: {', '.join(stale)})"
    if engine is not None:
        missing = [g for gs in served_graphs(bundle).values() for g in gs if g not in engine.graphs()]
        if not missing:
            return _serving(EngineModels(bundle, engine, batch_frames=m.features_batch, pair_batch=m.pair_batch), settings)
        log.warning("bundle %s lacks exported graphs %s: serving it with PyTorch (run `dupwatch export %s`)",
                    bundle.root, ", ".join(missing), bundle.root)
    from inference.embedder import VideoModels, engine_feature_fn, set_torch_threads

    set_torch_threads(m.features_threads)
    feature_fn = None
    if engine is not None and "features" in engine.graphs():
        feature_fn = engine_feature_fn(engine, m.features_batch)
        description = f"torch heads, features on {description}"
    models = VideoModels(bundle, device=m.device, batch_frames=m.features_batch, feature_fn=feature_fn,
                         heads_threads=m.heads_threads)
    models.engine_description = description
    return _serving(models, settings)


def _serving(models: Any, settings: Settings) -> Any:
    """``models`` given the decode settings that shape their features, then announced in the one
    start-up line naming the bundle, its methods and the engine (alerts carry only the methods)."""
    models.flat_luma_std = settings.decode.flat_luma_std
    log.info("serving bundle %s on %s: %s; engine: %s", models.version, getattr(models, "device", "cpu"),
             ", ".join(f"{k}={v}" for k, v in models.methods.items()), models.engine_description)
    return models


def build_embedder(settings: Settings) -> BundleEmbedder:
    """The worker's default embedder factory (``ingest.worker.DEFAULT_EMBEDDER``)."""
    return BundleEmbedder(load_models(settings))
