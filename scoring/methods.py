"""Evaluation harness (issue #9, incident metrics of issue #12): score every query of a folder of
videos against every other video with several methods and report retrieval, detection, segment
and incident metrics from :mod:`evaluation.metrics`.

Inputs
------
- ``videos_dir``: any folder of videos (``*.mp4``, ``*.mov``, ``*.mkv``, ``*.webm``, ``*.avi``,
  ...; not recursive). A video's id is its file stem, or its file name when the truth CSV names
  files with their extension.
- ``truth``: the CSV of :mod:`evaluation.truth` (``query,reference,level`` + optional segment seconds).
  Queries are the ids in the ``query`` column; every query is scored against every other video of
  the folder; pairs not in the CSV are unrelated. Ids the CSV names but the folder lacks raise
  :class:`EvalInputError` (the CLI prints it and exits 2).

Methods (one ABC, :class:`Method`: ``prepare(videos)`` then ``score(query, reference)`` →
``(score, segments)``):

- ``vpdq``: the vPDQ baseline of :mod:`scoring.vpdq` (ThreatExchange rule as it is, ranked
  by the query match share; ``vpdq_tiebreak``: the same plus our closeness tie-breaker; it hashes
  whole frames with its own reader, as vPDQ does, not the worker's 224 px centre crop). vPDQ does
  not localize; its "segment" is the box spanned by the matched query frames and their best
  reference frames (a generous stand-in, so vPDQ's segment numbers are an upper bound).
- ``chamfer``: :mod:`scoring.chamfer`, ViSiL_f-style region chamfer then frame chamfer on
  EfficientNet-Lite0 region features (with the PCA of the first ``--bundle`` whose backbone is
  EfficientNet-Lite0, else raw 1752-d features); segments from ``align_pair``.
- ``ours``: one per bundle, :meth:`VideoModels.compare` (fine network, or chamfer when the bundle
  has no fine head: :attr:`VideoModels.methods` is reported) + ``align_pair`` on its frame
  similarity with the detector's :class:`detect.detector.AlignmentParams`.
- ``sscd`` / ``sscd_distilled``: :mod:`scoring.sscd`, frame chamfer on SSCD copy-detection
  descriptors (optional extra ``dupwatch[sscd]``, Python ≥ 3.12, or ``DUPWATCH_SSCD_MODEL``).

Frames come from the worker's decoder (:func:`ingest.decode.decode_video`, 1 fps, short side 256,
centre crop 224, or the bundle backbone's sampling), decoded once per video and sampling; region
features are extracted once per (backbone, PCA) and shared by chamfer and every bundle using
them. Everything is cached in memory (≈150 KB per sampled frame plus the features), which suits
folders of up to a few thousand minutes. Pairs are scored directly (no Milvus, no coarse stage,
no score normalization): these are the fine-stage numbers.

Metrics per method (definitions in :mod:`evaluation.metrics`; seeds-digest §3.7, anchors §2.5/§2.6):

- ``retrieval_map``: mean over queries of the AP of its ranked references, copy pairs as positives
  (queries without a copy positive are left out and counted in ``map_skipped_queries``).
- ``copy_uap``: detection µAP, copy positives, incident and unrelated pairs negatives.
- ``related_uap``: detection µAP, copy and incident positives, unrelated negatives.
- Incident metrics (#12): ``copy_vs_incident_ap`` = AP of ranking the copy pairs above the incident
  pairs among the truth pairs only (same footage; 1.0 = every copy outranks every incident);
  ``copy_uap_without_incidents`` = copy µAP with the incident pairs removed;
  ``incident_uap_drop`` = that minus ``copy_uap`` (what confusable same-footage pairs cost).
- Segments (when the truth has segment columns; ground truth = copy segments): predictions are
  the segments of each query's ``segment_top_k`` best-scored references, each carrying the pair
  score. ``segment_uap`` is the VSC22 matching-track µAP over all of them; ``segment_p/r/f`` (VCSL
  overall P/R/F) use those that pass the method's decision rule: the bundle's calibrated copy
  threshold, vPDQ's own 80 % rule, and for methods without one all top-k segments. Predictions on
  copy pairs whose truth row has no segment are dropped (unknown extent).
- ``at_thresholds``: precision/recall of ``score ≥ threshold`` per level at the bundle's calibrated
  thresholds (copy: copy positives; incident: copy+incident positives), and at vPDQ's own rule.
  Calibrations fitted on normalized scores are applied to the raw fine score and flagged.
- ``copy_ceiling``: the highest copy recall any threshold reaches on this set at precision ≥
  ``EvalConfig.ceiling_precision`` (0.95), with that threshold; chosen on the set itself, so not a
  promise but the ceiling of a calibrated threshold (:func:`evaluation.metrics.best_recall_at_precision`).
- ``alerts`` (calibrated bundles): the worker's own decision, :func:`detect.levels.decide_level` on
  the fine score + alignment evidence; precision/recall of copy alerts (copy truth) and of any
  alert (copy+incident truth), and how many true copies were alerted only as incidents.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from evaluation.metrics import (
    AveragePrecision,
    Match,
    ScoredPair,
    average_precision,
    best_recall_at_precision,
    micro_average_precision,
    precision_recall_at,
    retrieval_map,
    segment_micro_average_precision,
    segment_precision_recall,
)
from evaluation.truth import GroundTruth, read_truth_csv
from dupwatch.records import Segment
from inference.thumbnails import thumbnails_of

if TYPE_CHECKING:
    from detect.detector import PairAssessment
    from dupwatch.config import DecodeConfig
    from dupwatch.records import DecodedVideo

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"})
DEFAULT_METHODS = ("vpdq", "chamfer")
METHOD_NAMES = ("vpdq", "vpdq_tiebreak", "chamfer", "sscd", "sscd_distilled", "ours")
REFERENCE_ONLY = "reference_only"
"""``by_partner`` key of copies whose reference is no query (:func:`per_kind_metrics`)."""
DEFAULT_SEGMENT_TOP_K = 5
"""Segments are localized on each query's 5 best references (the VSC22 baseline localizes 5)."""

