"""The detection stage: candidate cascade → selector → fine re-scoring → normalization → level.

For one upload (its :class:`VideoRepresentation`, not yet indexed):

1. candidates = top-K of the coarse collection ∪ videos behind the top clip hits (same tenant,
   or every tenant with ``detection.tenant_isolation: false``);
2. selection (:func:`select_for_rerank`, DnS §2.10): the selector scores every candidate; those
   at or above ``selector_threshold`` and/or the top ``rerank_fraction`` by selector score are
   re-scored by the fine-grained network on the stored per-frame features, capped at
   ``rerank_top_n``. The ``rerank_always_top_coarse`` best coarse hits are always re-scored first
   (a selector trained on few videos ranked clear coarse matches out of the budget; measured
   better on the benchmark), then the videos behind the ``rerank_always_top_clips`` best clip
   hits (5 by default; 0: clip hits only add candidates). Without threshold and fraction, ``rerank_top_n`` is a budget filled
   by the best coarse hits and then the selector's order (the behaviour before DnS selection).
   Candidates that are not re-scored stay in the output with their coarse score, ``fine`` and
   ``normalized`` ``None`` and level ``none``: the thresholds are calibrated on the fine score
   and on the copy head's P(copy), and a coarse score is not comparable (digest §7.1.7);
3. the fine score is normalized by the query's bias (weight × mean of the top-k similarities of
   the query's coarse vector to the background collection ``detection.background_collection``,
   built with ``dupwatch background build``);
4. temporal alignment of the frame similarity matrix gives matched segments and evidence;
   with a copy head, each pair is also assessed the other way round (the reference as the
   upload) and P(copy) is the higher of the two directions (:func:`both_ways`);
5. :func:`detect.levels.decide_level` maps normalized score + evidence to copy / incident / none.

Each detection carries everything an alert needs; :func:`alert_id` makes the alert id a pure
function of (tenant, query, match, level, bundle version), so re-processing an event yields
the same ids and receivers can drop duplicates (``dupwatch.events.make_alert_id``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from detect.copy_head import (CopyHead, CopyHeadError, copy_head_for, copy_threshold_fits_head, motion_agreement, pair_features,
                               pixel_agreement, region_layout)
from detect.levels import AlignmentEvidence, LevelThresholds, decide_level
from detect.normalization import SimilarityNormalizer
from dupwatch.config import DetectionConfig
from dupwatch.records import Segment, VideoRepresentation, inset_id, parent_id
from inference.alignment import AlignmentEvidence as PathEvidence
from inference.alignment import align_pair, tn_evidence
from inference.segments import SegmentParams

if TYPE_CHECKING:
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
    normalized: float | None
    """``fine − bias``; ``None`` when the pair was not re-scored (``reranked`` false)."""
    segments: tuple[Segment, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    reranked: bool = True
    """Re-scored by the fine network; a candidate left out by the selection keeps only ``coarse``."""

    def to_record(self) -> dict[str, Any]:
        return {
            "type": "detection",
            "query": self.query_id,
            "reference": self.ref_id,
            "tenant": self.tenant,
            "level": self.level,
            "scores": {"coarse": round(self.coarse, 5), "fine": None if self.fine is None else round(self.fine, 5),
                       "normalized": None if self.normalized is None else round(self.normalized, 5)},
            "reranked": self.reranked,
            "segments": [
                {"query_start": s.query_start, "query_end": s.query_end, "ref_start": s.ref_start, "ref_end": s.ref_end, "score": round(s.score, 5)}
                for s in self.segments
            ],
            "evidence": self.evidence,
        }


TOP_COARSE_ALWAYS = 5
"""Default of ``DetectionConfig.rerank_always_top_coarse``: candidates with the best coarse scores
that are re-scored whatever the selector says."""


def select_for_rerank(coarse: np.ndarray, selector: np.ndarray, config: DetectionConfig,
                      clip_order: list[int] | None = None) -> list[int]:
    """Indices of the candidates to re-score, in re-scoring order (module docstring, step 2).

    ``coarse`` and ``selector`` are the candidates' coarse and selector scores; ``clip_order`` the
    indices of the candidates found by the clip search, best clip similarity first. The best
    ``rerank_always_top_coarse`` coarse hits come first, then the first ``rerank_always_top_clips``
    of ``clip_order``; then, with ``selector_threshold`` and/or
    ``rerank_fraction``, the candidates either selects (best selector score first), else every
    candidate in selector order (a plain budget); the whole list is cut at ``rerank_top_n``."""
    coarse = np.asarray(coarse, np.float32).reshape(-1)
    selector = np.asarray(selector, np.float32).reshape(-1)
    n = coarse.shape[0]
    cap = min(config.rerank_top_n, n)
    if cap <= 0:
        return []
    top_coarse = np.argsort(-coarse, kind="stable")[: min(config.rerank_always_top_coarse, cap)].tolist()
    top_clips = list(clip_order or [])[: config.rerank_always_top_clips]
    order = np.argsort(-selector, kind="stable").tolist()
    if config.selector_threshold is None and config.rerank_fraction is None:
        chosen = order
    else:
        picked: set[int] = set()
        if config.selector_threshold is not None:
            picked.update(i for i in range(n) if float(selector[i]) >= config.selector_threshold)
        if config.rerank_fraction is not None:
            picked.update(order[: int(math.ceil(config.rerank_fraction * n - 1e-9))])
        chosen = [i for i in order if i in picked]
    return list(dict.fromkeys([*top_coarse, *top_clips, *chosen]))[:cap]


AlignmentParams = SegmentParams
"""Parameters of the copy-segment search on the fine frame-similarity matrix (:mod:`inference.segments`)."""


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
    layout: tuple[float, float] = (1.0, 1.0)
    """:func:`detect.copy_head.region_layout` of the pair (region spread, region layout)."""
    views: tuple[str, str] = ("main", "main")
    """Which view of the query and of the reference matched (``main`` or ``inset``)."""
    head_evidence: PathEvidence | None = None
    """The evidence the copy head reads (:func:`inference.alignment.tn_evidence`); ``None``: ``path_evidence``."""
    motion: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """:func:`detect.copy_head.motion_agreement` of the pair (agreement, magnitude, self-similarity),
    on ``head_rows``."""
    pixel: float = math.nan
    """:func:`detect.copy_head.pixel_agreement` of the matched views (``nan``: no thumbnails)."""
    head_rows: np.ndarray | None = None
    """The query frames the copy head's evidence (``layout``, ``motion``, ``pixel``, ``head_evidence``
    and the frame-similarity features) was computed on (:func:`head_rows`); ``None``: all of them."""
    directions: tuple[float, float] | None = None
    """P(copy) of the query against the reference and of the reference against the query, when
    ``copy_score`` is the higher of the two (:func:`both_ways`); ``None``: one direction."""

    @property
    def degenerate_fraction(self) -> float:
        """Share of the matched query frames piled onto one reference instant (speed ≈ 0)."""
        return float(self.path_evidence.degenerate_fraction)

    def level_evidence(self) -> AlignmentEvidence:
        return AlignmentEvidence(
            aligned_length_s=float(self.longest_s),
            query_coverage=float(np.clip(self.path_evidence.query_coverage, 0, 1)),
            reference_coverage=float(np.clip(self.path_evidence.ref_coverage, 0, 1)),
            fine_score=self.fine,
            degenerate_fraction=float(np.clip(self.degenerate_fraction, 0, 1)),
            motion_agreement=float(np.clip(self.motion[0], -1, 1)),
            motion_magnitude=float(self.motion[1]),
        )

    def features(self) -> np.ndarray:
        evidence = self.head_evidence if self.head_evidence is not None else self.path_evidence
        sim = self.frame_similarity if self.head_rows is None else self.frame_similarity[self.head_rows]
        return pair_features(self.fine, sim, evidence, self.layout, self.motion, self.pixel)


Thumbs = Mapping[str, np.ndarray]
"""Thumbnails (:mod:`inference.thumbnails`) per view name, like the region views; a view without
them is absent."""


def assess_pair(models: VideoModels, query_regions: np.ndarray, ref_regions: np.ndarray, query_times: np.ndarray,
                ref_times: np.ndarray, params: AlignmentParams, head: CopyHead | None = None,
                thumbs: tuple[np.ndarray | None, np.ndarray | None] = (None, None)) -> PairAssessment:
    """Fine score, frame similarity, aligned segments, evidence and (with a head) P(copy) of one pair
    (``thumbs``: the query's and the reference's thumbnails, when known)."""
    return _assess_scored(models.compare(query_regions, ref_regions), query_regions, ref_regions, query_times, ref_times,
                          params, head, thumbs=thumbs)


HEAD_FOCUS_COVERAGE = 0.9
"""A longest segment covering less of the query's frames than this focuses the copy head on it (:func:`head_rows`)."""

