"""``dupwatch bench normalization``: does query-bias normalization help, measured on held-out sets?

The detector subtracts ``weight × mean(top-k similarities of the query's coarse vector against a
background set)`` from the fine score (:mod:`detect.normalization`). This bench fits ``(k, weight)``
on one labelled set (grid search maximizing copy µAP, :func:`detect.calibration.fit_normalization`)
and reports, on that set and on a second disjoint one, copy µAP and related (copy + incident) µAP
of the fine score with and without the fitted normalization.

Inputs are what ``dupwatch eval --report`` leaves behind (the truth CSV and the method's scores CSV
with its ``fine_score`` column), the bundle (for the coarse vectors, computed exactly as the worker
does) and a folder of background videos unrelated to both sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")


@dataclass(frozen=True)
class LabelledSet:
    name: str
    truth_csv: Path
    scores_csv: Path
    videos_dir: Path


def coarse_vectors(bundle: Path | str, videos: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """The worker's coarse vector per video (decode at the bundle's rate → regions → coarse)."""
    from dupwatch.config import DecodeConfig
    from inference.embedder import VideoModels
    from ingest.decode import decode_video

    models = VideoModels.from_path(bundle, device="cpu")
    spec = models.bundle.manifest.backbone
    config = DecodeConfig(fps=spec.fps, short_side=spec.short_side, crop=spec.crop)
    out = {}
    for vid, path in videos.items():
        decoded = decode_video(path, config, vid)
        out[vid] = np.asarray(models.represent(decoded).coarse, np.float32)
    return out


def _videos(folder: Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    found = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}
    if names is None:
        return found
    missing = sorted(set(names) - set(found))
    if missing:
        raise FileNotFoundError(f"{folder}: no video for {missing[:3]}")
    return {n: found[n] for n in names}


def _pairs(s: LabelledSet) -> list[Any]:
    from evaluation.truth import read_scores_csv, read_truth_csv
    from detect.calibration import LabelledPair, labelled_pairs

    rows = read_scores_csv(s.scores_csv)
    if any(r.fine_score is None for r in rows):
        rows_fine = rows
    else:  # normalization applies to the fine similarity, not to P(copy)
        from evaluation.truth import ScoreRow

        rows_fine = [ScoreRow(r.query, r.reference, float(r.fine_score)) for r in rows]  # type: ignore[arg-type]
    pairs: list[LabelledPair] = labelled_pairs(read_truth_csv(s.truth_csv), rows_fine)
    return pairs


def _micro_aps(pairs: list[Any], scores: list[float | None]) -> dict[str, float]:
    from detect.calibration import _level_ap

    return {"copy_uap": _level_ap(pairs, scores, "copy").ap, "related_uap": _level_ap(pairs, scores, "incident").ap}


def run(bundle: Path | str, fit: LabelledSet, check: LabelledSet, background_dir: Path | str) -> dict[str, Any]:
    """Fit (k, weight) on ``fit``, report with/without on ``fit`` and ``check``."""
    from detect.calibration import _normalized, fit_normalization

    background = coarse_vectors(bundle, _videos(Path(background_dir)))
    if not background:
        raise ValueError(f"{background_dir}: no background video")
    bg = np.stack(list(background.values()))
    result: dict[str, Any] = {"background_videos": len(background)}
    params = None
    for s in (fit, check):
        pairs = _pairs(s)
        queries = sorted({p.query for p in pairs if p.score is not None})
        coarse = coarse_vectors(bundle, _videos(s.videos_dir, queries))
        sims = {q: (bg @ coarse[q]).astype(np.float64) for q in queries}
        if params is None:
            params, best, _ = fit_normalization(pairs, sims)
            result["fitted_on"] = s.name
            result["params"] = {"k": params.k, "weight": params.weight}
        without = _micro_aps(pairs, [p.score for p in pairs])
        with_norm = _micro_aps(pairs, _normalized(pairs, params, sims))
        result[s.name] = {"without": without, "with": with_norm,
                          "delta": {k: with_norm[k] - without[k] for k in without}}
    return result