__all__ = [
    "EvalInputError",
    "PairResult",
    "Method",
    "FrameCache",
    "FeatureCache",
    "VpdqMethod",
    "OursMethod",
    "MethodRun",
    "EvalConfig",
    "EvalResult",
    "resolve_videos",
    "frame_intervals",
    "feature_key",
    "decode_setting",
    "build_methods",
    "run_method",
    "method_metrics",
    "per_kind_metrics",
    "REFERENCE_ONLY",
    "segment_metrics_by_kind",
    "segment_localization",
    "write_segments_csv",
    "evaluate",
    "evaluate_folder",
]


class EvalInputError(ValueError):
    """The videos folder and the truth CSV do not fit together (the message says how)."""


class PairResult(NamedTuple):
    """One scored pair: higher ``score`` = more similar; ``segments`` in seconds (may be empty)."""

    score: float
    segments: tuple[Segment, ...] = ()
    fine_score: float | None = None
    """Set by methods whose ranking ``score`` is not their similarity (ours with a copy head)."""
    copy_score: float | None = None


class DecisionInput(NamedTuple):
    """What the worker's level decision (:func:`detect.levels.decide_level`) read for one pair."""

    fine: float
    copy_score: float | None
    evidence: Any
    """The pair's :class:`detect.levels.AlignmentEvidence`."""


# --------------------------------------------------------------------------------------------
# inputs


def resolve_videos(videos_dir: Path | str, truth: GroundTruth) -> dict[str, Path]:
    """Map every video of the folder to an id; raise :class:`EvalInputError` for truth ids it lacks."""
    root = Path(videos_dir)
    if not root.is_dir():
        raise EvalInputError(f"videos folder {root} does not exist or is not a folder")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise EvalInputError(f"no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) in {root}")
    by_name = {p.name: p for p in files}
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p)
    named = sorted({v for pair in truth.pairs() for v in pair})
    ids: dict[str, Path] = {}
    missing, ambiguous = [], []
    for vid in named:
        if vid in by_name:
            ids[vid] = by_name[vid]
        elif len(by_stem.get(vid, [])) == 1:
            ids[vid] = by_stem[vid][0]
        elif vid in by_stem:
            ambiguous.append(f"{vid} ({', '.join(p.name for p in by_stem[vid])})")
        else:
            missing.append(vid)
    if missing or ambiguous:
        parts = []
        if missing:
            shown = ", ".join(missing[:10]) + (f" … (+{len(missing) - 10} more)" if len(missing) > 10 else "")
            parts.append(f"{len(missing)} video(s) named in the truth CSV are not in {root}: {shown}")
        if ambiguous:
            parts.append(f"ambiguous ids (several files share the stem; name the file in the CSV): {', '.join(ambiguous)}")
        raise EvalInputError("; ".join(parts))
    used = set(ids.values())
    taken = set(ids)
    for p in files:
        if p in used:
            continue
        vid = p.stem if p.stem not in taken and len(by_stem[p.stem]) == 1 else p.name
        ids[vid] = p
        taken.add(vid)
    return dict(sorted(ids.items()))


def frame_intervals(timestamps: np.ndarray, duration_s: float, fps: float) -> np.ndarray:
    """``[T, 2]`` (start, end) seconds per sampled frame: a frame stands for the next ``1/fps`` s.

    Alignment on ``[T]`` times gives a one-frame match zero length; with intervals a segment of
    frames 0..7 at 1 fps covers 0–8 s, which is what the ground truth measures. Ends are capped at
    the video's duration (when it is known and beyond the frame start).
    """
    t = np.asarray(timestamps, np.float64)
    end = t + 1.0 / fps
    if duration_s and duration_s > 0:
        end = np.where(duration_s > t, np.minimum(end, duration_s), end)
    return np.stack([t, end], axis=1)


class FrameCache:
    """Decode each video once per sampling config with the worker's decoder; keep it in memory."""

    def __init__(self) -> None:
        self._videos: dict[tuple[Any, str], "DecodedVideo"] = {}
        self.decode_s = 0.0

    def get(self, video_id: str, path: Path, config: "DecodeConfig") -> "DecodedVideo":
        from ingest.decode import decode_video

        key = (sampling_key(config), str(path))
        if key not in self._videos:
            start = time.perf_counter()
            self._videos[key] = decode_video(path, config, video_id)
            self.decode_s += time.perf_counter() - start
        return self._videos[key]


