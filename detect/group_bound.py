"""How far a calibrated precision leans on a few groups of pairs: a bootstrap over whole groups.

The Wilson bound of :func:`detect.calibration.fit_threshold` counts every alert as an independent
trial. A benchmark's pairs are not: all the copies and "another moment" cuts of one source footage
(or one uploader's videos, on a platform's own labels) rise and fall together, so four hundred
alerts from nine sources carry far less evidence than four hundred independent ones.

:func:`grouped_bound` resamples the groups with replacement (each drawn group brings all of its
pairs; pairs whose two videos are in different groups are kept in every draw) and reads the
``1 - confidence`` quantile of the pooled precision over the draws. It is reported beside the
calibration, not used to pick the threshold: the thresholds keep the Wilson rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from detect.calibration import CalibrationError, LabelledPair, _score_arrays, check_confidence

__all__ = ["GroupedBound", "grouped_bound", "read_groups"]

_CROSS = -1
_CHUNK = 512
"""Thresholds evaluated per matrix product (memory: draws × chunk floats)."""


@dataclass(frozen=True)
class GroupedBound:
    """The group-resampled lower bound of one level's precision."""

    level: str
    groups: int
    draws: int
    confidence: float
    threshold: float
    bound_at_threshold: float
    """The ``1 - confidence`` quantile of precision at ``threshold`` over the draws."""
    reaches_target_from: float | None
    """The lowest threshold whose grouped bound reaches the target with ``min_support`` pairs at or
    above it (the Wilson rule with the grouped bound in its place); ``None`` if none does."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_groups(rows: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """``video → group`` from CSV rows with ``video`` and ``group`` columns (a video in one group only)."""
    out: dict[str, str] = {}
    for i, row in enumerate(rows, start=2):
        video, group = (row.get("video") or "").strip(), (row.get("group") or "").strip()
        if not video or not group:
            raise CalibrationError(f"groups line {i}: needs a video and a group")
        if out.setdefault(video, group) != group:
            raise CalibrationError(f"groups line {i}: video {video!r} is in groups {out[video]!r} and {group!r}")
    return out


def _pair_groups(pairs: Sequence[LabelledPair], groups: Mapping[str, str]) -> tuple[np.ndarray, int]:
    missing = sorted({v for p in pairs for v in (p.query, p.reference) if v not in groups})
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise CalibrationError(f"no group for {len(missing)} video(s): {shown}")
    names = sorted({groups[v] for p in pairs for v in (p.query, p.reference)})
    index = {g: i for i, g in enumerate(names)}
    same = [index[groups[p.query]] if groups[p.query] == groups[p.reference] else _CROSS for p in pairs]
    return np.asarray(same, dtype=np.int64), len(names)


def grouped_bound(pairs: Sequence[LabelledPair], level: str, field: str, threshold: float, target: float,
                  groups: Mapping[str, str], *, confidence: float = 0.9, min_support: int = 20, draws: int = 1000,
                  seed: int = 0) -> GroupedBound:
    """The group bootstrap of ``level``'s precision on ``field`` (module doc); deterministic for a ``seed``."""
    check_confidence(confidence)
    if draws < 1:
        raise CalibrationError("draws must be ≥ 1")
    # scores and labels as the threshold fit reads them (pairs without a score on ``field`` left out)
    values = [getattr(p, field) for p in pairs]
    score, positive, _ = _score_arrays(pairs, values, level)
    if not len(score):
        raise CalibrationError(f"no pair has a {field}")
    group, n_groups = _pair_groups([p for p, v in zip(pairs, values) if v is not None], groups)

    order = np.argsort(-score, kind="stable")
    score, positive, group = score[order], positive[order], group[order]
    last = np.flatnonzero(np.r_[score[1:] != score[:-1], True])  # the last pair of each distinct score
    thresholds = score[last]
    # alerts and true alerts at or above each threshold: per group ([thresholds, groups]) and across groups
    alerts_g = np.zeros((len(thresholds), n_groups))
    true_g = np.zeros((len(thresholds), n_groups))
    for g in range(n_groups):
        at_g = np.flatnonzero(group == g)
        alerts_g[:, g] = np.searchsorted(at_g, last, side="right")
        true_g[:, g] = np.searchsorted(at_g[positive[at_g]], last, side="right")
    cross = (group == _CROSS).astype(np.float64)
    alerts_x = np.cumsum(cross)[last]
    true_x = np.cumsum(cross * positive)[last]

    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups) for _ in range(draws)]).astype(np.float64)
    bound = np.empty(len(thresholds))
    for start in range(0, len(thresholds), _CHUNK):
        part = slice(start, start + _CHUNK)
        alerts = counts @ alerts_g[part].T + alerts_x[part]
        true = counts @ true_g[part].T + true_x[part]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(alerts > 0, true / alerts, np.nan)
        bound[part] = np.nanquantile(precision, 1 - confidence, axis=0)
    ok = (bound >= target) & (last + 1 >= min_support)  # last + 1: the pairs at or above each threshold
    reached = np.flatnonzero(thresholds >= threshold)
    at = int(reached[-1]) if len(reached) else 0
    return GroupedBound(level=level, groups=n_groups, draws=draws, confidence=confidence, threshold=float(threshold),
                        bound_at_threshold=float(bound[at]),
                        reaches_target_from=float(thresholds[np.flatnonzero(ok)[-1]]) if ok.any() else None)
