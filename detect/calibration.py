"""Fit alert thresholds per level on labelled pairs (architecture step 9; seeds-digest §3.10 item 3,
§7.1 item 2: the papers report threshold-free µAP only, so the operating points are ours).

Levels and what counts as a positive for each:

- ``copy``: positives are pairs labelled ``copy``; ``incident`` and ``unrelated`` pairs are negatives.
- ``incident``: positives are pairs labelled ``incident`` **or** ``copy`` (a copy is also the same
  incident); negatives are ``unrelated`` pairs. The incident threshold's precision is therefore
  "share of alerted pairs that are related at all", which is what an incident alert promises.

Per level: µAP and the PR curve over all scored pairs (positives that were never scored count in
the recall denominator); the threshold is the **lowest** score ``t`` such that alerting on
``score ≥ t`` reaches ``precision ≥ target`` with at least ``min_support`` pairs at or above ``t``.
A level with fewer than ``min_positives`` positives, or whose target cannot be reached, raises
:class:`CalibrationError` (a ``ValueError``) saying what the best achievable precision was.
Because that rule picks the edge of the region meeting the target, its precision is optimistic on
new data; ``confidence=0.9`` asks the Wilson lower bound of precision to meet the target instead.

Normalization: when background similarities are given per query, ``k`` and ``weight`` are chosen
by grid search to maximize copy µAP, and thresholds are fitted on the normalized scores
(``score − weight·mean(top-k background)``); the chosen pair is stored in the calibration.

Evaluation on a second, disjoint set (no shared ``(query, reference)`` pair) reports the precision
and recall that the fitted thresholds actually achieve.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evaluation.metrics import AveragePrecision, average_precision
from detect.normalization import BackgroundSource, NormalizationParams, query_bias

logger = logging.getLogger(__name__)

PairLevel = Literal["copy", "incident", "unrelated"]
AlertLevel = Literal["copy", "incident"]
ALERT_LEVELS: tuple[AlertLevel, ...] = ("copy", "incident")
POSITIVE_LABELS: dict[str, frozenset[str]] = {
    "copy": frozenset({"copy"}),
    "incident": frozenset({"copy", "incident"}),
}
SCORE_FIELDS: tuple[str, ...] = ("score", "fine_score", "normalized_score", "copy_score")
DEFAULT_TARGETS: dict[str, float] = {"copy": 0.95, "incident": 0.90}
DEFAULT_MIN_SUPPORT = 20
DEFAULT_MIN_POSITIVES = 10
DEFAULT_K_GRID: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 50, 100)
DEFAULT_WEIGHT_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
CALIBRATION_VERSION = 1

__all__ = [
    "CalibrationError",
    "LabelledPair",
    "HoldoutResult",
    "LevelCalibration",
    "Calibration",
    "labelled_pairs",
    "calibrate",
    "evaluate",
    "fit_threshold",
    "check_confidence",
    "fit_normalization",
    "plot_calibration",
    "wilson_lower_bound",
]


class CalibrationError(ValueError):
    """Calibration cannot be done as asked (too few labels, unreachable target, bad input)."""


@dataclass(frozen=True)
class LabelledPair:
    """A labelled pair with the system's scores. ``score=None``: a positive that was never scored
    (missed by candidate search); it only counts in the recall denominator."""

    query: str
    reference: str
    level: PairLevel
    score: float | None
    fine_score: float | None = None
    normalized_score: float | None = None
    copy_score: float | None = None

    def __post_init__(self) -> None:
        if self.level not in ("copy", "incident", "unrelated"):
            raise ValueError(f"level must be copy, incident or unrelated, got {self.level!r}")
        for name in ("score", "fine_score", "normalized_score", "copy_score"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"non-finite {name} {v!r} for pair ({self.query!r}, {self.reference!r})")

    @property
    def pair(self) -> tuple[str, str]:
        return (self.query, self.reference)


@dataclass(frozen=True)
class HoldoutResult:
    precision: float | None
    """``None`` when no holdout pair reaches the threshold."""
    recall: float
    support: int
    positives: int
    micro_ap: float

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("precision", "recall", "support", "positives", "micro_ap")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HoldoutResult":
        return cls(
            precision=None if d["precision"] is None else float(d["precision"]),
            recall=float(d["recall"]),
            support=int(d["support"]),
            positives=int(d["positives"]),
            micro_ap=float(d["micro_ap"]),
        )


@dataclass(frozen=True)
class LevelCalibration:
    level: AlertLevel
    threshold: float
    """Alert when the (normalized) score is ``≥ threshold``."""
    target_precision: float
    precision: float
    recall: float
    support: int
    """Calibration pairs scoring ``≥ threshold``."""
    positives: int
    negatives: int
    micro_ap: float
    holdout: HoldoutResult | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in (
            "level", "threshold", "target_precision", "precision", "recall", "support", "positives", "negatives", "micro_ap"
        )}
        d["holdout"] = None if self.holdout is None else self.holdout.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LevelCalibration":
        return cls(
            level=d["level"],
            threshold=float(d["threshold"]),
            target_precision=float(d["target_precision"]),
            precision=float(d["precision"]),
            recall=float(d["recall"]),
            support=int(d["support"]),
            positives=int(d["positives"]),
            negatives=int(d["negatives"]),
            micro_ap=float(d["micro_ap"]),
            holdout=None if d.get("holdout") is None else HoldoutResult.from_dict(d["holdout"]),
        )


@dataclass(frozen=True)
class Calibration:
    """What the model bundle's manifest stores about alert thresholds (``to_dict``/``from_dict``)."""

    levels: Mapping[str, LevelCalibration]
    score_field: str
    """Which score the thresholds apply to: ``score``, ``fine_score`` or ``normalized_score``."""
    normalization: NormalizationParams | None
    """Set when the thresholds apply to ``score − weight·mean(top-k background)``."""
    min_support: int
    created_at: str
    version: int = CALIBRATION_VERSION
    stats: Mapping[str, Any] = field(default_factory=dict)
    level_fields: Mapping[str, str] = field(default_factory=dict)
    """Per-level override of ``score_field`` (e.g. ``{"copy": "copy_score", "incident": "fine_score"}``
    when the bundle has a copy head); such levels are never normalized."""

    @property
    def thresholds(self) -> dict[str, float]:
        return {name: lv.threshold for name, lv in self.levels.items()}

    def field_of(self, level: str) -> str:
        return self.level_fields.get(level, self.score_field)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at,
            "score_field": self.score_field,
            "normalization": None if self.normalization is None else self.normalization.to_dict(),
            "min_support": self.min_support,
            "levels": {name: lv.to_dict() for name, lv in self.levels.items()},
            "level_fields": dict(self.level_fields),
            "stats": dict(self.stats),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Calibration":
        version = int(d.get("version", CALIBRATION_VERSION))
        if version != CALIBRATION_VERSION:
            raise ValueError(f"unsupported calibration version {version} (this build reads {CALIBRATION_VERSION})")
        return cls(
            levels={name: LevelCalibration.from_dict(lv) for name, lv in d["levels"].items()},
            score_field=str(d["score_field"]),
            normalization=None if d.get("normalization") is None else NormalizationParams.from_dict(d["normalization"]),
            min_support=int(d["min_support"]),
            created_at=str(d["created_at"]),
            version=version,
            stats=dict(d.get("stats", {})),
            level_fields={str(k): str(v) for k, v in (d.get("level_fields") or {}).items()},
        )

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        return cls.from_dict(json.loads(text))