class FeatureCache:
    """Region features ``[T, R, D]`` once per (feature key, video); computed on first use."""

    def __init__(self) -> None:
        self._features: dict[tuple[str, str], np.ndarray] = {}
        self.extract_s = 0.0

    def get(self, key: str, video_id: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        if (key, video_id) not in self._features:
            start = time.perf_counter()
            self._features[(key, video_id)] = np.asarray(compute(), np.float32)
            self.extract_s += time.perf_counter() - start
        return self._features[(key, video_id)]


# --------------------------------------------------------------------------------------------
# methods


class Method(ABC):
    """A way to score pairs. ``prepare`` sees every video once; ``score`` is called per pair."""

    name: str = "method"
    decision_threshold: float | None = None
    """The method's own copy rule on its score (vPDQ's 80 %), if it has one."""

    @property
    def thresholds(self) -> dict[str, float]:
        """Calibrated threshold per level (``copy``, ``incident``); empty when uncalibrated."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What ran (for the report): features, fine method, thresholds and their provenance."""
        return {}

    @abstractmethod
    def prepare(self, videos: Mapping[str, Path]) -> None:
        """Decode / hash / extract features of every video (cached)."""

    @abstractmethod
    def score(self, query: str, reference: str) -> PairResult:
        """``(score, segments)`` of one (query, reference) pair."""

    def score_query(self, query: str, references: Sequence[str]) -> list[PairResult]:
        """All references of one query; override to batch."""
        return [self.score(query, r) for r in references]

    def decided_levels(self) -> dict[tuple[str, str], str]:
        """Alert level per scored pair (``copy``/``incident``/``none``) for methods that decide like the worker."""
        return {}


class VpdqMethod(Method):
    """vPDQ (ThreatExchange defaults): bag of 1 fps PDQ hashes; decision = ≥ 80 % of query frames
    match (and ≥ 0 % of the reference's); ranked by the query match share. ``tiebreak=True``
    (``vpdq_tiebreak``) adds 10⁻³ × closeness of the best matches, our variant that orders ties."""

    name = "vpdq"

    def __init__(self, *, fps: float = 1.0, tiebreak: bool = False) -> None:
        from scoring import vpdq

        self.fps = fps
        self.tiebreak = tiebreak
        self.name = "vpdq_tiebreak" if tiebreak else "vpdq"
        self.decision_threshold = vpdq.QUERY_MATCH_PERCENT / 100.0
        self._hashes: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        from scoring import vpdq

        return {
            "features": f"PDQ per frame at {self.fps:g} fps (whole frame, max side 512)",
            "rule": f"quality ≥ {vpdq.QUALITY_THRESHOLD}, Hamming ≤ {vpdq.DISTANCE_THRESHOLD}, "
                    f"≥ {vpdq.QUERY_MATCH_PERCENT:g} % of query frames and ≥ {vpdq.COMPARED_MATCH_PERCENT:g} % "
                    "of reference frames matched (ThreatExchange)",
            "score": "query match share" + (" + 0.001 × closeness of the best matches (tie-breaker, not vPDQ's)"
                                            if self.tiebreak else " (ThreatExchange's quantity; ties kept)"),
            "segments": "box of matched query frames × their best reference frames (vPDQ does not localize)",
        }

    def prepare(self, videos: Mapping[str, Path]) -> None:
        from scoring.vpdq import hash_video

        for vid, path in videos.items():
            if vid not in self._hashes:
                self._hashes[vid] = hash_video(path, fps=self.fps)

    def score(self, query: str, reference: str) -> PairResult:
        from scoring.vpdq import DISTANCE_THRESHOLD, compare, hamming_matrix

        q, r = self._hashes[query], self._hashes[reference]
        m = compare(q, r)
        score = m.tiebroken_score if self.tiebreak else m.score
        segments: tuple[Segment, ...] = ()
        if len(q.bits) and len(r.bits):
            dist = hamming_matrix(q.bits, r.bits)
            best = dist.argmin(axis=1)
            hit = dist[np.arange(len(best)), best] <= DISTANCE_THRESHOLD
            if hit.any():
                qt = q.timestamps[hit].astype(np.float64)
                rt = r.timestamps[best[hit]].astype(np.float64)
                step = 1.0 / self.fps
                segments = (Segment(float(qt.min()), float(qt.max()) + step, float(rt.min()), float(rt.max()) + step, float(score)),)
        return PairResult(float(score), segments)


class OursMethod(Method):
    """A model bundle: fine score of :meth:`VideoModels.compare`, segments of ``align_pair``."""

    def __init__(self, bundle_dir: Path | str, frames: FrameCache, features: FeatureCache, *, name: str | None = None,
                 device: str = "auto", fps: float | None = None, use_copy_head: bool = True,
                 max_degenerate: float | None | str = "default", min_motion_agreement: float | None | str = "default",
                 flat_luma_std: float | None = None, reframe_views: bool | None = None) -> None:
        from dupwatch.config import DEFAULT_MAX_DEGENERATE, DEFAULT_MIN_MOTION_AGREEMENT, DecodeConfig
        from inference.embedder import VideoModels

        self.bundle_dir = Path(bundle_dir)
        self.models = VideoModels.from_path(self.bundle_dir, device=device)
        self.name = name or f"ours:{self.bundle_dir.name}"
        spec = self.models.bundle.manifest.backbone
        self.decode_config = DecodeConfig(fps=fps or spec.fps, short_side=spec.short_side, crop=spec.crop,
                                          **decode_setting(flat_luma_std, reframe_views))
        self.models.flat_luma_std = self.decode_config.flat_luma_std
        self.feature_key = feature_key(spec.name, self.models.bundle, self.decode_config)
        self.frames, self.features = frames, features
        self._times: dict[str, np.ndarray] = {}
        self._regions: dict[str, np.ndarray] = {}
        self._inset_regions: dict[str, np.ndarray] = {}
        self._thumbs: dict[str, dict[str, np.ndarray]] = {}
        calib = self.models.bundle.manifest.calibration or {}
        self.score_field = str(calib.get("score_field", "score"))
        self.normalized_calibration = bool(calib.get("normalization")) or self.score_field == "normalized_score"
        self.decision_threshold = self.thresholds.get("copy")
        self._levels: dict[tuple[str, str], str] = {}
        self.max_degenerate = DEFAULT_MAX_DEGENERATE if max_degenerate == "default" else max_degenerate
        self.min_motion_agreement = DEFAULT_MIN_MOTION_AGREEMENT if min_motion_agreement == "default" else min_motion_agreement
        self.pair_evidence: dict[tuple[str, str], DecisionInput] = {}
        """Per scored pair: what the level decision read (``dupwatch bench gates`` replays it)."""
        self._one_way: dict[tuple[str, str], float] = {}
        """P(copy) of each direction assessed, query first (:meth:`score` combines both)."""
        from detect.copy_head import copy_head_for, copy_threshold_fits_head

        # use_copy_head=False: the fine stage alone (the copy-head trainer featurizes pairs this way)
        self.copy_head = copy_head_for(self.models.bundle) if use_copy_head else None
        self._level_thresholds = None
        if not use_copy_head or not copy_threshold_fits_head(self.models.bundle):
            self.decision_threshold = None  # the copy threshold was fitted on another score: not applicable
        elif self.thresholds:
            from detect.levels import LevelThresholds

            self._level_thresholds = LevelThresholds(copy=self.thresholds.get("copy"), incident=self.thresholds.get("incident"),
                                                     max_degenerate=self.max_degenerate,  # type: ignore[arg-type]
                                                     min_motion_agreement=self.min_motion_agreement)

    @property
    def thresholds(self) -> dict[str, float]:
        from detect.copy_head import copy_threshold_fits_head

        return self.models.bundle.thresholds() if copy_threshold_fits_head(self.models.bundle) else {}

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bundle": str(self.bundle_dir),
            "version": self.models.version,
            "methods": dict(self.models.methods),
            "thresholds": self.thresholds,
            "degenerate_gate": self.max_degenerate,
            "motion_gate": self.min_motion_agreement,
            "score": "copy head P(copy)" if self.copy_head is not None else "fine similarity",
        }
        if self.normalized_calibration:
            out["note"] = ("thresholds were calibrated on normalized scores (score − background bias); "
                           "applied here to the raw fine score")
        return out

    def prepare(self, videos: Mapping[str, Path]) -> None:
        for vid, path in videos.items():
            decoded = self.frames.get(vid, path, self.decode_config)
            self._regions[vid] = self.features.get(self.feature_key, vid, lambda d=decoded: self.models.regions(d.frames))
            self._times[vid] = frame_intervals(decoded.timestamps, decoded.duration_s, self.decode_config.fps)
            if decoded.inset is not None:
                self._inset_regions[vid] = self.features.get(self.feature_key + "#inset", vid,
                                                             lambda d=decoded: self.models.regions(d.inset))
            views = {"main": thumbnails_of(decoded.frames), "inset": thumbnails_of(decoded.inset)}
            self._thumbs[vid] = {name: t for name, t in views.items() if t is not None}

    def views(self, vid: str) -> dict[str, np.ndarray]:
        """The video's region features per view (``main``, and ``inset`` when the decoder found one)."""
        out = {"main": self._regions[vid]}
        if vid in self._inset_regions:
            out["inset"] = self._inset_regions[vid]
        return out

    def thumbs(self, vid: str) -> dict[str, np.ndarray]:
        """The video's thumbnails per view (:mod:`inference.thumbnails`), like :meth:`views`."""
        return self._thumbs.get(vid, {})

    def _assess(self, query: str, reference: str) -> PairAssessment:
        from detect.detector import AlignmentParams, assess_views

        a = assess_views(self.models, self.views(query), self.views(reference), self._times[query], self._times[reference],
                         AlignmentParams(), self.copy_head, query_thumbs=self.thumbs(query), ref_thumbs=self.thumbs(reference))
        if a.copy_score is not None:
            self._one_way[(query, reference)] = a.copy_score
        return a

    def score(self, query: str, reference: str) -> PairResult:
        """The pair as the worker assesses it: with a copy head, P(copy) is the higher of the two
        directions (:func:`detect.detector.both_ways`); each direction's P(copy) is kept, so a pair
        scored both ways assesses each direction once as the query's and at most once more."""
        from detect.detector import both_ways
        from detect.levels import decide_level

        a = self._assess(query, reference)
        if self.copy_head is not None:
            reverse = self._one_way.get((reference, query))
            if reverse is None:
                reverse = self._assess(reference, query).copy_score
            a = both_ways(a, reverse)
        evidence = a.level_evidence()  # the worker's segments cover whole sampling intervals too
        self.pair_evidence[(query, reference)] = DecisionInput(a.fine, a.copy_score, evidence)
        if self._level_thresholds is not None:
            self._levels[(query, reference)] = decide_level(a.fine, evidence, self._level_thresholds, a.copy_score)
        if a.copy_score is None:
            return PairResult(a.fine, a.segments)
        return PairResult(a.copy_score, a.segments, fine_score=a.fine, copy_score=a.copy_score)

    def decided_levels(self) -> dict[tuple[str, str], str]:
        return dict(self._levels)


