"""Alert level of a (query, reference) pair from its normalized score and temporal evidence.

Rule (thresholds are inclusive, on the same score the calibration was fitted on):

1. ``copy`` when ``score ≥ thresholds.copy`` **and** the temporal alignment backs it: an aligned
   segment of at least ``min_aligned_s`` seconds, a coverage of at least ``min_coverage`` on the
   query or on the reference (the larger of the two: a short clip fully inside a long video is a
   copy), when ``min_fine_score`` is set, a fine-network score at least that high, and, when
   ``max_degenerate`` is set, a degenerate share of the alignment (matched query frames piled
   onto one reference instant: speed ≈ 0, typical of static footage; evidence *against* a copy)
   no higher than that, and, when ``min_motion_agreement`` is set and both videos change over
   time by at least ``motion_gate_magnitude``, a motion agreement (the query's changes following
   its matched reference frames', :func:`detect.copy_head.motion_agreement`) at least that high:
   another moment of a static camera matches frame by frame, but what moves does not.
2. otherwise ``incident`` when ``score ≥ thresholds.incident`` (a copy-level score without
   temporal evidence is reported as an incident, never dropped, if it clears that threshold);
3. otherwise ``none``: no alert.

A level whose threshold is ``None`` never fires.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dupwatch.config import DEFAULT_MOTION_GATE_MAGNITUDE

__all__ = ["AlignmentEvidence", "LevelThresholds", "decide_level", "Decision"]

Decision = Literal["copy", "incident", "none"]


@dataclass(frozen=True)
class AlignmentEvidence:
    """Facts from temporal alignment (localization) of the pair."""

    aligned_length_s: float
    """Length of the longest aligned segment (query time), seconds."""
    query_coverage: float
    """Share of the query's duration inside aligned segments, 0..1."""
    reference_coverage: float
    fine_score: float | None = None
    degenerate_fraction: float = 0.0
    """Share of the matched query frames piled onto one reference instant (:func:`inference.segments.degenerate_fraction`)."""
    motion_agreement: float | None = None
    """How the query's changes over time follow its matched reference frames' (-1..1); ``None``: not measured."""
    motion_magnitude: float = 0.0
    """The smaller of the two videos' mean change over time (0: a still)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.aligned_length_s) and self.aligned_length_s >= 0):
            raise ValueError(f"aligned_length_s must be finite and ≥ 0, got {self.aligned_length_s}")
        for name in ("query_coverage", "reference_coverage", "degenerate_fraction"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be within [0, 1], got {v}")
        if self.fine_score is not None and not math.isfinite(self.fine_score):
            raise ValueError("non-finite fine_score")
        if self.motion_agreement is not None and not (math.isfinite(self.motion_agreement) and -1.0 - 1e-6 <= self.motion_agreement <= 1.0 + 1e-6):
            raise ValueError(f"motion_agreement must be within [-1, 1], got {self.motion_agreement}")
        if not (math.isfinite(self.motion_magnitude) and self.motion_magnitude >= 0):
            raise ValueError(f"motion_magnitude must be finite and ≥ 0, got {self.motion_magnitude}")


@dataclass(frozen=True)
class LevelThresholds:
    copy: float | None
    incident: float | None
    min_aligned_s: float = 2.0
    min_coverage: float = 0.0
    min_fine_score: float | None = None
    max_degenerate: float | None = None
    """A pair whose degenerate share exceeds this is no copy (at most an incident); ``None``: no gate."""
    min_motion_agreement: float | None = None
    """A pair whose videos both move (``motion_gate_magnitude``) with a motion agreement below this
    is no copy (at most an incident); ``None``: no gate."""
    motion_gate_magnitude: float = DEFAULT_MOTION_GATE_MAGNITUDE

    def __post_init__(self) -> None:
        for name in ("copy", "incident", "min_fine_score", "max_degenerate", "min_motion_agreement"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"non-finite {name} threshold")
        if self.min_aligned_s < 0 or not 0 <= self.min_coverage <= 1:
            raise ValueError("min_aligned_s must be ≥ 0 and min_coverage within [0, 1]")

    @classmethod
    def resolve(cls, calibration: Any | None, detection: Any | None = None, **extra: Any) -> "LevelThresholds":
        """:meth:`from_fitted` with the thresholds of a bundle calibration (``Calibration``), or none."""
        return cls.from_fitted(dict(calibration.thresholds) if calibration is not None else {}, detection, **extra)

    @classmethod
    def from_fitted(cls, fitted: Mapping[str, float], detection: Any | None = None, **extra: Any) -> "LevelThresholds":
        """Configured thresholds (``DetectionConfig.thresholds``) override the fitted ones (the
        bundle's calibration, ``{level: threshold}``); ``min_aligned_s`` and the gates come from
        the ``DetectionConfig``."""
        copy, incident = fitted.get("copy"), fitted.get("incident")
        kwargs: dict[str, Any] = {}
        if detection is not None:
            if detection.thresholds.copy_level is not None:
                copy = detection.thresholds.copy_level
            if detection.thresholds.incident is not None:
                incident = detection.thresholds.incident
            kwargs["min_aligned_s"] = detection.min_segment_s
            kwargs["max_degenerate"] = detection.max_degenerate
            kwargs["min_motion_agreement"] = detection.min_motion_agreement
            kwargs["motion_gate_magnitude"] = detection.motion_gate_magnitude
        kwargs.update(extra)
        return cls(copy=copy, incident=incident, **kwargs)


def has_temporal_evidence(evidence: AlignmentEvidence | None, thresholds: LevelThresholds) -> bool:
    if evidence is None:
        return False
    if evidence.aligned_length_s < thresholds.min_aligned_s:
        return False
    if max(evidence.query_coverage, evidence.reference_coverage) < thresholds.min_coverage:
        return False
    if thresholds.min_fine_score is not None and (evidence.fine_score is None or evidence.fine_score < thresholds.min_fine_score):
        return False
    if thresholds.max_degenerate is not None and evidence.degenerate_fraction > thresholds.max_degenerate:
        return False
    if (thresholds.min_motion_agreement is not None and evidence.motion_agreement is not None
            and evidence.motion_magnitude >= thresholds.motion_gate_magnitude
            and evidence.motion_agreement < thresholds.min_motion_agreement):
        return False
    return True


def decide_level(normalized_score: float, evidence: AlignmentEvidence | None, thresholds: LevelThresholds,
                 copy_score: float | None = None) -> Decision:
    """``copy`` / ``incident`` / ``none`` per the module rule. With ``copy_score`` (the copy head's
    P(copy), :mod:`detect.copy_head`) the copy threshold applies to it instead of the normalized
    score; the incident threshold always applies to the normalized score."""
    if not math.isfinite(normalized_score):
        raise ValueError(f"non-finite score {normalized_score!r}")
    if copy_score is not None and not math.isfinite(copy_score):
        raise ValueError(f"non-finite copy score {copy_score!r}")
    copy_value = normalized_score if copy_score is None else copy_score
    if thresholds.copy is not None and copy_value >= thresholds.copy and has_temporal_evidence(evidence, thresholds):
        return "copy"
    if thresholds.incident is not None and normalized_score >= thresholds.incident:
        return "incident"
    return "none"