# --------------------------------------------------------------------------------------------


def labelled_pairs(truth: Any, scores: Iterable[Any], *, only_scored_queries: bool = True) -> list[LabelledPair]:
    """Join a :class:`evaluation.truth.GroundTruth` with score rows (:class:`evaluation.truth.ScoreRow`).

    Unlisted pairs are unrelated. Listed pairs without a score become ``score=None`` positives
    (missed by the system; they lower recall) — by default only for queries that appear in
    ``scores``, so one truth file can label several disjoint score files (calibration, holdout)."""
    out: list[LabelledPair] = []
    seen: set[tuple[str, str]] = set()
    for row in scores:
        if row.pair in seen:
            raise CalibrationError(f"duplicate score for pair {row.pair!r}")
        seen.add(row.pair)
        out.append(LabelledPair(row.query, row.reference, truth.level_of(row.query, row.reference),
                                row.score, row.fine_score, row.normalized_score, getattr(row, "copy_score", None)))
    queries = {q for q, _ in seen}
    for q, r in sorted(truth.pairs() - seen):
        if only_scored_queries and q not in queries:
            continue
        out.append(LabelledPair(q, r, truth.level_of(q, r), None))
    return out


def _check_unique(pairs: Sequence[LabelledPair]) -> None:
    seen: set[tuple[str, str]] = set()
    for p in pairs:
        if p.pair in seen:
            raise CalibrationError(f"duplicate pair {p.pair!r}")
        seen.add(p.pair)