def decode_setting(flat_luma_std: float | None = None, reframe_views: bool | None = None) -> dict[str, Any]:
    """``DecodeConfig`` keywords for an explicit flat-frame cut and reframe-view switch (``None``: the config's default)."""
    out: dict[str, Any] = {}
    if flat_luma_std is not None:
        out["flat_luma_std"] = flat_luma_std
    if reframe_views is not None:
        out["reframe_views"] = reframe_views
    return out


def sampling_key(config: "DecodeConfig") -> tuple[Any, ...]:
    """The decode settings a :class:`DecodedVideo` depends on (rate, sizes, crops, second views)."""
    return (config.fps, config.short_side, config.crop, config.crop_borders, config.inset_views, config.reframe_views)


def feature_key(backbone: str, bundle: Any | None, config: "DecodeConfig") -> str:
    """Features are shared between methods with the same decoded frames (:func:`sampling_key`),
    flat-frame cut, backbone, backbone weights and PCA file."""
    key = f"{backbone}@{sampling_key(config)}/flat{config.flat_luma_std:g}"
    if bundle is not None:
        for artifact in ("backbone", "pca"):
            if bundle.has(artifact):
                key += f"+{artifact}:{bundle.entry(artifact).sha256[:16]}"
    return key


# --------------------------------------------------------------------------------------------
# running