MIN_HEAD_ROWS = 3
"""Fewest query frames the copy head's evidence is computed on when it is focused."""


def head_rows(segments: tuple[Segment, ...] | list[Segment], query_times: np.ndarray, frames: int) -> np.ndarray | None:
    """The query frames (row indices of the ``frames``-row similarity matrix) inside the longest
    matched segment, when it covers less than :data:`HEAD_FOCUS_COVERAGE` of them and at least
    :data:`MIN_HEAD_ROWS`; else ``None`` (the copy head reads every frame).

    Why: an excerpt embedded in other footage matches on its own frames only; averaged over the
    whole upload, its frame similarity, region layout, motion and pixel agreement are diluted
    by the unrelated rest and look like a weak match. Read on the matched frames they look like
    the plain excerpt they are (measured on the real check set: README, *Real footage*).
    """
    if not segments:
        return None
    longest = max(segments, key=lambda s: s.query_end - s.query_start)
    t = np.asarray(query_times, np.float64)
    starts = t[:, 0] if t.ndim == 2 else t
    if starts.shape[0] != frames:
        return None
    rows = np.flatnonzero((starts >= longest.query_start - 1e-6) & (starts < longest.query_end - 1e-6))
    if len(rows) < MIN_HEAD_ROWS or len(rows) >= HEAD_FOCUS_COVERAGE * frames:
        return None
    return rows