def _score_arrays(pairs: Sequence[LabelledPair], scores: Sequence[float | None], level: str) -> tuple[np.ndarray, np.ndarray, int]:
    positive_labels = POSITIVE_LABELS[level]
    s, y = [], []
    g = 0
    for p, v in zip(pairs, scores):
        is_pos = p.level in positive_labels
        g += is_pos
        if v is not None:
            s.append(v)
            y.append(is_pos)
    return np.asarray(s, dtype=np.float64), np.asarray(y, dtype=bool), g


def _level_ap(pairs: Sequence[LabelledPair], scores: Sequence[float | None], level: str) -> AveragePrecision:
    s, y, g = _score_arrays(pairs, scores, level)
    if g == 0:
        raise CalibrationError(f"no {level} positive in the labelled set")
    return average_precision(s, y, num_positives=g)


def wilson_lower_bound(precision: np.ndarray, support: np.ndarray, confidence: float) -> np.ndarray:
    """One-sided Wilson score lower bound of a proportion (``precision`` over ``support`` trials)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(confidence)
    n = support.astype(np.float64)
    centre = precision + z * z / (2 * n)
    margin = z * np.sqrt(precision * (1 - precision) / n + z * z / (4 * n * n))
    return (centre - margin) / (1 + z * z / n)


def check_confidence(confidence: float) -> None:
    """Refuse a confidence for a one-sided lower bound outside ``[0.5, 1)``."""
    if not 0.5 <= confidence < 1:
        raise CalibrationError(f"confidence must be within [0.5, 1), got {confidence}")


def fit_threshold(
    ap: AveragePrecision, target_precision: float, min_support: int, level: str = "level",
    confidence: float | None = None,
) -> tuple[float, float, float, int]:
    """Lowest threshold with precision ≥ target and ≥ ``min_support`` pairs at or above it.

    With ``confidence`` (e.g. 0.9), the *Wilson lower bound* of the precision must reach the
    target instead of the point estimate: the lowest-threshold rule picks the edge of the
    region that reaches the target, so its point precision is optimistic on new data.
    Returns ``(threshold, precision, recall, support)``; raises :class:`CalibrationError`."""
    c = ap.curve
    prec = c.precisions
    if confidence is not None:
        check_confidence(confidence)
        prec = wilson_lower_bound(c.precisions, c.support, confidence)
    ok = (prec >= target_precision) & (c.support >= min_support)
    if not ok.any():
        enough = c.support >= min_support
        best = float(prec[enough].max()) if enough.any() else float("nan")
        kind = "precision" if confidence is None else f"{confidence:g}-confidence lower bound of precision"
        raise CalibrationError(
            f"{level}: target precision {target_precision:.3f} is unreachable with at least {min_support} "
            f"pairs above the threshold (best {kind} with that support: {best:.3f}; "
            f"{ap.num_positives} positives, {int(c.support[-1]) if len(c) else 0} scored pairs)"
        )
    i = int(np.flatnonzero(ok)[-1])
    return float(c.thresholds[i]), float(c.precisions[i]), float(c.recalls[i]), int(c.support[i])


def _biases(
    queries: Collection[str], background: Mapping[str, BackgroundSource], k: int
) -> dict[str, float]:
    out = {}
    for q in queries:
        if q not in background:
            raise CalibrationError(f"no background similarities for query {q!r}")
        out[q] = query_bias(background[q], k, 1.0)
    return out


def _normalized(pairs: Sequence[LabelledPair], params: NormalizationParams, background: Mapping[str, BackgroundSource]) -> list[float | None]:
    qs = {p.query for p in pairs if p.score is not None}
    bias = _biases(qs, background, params.k)
    return [None if p.score is None else p.score - params.weight * bias[p.query] for p in pairs]


def fit_normalization(
    pairs: Sequence[LabelledPair],
    background: Mapping[str, BackgroundSource],
    k_grid: Sequence[int] = DEFAULT_K_GRID,
    weight_grid: Sequence[float] = DEFAULT_WEIGHT_GRID,
) -> tuple[NormalizationParams, float, dict[str, float]]:
    """Grid search of ``(k, weight)`` maximizing copy µAP; ties go to the earlier grid entry
    (weights ascending, so "no normalization" wins a tie). Returns params, µAP and the grid."""
    qs = {p.query for p in pairs if p.score is not None}
    best: tuple[float, NormalizationParams] | None = None
    grid: dict[str, float] = {}
    for k in sorted(set(k_grid)):
        bias = _biases(qs, background, k)
        for w in sorted(set(weight_grid)):
            scores = [None if p.score is None else p.score - w * bias[p.query] for p in pairs]
            mu = _level_ap(pairs, scores, "copy").ap
            grid[f"k={k},w={w:g}"] = mu
            if best is None or mu > best[0] + 1e-12:
                best = (mu, NormalizationParams(k, float(w)))
    assert best is not None, "empty grid"
    return best[1], best[0], grid


def _select_scores(pairs: Sequence[LabelledPair], score_field: str) -> list[float | None]:
    out = []
    for p in pairs:
        v = getattr(p, score_field)
        if v is None and p.score is not None:
            raise CalibrationError(f"pair {p.pair!r} has a score but no {score_field}")
        out.append(v)
    return out


def _now_iso(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def calibrate(
    pairs: Sequence[LabelledPair],
    *,
    targets: Mapping[str, float] | None = None,
    levels: Sequence[AlertLevel] = ALERT_LEVELS,
    min_support: int = DEFAULT_MIN_SUPPORT,
    min_positives: int = DEFAULT_MIN_POSITIVES,
    confidence: float | None = None,
    score_field: Literal["auto", "score", "fine_score", "normalized_score"] = "auto",
    background: Mapping[str, BackgroundSource] | None = None,
    k_grid: Sequence[int] = DEFAULT_K_GRID,
    weight_grid: Sequence[float] = DEFAULT_WEIGHT_GRID,
    holdout: Sequence[LabelledPair] | None = None,
    holdout_background: Mapping[str, BackgroundSource] | None = None,
    level_fields: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> Calibration:
    """Fit per-level thresholds (module doc). ``score_field="auto"`` takes normalized scores fitted
    from ``background`` when given, else ``normalized_score`` when every scored pair has one, else
    ``score``. ``confidence``: see :func:`fit_threshold` (``None`` = point precision).
    ``level_fields`` fits the named levels on another field (``copy_score``, ``fine_score``, …)."""
    pairs = list(pairs)
    _check_unique(pairs)
    if min_support < 1 or min_positives < 1:
        raise CalibrationError("min_support and min_positives must be ≥ 1")
    goal = dict(DEFAULT_TARGETS)
    goal.update(targets or {})
    for name in levels:
        if name not in POSITIVE_LABELS:
            raise CalibrationError(f"unknown level {name!r}")
        if not 0 < goal[name] <= 1:
            raise CalibrationError(f"target precision for {name} must be in (0, 1], got {goal[name]}")

    stats: dict[str, Any] = {"confidence": confidence}
    params: NormalizationParams | None = None
    if background is not None:
        if score_field not in ("auto", "score"):
            raise CalibrationError("background normalization applies to the raw 'score' field")
        params, mu, grid = fit_normalization(pairs, background, k_grid, weight_grid)
        stats["normalization_grid_copy_micro_ap"] = grid
        stats["normalization_copy_micro_ap"] = mu
        used = "score"
        scores = _normalized(pairs, params, background)
    else:
        if score_field == "auto":
            scored = [p for p in pairs if p.score is not None]
            used = "normalized_score" if scored and all(p.normalized_score is not None for p in scored) else "score"
        else:
            used = score_field
        scores = _select_scores(pairs, used)

    level_fields = {str(k): str(v) for k, v in (level_fields or {}).items()}
    for name, field_name in level_fields.items():
        if field_name not in SCORE_FIELDS:
            raise CalibrationError(f"unknown score field {field_name!r} for level {name!r} (one of {', '.join(SCORE_FIELDS)})")
    fitted: dict[str, LevelCalibration] = {}
    for name in levels:
        level_scores = _select_scores(pairs, level_fields[name]) if name in level_fields else scores
        s, y, g = _score_arrays(pairs, level_scores, name)
        if g < min_positives:
            raise CalibrationError(f"{name}: only {g} positive pair(s); need at least {min_positives}")
        ap = average_precision(s, y, num_positives=g)
        t, prec, rec, sup = fit_threshold(ap, goal[name], min_support, name, confidence)
        fitted[name] = LevelCalibration(
            level=name, threshold=t, target_precision=goal[name], precision=prec, recall=rec, support=sup,
            positives=g, negatives=int((~y).sum()), micro_ap=ap.ap,
        )
    score_name = "normalized_score" if params is not None else used
    cal = Calibration(levels=fitted, score_field=score_name, normalization=params, min_support=min_support,
                      created_at=_now_iso(clock), stats=stats, level_fields=level_fields)
    if holdout is not None:
        cal = evaluate(cal, holdout, background=holdout_background, calibration_pairs=pairs)
    return cal


def _holdout_scores(cal: Calibration, pairs: Sequence[LabelledPair], background: Mapping[str, BackgroundSource] | None,
                    level: str | None = None) -> list[float | None]:
    if level is not None and level in cal.level_fields:
        return _select_scores(pairs, cal.level_fields[level])
    if cal.normalization is not None:
        if background is not None:
            return _normalized(pairs, cal.normalization, background)
        scores = [p.normalized_score for p in pairs]
        if any(v is None and p.score is not None for p, v in zip(pairs, scores)):
            raise CalibrationError("the calibration normalizes scores: give holdout background similarities "
                                   "or normalized_score for every holdout pair")
        return scores
    return _select_scores(pairs, cal.score_field)


def evaluate(
    cal: Calibration,
    pairs: Sequence[LabelledPair],
    *,
    background: Mapping[str, BackgroundSource] | None = None,
    calibration_pairs: Sequence[LabelledPair] | None = None,
) -> Calibration:
    """Precision/recall of ``cal``'s thresholds on a disjoint labelled set; returns ``cal`` with
    each level's ``holdout`` filled in."""
    pairs = list(pairs)
    _check_unique(pairs)
    if calibration_pairs is not None:
        shared = {p.pair for p in pairs} & {p.pair for p in calibration_pairs}
        if shared:
            raise CalibrationError(f"holdout shares {len(shared)} pair(s) with the calibration set, e.g. {sorted(shared)[0]!r}")
        shared_q = {p.query for p in pairs} & {p.query for p in calibration_pairs}
        if shared_q:
            logger.warning("holdout shares %d query video(s) with the calibration set", len(shared_q))
    levels = {}
    for name, lv in cal.levels.items():
        s, y, g = _score_arrays(pairs, _holdout_scores(cal, pairs, background, name), name)
        if g == 0:
            raise CalibrationError(f"holdout: no {name} positive")
        hit = s >= lv.threshold
        tp = int((hit & y).sum())
        n = int(hit.sum())
        res = HoldoutResult(precision=(tp / n) if n else None, recall=tp / g, support=n, positives=g,
                            micro_ap=average_precision(s, y, num_positives=g).ap)
        levels[name] = replace(lv, holdout=res)
    return replace(cal, levels=levels)


