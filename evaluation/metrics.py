"""Retrieval and detection metrics shared by ``bench/`` (offline benchmarks) and ``detect/``
(threshold calibration). Pure functions over typed records; no I/O (style.md rules 7, 8).

Definitions (seeds-digest §3.7, anchors §2.5/§2.6):

- **AP** of one ranked list: ``AP = Σ_t P(t)·ΔR(t)`` over the distinct score thresholds ``t``
  (highest first), where ``P(t)``/``R(t)`` count every item scoring ``≥ t``. Without ties this is
  the textbook ``Σ_k P(k)·rel(k) / G``. Tied scores form one group (the order inside a tie is
  unknowable, so no tie-breaking can inflate the result). ``G`` (``num_positives``) is the number
  of relevant items in the ground truth, *including those never retrieved* (they cap the recall).
- **Retrieval mAP**: AP per query over its own ranked references, averaged over the queries that
  have at least one positive in the ground truth. Queries without positives have an undefined AP
  and are left out of the mean (they are listed in :attr:`MeanAveragePrecision.skipped_queries`);
  a query with positives but no predictions scores 0.
- **Detection µAP**: every ``(query, reference)`` prediction of every query ranked jointly by score
  (the S²VS detection metric and the VSC22 descriptor-track metric); ``G`` = all ground-truth
  positive pairs.
- **Segment P/R/F and segment µAP** (VCSL / VSC22 matching track): per axis (query and reference
  time), intersection length of the predicted intervals with the ground-truth intervals of the same
  pair, over the total predicted / ground-truth length, summed over pairs; ``P = √(Pq·Pr)``,
  ``R = √(Rq·Rr)``. As in VSC22, only ground-truth boxes that overlap (in 2-D) some prediction of the
  pair count towards the intersection, so a prediction right on one axis but wrong on the other
  earns nothing. Segment µAP = ``Σ P(i)·ΔR(i)`` with predictions added in score order (ties
  grouped).

Scores: higher means more similar. Non-finite scores and duplicate pairs raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ScoredPair",
    "Match",
    "PrecisionRecallCurve",
    "AveragePrecision",
    "MeanAveragePrecision",
    "PrecisionRecall",
    "SegmentPRF",
    "average_precision",
    "retrieval_map",
    "micro_average_precision",
    "precision_recall_at",
    "best_recall_at_precision",
    "segment_precision_recall",
    "segment_micro_average_precision",
]

Pair = tuple[str, str]


@dataclass(frozen=True)
class ScoredPair:
    """One prediction: ``query_id`` is similar to ``ref_id`` with this ``score``."""

    query_id: str
    ref_id: str
    score: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.score):
            raise ValueError(f"non-finite score {self.score!r} for pair ({self.query_id!r}, {self.ref_id!r})")

    @property
    def pair(self) -> Pair:
        return (self.query_id, self.ref_id)


@dataclass(frozen=True)
class Match:
    """A ground-truth or predicted matched segment of a pair (seconds; ``score`` = confidence)."""

    query_id: str
    ref_id: str
    query_start: float
    query_end: float
    ref_start: float
    ref_end: float
    score: float = 1.0

    def __post_init__(self) -> None:
        values = (self.query_start, self.query_end, self.ref_start, self.ref_end, self.score)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"non-finite value in match {self}")
        if self.query_end < self.query_start or self.ref_end < self.ref_start:
            raise ValueError(f"match ends before it starts: {self}")

    @property
    def pair(self) -> Pair:
        return (self.query_id, self.ref_id)

    def interval(self, axis: int) -> tuple[float, float]:
        """Axis 0 = query time, 1 = reference time."""
        return (self.query_start, self.query_end) if axis == 0 else (self.ref_start, self.ref_end)

    def overlaps(self, other: "Match") -> bool:
        """Whether the two boxes in (query time × reference time) intersect with positive area."""
        dq = min(self.query_end, other.query_end) - max(self.query_start, other.query_start)
        dr = min(self.ref_end, other.ref_end) - max(self.ref_start, other.ref_start)
        return dq > 0 and dr > 0


@dataclass(frozen=True)
class PrecisionRecallCurve:
    """Precision and recall at each distinct score threshold (descending ``thresholds``).

    ``support[i]`` is the number of predictions scoring ``≥ thresholds[i]``.
    """

    precisions: np.ndarray
    recalls: np.ndarray
    thresholds: np.ndarray
    support: np.ndarray

    def __len__(self) -> int:
        return int(self.thresholds.shape[0])


@dataclass(frozen=True)
class AveragePrecision:
    ap: float
    curve: PrecisionRecallCurve
    num_positives: int
    """Ground-truth positives, retrieved or not (the recall denominator)."""


@dataclass(frozen=True)
class MeanAveragePrecision:
    map: float
    per_query: dict[str, float]
    skipped_queries: tuple[str, ...] = field(default=())
    """Queries with predictions but no ground-truth positive (AP undefined; not in the mean)."""


@dataclass(frozen=True)
class PrecisionRecall:
    threshold: float
    precision: float | None
    """``None`` when no prediction reaches the threshold (precision undefined)."""
    recall: float
    true_positives: int
    false_positives: int
    num_positives: int

    @property
    def support(self) -> int:
        return self.true_positives + self.false_positives


@dataclass(frozen=True)
class SegmentPRF:
    precision: float
    recall: float
    f1: float
    query_precision: float
    query_recall: float
    ref_precision: float
    ref_recall: float


# --------------------------------------------------------------------------------------------
# ranked-list AP


def _check_scores(scores: np.ndarray) -> None:
    if scores.size and not np.all(np.isfinite(scores)):
        bad = scores[~np.isfinite(scores)][0]
        raise ValueError(f"non-finite score {bad!r}")


def average_precision(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    num_positives: int | None = None,
) -> AveragePrecision:
    """AP of one ranked list with its PR curve.

    ``labels[i]`` says whether item ``i`` is relevant; ``num_positives`` (default: ``sum(labels)``)
    counts relevant items including those not in the list. Ties are grouped (see module doc).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    _check_scores(s)
    retrieved_pos = int(y.sum())
    g = retrieved_pos if num_positives is None else int(num_positives)
    if g < retrieved_pos:
        raise ValueError(f"num_positives={g} is below the {retrieved_pos} relevant items in the list")
    if g <= 0:
        raise ValueError("AP is undefined without any positive")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    n = np.arange(1, s.size + 1)
    # last index of each group of equal scores
    if s.size:
        ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    else:
        ends = np.zeros(0, dtype=np.int64)
    tp_g, n_g = tp[ends].astype(np.float64), n[ends].astype(np.float64)
    precision = tp_g / n_g
    recall = tp_g / g
    delta = np.diff(np.r_[0.0, recall])
    ap = float(np.sum(precision * delta))
    curve = PrecisionRecallCurve(precision, recall, s[ends], n[ends].astype(np.int64))
    return AveragePrecision(ap=ap, curve=curve, num_positives=g)