@dataclass
class MethodRun:
    """Every scored pair of one method, with timings."""

    name: str
    info: dict[str, Any]
    scores: dict[tuple[str, str], float]
    segments: dict[tuple[str, str], tuple[Segment, ...]]
    decision_threshold: float | None
    thresholds: dict[str, float]
    prepare_s: float
    score_s: float
    levels: dict[tuple[str, str], str] = field(default_factory=dict)
    """The worker's alert decision per pair (:func:`detect.levels.decide_level`), when the method makes one."""
    fine_scores: dict[tuple[str, str], float] = field(default_factory=dict)
    """Similarity per pair when ``scores`` ranks something else (the copy head's P(copy))."""
    copy_scores: dict[tuple[str, str], float] = field(default_factory=dict)

    def predictions(self, exclude: set[tuple[str, str]] | None = None) -> list[ScoredPair]:
        return [ScoredPair(q, r, s) for (q, r), s in self.scores.items() if not exclude or (q, r) not in exclude]

    def related_predictions(self) -> list[ScoredPair]:
        """Scores for "related at all" (copy or incident): the similarity, not P(copy), when both exist."""
        source = self.fine_scores or self.scores
        return [ScoredPair(q, r, s) for (q, r), s in source.items()]


def run_method(method: Method, videos: Mapping[str, Path], queries: Sequence[str], *, progress: bool = False) -> MethodRun:
    """``prepare`` on every video, then score each query against every other video."""
    from tqdm import tqdm

    start = time.perf_counter()
    method.prepare(videos)
    prepared = time.perf_counter()
    scores: dict[tuple[str, str], float] = {}
    segments: dict[tuple[str, str], tuple[Segment, ...]] = {}
    fine: dict[tuple[str, str], float] = {}
    copy: dict[tuple[str, str], float] = {}
    ids = list(videos)
    for q in tqdm(queries, desc=f"scoring {method.name}", disable=not progress):
        refs = [r for r in ids if r != q]
        for r, res in zip(refs, method.score_query(q, refs)):
            if not math.isfinite(res.score):
                raise ValueError(f"{method.name}: non-finite score for ({q!r}, {r!r})")
            scores[(q, r)] = float(res.score)
            segments[(q, r)] = tuple(res.segments)
            if res.fine_score is not None:
                fine[(q, r)] = float(res.fine_score)
            if res.copy_score is not None:
                copy[(q, r)] = float(res.copy_score)
    done = time.perf_counter()
    return MethodRun(method.name, method.describe(), scores, segments, method.decision_threshold, dict(method.thresholds),
                     prepared - start, done - prepared, method.decided_levels(), fine, copy)


# --------------------------------------------------------------------------------------------
# metrics


@dataclass(frozen=True)
class EvalConfig:
    segment_top_k: int = DEFAULT_SEGMENT_TOP_K
    fps: float | None = None
    """Sampling rate for every method (``None``: the worker's 1 fps, or the bundle backbone's)."""
    device: str = "auto"
    progress: bool = False
    flat_luma_std: float | None = None
    """Frames flatter than this carry no evidence in ``ours`` and ``chamfer`` (``None``: the
    worker's ``decode.flat_luma_std``; 0: the rule off)."""
    reframe_views: bool | None = None
    """Portrait videos get a reframe view in ``ours`` (``None``: the worker's ``decode.reframe_views``)."""
    ceiling_precision: float = 0.95
    """Precision of ``copy_ceiling``: the best recall a threshold chosen on this set reaches at it."""

    def __post_init__(self) -> None:
        if self.flat_luma_std is not None and not 0 <= self.flat_luma_std <= 255:
            raise ValueError(f"flat_luma_std must be in [0, 255], got {self.flat_luma_std}")
        if self.segment_top_k < 1:
            raise ValueError(f"segment_top_k must be ≥ 1, got {self.segment_top_k}")
        if not 0 < self.ceiling_precision <= 1:
            raise ValueError(f"ceiling_precision must be in (0, 1], got {self.ceiling_precision}")
        if self.fps is not None and not 0 < self.fps <= 30:
            raise ValueError(f"fps must be in (0, 30], got {self.fps}")


def _pr_dict(pr: Any) -> dict[str, Any]:
    return {
        "threshold": pr.threshold,
        "precision": pr.precision,
        "recall": pr.recall,
        "true_positives": pr.true_positives,
        "false_positives": pr.false_positives,
        "positives": pr.num_positives,
    }


def _alert_metrics(levels: Mapping[tuple[str, str], str], copy_pos: set[tuple[str, str]],
                   related: set[tuple[str, str]]) -> dict[str, Any]:
    """Precision/recall of the worker's decisions: copy alerts vs copy truth, any alert vs copy+incident truth."""
    out: dict[str, Any] = {}
    for key, fired, pos in (("copy", {"copy"}, copy_pos), ("any", {"copy", "incident"}, related)):
        hits = {p for p, lv in levels.items() if lv in fired}
        tp = len(hits & pos)
        out[key] = {"precision": tp / len(hits) if hits else None, "recall": tp / len(pos) if pos else None,
                    "alerts": len(hits), "true_positives": tp, "positives": len(pos)}
    out["incident_alerts_on_copies"] = sum(1 for p, lv in levels.items() if lv == "incident" and p in copy_pos)
    return out


