"""The copy-level gates (:mod:`detect.levels`) swept over labelled benchmarks: ``dupwatch bench gates``.

Every pair of each benchmark is scored once by the bundle (decode, fine network, copy head,
alignment, motion); the worker's decision (:func:`detect.levels.decide_level`) is then replayed
for each motion-gate setting on the stored evidence, so a sweep costs one scoring pass. The
setting is chosen on the ``select`` benchmarks only (the training sources): the highest copy-alert
precision whose recall is within ``max_recall_loss`` of the gate switched off. The other
benchmarks report what that choice does on sources that chose nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect.levels import AlignmentEvidence, LevelThresholds, decide_level

__all__ = ["GateSetting", "PairEvidence", "collect_evidence", "sweep", "choose", "format_table"]

AGREEMENTS: tuple[float | None, ...] = (None, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2)
MAGNITUDES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)


@dataclass(frozen=True)
class GateSetting:
    min_motion_agreement: float | None
    motion_gate_magnitude: float

    @property
    def label(self) -> str:
        if self.min_motion_agreement is None:
            return "off"
        return f"agreement<{self.min_motion_agreement:g} at magnitude≥{self.motion_gate_magnitude:g}"


@dataclass(frozen=True)
class PairEvidence:
    """What the level decision reads about one scored pair, and its truth."""

    fine: float
    copy_score: float | None
    evidence: AlignmentEvidence
    level: str
    """Truth: ``copy``, ``incident`` or ``unrelated``."""
    kind: str


def collect_evidence(bench: Path, bundle: Path, *, progress: bool = True) -> tuple[list[PairEvidence], dict[str, float]]:
    """Score every (query, other video) pair of ``bench`` with ``bundle``; (pairs, the bundle's thresholds)."""
    from evaluation.truth import read_truth_csv
    from scoring.methods import FeatureCache, FrameCache, OursMethod, run_method

    meta = json.loads((bench / "benchmark.json").read_text())
    truth = read_truth_csv(bench / "truth.csv")
    videos = {d["video"]: bench / "videos" / f"{d['video']}.mp4" for d in meta["derivations"]}
    queries = [d["video"] for d in meta["derivations"] if d["is_query"]]
    method = OursMethod(bundle, FrameCache(), FeatureCache(), device="cpu", min_motion_agreement=None)
    if not method.thresholds.get("copy"):
        raise ValueError(f"{bundle}: no copy threshold calibrated on the copy head's score")
    run_method(method, videos, queries, progress=progress)
    kinds = truth.kinds()
    pairs = []
    for (q, r), e in method.pair_evidence.items():
        pairs.append(PairEvidence(e.fine, e.copy_score, e.evidence, truth.level_of(q, r), kinds.get((q, r), "")))
    return pairs, dict(method.thresholds)


def _alerts(pairs: Sequence[PairEvidence], thresholds: LevelThresholds) -> dict[str, float]:
    decided = [(p, decide_level(p.fine, p.evidence, thresholds, copy_score=p.copy_score)) for p in pairs]
    copies = [p for p, level in decided if level == "copy"]
    hits = sum(p.level == "copy" for p in copies)
    positives = sum(p.level == "copy" for p in pairs)
    return {"alerts": len(copies), "true": hits, "positives": positives, "precision": hits / len(copies) if copies else 0.0,
            "recall": hits / positives if positives else 0.0,
            "another_moment": sum(p.kind == "another_moment" for p in copies)}


def sweep(sets: dict[str, tuple[list[PairEvidence], dict[str, float]]], max_degenerate: float | None,
          agreements: Sequence[float | None] = AGREEMENTS, magnitudes: Sequence[float] = MAGNITUDES) -> dict[GateSetting, dict[str, dict[str, float]]]:
    """Copy alerts per setting and per benchmark (the worker's rule with the bundle's thresholds)."""
    out: dict[GateSetting, dict[str, dict[str, float]]] = {}
    for a in agreements:
        for m in (magnitudes if a is not None else magnitudes[:1]):
            setting = GateSetting(a, m)
            out[setting] = {}
            for name, (pairs, fitted) in sets.items():
                levels = LevelThresholds(copy=fitted.get("copy"), incident=fitted.get("incident"), max_degenerate=max_degenerate,
                                         min_motion_agreement=a, motion_gate_magnitude=m)
                out[setting][name] = _alerts(pairs, levels)
    return out


def _pooled(row: dict[str, dict[str, float]], names: Sequence[str]) -> tuple[float, float]:
    alerts = sum(row[n]["alerts"] for n in names)
    true = sum(row[n]["true"] for n in names)
    positives = sum(row[n]["positives"] for n in names)
    return (true / alerts if alerts else 0.0), (true / positives if positives else 0.0)


def choose(table: dict[GateSetting, dict[str, dict[str, float]]], select: Sequence[str], max_recall_loss: float = 0.01) -> GateSetting:
    """The setting with the highest pooled copy-alert precision on ``select`` whose pooled recall is
    within ``max_recall_loss`` of the gate switched off (ties: the earlier setting)."""
    off = next(s for s in table if s.min_motion_agreement is None)
    base_recall = _pooled(table[off], select)[1]
    allowed = [s for s in table if _pooled(table[s], select)[1] >= base_recall - max_recall_loss]
    return max(allowed, key=lambda s: _pooled(table[s], select)[0])


def format_table(table: dict[GateSetting, dict[str, dict[str, float]]], select: Sequence[str], chosen: GateSetting) -> str:
    names = list(next(iter(table.values())))
    lines = ["| motion gate | " + " | ".join(f"{n}{' (chooses)' if n in select else ''}: alerts, P / R, another moment" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for setting, row in table.items():
        mark = " **(chosen)**" if setting == chosen else ""
        cells = [f"{row[n]['alerts']:.0f}, {row[n]['precision']:.3f} / {row[n]['recall']:.3f}, {row[n]['another_moment']:.0f}" for n in names]
        lines.append(f"| {setting.label}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_gates(benches: Sequence[Path], bundle: Path, select: Sequence[str], *, progress: bool = True) -> dict[str, Any]:
    from dupwatch.config import DEFAULT_MAX_DEGENERATE

    missing = [s for s in select if s not in {b.name for b in benches}]
    if missing or not select:
        raise ValueError(f"--select must name benchmarks given with --bench, got {list(select)}")
    sets = {b.name: collect_evidence(b, bundle, progress=progress) for b in benches}
    table = sweep(sets, DEFAULT_MAX_DEGENERATE)
    chosen = choose(table, select)
    return {"table": table, "chosen": chosen, "select": list(select)}