def _rows_of(x: np.ndarray | None, rows: np.ndarray | None, frames: int) -> np.ndarray | None:
    """``x[rows]`` for optional per-frame data of the ``frames`` similarity rows (thumbnails, times);
    anything of another length as it is."""
    if x is None or rows is None or len(x) != frames:
        return x
    return np.asarray(x)[rows]


def _assess_scored(pair: Any, query_regions: np.ndarray, ref_regions: np.ndarray, query_times: np.ndarray,
                   ref_times: np.ndarray, params: AlignmentParams, head: CopyHead | None,
                   head_times: tuple[np.ndarray, np.ndarray] | None = None,
                   thumbs: tuple[np.ndarray | None, np.ndarray | None] = (None, None)) -> PairAssessment:
    segments, evidence = align_pair(pair.frame_similarity, query_times, ref_times, params)
    longest = max((s.query_end - s.query_start for s in segments), default=0.0)
    # segments and gates read the whole upload; the copy head reads the frames that matched
    frames = pair.frame_similarity.shape[0]
    rows = head_rows(segments, query_times, frames)
    sim = pair.frame_similarity if rows is None else pair.frame_similarity[rows]
    q_regions = query_regions if rows is None else query_regions[rows]
    layout = region_layout(q_regions, ref_regions, sim)
    motion = motion_agreement(q_regions, ref_regions, sim)
    pixel = pixel_agreement(_rows_of(thumbs[0], rows, frames), thumbs[1])
    # the copy head reads the Temporal-Network evidence it is fitted on, not the segment search's
    # (training calls features() on the same assessment, so training and serving agree)
    hq, hr = head_times if head_times is not None else (query_times, ref_times)
    head_evidence = tn_evidence(sim, _rows_of(hq, rows, frames), hr)
    copy_score = (head.score(pair_features(pair.score, sim, head_evidence, layout, motion, pixel))
                  if head is not None else None)
    return PairAssessment(float(pair.score), pair.frame_similarity, tuple(segments), evidence, float(longest), copy_score,
                          layout, head_evidence=head_evidence, motion=motion, pixel=pixel, head_rows=rows)


def assess_views(models: VideoModels, query_views: Mapping[str, np.ndarray], ref_views: Mapping[str, np.ndarray],
                 query_times: np.ndarray, ref_times: np.ndarray, params: AlignmentParams,
                 head: CopyHead | None = None, query_thumbs: Thumbs | None = None,
                 ref_thumbs: Thumbs | None = None) -> PairAssessment:
    """:func:`assess_pair` of the pair of views that is most likely a copy (``main`` and, when the
    decoder found a picture-in-picture inset or made a reframe view, ``inset``; see :mod:`ingest.inset`).

    Every pair of views is compared, inset against inset too: two uploads that show the same
    footage small inside different hosts are copies of each other only through their insets. With
    a copy head, each view pair is assessed in full and the one with the highest ``P(copy)`` is
    kept: the views that match best frame by frame do not always carry the stronger evidence of a
    copy. Without a head, the pair with the highest fine score is assessed.
    """
    combos = view_combos(query_views, ref_views)
    scored = {c: models.compare(query_views[c[0]], ref_views[c[1]]) for c in combos}
    return assess_scored_views(scored, query_views, ref_views, query_times, ref_times, params, head,
                               query_thumbs=query_thumbs, ref_thumbs=ref_thumbs)