def _segment_predictions(run: MethodRun, truth: GroundTruth, top_k: int) -> list[Match]:
    by_query: dict[str, list[tuple[float, str]]] = {}
    for (q, r), s in run.scores.items():
        by_query.setdefault(q, []).append((s, r))
    with_seg = {m.pair for m in truth.segments("copy")}
    unknown_extent = truth.pairs("copy") - with_seg
    out: list[Match] = []
    for q, items in by_query.items():
        items.sort(key=lambda x: (-x[0], x[1]))
        for s, r in items[:top_k]:
            if (q, r) in unknown_extent:
                continue
            for seg in run.segments.get((q, r), ()):
                out.append(Match(q, r, seg.query_start, seg.query_end, seg.ref_start, seg.ref_end, score=s))
    return out


def _segment_pairs_by_kind(truth: GroundTruth) -> dict[str, set[tuple[str, str]]]:
    """Kind → the copy pairs with a truth segment that carry it (a pair with several kinds is in each)."""
    with_segment = {r.pair for r in truth.rows if r.level == "copy" and r.has_segment}
    out: dict[str, set[tuple[str, str]]] = {}
    for pair, kinds in truth.kind_sets("copy").items():
        if pair in with_segment:
            for kind in kinds:
                out.setdefault(kind, set()).add(pair)
    return dict(sorted(out.items()))


def segment_metrics_by_kind(truth: GroundTruth, gts: Sequence[Match], predictions: Sequence[Match]) -> dict[str, Any]:
    """Segment P/R/F per truth ``kind``: the copy segments of that kind against the predictions on
    the same pairs (false segments on unrelated pairs count only in the overall numbers)."""
    out: dict[str, Any] = {}
    for kind, pairs in _segment_pairs_by_kind(truth).items():
        g = [x for x in gts if x.pair in pairs]
        if not g:
            continue
        preds = [x for x in predictions if x.pair in pairs]
        prf = segment_precision_recall(g, preds)
        out[kind] = {"segment_p": prf.precision, "segment_r": prf.recall, "segment_f": prf.f1, "pairs": len({x.pair for x in g}),
                     "truth_segments": len(g), "predictions": len(preds)}
    return out


def segment_localization(run: MethodRun, truth: GroundTruth, gts: Sequence[Match]) -> dict[str, Any]:
    """Localization alone (VCSL's protocol: the copy pairs are given): segment P/R/F of every segment
    the method predicted on the truth copy pairs that carry segments, whatever the pair's score or
    rank, overall (``all``) and per truth ``kind``. What the detector's copy decision adds or loses
    is in the ranked metrics (``segment_f``, ``segment_by_kind``)."""
    pairs = {g.pair for g in gts}
    preds = [Match(q, r, seg.query_start, seg.query_end, seg.ref_start, seg.ref_end, score=run.scores[(q, r)])
             for (q, r) in sorted(pairs) for seg in run.segments.get((q, r), ())]
    out: dict[str, Any] = {}
    groups = [("all", pairs)] + [(k, group & pairs) for k, group in _segment_pairs_by_kind(truth).items()]
    for kind, group in groups:
        g = [x for x in gts if x.pair in group]
        if not g:
            continue
        prf = segment_precision_recall(g, [x for x in preds if x.pair in group])
        out[kind] = {"segment_p": prf.precision, "segment_r": prf.recall, "segment_f": prf.f1, "pairs": len(group),
                     "truth_segments": len(g), "predictions": sum(1 for x in preds if x.pair in group)}
    return out


def segment_rows(run: MethodRun) -> list[tuple[str, str, Segment, float]]:
    """Every segment a method predicted: (query, reference, segment, pair score), sorted by pair then time."""
    return [(q, r, seg, run.scores[(q, r)]) for (q, r), segs in sorted(run.segments.items())
            for seg in sorted(segs, key=lambda x: (x.query_start, x.ref_start))]


def write_segments_csv(run: MethodRun, target: Path | str) -> Path:
    """``query,reference,query_start,query_end,ref_start,ref_end,score,segment_similarity``: every
    predicted segment of every scored pair (``score``: the pair's score, which ranks it in the
    segment metrics; ``segment_similarity``: mean frame similarity along the segment)."""
    import csv

    path = Path(target)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        w = csv.writer(handle, lineterminator="\n")
        w.writerow(["query", "reference", "query_start", "query_end", "ref_start", "ref_end", "score", "segment_similarity"])
        for q, r, seg, score in segment_rows(run):
            w.writerow([q, r, f"{seg.query_start:.3f}", f"{seg.query_end:.3f}", f"{seg.ref_start:.3f}", f"{seg.ref_end:.3f}",
                        repr(float(score)), f"{seg.score:.5f}"])
    return path


