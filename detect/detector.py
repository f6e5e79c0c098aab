"""The detection stage: candidate cascade → selector → fine re-scoring → normalization → level.

For one upload (its :class:`VideoRepresentation`, not yet indexed):

1. candidates = top-K of the coarse collection ∪ videos behind the top clip hits (same tenant);
2. the best coarse hits (:data:`TOP_COARSE_ALWAYS`) and then the selector's order fill a budget of
   ``rerank_top_n`` candidates, which are re-scored by the fine-grained
   network on the stored per-frame features (DnS §2.10 as a latency budget, digest §7.1.4);
   the others keep their coarse score and are never alerted on (thresholds are calibrated on the
   fine score, and a score from another stage is not comparable — digest §7.1.7);
3. the fine score is normalized by the query's bias (weight × mean of the top-k similarities of
   the query's coarse vector to a background set of unrelated videos);
4. temporal alignment of the frame similarity matrix gives matched segments and evidence;
5. :func:`detect.levels.decide_level` maps normalized score + evidence to copy / incident / none.

Each detection carries everything an alert needs; :func:`alert_id` makes the alert id a pure
function of (tenant, query, match, level, bundle version), so re-processing an event yields
the same ids and receivers can drop duplicates (``ingest.pipeline.make_alert_id``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np

from detect.copy_head import CopyHead, CopyHeadError, copy_head_for, copy_threshold_fits_head, pair_features
from detect.levels import AlignmentEvidence, LevelThresholds, decide_level
from detect.normalization import SimilarityNormalizer
from dupwatch.config import DetectionConfig
from dupwatch.records import Segment, VideoRepresentation
from inference.alignment import AlignmentEvidence as PathEvidence
from inference.alignment import align_pair
from inference.embedder import VideoModels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """The decision for one (query, indexed video) pair."""

    query_id: str
    ref_id: str
    tenant: str
    level: Literal["copy", "incident", "none"]
    coarse: float
    fine: float | None
    normalized: float
    segments: tuple[Segment, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "type": "detection",
            "query": self.query_id,
            "reference": self.ref_id,
            "tenant": self.tenant,
            "level": self.level,
            "scores": {"coarse": round(self.coarse, 5), "fine": None if self.fine is None else round(self.fine, 5), "normalized": round(self.normalized, 5)},
            "segments": [
                {"query_start": s.query_start, "query_end": s.query_end, "ref_start": s.ref_start, "ref_end": s.ref_end, "score": round(s.score, 5)}
                for s in self.segments
            ],
            "evidence": self.evidence,
        }


TOP_COARSE_ALWAYS = 5
"""Candidates with the best coarse scores that are re-scored whatever the selector says."""


@dataclass(frozen=True)
class AlignmentParams:
    """Temporal-network parameters for localization on the fine frame-similarity matrix."""

    min_sim: float = 0.35
    min_length: int = 2
    max_step: int = 3
    top_k: int = 5
    max_paths: int = 5


@dataclass(frozen=True)
class PairAssessment:
    """Everything the level decision needs about one pair, computed the same way by the worker's
    detector, the eval harness and the copy-head trainer."""

    fine: float
    frame_similarity: np.ndarray
    segments: tuple[Segment, ...]
    path_evidence: PathEvidence
    longest_s: float
    """Longest aligned segment on the query side (s)."""
    copy_score: float | None
    """The copy head's P(copy); ``None`` without a head."""

    def level_evidence(self) -> AlignmentEvidence:
        return AlignmentEvidence(
            aligned_length_s=float(self.longest_s),
            query_coverage=float(np.clip(self.path_evidence.query_coverage, 0, 1)),
            reference_coverage=float(np.clip(self.path_evidence.ref_coverage, 0, 1)),
            fine_score=self.fine,
        )

    def features(self) -> np.ndarray:
        return pair_features(self.fine, self.frame_similarity, self.path_evidence)