def view_combos(query_views: Mapping[str, Any], ref_views: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(query view, reference view) pairs compared: every query view against every reference view,
    in the views' order (``main`` first, so that a tie keeps the main views)."""
    return [(qv, rv) for qv in query_views for rv in ref_views]


def assess_scored_views(scored: Mapping[tuple[str, str], Any], query_views: Mapping[str, np.ndarray],
                        ref_views: Mapping[str, np.ndarray], query_times: np.ndarray, ref_times: np.ndarray,
                        params: AlignmentParams, head: CopyHead | None = None,
                        head_times: tuple[np.ndarray, np.ndarray] | None = None, *, query_thumbs: Thumbs | None = None,
                        ref_thumbs: Thumbs | None = None) -> PairAssessment:
    """:func:`assess_views` from the fine scores of the view pairs (``scored[(query view, ref view)]``);
    ``head_times``: the (query, reference) times of the copy head's evidence when they differ;
    ``query_thumbs`` / ``ref_thumbs``: thumbnails per view, for the pixel evidence of the matched views."""
    def assess(combo: tuple[str, str]) -> PairAssessment:
        thumbs = ((query_thumbs or {}).get(combo[0]), (ref_thumbs or {}).get(combo[1]))
        a = _assess_scored(scored[combo], query_views[combo[0]], ref_views[combo[1]], query_times, ref_times, params,
                           head, head_times, thumbs)
        return replace(a, views=combo)

    combos = list(scored)  # ties keep the first: main before inset
    if head is None or len(combos) == 1:
        return assess(max(combos, key=lambda c: scored[c].score))
    return max((assess(c) for c in combos), key=lambda a: a.copy_score or 0.0)


def both_ways(forward: PairAssessment, reverse: float | None) -> PairAssessment:
    """``forward`` with P(copy) the higher of its own and ``reverse`` (P(copy) of the same two
    videos with their roles swapped); segments, evidence and views stay the forward direction's.

    Why: being a copy is symmetric, but the head's evidence is not. It is read on the query's
    frames (the longest matched segment, region layout and motion of query regions against the
    reference), so a copy that is a small or heavily edited part of one video and the whole of
    the other shows its evidence more clearly from one side. Scoring both sides and keeping the
    higher raised copy µAP and recall at the same calibrated precision on both real calibrate
    draws (README, *Real footage*); the copy threshold is calibrated on that two-way score.
    """
    if forward.copy_score is None or reverse is None:
        return forward
    return replace(forward, copy_score=max(forward.copy_score, float(reverse)),
                   directions=(forward.copy_score, float(reverse)))


CANDIDATE_CELLS = 1 << 26
"""Frame-similarity cells (``[Tq, Tr]`` per view pair, float32: 256 MiB) of the candidates scored
together in one group (:func:`candidate_groups`)."""


def candidate_groups(query_views: Mapping[str, np.ndarray], candidates: Mapping[str, Mapping[str, np.ndarray]],
                     budget: int | None = None, *, both_ways: bool = False) -> list[dict[str, Mapping[str, np.ndarray]]]:
    """``candidates`` in consecutive groups whose frame similarities hold at most ``budget`` cells
    together (default :data:`CANDIDATE_CELLS`; a candidate larger than that alone), in their order;
    ``both_ways``: each pair is also scored the other way round (:func:`both_ways`), twice the cells.

    Why: every view pair of a group keeps its ``[Tq, Tr]`` frame similarity until the group is
    assessed. Short videos all fit in one group, one batched call per query view as before; a 4 h
    upload against twenty 4 h references, each with an inset on both sides, would otherwise hold
    eighty 791 MiB matrices at once."""
    budget = CANDIDATE_CELLS if budget is None else budget
    groups: list[dict[str, Mapping[str, np.ndarray]]] = []
    used = 0
    for vid, ref_views in candidates.items():
        cells = sum(len(query_views[q]) * len(ref_views[r]) for q, r in view_combos(query_views, ref_views))
        cells *= 2 if both_ways else 1
        if not groups or used + cells > budget:
            groups.append({})
            used = 0
        groups[-1][vid] = ref_views
        used += cells
    return groups


ViewScores = dict[str, dict[tuple[str, str], Any]]
"""Fine scores per candidate id and (first view, second view) pair."""


def score_candidates(models: Any, query_views: Mapping[str, np.ndarray],
                     candidates: Mapping[str, Mapping[str, np.ndarray]]) -> ViewScores:
    """Fine scores of every view pair of every candidate: each query view is indexed once per upload,
    each reference view once, and a query view meets all reference views in one batched call
    (``models.index_fine`` / ``models.score_indexed``; models without them compare pair by pair)."""
    return score_candidates_both_ways(models, query_views, candidates, reverse=False)[0]


def score_candidates_both_ways(models: Any, query_views: Mapping[str, np.ndarray],
                               candidates: Mapping[str, Mapping[str, np.ndarray]],
                               *, reverse: bool = True) -> tuple[ViewScores, ViewScores]:
    """:func:`score_candidates`, and with ``reverse`` the fine scores the other way round too
    (``reverse[vid][(reference view, query view)]``, each reference view against all query views
    in one call), from the same indexed views; without ``reverse`` the second dict is empty."""
    forward: ViewScores = {vid: {} for vid in candidates}
    backward: ViewScores = {vid: {} for vid in candidates} if reverse else {}
    if not hasattr(models, "index_fine"):
        for vid, ref_views in candidates.items():
            forward[vid] = {c: models.compare(query_views[c[0]], ref_views[c[1]]) for c in view_combos(query_views, ref_views)}
            if reverse:
                backward[vid] = {c: models.compare(ref_views[c[0]], query_views[c[1]])
                                 for c in view_combos(ref_views, query_views)}
        return forward, backward
    qnames = list(query_views)
    q_indexed = dict(zip(qnames, models.index_fine([query_views[n] for n in qnames]), strict=True))
    keys = [(vid, rv) for vid, views in candidates.items() for rv in views]
    r_indexed = dict(zip(keys, models.index_fine([candidates[v][rv] for v, rv in keys]), strict=True))
    if keys:
        for qv in qnames:
            for (vid, rv), pair in zip(keys, models.score_indexed(q_indexed[qv], [r_indexed[k] for k in keys]), strict=True):
                forward[vid][(qv, rv)] = pair
        if reverse:
            for vid, rv in keys:
                for qv, pair in zip(qnames, models.score_indexed(r_indexed[(vid, rv)], [q_indexed[n] for n in qnames]),
                                    strict=True):
                    backward[vid][(rv, qv)] = pair
    # the order of view_combos: main before inset, so ties keep the main view
    forward = {vid: {c: pairs[c] for c in view_combos(query_views, candidates[vid])} for vid, pairs in forward.items()}
    if reverse:
        backward = {vid: {c: pairs[c] for c in view_combos(candidates[vid], query_views)} for vid, pairs in backward.items()}
    return forward, backward


@dataclass(frozen=True)
class RerankPlan:
    """An upload's candidates (id → coarse similarity), the ids chosen for fine re-scoring (in
    re-scoring order, at most ``rerank_top_n``), every candidate's selector score and the index's
    rows about them (``video_info``)."""

    coarse: dict[str, float]
    rerank: list[str]
    selector: dict[str, float]
    info: dict[str, Any]


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
        self.thresholds = thresholds or LevelThresholds.from_fitted(models.bundle.thresholds(), config)
        self.normalizer = normalizer if normalizer is not None else _normalizer_from(calibration, config)
        self.alignment = alignment or AlignmentParams()
        self.copy_head = copy_head_for(models.bundle)
        self._warned_empty_background = False
        if thresholds is None and not copy_threshold_fits_head(models.bundle) and config.thresholds.copy_level is None:
            raise CopyHeadError("the bundle has a copy head but its copy threshold was calibrated on another score: "
                                "recalibrate it (dupwatch eval --report DIR, then dupwatch calibrate --bundle)")

    def candidates(self, rep: VideoRepresentation) -> dict[str, float]:
        """Candidate video ids → coarse similarity (clip-only candidates get theirs fetched).

        The query's views (the video, and its picture-in-picture inset when the decoder found one)
        each search the index, whose rows include the indexed videos' inset views; a hit on
        ``<id>#inset`` is a hit on ``<id>``, and a video keeps its best view's score."""
        return self._search(rep)[0]

    def _search(self, rep: VideoRepresentation) -> tuple[dict[str, float], list[str]]:
        """:meth:`candidates`, and the videos behind the clip hits, best clip similarity first."""
        tenant = rep.tenant if self.config.tenant_isolation else None
        queries = [rep] + ([rep.inset] if rep.inset is not None else [])
        coarse_hits: dict[str, float] = {}

        def keep(vid: str, score: float) -> None:
            parent = parent_id(vid)
            if parent != rep.video_id:
                coarse_hits[parent] = max(score, coarse_hits.get(parent, -np.inf))

        clip_best: dict[str, float] = {}
        for q in queries:
            for vid, score in self.index.search_coarse(q.coarse, tenant, self.config.coarse_top_k, exclude_video_id=rep.video_id):
                keep(vid, float(score))
            if q.clips.shape[0]:
                for c in self.index.search_clips(q.clips, tenant, self.config.clip_top_k, exclude_video_id=rep.video_id):
                    parent = parent_id(c.video_id)
                    clip_best[parent] = max(float(c.score), clip_best.get(parent, -np.inf))
        clip_videos = set(clip_best)
        missing = [v for v in clip_videos if v not in coarse_hits and v != rep.video_id]
        if missing:
            for vid, vec in self.index.fetch_coarse(missing).items():
                keep(vid, max(float(np.dot(q.coarse, vec)) for q in queries))
        clip_order = sorted((v for v in clip_best if v in coarse_hits), key=lambda v: -clip_best[v])
        return coarse_hits, clip_order

    def query_bias(self, rep: VideoRepresentation) -> float:
        """weight × mean of the top-k similarities of the query to the background collection
        (``detection.background_collection``); 0 without normalization or with an empty
        background set (logged once: build it with ``dupwatch background build``)."""
        return self._query_bias(rep)[0]

    def _query_bias(self, rep: VideoRepresentation) -> tuple[float, int]:
        if self.normalizer is None:
            return 0.0, 0
        sims = self.index.search_background(rep.coarse, self.normalizer.k, collection=self.config.background_collection)
        if len(sims) == 0:
            if not self._warned_empty_background:
                log.warning("normalization is on (k=%d) but the background collection %r is empty: bias 0; "
                            "build it with `dupwatch background build`", self.normalizer.k, self.config.background_collection)
                self._warned_empty_background = True
            return 0.0, 0
        return float(self.normalizer.bias(np.asarray(sims, np.float32))), int(len(sims))

    def plan_rerank(self, rep: VideoRepresentation) -> RerankPlan:
        """Steps 1 and 2 of the module docstring: the candidates and those chosen for re-scoring."""
        coarse, clip_order = self._search(rep)
        ids = list(coarse)
        if not ids:
            return RerankPlan(coarse, [], {}, {})
        info = self.index.video_info([*ids, *(inset_id(v) for v in ids)])  # one read: videos and their inset views
        selfsims = np.array([float(info.get(v, {}).get("selfsim", 0.0)) for v in ids], np.float32)
        coarse_arr = np.array([coarse[v] for v in ids], np.float32)
        selector = np.asarray(self.models.selector_scores(rep.selfsim, selfsims, coarse_arr), np.float32).reshape(-1)
        position = {v: i for i, v in enumerate(ids)}
        chosen = select_for_rerank(coarse_arr, selector, self.config, [position[v] for v in clip_order])
        return RerankPlan(coarse, [ids[i] for i in chosen], {v: float(selector[i]) for i, v in enumerate(ids)}, info)

    def detect(self, rep: VideoRepresentation) -> list[Detection]:
        """All candidates: the re-scored ones first, best normalized score first (level ``none``
        included), then those not re-scored, best coarse score first (level ``none``)."""
        plan = self.plan_rerank(rep)
        coarse, rerank, selector_of, info = plan.coarse, plan.rerank, plan.selector, plan.info
        if not coarse:
            return []
        ids = list(coarse)
        with_insets = [*rerank, *(inset_id(v) for v in rerank if inset_id(v) in info)]
        fine_feats = self.index.fetch_fine(with_insets, rows=info) if rerank else {}
        # thumbnails are one more read per upload: only for a head that reads the pixel evidence
        wants_thumbs = rerank and self.copy_head is not None and self.copy_head.reads_pixels
        ref_thumbs = self.index.fetch_thumbs(with_insets, rows=info) if wants_thumbs else {}
        bias, background_hits = self._query_bias(rep) if rerank else (0.0, 0)
        normalization = None if self.normalizer is None else {
            "k": self.normalizer.k, "weight": self.normalizer.weight,
            "background_collection": self.config.background_collection, "background_hits": background_hits}
        query_views = {"main": rep.regions.astype(np.float32)}
        query_thumbs = {"main": rep.thumbs} if rep.thumbs is not None else {}
        if rep.inset is not None:
            query_views["inset"] = rep.inset.regions.astype(np.float32)
            if rep.inset.thumbs is not None:
                query_thumbs["inset"] = rep.inset.thumbs
        query_times = np.asarray(rep.timestamps, np.float64)
        step = _sampling_step(query_times)
        query_intervals = _query_intervals(query_times, step, rep.meta.get("duration_s"))
        out: list[Detection] = []
        candidates: dict[str, dict[str, np.ndarray]] = {}
        for vid in rerank:
            ref = fine_feats.get(vid)
            if ref is None:
                continue
            candidates[vid] = {"main": ref}
            ref_inset = fine_feats.get(inset_id(vid))
            if ref_inset is not None and ref_inset.shape[0] == ref.shape[0]:
                candidates[vid]["inset"] = ref_inset
        both = self.copy_head is not None
        for group in candidate_groups(query_views, candidates, both_ways=both):
            scored, reverse = score_candidates_both_ways(self.models, query_views, group, reverse=both)
            for vid, ref_views in group.items():
                ref = ref_views["main"]
                ref_intervals = _ref_times(info.get(vid, {}), ref.shape[0], step)
                head_times = (query_times.astype(np.float32), _head_ref_times(info.get(vid, {}), ref.shape[0]))
                thumbs = {view: t for view, t in (("main", ref_thumbs.get(vid)), ("inset", ref_thumbs.get(inset_id(vid))))
                          if t is not None and len(t) == ref.shape[0]}
                a = assess_scored_views(scored[vid], query_views, ref_views, query_intervals, ref_intervals,
                                        self.alignment, self.copy_head, head_times, query_thumbs=query_thumbs,
                                        ref_thumbs=thumbs)
                if both:
                    a = both_ways(a, assess_scored_views(reverse[vid], ref_views, query_views, ref_intervals,
                                                         query_intervals, self.alignment, self.copy_head,
                                                         (head_times[1], head_times[0]), query_thumbs=thumbs,
                                                         ref_thumbs=query_thumbs).copy_score)
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
                            "normalization": normalization,
                            "selector_score": round(selector_of[vid], 5),
                            "aligned_seconds": round(float(evidence.aligned_seconds), 3),
                            "longest_segment_s": round(a.longest_s, 3),
                            "copy_score": None if a.copy_score is None else round(a.copy_score, 5),
                            "copy_score_directions": None if a.directions is None else {
                                "query_to_reference": round(a.directions[0], 5),
                                "reference_to_query": round(a.directions[1], 5)},
                            "query_coverage": round(float(evidence.query_coverage), 4),
                            "ref_coverage": round(float(evidence.ref_coverage), 4),
                            "diagonality": round(float(evidence.diagonality), 4),
                            "temporal_contrast": round(float(evidence.temporal_contrast), 4),
                            "speed_ratio": round(float(evidence.speed_ratio), 4),
                            "degenerate_fraction": round(float(evidence.degenerate_fraction), 4),
                            "views": {"query": a.views[0], "reference": a.views[1]},
                            "region_spread": round(a.layout[0], 4),
                            "region_layout": round(a.layout[1], 4),
                            "motion_agreement": round(a.motion[0], 4),
                            "pixel_agreement": None if math.isnan(a.pixel) else round(a.pixel, 4),
                            "motion_magnitude": round(a.motion[1], 4),
                            "thresholds": {"copy": self.thresholds.copy, "incident": self.thresholds.incident},
                            "methods": dict(self.models.methods),
                            "query_borders": _borders(rep),
                            **self._tenant_evidence(info, vid),
                        },
                    )
                )
            del scored, reverse  # this group's frame similarities go before the next group's are computed
        out.sort(key=lambda d: -float(d.normalized))  # type: ignore[arg-type]  # every re-scored pair has one
        scored = {d.ref_id for d in out}
        rest = sorted((v for v in ids if v not in scored), key=lambda v: -coarse[v])
        for vid in rest:
            out.append(Detection(
                query_id=rep.video_id, ref_id=vid, tenant=rep.tenant, level="none", coarse=float(coarse[vid]),
                fine=None, normalized=None, reranked=False,
                evidence={"selector_score": round(selector_of[vid], 5),
                          "not_reranked": "fine features missing" if vid in rerank else "not selected for re-scoring",
                          **self._tenant_evidence(info, vid)},
            ))
        return out

    def _tenant_evidence(self, info: Mapping[str, Mapping[str, Any]], vid: str) -> dict[str, Any]:
        """``reference_tenant`` when searches cross tenants (``tenant_isolation: false``)."""
        return {} if self.config.tenant_isolation else {"reference_tenant": info.get(vid, {}).get("tenant")}

    def alerts(self, rep: VideoRepresentation, detections: list[Detection], *, now: datetime | None = None) -> list["AlertEvent"]:  # noqa: F821
        from dupwatch.events import AlertEvent, AlertScores, AlertSegment, make_alert_id

        created = now or datetime.now(timezone.utc)
        version = self.models.version
        alerts = []
        for det in detections:
            if det.level == "none" or det.fine is None or det.normalized is None:
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