def method_metrics(run: MethodRun, truth: GroundTruth, config: EvalConfig = EvalConfig()) -> dict[str, Any]:
    """All metrics of one method as a JSON-ready dict (``None`` where undefined)."""
    copy_pos = {p for p in truth.pairs("copy") if p in run.scores}
    incident_pos = {p for p in truth.pairs("incident") if p in run.scores}
    related = copy_pos | incident_pos
    preds = run.predictions()
    m: dict[str, Any] = {"pairs": len(preds), "copy_pairs": len(copy_pos), "incident_pairs": len(incident_pos)}
    copy_ap = micro_average_precision(preds, copy_pos) if copy_pos else None
    if copy_ap is not None:
        rmap = retrieval_map(preds, copy_pos)
        m["retrieval_map"] = rmap.map
        m["map_queries"] = len(rmap.per_query)
        m["map_skipped_queries"] = len(rmap.skipped_queries)
        m["copy_uap"] = copy_ap.ap
    else:
        m["retrieval_map"] = m["copy_uap"] = None
    m["related_uap"] = micro_average_precision(run.related_predictions(), related).ap if related else None
    # incident metrics (#12)
    if copy_pos and incident_pos:
        same = sorted(related)
        m["copy_vs_incident_ap"] = average_precision([run.scores[p] for p in same], [p in copy_pos for p in same]).ap
        m["copy_uap_without_incidents"] = micro_average_precision(run.predictions(exclude=incident_pos), copy_pos).ap
        m["incident_uap_drop"] = m["copy_uap_without_incidents"] - m["copy_uap"]
    else:
        m["copy_vs_incident_ap"] = m["copy_uap_without_incidents"] = m["incident_uap_drop"] = None
    # operating points
    at: dict[str, Any] = {}
    for level, t in sorted(run.thresholds.items()):
        pos = copy_pos if level == "copy" else related if level == "incident" else set()
        if pos:
            at[level] = _pr_dict(precision_recall_at(preds if level == "copy" else run.related_predictions(), pos, t))
    if run.decision_threshold is not None and not run.thresholds:
        if copy_pos:
            at["copy (own rule)"] = _pr_dict(precision_recall_at(preds, copy_pos, run.decision_threshold))
        if related:
            at["copy+incident (own rule)"] = _pr_dict(precision_recall_at(preds, related, run.decision_threshold))
    m["at_thresholds"] = at
    best = best_recall_at_precision(copy_ap, config.ceiling_precision) if copy_ap is not None else None
    m["copy_ceiling"] = None if best is None else {**_pr_dict(best), "target_precision": config.ceiling_precision}
    if run.levels:
        m["alerts"] = _alert_metrics(run.levels, copy_pos, related)
    # segments
    gts = truth.segments("copy")
    gts = [g for g in gts if g.pair in run.scores]
    if gts:
        seg_preds = _segment_predictions(run, truth, config.segment_top_k)
        m["segment_uap"] = segment_micro_average_precision(gts, seg_preds).ap
        rule = f"top-{config.segment_top_k} per query"
        if run.decision_threshold is not None:
            seg_preds = [p for p in seg_preds if p.score >= run.decision_threshold]
            rule += f", pair score ≥ {run.decision_threshold:.4g}"
        prf = segment_precision_recall(gts, seg_preds)
        m.update(segment_p=prf.precision, segment_r=prf.recall, segment_f=prf.f1, segment_predictions=len(seg_preds),
                 segment_rule=rule, segment_by_kind=segment_metrics_by_kind(truth, gts, seg_preds),
                 segment_localization=segment_localization(run, truth, gts))
    else:
        m.update(segment_uap=None, segment_p=None, segment_r=None, segment_f=None, segment_predictions=0,
                 segment_rule="no segment columns in the truth", segment_by_kind={}, segment_localization={})
    kinds = truth.kind_sets()
    if kinds:
        m["per_kind"] = per_kind_metrics(run, kinds, copy_pos, incident_pos)
    m["prepare_s"] = round(run.prepare_s, 2)
    m["score_s"] = round(run.score_s, 2)
    return m