def assess_pair(models: VideoModels, query_regions: np.ndarray, ref_regions: np.ndarray, query_times: np.ndarray,
                ref_times: np.ndarray, params: AlignmentParams, head: CopyHead | None = None) -> PairAssessment:
    """Fine score, frame similarity, aligned segments, evidence and (with a head) P(copy) of one pair."""
    pair = models.compare(query_regions, ref_regions)
    segments, evidence = align_pair(pair.frame_similarity, query_times, ref_times, min_sim=params.min_sim,
                                    min_length=params.min_length, max_step=params.max_step, top_k=params.top_k,
                                    max_paths=params.max_paths)
    longest = max((s.query_end - s.query_start for s in segments), default=0.0)
    copy_score = head.score(pair_features(pair.score, pair.frame_similarity, evidence)) if head is not None else None
    return PairAssessment(float(pair.score), pair.frame_similarity, tuple(segments), evidence, float(longest), copy_score)


class Detector:
    """Decides copy / incident for an upload against the index (see module docstring)."""

    def __init__(
        self,
        models: VideoModels,
        index: Any,
        config: DetectionConfig,
        *,
        thresholds: LevelThresholds | None = None,
        normalizer: SimilarityNormalizer | None = None,
        alignment: AlignmentParams | None = None,
    ) -> None:
        self.models = models
        self.index = index
        self.config = config
        calibration = models.bundle.manifest.calibration or {}
        self.thresholds = thresholds or _thresholds_from(models.bundle.thresholds(), config)
        self.normalizer = normalizer if normalizer is not None else _normalizer_from(calibration, config)
        self.alignment = alignment or AlignmentParams()
        self.copy_head = copy_head_for(models.bundle)
        if thresholds is None and not copy_threshold_fits_head(models.bundle) and config.thresholds.copy_level is None:
            raise CopyHeadError("the bundle has a copy head but its copy threshold was calibrated on another score: "
                                "recalibrate it (dupwatch eval --report DIR, then dupwatch calibrate --bundle)")

    def candidates(self, rep: VideoRepresentation) -> dict[str, float]:
        """Candidate video ids → coarse similarity (clip-only candidates get theirs fetched)."""
        tenant = rep.tenant
        coarse_hits = dict(self.index.search_coarse(rep.coarse, tenant, self.config.coarse_top_k, exclude_video_id=rep.video_id))
        if rep.clips.shape[0]:
            clip_hits = self.index.search_clips(rep.clips, tenant, self.config.clip_top_k, exclude_video_id=rep.video_id)
            missing = [c.video_id for c in clip_hits if c.video_id not in coarse_hits]
            if missing:
                vectors = self.index.fetch_coarse(missing)
                for vid, vec in vectors.items():
                    coarse_hits[vid] = float(np.dot(rep.coarse, vec))
        return coarse_hits

    def query_bias(self, rep: VideoRepresentation) -> float:
        if self.normalizer is None:
            return 0.0
        sims = self.index.search_background(rep.coarse, self.normalizer.k)
        if len(sims) == 0:
            return 0.0
        return float(self.normalizer.bias(np.asarray(sims, np.float32)))

    def detect(self, rep: VideoRepresentation) -> list[Detection]:
        """All decided pairs, best normalized score first (level ``none`` included)."""
        coarse = self.candidates(rep)
        if not coarse:
            return []
        ids = list(coarse)
        info = self.index.video_info(ids)
        selfsims = np.array([float(info.get(v, {}).get("selfsim", 0.0)) for v in ids], np.float32)
        coarse_arr = np.array([coarse[v] for v in ids], np.float32)
        order = np.argsort(-self.models.selector_scores(rep.selfsim, selfsims, coarse_arr), kind="stable")
        # the best coarse hits are always re-scored; the selector orders the rest of the budget (a
        # selector trained on few videos can rank a clear coarse match below the budget)
        top_coarse = np.argsort(-coarse_arr, kind="stable")[: min(TOP_COARSE_ALWAYS, self.config.rerank_top_n)]
        rerank = [ids[i] for i in dict.fromkeys([*top_coarse.tolist(), *order.tolist()])][: self.config.rerank_top_n]
        num_frames = {v: int(info.get(v, {}).get("num_frames") or 0) for v in rerank}
        fine_feats = self.index.fetch_fine(rerank, num_frames)
        bias = self.query_bias(rep)
        query_regions = rep.regions.astype(np.float32)
        query_times = np.asarray(rep.timestamps, np.float32)
        out: list[Detection] = []
        for vid in rerank:
            ref = fine_feats.get(vid)
            if ref is None:
                continue
            a = assess_pair(self.models, query_regions, ref, query_times, _ref_times(info.get(vid, {}), ref.shape[0]),
                            self.alignment, self.copy_head)
            evidence = a.path_evidence
            normalized = a.fine - bias
            level = decide_level(normalized, a.level_evidence(), self.thresholds, a.copy_score)
            out.append(
                Detection(
                    query_id=rep.video_id,
                    ref_id=vid,
                    tenant=rep.tenant,
                    level=level,
                    coarse=float(coarse[vid]),
                    fine=a.fine,
                    normalized=float(normalized),
                    segments=a.segments,
                    evidence={
                        "bias": round(bias, 5),
                        "aligned_seconds": round(float(evidence.aligned_seconds), 3),
                        "longest_segment_s": round(a.longest_s, 3),
                        "copy_score": None if a.copy_score is None else round(a.copy_score, 5),
                        "query_coverage": round(float(evidence.query_coverage), 4),
                        "ref_coverage": round(float(evidence.ref_coverage), 4),
                        "diagonality": round(float(evidence.diagonality), 4),
                        "temporal_contrast": round(float(evidence.temporal_contrast), 4),
                        "speed_ratio": round(float(evidence.speed_ratio), 4),
                        "thresholds": {"copy": self.thresholds.copy, "incident": self.thresholds.incident},
                        "methods": dict(self.models.methods),
                    },
                )
            )
        out.sort(key=lambda d: -d.normalized)
        return out

    def alerts(self, rep: VideoRepresentation, detections: list[Detection], *, now: datetime | None = None) -> list["AlertEvent"]:  # noqa: F821
        from ingest.events import AlertEvent, AlertScores, AlertSegment
        from ingest.pipeline import make_alert_id

        created = now or datetime.now(timezone.utc)
        version = self.models.version
        alerts = []
        for det in detections:
            if det.level == "none":
                continue
            alerts.append(
                AlertEvent(
                    alert_id=make_alert_id(det.tenant, det.query_id, det.ref_id, det.level, version),
                    video_id=det.query_id,
                    matched_video_id=det.ref_id,
                    tenant=det.tenant,
                    level=det.level,
                    scores=AlertScores(coarse=det.coarse, fine=det.fine, normalized=det.normalized),
                    segments=[
                        AlertSegment(query_start=s.query_start, query_end=s.query_end, ref_start=s.ref_start, ref_end=s.ref_end, score=s.score)
                        for s in det.segments
                    ],
                    evidence=det.evidence,
                    model_version=version[:128],
                    created_at=created,
                )
            )
        return alerts


def _ref_times(info: dict[str, Any], frames: int) -> np.ndarray:
    """Reference frame timestamps: 1 sample per second unless the stored duration says otherwise."""
    duration = float(info.get("duration_s") or 0.0)
    if frames > 1 and duration > 0:
        step = duration / max(1, frames - 1)
        if 0.2 <= step <= 5.0:
            return np.arange(frames, dtype=np.float32) * step
    return np.arange(frames, dtype=np.float32)


def _thresholds_from(fitted: dict[str, float], config: DetectionConfig) -> LevelThresholds:
    copy = config.thresholds.copy_level if config.thresholds.copy_level is not None else fitted.get("copy")
    incident = config.thresholds.incident if config.thresholds.incident is not None else fitted.get("incident")
    return LevelThresholds(copy=copy, incident=incident, min_aligned_s=config.min_segment_s)


def _normalizer_from(calibration: dict[str, Any], config: DetectionConfig) -> SimilarityNormalizer | None:
    params = calibration.get("normalization") or {}
    k = config.normalization_k if config.normalization_k is not None else params.get("k")
    weight = config.normalization_weight if config.normalization_weight is not None else params.get("weight", 1.0)
    if not k or not weight:
        return None
    return SimilarityNormalizer(int(k), float(weight))