def _ref_times(info: dict[str, Any], frames: int, step: float = 1.0) -> np.ndarray:
    """Reference frame intervals ``[T, 2]``: the worker samples every video at the same rate, so
    frame k starts at ``k · step`` (``step``: the query's sampling step) and lasts one step, the
    last one capped at the stored duration when that is known and beyond its start."""
    starts = np.arange(frames, dtype=np.float64) * step
    ends = starts + step
    duration = float(info.get("duration_s") or 0.0)
    if duration > 0:
        ends = np.where(duration > starts, np.minimum(ends, duration), ends)
    return np.stack([starts, ends], axis=1)


def _query_intervals(timestamps: np.ndarray, step: float, duration: Any) -> np.ndarray:
    """Query sample intervals ``[T, 2]``: each sample lasts up to the next one, the last one a
    sampling step, capped at the decoded duration when that is known and beyond its start (as the
    references are, :func:`_ref_times`)."""
    t = np.asarray(timestamps, np.float64)
    ends = np.append(t[1:], t[-1] + step) if len(t) else t
    ends = np.maximum(ends, t)
    try:
        d = float(duration) if duration is not None else 0.0
    except ValueError:
        d = 0.0
    if d > 0:
        ends = np.where(d > t, np.minimum(ends, d), ends)
    return np.stack([t, ends], axis=1)