def per_kind_metrics(run: MethodRun, kinds: Mapping[tuple[str, str], str | Sequence[str]], copy_pos: set[tuple[str, str]],
                     incident_pos: set[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Metrics per edit kind of the truth's ``kind`` column, at the method's copy threshold (the
    bundle's calibrated one, else the method's own rule; ``None`` when it has neither). A pair with
    several kinds (``GroundTruth.kind_sets``) counts under each of them.

    - a kind of copy pairs: ``ap`` = µAP with that kind's copies as positives against every
      non-copy pair (copies of other kinds left out); ``recall`` = share of its copies at or above
      the threshold;
    - a kind of incident pairs (another moment, another camera): ``copy_vs_kind_ap`` = AP of every
      copy pair ranked above these pairs; ``alert_rate`` = share of them at or above the copy
      threshold (false copy alerts).

    A copy kind's ``by_partner`` splits its copies by what the query was compared with: the main
    kind of the reverse pair (the reference's own edit, when the reference is a query too), or
    :data:`REFERENCE_ONLY` when the reference is no query (in generated benchmarks, the source
    video itself). A kind whose copies are found against their originals but missed against other
    edited copies shows it there.
    """
    threshold = run.thresholds.get("copy", run.decision_threshold)
    preds = run.predictions()
    out: dict[str, dict[str, Any]] = {}
    tags = {p: (k,) if isinstance(k, str) else tuple(k) for p, k in kinds.items()}
    partner = {(q, r): tags[(r, q)][0] if (r, q) in tags else REFERENCE_ONLY for q, r in copy_pos}
    for kind in sorted({k for ks in tags.values() for k in ks}):
        pairs = {p for p, ks in tags.items() if kind in ks and p in run.scores}
        copies, incidents = pairs & copy_pos, pairs & incident_pos
        entry: dict[str, Any] = {"threshold": threshold}
        if copies:
            kept = [sp for sp in preds if (sp.query_id, sp.ref_id) not in copy_pos or (sp.query_id, sp.ref_id) in copies]
            entry.update(level="copy", pairs=len(copies), ap=micro_average_precision(kept, copies).ap,
                         recall=None if threshold is None else sum(run.scores[p] >= threshold for p in copies) / len(copies),
                         by_partner=_recall_by_partner(run, copies, partner, threshold))
        if incidents:
            same = sorted(copy_pos | incidents)
            entry.update(level="incident" if not copies else "mixed", incident_pairs=len(incidents),
                         copy_vs_kind_ap=average_precision([run.scores[p] for p in same], [p in copy_pos for p in same]).ap
                         if copy_pos else None,
                         alert_rate=None if threshold is None else sum(run.scores[p] >= threshold for p in incidents) / len(incidents))
        if copies or incidents:
            out[kind] = entry
    return out


def _recall_by_partner(run: MethodRun, copies: set[tuple[str, str]], partner: Mapping[tuple[str, str], str],
                       threshold: float | None) -> dict[str, dict[str, Any]]:
    """Copies per partner kind: ``pairs``, and ``found`` / ``recall`` at the threshold (``None`` without one)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted({partner[p] for p in copies}):
        group = [p for p in copies if partner[p] == kind]
        found = None if threshold is None else sum(run.scores[p] >= threshold for p in group)
        out[kind] = {"pairs": len(group), "found": found, "recall": None if found is None else found / len(group)}
    return out


def pr_curves(run: MethodRun, truth: GroundTruth) -> dict[str, AveragePrecision]:
    """The detection PR curves of one method (copy; related) for plots."""
    copy_pos = {p for p in truth.pairs("copy") if p in run.scores}
    related = copy_pos | {p for p in truth.pairs("incident") if p in run.scores}
    preds = run.predictions()
    out = {}
    if copy_pos:
        out["copy"] = micro_average_precision(preds, copy_pos)
    if related:
        out["copy+incident"] = micro_average_precision(run.related_predictions(), related)
    return out


# --------------------------------------------------------------------------------------------
# top level


@dataclass
class EvalResult:
    videos_dir: Path
    truth_path: Path
    truth: GroundTruth
    videos: dict[str, Path]
    queries: list[str]
    runs: list[MethodRun] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "videos": str(self.videos_dir),
            "truth": str(self.truth_path),
            "num_videos": len(self.videos),
            "num_queries": len(self.queries),
            "copy_pairs": len(self.truth.pairs("copy")),
            "incident_pairs": len(self.truth.pairs("incident")),
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "methods": {run.name: {"info": run.info, **self.metrics[run.name]} for run in self.runs},
        }


def build_methods(names: Sequence[str], bundles: Sequence[Path | str], frames: FrameCache, features: FeatureCache,
                  *, device: str = "auto", fps: float | None = None, flat_luma_std: float | None = None,
                  reframe_views: bool | None = None) -> list[Method]:
    """Instantiate the requested methods (``ours`` once per bundle)."""
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown:
        raise EvalInputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_NAMES)}")
    if "ours" in names and not bundles:
        raise EvalInputError("method 'ours' needs at least one --bundle (e.g. models/default)")
    ours: list[Method] = []
    if "ours" in names:
        seen: dict[str, int] = {}
        for b in bundles:
            name = f"ours:{Path(b).name}"
            seen[name] = seen.get(name, 0) + 1
            ours.append(OursMethod(b, frames, features, name=name if seen[name] == 1 else f"{name}#{seen[name]}",
                                   device=device, fps=fps, flat_luma_std=flat_luma_std, reframe_views=reframe_views))
    out: list[Method] = []
    for n in names:
        if n in ("vpdq", "vpdq_tiebreak"):
            out.append(VpdqMethod(fps=fps or 1.0, tiebreak=n == "vpdq_tiebreak"))
        elif n == "chamfer":
            from scoring.chamfer import ChamferMethod

            pca_bundle = next((m.models.bundle for m in ours if isinstance(m, OursMethod)
                               and m.models.bundle.manifest.backbone.name == "efficientnet_lite0_regions"), None)
            if pca_bundle is None:
                pca_bundle = _first_effnet_bundle(bundles)
            out.append(ChamferMethod(frames, features, pca_bundle=pca_bundle, device=device, fps=fps,
                                     flat_luma_std=flat_luma_std))
        elif n in ("sscd", "sscd_distilled"):
            from scoring.sscd import SscdMethod

            out.append(SscdMethod(frames, features, variant=n))
        elif n == "ours":
            out.extend(ours)
    return out


def _first_effnet_bundle(bundles: Sequence[Path | str]) -> Any | None:
    from inference.bundle import load_bundle

    for b in bundles:
        bundle = load_bundle(b)
        if bundle.manifest.backbone.name == "efficientnet_lite0_regions":
            return bundle
    return None


def evaluate(videos_dir: Path | str, truth_path: Path | str, *, methods: Sequence[str] = DEFAULT_METHODS,
             bundles: Sequence[Path | str] = (), config: EvalConfig = EvalConfig()) -> EvalResult:
    """Score the folder with every method and compute the metrics (the library behind ``dupwatch eval``)."""
    from evaluation.truth import TruthFormatError

    try:
        truth = read_truth_csv(truth_path)
    except TruthFormatError as exc:
        raise EvalInputError(str(exc)) from None
    if not truth.rows:
        raise EvalInputError(f"{truth_path}: the truth CSV lists no pair (need at least one copy or incident row)")
    videos = resolve_videos(videos_dir, truth)
    queries = sorted(truth.queries)
    frames, features = FrameCache(), FeatureCache()
    result = EvalResult(Path(videos_dir), Path(truth_path), truth, videos, queries)
    for method in build_methods(list(dict.fromkeys(methods)), bundles, frames, features, device=config.device,
                                fps=config.fps, flat_luma_std=config.flat_luma_std, reframe_views=config.reframe_views):
        log.info("evaluating %s on %d queries × %d videos", method.name, len(queries), len(videos))
        run = run_method(method, videos, queries, progress=config.progress)
        result.runs.append(run)
        result.metrics[run.name] = method_metrics(run, truth, config)
    result.timings = {"decode_s": frames.decode_s, "features_s": features.extract_s}
    return result


def evaluate_folder(bench_dir: Path | str, **kwargs: Any) -> EvalResult:
    """``evaluate`` on a generated benchmark folder (``DIR/videos``, ``DIR/truth.csv``)."""
    root = Path(bench_dir)
    if not (root / "videos").is_dir() or not (root / "truth.csv").is_file():
        raise EvalInputError(f"{root} is not a benchmark folder (expected {root / 'videos'}/ and {root / 'truth.csv'})")
    return evaluate(root / "videos", root / "truth.csv", **kwargs)