def _pairs_checked(predictions: Collection[ScoredPair]) -> list[ScoredPair]:
    seen: set[Pair] = set()
    out = list(predictions)
    for p in out:
        if p.pair in seen:
            raise ValueError(f"duplicate prediction for pair {p.pair!r}")
        seen.add(p.pair)
    return out


def _positive_set(positives: Iterable[Pair]) -> set[Pair]:
    items = [tuple(p) for p in positives]
    result: set[Pair] = set()
    for p in items:
        if p in result:
            raise ValueError(f"duplicate ground-truth pair {p!r}")
        result.add(p)  # type: ignore[arg-type]
    return result


def retrieval_map(predictions: Collection[ScoredPair], positives: Iterable[Pair]) -> MeanAveragePrecision:
    """Mean over queries of the AP of each query's ranked references (module doc)."""
    preds = _pairs_checked(predictions)
    pos = _positive_set(positives)
    by_query: dict[str, list[ScoredPair]] = defaultdict(list)
    for p in preds:
        by_query[p.query_id].append(p)
    g_by_query: dict[str, int] = defaultdict(int)
    for q, _ in pos:
        g_by_query[q] += 1
    per_query: dict[str, float] = {}
    for q in sorted(g_by_query):
        items = by_query.get(q, [])
        per_query[q] = average_precision(
            [p.score for p in items], [p.pair in pos for p in items], num_positives=g_by_query[q]
        ).ap
    skipped = tuple(sorted(q for q in by_query if q not in g_by_query))
    if not per_query:
        raise ValueError("mAP is undefined: no query has a ground-truth positive")
    return MeanAveragePrecision(float(np.mean(list(per_query.values()))), per_query, skipped)


def micro_average_precision(predictions: Collection[ScoredPair], positives: Iterable[Pair]) -> AveragePrecision:
    """µAP: all queries' pairs ranked jointly; ``G`` counts positives never predicted too."""
    preds = _pairs_checked(predictions)
    pos = _positive_set(positives)
    return average_precision([p.score for p in preds], [p.pair in pos for p in preds], num_positives=len(pos))


def precision_recall_at(
    predictions: Collection[ScoredPair], positives: Iterable[Pair], threshold: float
) -> PrecisionRecall:
    """Precision and recall of "alert when ``score ≥ threshold``"."""
    if not math.isfinite(threshold):
        raise ValueError(f"non-finite threshold {threshold!r}")
    preds = _pairs_checked(predictions)
    pos = _positive_set(positives)
    hits = [p for p in preds if p.score >= threshold]
    tp = sum(1 for p in hits if p.pair in pos)
    fp = len(hits) - tp
    g = len(pos)
    if g == 0:
        raise ValueError("recall is undefined without any positive")
    return PrecisionRecall(
        threshold=float(threshold),
        precision=(tp / len(hits)) if hits else None,
        recall=tp / g,
        true_positives=tp,
        false_positives=fp,
        num_positives=g,
    )