def _head_ref_times(info: dict[str, Any], frames: int) -> np.ndarray:
    """Reference frame times ``[T]`` as the copy head's evidence was computed when it was fitted
    (1 sample per second unless the stored duration says otherwise)."""
    duration = float(info.get("duration_s") or 0.0)
    if frames > 1 and duration > 0:
        step = duration / max(1, frames - 1)
        if 0.2 <= step <= 5.0:
            return np.arange(frames, dtype=np.float32) * step
    return np.arange(frames, dtype=np.float32)


def _sampling_step(timestamps: np.ndarray) -> float:
    steps = np.diff(np.asarray(timestamps, np.float64))
    step = float(np.median(steps)) if len(steps) else 1.0
    return step if step > 0 else 1.0


def _normalizer_from(calibration: dict[str, Any], config: DetectionConfig) -> SimilarityNormalizer | None:
    params = calibration.get("normalization") or {}
    k = config.normalization_k if config.normalization_k is not None else params.get("k")
    weight = config.normalization_weight if config.normalization_weight is not None else params.get("weight", 1.0)
    if not k or not weight:
        return None
    return SimilarityNormalizer(int(k), float(weight))


def _borders(rep: VideoRepresentation) -> dict[str, Any] | None:
    """The letterbox/pillarbox crop the decoder applied to the query (:mod:`ingest.borders`), or ``None``."""
    import json

    raw = rep.meta.get("borders")
    return json.loads(raw) if raw else None
