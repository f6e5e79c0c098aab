"""The motion gate of the copy level (detect.levels): another moment of a place that moves is at
most an incident, a still or an unmeasured pair is left to the other rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detect.levels import AlignmentEvidence, LevelThresholds, decide_level
from dupwatch.config import DetectionConfig


def _evidence(agreement: float | None, magnitude: float) -> AlignmentEvidence:
    return AlignmentEvidence(aligned_length_s=10.0, query_coverage=1.0, reference_coverage=1.0, fine_score=0.95,
                             motion_agreement=agreement, motion_magnitude=magnitude)


GATE = LevelThresholds(copy=0.6, incident=0.5, min_motion_agreement=0.05, motion_gate_magnitude=0.1)


@pytest.mark.parametrize(("agreement", "magnitude", "level"), [
    (0.40, 0.45, "copy"),       # both move, and the same way: a copy
    (0.01, 0.45, "incident"),   # both move, differently: another moment of the same place
    (-0.2, 0.10, "incident"),   # the magnitude bound is inclusive
    (0.01, 0.05, "copy"),       # hardly anything moves: nothing to compare, the gate stays out
    (0.00, 0.00, "copy"),       # a still (no change at all)
    (None, 0.45, "copy"),       # not measured (fewer than three frames): the gate stays out
])
def test_motion_gate(agreement: float | None, magnitude: float, level: str) -> None:
    assert decide_level(0.9, _evidence(agreement, magnitude), GATE, copy_score=0.99) == level


def test_gate_off_and_defaults() -> None:
    off = LevelThresholds(copy=0.6, incident=0.5)
    assert decide_level(0.9, _evidence(-0.5, 0.9), off, copy_score=0.99) == "copy"
    config = DetectionConfig()
    resolved = LevelThresholds.resolve(None, config)
    assert resolved.min_motion_agreement is None and config.min_motion_agreement is None  # off unless configured
    assert resolved.motion_gate_magnitude == config.motion_gate_magnitude == 0.1
    on = LevelThresholds.resolve(None, DetectionConfig(min_motion_agreement=0.15, motion_gate_magnitude=0.3))
    assert on.min_motion_agreement == 0.15 and on.motion_gate_magnitude == 0.3
    assert decide_level(0.9, _evidence(0.1, 0.45), replace(on, copy=0.6, incident=0.5), copy_score=0.99) == "incident"


@pytest.mark.parametrize("bad", [{"motion_agreement": float("nan")}, {"motion_agreement": 1.5}, {"motion_magnitude": -0.1},
                                 {"motion_magnitude": float("inf")}])
def test_evidence_rejects_bad_motion(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError):
        AlignmentEvidence(aligned_length_s=1.0, query_coverage=0.5, reference_coverage=0.5, **bad)