def best_recall_at_precision(ap: AveragePrecision, target: float) -> PrecisionRecall | None:
    """The operating point of ``ap``'s curve with the highest recall whose precision is ≥ ``target``
    (ties: the highest threshold), or ``None`` when no threshold reaches it.

    Why: the threshold is chosen on the set being measured, so this is not a promise but the
    ceiling of what any threshold calibrated elsewhere could give on this set. When the
    calibrated threshold's recall falls short of a goal, it says whether better features or
    better calibration can close the gap."""
    if not 0 < target <= 1:
        raise ValueError(f"target precision must be in (0, 1], got {target}")
    c = ap.curve
    ok = np.flatnonzero(c.precisions >= target)
    if ok.size == 0:
        return None
    i = int(ok[np.argmax(c.recalls[ok])])
    tp = int(round(float(c.recalls[i]) * ap.num_positives))
    return PrecisionRecall(threshold=float(c.thresholds[i]), precision=float(c.precisions[i]), recall=float(c.recalls[i]),
                           true_positives=tp, false_positives=int(c.support[i]) - tp, num_positives=ap.num_positives)


# --------------------------------------------------------------------------------------------
# segments


def _union_length(intervals: Iterable[tuple[float, float]]) -> float:
    total = 0.0
    cur_s = cur_e = None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s  # type: ignore[operator]
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s  # type: ignore[operator]
    return total


def _intersect_length(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """|A ∩ B| = |A| + |B| − |A ∪ B| over unions of intervals."""
    if not a or not b:
        return 0.0
    return _union_length(a) + _union_length(b) - _union_length(list(a) + list(b))


class _PairState:
    def __init__(self) -> None:
        self.gts: list[Match] = []
        self.preds: list[Match] = []
        self.inter = [0.0, 0.0]
        self.total = [0.0, 0.0]

    def add(self, pred: Match) -> tuple[list[float], list[float]]:
        self.preds.append(pred)
        considered = [g for g in self.gts if any(g.overlaps(p) for p in self.preds)]
        d_inter, d_total = [0.0, 0.0], [0.0, 0.0]
        for axis in (0, 1):
            p_int = [p.interval(axis) for p in self.preds]
            g_int = [g.interval(axis) for g in considered]
            inter = _intersect_length(p_int, g_int)
            total = _union_length(p_int)
            d_inter[axis], d_total[axis] = inter - self.inter[axis], total - self.total[axis]
            self.inter[axis], self.total[axis] = inter, total
        return d_inter, d_total


def _segment_setup(gts: Collection[Match], predictions: Collection[Match]) -> tuple[dict[Pair, _PairState], list[float]]:
    states: dict[Pair, _PairState] = defaultdict(_PairState)
    for g in gts:
        states[g.pair].gts.append(g)
    gt_len = [0.0, 0.0]
    for st in states.values():
        for axis in (0, 1):
            gt_len[axis] += _union_length(g.interval(axis) for g in st.gts)
    if gt_len[0] <= 0 or gt_len[1] <= 0:
        raise ValueError("segment metrics need ground truth with positive length on both axes")
    return states, gt_len


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def segment_micro_average_precision(gts: Collection[Match], predictions: Collection[Match]) -> AveragePrecision:
    """VSC22 matching-track segment µAP (module doc); the curve's ``support`` counts predictions."""
    states, gt_len = _segment_setup(gts, predictions)
    preds = sorted(predictions, key=lambda m: -m.score)
    inter, total = [0.0, 0.0], [0.0, 0.0]
    recall = metric = 0.0
    precs, recs, ths, sup = [], [], [], []
    i = 0
    while i < len(preds):
        j = i
        while j < len(preds) and preds[j].score == preds[i].score:
            d_inter, d_total = states[preds[j].pair].add(preds[j])
            for axis in (0, 1):
                inter[axis] += d_inter[axis]
                total[axis] += d_total[axis]
            j += 1
        new_recall = math.sqrt(_ratio(inter[0], gt_len[0]) * _ratio(inter[1], gt_len[1]))
        precision = math.sqrt(_ratio(inter[0], total[0]) * _ratio(inter[1], total[1]))
        metric += precision * (new_recall - recall)
        recall = new_recall
        precs.append(precision)
        recs.append(recall)
        ths.append(preds[i].score)
        sup.append(j)
        i = j
    curve = PrecisionRecallCurve(np.array(precs, float), np.array(recs, float), np.array(ths, float), np.array(sup, np.int64))
    return AveragePrecision(ap=float(metric), curve=curve, num_positives=len(list(gts)))


def segment_precision_recall(gts: Collection[Match], predictions: Collection[Match]) -> SegmentPRF:
    """VCSL overall segment precision/recall/F of all ``predictions`` (filter by score first)."""
    states, gt_len = _segment_setup(gts, predictions)
    for p in predictions:
        states[p.pair].add(p)
    inter = [sum(st.inter[a] for st in states.values()) for a in (0, 1)]
    total = [sum(st.total[a] for st in states.values()) for a in (0, 1)]
    pq, pr = _ratio(inter[0], total[0]), _ratio(inter[1], total[1])
    rq, rr = inter[0] / gt_len[0], inter[1] / gt_len[1]
    p, r = math.sqrt(pq * pr), math.sqrt(rq * rr)
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return SegmentPRF(p, r, f, pq, rq, pr, rr)