def calibration_scores(cal: Calibration, pairs: Sequence[LabelledPair], background: Mapping[str, BackgroundSource] | None = None,
                       level: str | None = None) -> list[float | None]:
    """The per-pair scores ``cal``'s thresholds for ``level`` apply to (for plots and reports)."""
    return _holdout_scores(cal, list(pairs), background, level)


def plot_calibration(
    cal: Calibration,
    pairs: Sequence[LabelledPair],
    path: str | Path,
    *,
    background: Mapping[str, BackgroundSource] | None = None,
) -> Path:
    """PNG: score histograms per label, and per-level PR curves with the chosen points marked."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    pairs = list(pairs)
    shown = "copy" if "copy" in cal.levels else next(iter(cal.levels), None)
    scores = calibration_scores(cal, pairs, background, shown)
    fig = Figure(figsize=(12, 4.5), dpi=100)
    ax_h, ax_pr = fig.subplots(1, 2)
    colors = {"copy": "tab:red", "incident": "tab:orange", "unrelated": "tab:blue"}
    all_s = [v for v in scores if v is not None]
    bins = np.linspace(min(all_s), max(all_s), 41) if all_s and min(all_s) < max(all_s) else 20
    for label in ("unrelated", "incident", "copy"):
        vals = [v for p, v in zip(pairs, scores) if v is not None and p.level == label]
        if vals:
            ax_h.hist(vals, bins=bins, alpha=0.5, color=colors[label], label=f"{label} (n={len(vals)})", density=True)
    for name, lv in cal.levels.items():
        if cal.field_of(name) == cal.field_of(shown or name):
            ax_h.axvline(lv.threshold, color=colors[name], linestyle="--", label=f"{name} threshold {lv.threshold:.3f}")
    ax_h.set_xlabel(cal.field_of(shown or "copy"))
    ax_h.set_ylabel("density")
    ax_h.set_title("score distribution per label")
    ax_h.legend(fontsize=8)
    for name, lv in cal.levels.items():
        ap = _level_ap(pairs, calibration_scores(cal, pairs, background, name), name)
        ax_pr.plot(ap.curve.recalls, ap.curve.precisions, color=colors[name], label=f"{name} µAP={ap.ap:.3f}")
        ax_pr.plot([lv.recall], [lv.precision], "o", color=colors[name], markersize=8)
        ax_pr.annotate(f"t={lv.threshold:.3f}", (lv.recall, lv.precision), textcoords="offset points", xytext=(5, -12), fontsize=8)
        ax_pr.axhline(lv.target_precision, color=colors[name], linestyle=":", linewidth=0.8)
    ax_pr.set_xlim(0, 1.02)
    ax_pr.set_ylim(0, 1.02)
    ax_pr.set_xlabel("recall")
    ax_pr.set_ylabel("precision")
    ax_pr.set_title("PR per level (dots: fitted thresholds)")
    ax_pr.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    return out
