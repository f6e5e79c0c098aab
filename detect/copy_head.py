"""The copy head: a small logistic model over a pair's temporal evidence (issue #12).

Frame-set similarity cannot tell "a copy of this moment" from "the same footage at another moment"
or "the same moment from another camera": both look alike frame by frame. What differs is how the
similarity is laid out in time. A copy is a sharp ridge along a straight path at a constant speed
(high ``temporal_contrast`` and ``peakiness``, ``diagonality`` near 1, ``speed_ratio`` near 1);
another moment of static footage is a flat plateau; a second camera matches weakly and erratically.
The head combines the fine network's score with these facts into ``P(copy)``; it is fitted on
labelled pairs of a benchmark built from training sources only (``dupwatch train copy-head``)
and stored in the model bundle as JSON (no pickled code), and the copy threshold is calibrated on
its output.

A second camera on the same moment (a large crop of another part of the scene) and another
moment of the same place both still match frame by frame, but their *regions* do not line up:
in a copy (even cropped, flipped or rotated a little) the region grid of a query frame maps onto
the matched reference frame's grid one to one, in place or mirrored; in a zoomed-in second view
most query regions pile onto the few reference regions that show the same part of the scene.
``region_spread`` (distinct reference regions hit, the smaller of both directions) and
``region_layout`` (query regions that land on their own or their mirrored cell) measure that
(:func:`region_layout`); their products with the fine score let a pair the fine network is sure
of (a tight crop of the same shot) lean less on the grid than a doubtful one (a second view).

Another moment of a static camera or a screencast still lines up frame by frame and in time;
what differs is what *moves*: :func:`motion_agreement` compares the two videos' changes over time
(frame vectors minus the video's mean frame, so static content cancels out). Heads fitted before
these features existed name the features they read and keep working (:class:`CopyHead`).

The alignment features come from the Temporal Network's paths
(:func:`inference.alignment.tn_evidence`), which the head was fitted on; the copy segments alerts
carry come from :mod:`inference.segments`. Many query frames piled onto one reference frame
(speed ≈ 0: static footage, a freeze) is evidence *against* a copy: it is not a head feature but a
gate on the copy level (:func:`detect.levels.decide_level`, ``max_degenerate``).

The features (:data:`FEATURES`) come from :func:`pair_features`; the same function serves the
worker's detector, the eval harness and the trainer, so training and serving cannot drift.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detect.copy_trees import TreeEnsemble, TreeEnsembleError
from inference import similarity_matrix
from inference.alignment import AlignmentEvidence
from inference.frame_budget import evenly_spaced
from inference.similarity_matrix import row_blocks

__all__ = ["FEATURES", "PIXEL_FEATURES", "CopyHead", "CopyHeadError", "copy_head_for", "copy_threshold_fits_head", "pair_features",
           "region_layout", "motion_agreement", "pixel_agreement", "fit_copy_head"]

FORMAT = "dupwatch-copy-head/1"
TREES_FORMAT = "dupwatch-copy-head/2"
"""The format of a head with boosted trees (:mod:`detect.copy_trees`); a reader of ``/1`` refuses it."""

FEATURES: tuple[str, ...] = (
    "fine_score",
    "frame_chamfer",
    "mean_path_similarity",
    "diagonality",
    "abs_log_speed",
    "temporal_contrast",
    "coverage",
    "segments",
    "has_path",
    "fine_x_diagonality",
    "fine_x_contrast",
    "peakiness",
    "fine_x_peakiness",
    "region_spread",
    "region_layout",
    "fine_x_spread",
    "fine_x_layout",
    "motion_agreement",
    "motion_magnitude",
    "self_similarity_agreement",
    "fine_x_motion",
    "fine_x_self_similarity",
    "pixel_agreement",
    "fine_x_pixel",
)


PIXEL_FEATURES: tuple[str, ...] = ("pixel_agreement", "fine_x_pixel")
"""The features that need the reference's thumbnails (:func:`pixel_agreement`)."""


class CopyHeadError(ValueError):
    """A copy-head file that cannot be used (wrong format, features or shapes)."""


def _mirror(regions: int) -> np.ndarray:
    """Index of each cell's horizontal mirror in a square region grid (identity if not square)."""
    side = int(round(math.sqrt(regions)))
    if side * side != regions:
        return np.arange(regions)
    return np.arange(regions).reshape(side, side)[:, ::-1].reshape(-1)


def region_layout(query_regions: np.ndarray, ref_regions: np.ndarray, frame_similarity: np.ndarray) -> tuple[float, float]:
    """(``region_spread``, ``region_layout``) of a pair, over each query frame and its best-matching
    reference frame: region similarities ``[R, R]``, each query region's best reference region.

    ``region_spread``: distinct reference regions hit / R, the smaller of the two directions
    (1 = one to one); ``region_layout``: share of query regions whose best reference region is
    the same cell or (for mirrored copies) its mirror, whichever is larger.
    """
    q = np.asarray(query_regions, np.float32)
    r = np.asarray(ref_regions, np.float32)
    sim = np.asarray(frame_similarity)
    if q.ndim != 3 or r.ndim != 3 or q.shape[1:] != r.shape[1:] or sim.shape != (q.shape[0], r.shape[0]):
        raise ValueError(f"regions [Tq, R, D] / [Tr, R, D] and a [Tq, Tr] similarity expected, got {q.shape} {r.shape} {sim.shape}")
    n = q.shape[1]
    best = sim.argmax(axis=1)
    s = np.einsum("tid,tjd->tij", q, r[best])  # [Tq, R, R]
    fwd, bwd = s.argmax(axis=2), s.argmax(axis=1)
    spread_f = np.mean([len(np.unique(a)) for a in fwd]) / n
    spread_b = np.mean([len(np.unique(a)) for a in bwd]) / n
    cells = np.arange(n)
    layout = max(float((fwd == cells).mean()), float((fwd == _mirror(n)).mean()))
    return float(min(spread_f, spread_b)), layout


MIN_MOTION_FRAMES = 3
"""Fewer sampled frames leave no change over time to compare."""
SELF_SIM_MAX_FRAMES = 1024
"""Query frames the self-similarity agreement reads at most (17 min at 1 fps; every benchmark video is shorter)."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def motion_agreement(query_regions: np.ndarray, ref_regions: np.ndarray,
                     frame_similarity: np.ndarray) -> tuple[float, float, float]:
    """(``motion_agreement``, ``motion_magnitude``, ``self_similarity_agreement``) of a pair.

    Why: another moment of a static camera or a screen recording matches a copy frame by frame,
    because the unchanging background dominates every frame vector. What differs is what *moves*:
    a copy changes over time exactly as its original does. Each frame vector (mean of its regions,
    unit length) minus the video's mean frame keeps only what changes; anything static (background,
    bars, a logo, a picture-in-picture host) cancels out.

    - ``motion_agreement``: mean cosine between each query frame's change and the change of its
      best-matching reference frame (copy: high; another moment: near 0);
    - ``motion_magnitude``: the smaller of the two videos' mean change (how much there is to compare);
    - ``self_similarity_agreement``: correlation between the query's frame-to-frame similarities and
      those of the matched reference frames (the same change pattern in time), over at most
      :data:`SELF_SIM_MAX_FRAMES` evenly spaced query frames (their products grow with the square
      of the length: a 4 h upload's would take several GB).

    All three are 0 when either video has fewer than :data:`MIN_MOTION_FRAMES` frames.
    """
    q = np.asarray(query_regions, np.float32)
    r = np.asarray(ref_regions, np.float32)
    sim = np.asarray(frame_similarity)
    if q.ndim != 3 or r.ndim != 3 or sim.shape != (q.shape[0], r.shape[0]):
        raise ValueError(f"regions [Tq, R, D] / [Tr, R, D] and a [Tq, Tr] similarity expected, got {q.shape} {r.shape} {sim.shape}")
    if q.shape[0] < MIN_MOTION_FRAMES or r.shape[0] < MIN_MOTION_FRAMES:
        return 0.0, 0.0, 0.0
    qf, rf = _unit(q.mean(axis=1)), _unit(r.mean(axis=1))
    q_change, r_change = qf - qf.mean(axis=0), rf - rf.mean(axis=0)
    best = sim.argmax(axis=1)
    agreement = float((_unit(q_change) * _unit(r_change[best])).sum(axis=1).mean())
    magnitude = float(min(np.linalg.norm(q_change, axis=1).mean(), np.linalg.norm(r_change, axis=1).mean()))
    rows = evenly_spaced(np.arange(len(best)), SELF_SIM_MAX_FRAMES)
    qs, matched = qf[rows], best[rows]
    # a short reference's products come from its whole Gram matrix, the values the head was fitted on
    rs = (rf @ rf.T)[np.ix_(matched, matched)] if len(rf) <= SELF_SIM_MAX_FRAMES else rf[matched] @ rf[matched].T
    upper = np.triu_indices(len(rows), 1)
    a, b = (qs @ qs.T)[upper], rs[upper]
    self_sim = float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-6 and b.std() > 1e-6 else 0.0
    return agreement, magnitude, self_sim


_BLUR = np.array([0.0219, 0.2285, 0.4992, 0.2285, 0.0219])
"""A 5-tap Gaussian (sigma 0.7 px): a copy cropped or scaled a little still lines up on thumbnails."""


def _pixel_changes(thumbs: np.ndarray, mirror: bool = False) -> np.ndarray:
    """Unit vectors ``[T, S*S]`` of each blurred thumbnail minus the video's median thumbnail."""
    from scipy.ndimage import correlate1d

    g = np.asarray(thumbs, np.float32)
    if mirror:
        g = g[:, :, ::-1]
    for axis in (1, 2):
        g = correlate1d(g, _BLUR, axis=axis, mode="nearest")
    change = (g - np.median(g, axis=0, keepdims=True)).reshape(len(g), -1)
    change -= change.mean(axis=1, keepdims=True)
    return change / np.maximum(np.linalg.norm(change, axis=1, keepdims=True), 1e-6)


def pixel_agreement(query_thumbs: np.ndarray | None, ref_thumbs: np.ndarray | None) -> float:
    """How the two videos' pixels change, compared: each query frame's change (its thumbnail
    minus the query's median thumbnail, :mod:`inference.thumbnails`) against the most similar
    change among the reference's frames, averaged over query frames, the better of the query
    as it is and mirrored.

    Why: in another moment of a static camera what moves (a fish, a face, a game piece) is
    elsewhere, so no reference change matches; in a copy the same change is in the reference
    at the matching moment, whatever the edit did to the static rest. Measured on the real
    benchmarks it separates copies from another moment better than any region feature.

    ``nan`` (unknown: the copy head reads it as the training mean) when either side has no
    thumbnails, as for videos indexed before thumbnails were stored, or fewer than
    :data:`MIN_MOTION_FRAMES` frames.
    """
    if query_thumbs is None or ref_thumbs is None:
        return math.nan
    q, r = np.asarray(query_thumbs), np.asarray(ref_thumbs)
    if q.ndim != 3 or r.ndim != 3 or q.shape[1:] != r.shape[1:]:
        raise ValueError(f"thumbnails [Tq, S, S] / [Tr, S, S] of one size expected, got {q.shape} {r.shape}")
    if len(q) < MIN_MOTION_FRAMES or len(r) < MIN_MOTION_FRAMES:
        return math.nan
    ref = _pixel_changes(r)
    step = max(1, similarity_matrix.BLOCK_CELLS // len(ref))  # rows of query changes against every reference change at a time

    def best_mean(changes: np.ndarray) -> float:
        return float(np.concatenate([(changes[a:a + step] @ ref.T).max(axis=1) for a in range(0, len(changes), step)]).mean())

    return max(best_mean(_pixel_changes(q, mirror)) for mirror in (False, True))


def pair_features(fine_score: float, frame_similarity: np.ndarray, evidence: AlignmentEvidence,
                  layout: tuple[float, float], motion: tuple[float, float, float], pixel: float = math.nan) -> np.ndarray:
    """The :data:`FEATURES` vector of one (query, reference) pair.

    ``frame_similarity`` is the ``[Tq, Tr]`` frame-to-frame similarity the alignment ran on;
    ``peakiness`` is the mean over query frames of (best match − mean match): how much one
    reference moment stands out from the rest of the reference; ``layout`` is
    :func:`region_layout`, ``motion`` :func:`motion_agreement` and ``pixel`` :func:`pixel_agreement`
    of the pair (``nan``: unknown).
    """
    sim = np.asarray(frame_similarity)
    if sim.ndim != 2 or sim.size == 0:
        raise ValueError(f"frame_similarity must be a non-empty [Tq, Tr] matrix, got {sim.shape}")
    has = 1.0 if evidence.num_segments > 0 else 0.0
    speed = max(float(evidence.speed_ratio), 1e-2)
    abs_log_speed = min(abs(math.log(speed)), 3.0) * has
    row_max, row_mean = [], []
    for _, block in row_blocks(sim):
        row_max.append(block.max(axis=1))
        row_mean.append(block.mean(axis=1))
    best, mean = np.concatenate(row_max), np.concatenate(row_mean)
    chamfer = float(best.mean())
    peak = float((best - mean).mean())
    fine = float(fine_score)
    return np.array(
        [
            fine,
            chamfer,
            float(evidence.mean_similarity),
            float(evidence.diagonality),
            abs_log_speed,
            float(evidence.temporal_contrast),
            float(max(evidence.query_coverage, evidence.ref_coverage)),
            float(evidence.num_segments) / 5.0,
            has,
            fine * float(evidence.diagonality),
            fine * float(evidence.temporal_contrast),
            peak,
            fine * peak,
            float(layout[0]),
            float(layout[1]),
            fine * float(layout[0]),
            fine * float(layout[1]),
            float(motion[0]),
            float(motion[1]),
            float(motion[2]),
            fine * float(motion[0]),
            fine * float(motion[2]),
            float(pixel),
            fine * float(pixel),
        ],
        np.float64,
    )


@dataclass(frozen=True)
class CopyHead:
    """``P(copy) = sigmoid(w · (x − mean) / std + b + trees(x))`` over its ``features``, a subset of
    :data:`FEATURES` in any order (a head fitted before a feature was added keeps reading the features
    it knows). Inputs are whole :data:`FEATURES` rows, as :func:`pair_features` makes them. A logistic
    head has no ``trees``; a boosted-trees head (:mod:`detect.copy_trees`) has zero weights, and its
    trees read the features themselves, an unknown one as its training ``mean``."""

    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float
    info: dict[str, Any]
    trees: TreeEnsemble | None = None

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.trees is not None and self.trees.n_features != n:
            raise CopyHeadError(f"copy head trees read {self.trees.n_features} features, the head has {n}")
        for name in ("mean", "std", "weights"):
            arr = getattr(self, name)
            if arr.shape != (n,) or not np.all(np.isfinite(arr)):
                raise CopyHeadError(f"copy head {name} must be {n} finite numbers")
        if np.any(self.std <= 0):
            raise CopyHeadError("copy head std must be > 0")
        if not math.isfinite(self.bias):
            raise CopyHeadError("copy head bias must be finite")
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown or len(set(self.features)) != n:
            raise CopyHeadError(f"copy head features {list(self.features)} must be distinct names of this build's {list(FEATURES)}")

    @property
    def reads_pixels(self) -> bool:
        """Whether the head reads :data:`PIXEL_FEATURES` (the detector then fetches thumbnails)."""
        return any(f in PIXEL_FEATURES for f in self.features)

    @property
    def columns(self) -> list[int]:
        """Where the head's features sit in a :data:`FEATURES` row."""
        return [FEATURES.index(f) for f in self.features]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """An unknown feature (``nan``, e.g. ``pixel_agreement`` of a video indexed without
        thumbnails) counts as its training mean: it moves the logit neither way."""
        x = np.atleast_2d(np.asarray(x, np.float64))
        if x.shape[1] != len(FEATURES):
            raise ValueError(f"expected {len(FEATURES)} features (FEATURES), got {x.shape[1]}")
        x = x[:, self.columns]
        x = np.where(np.isnan(x), self.mean, x)
        logit = ((x - self.mean) / self.std) @ self.weights + self.bias
        if self.trees is not None:
            logit = logit + self.trees.raw(x)
        return logit

    def probability(self, x: np.ndarray) -> np.ndarray:
        """``P(copy)`` per row of ``x`` (in (0, 1))."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(x), -60, 60)))

    def score(self, features: np.ndarray) -> float:
        return float(self.probability(features)[0])

    # -- (de)serialization: plain JSON, never pickle ------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": FORMAT if self.trees is None else TREES_FORMAT,
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "info": self.info,
        }
        if self.trees is not None:
            out["trees"] = self.trees.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CopyHead":
        if d.get("format") not in (FORMAT, TREES_FORMAT):
            raise CopyHeadError(f"not a copy head (format {d.get('format')!r}, expected {FORMAT!r} or {TREES_FORMAT!r})")
        features = tuple(str(f) for f in d.get("features", ()))
        try:
            trees = TreeEnsemble.from_dict(d["trees"]) if d["format"] == TREES_FORMAT else None
            return cls(features, np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64),
                       np.asarray(d["weights"], np.float64), float(d["bias"]), dict(d.get("info", {})), trees)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CopyHeadError):
                raise
            if isinstance(exc, TreeEnsembleError):
                raise CopyHeadError(f"malformed copy head trees: {exc}") from exc
            raise CopyHeadError(f"malformed copy head: {exc}") from exc

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path | str) -> "CopyHead":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise CopyHeadError(f"{path}: cannot read copy head (a JSON file is expected): {exc}") from exc
        if not isinstance(data, dict):
            raise CopyHeadError(f"{path}: a copy head is a JSON object")
        return cls.from_dict(data)


def copy_head_for(bundle: Any) -> "CopyHead | None":
    """The bundle's copy head (``copy_head`` artifact), or ``None``. A calibration that fits the copy
    level on ``copy_score`` while the bundle has no head is an error, not a silent fallback."""
    calibration = bundle.manifest.calibration or {}
    wants = (calibration.get("level_fields") or {}).get("copy") == "copy_score"
    if not bundle.has("copy_head"):
        if wants:
            raise CopyHeadError("the bundle's copy threshold is calibrated on copy_score but it has no copy_head artifact")
        return None
    return CopyHead.load(bundle.path("copy_head"))


def copy_threshold_fits_head(bundle: Any) -> bool:
    """False when the bundle has a copy head but its copy threshold was fitted on another score
    (the head was added or retrained after calibration): such a threshold means nothing for P(copy)."""
    calibration = bundle.manifest.calibration or {}
    if not bundle.has("copy_head") or "copy" not in (calibration.get("levels") or {}):
        return True
    return (calibration.get("level_fields") or {}).get("copy") == "copy_score"


def head_inputs(x: np.ndarray, is_copy: Sequence[bool] | np.ndarray,
                features: Sequence[str]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray, np.ndarray]:
    """What a head is fitted on: the ``features`` columns of the :data:`FEATURES` rows ``x``, the
    labels, the feature names, which values are known (not ``nan``) and each column's mean over its
    known values (an unknown value enters a fit, and is read later, as that mean)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(is_copy, bool)
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or len(x) != len(y):
        raise ValueError(f"x must be [N, {len(FEATURES)}] with one label per row")
    unknown = [f for f in features if f not in FEATURES]
    if unknown or not features:
        raise ValueError(f"unknown copy-head features {unknown}; choose from {list(FEATURES)}")
    if y.all() or not y.any():
        raise ValueError("need both copy and non-copy pairs to fit the copy head")
    names = tuple(features)
    x = x[:, [FEATURES.index(f) for f in names]]
    known = np.isfinite(x)
    mean = np.where(known, x, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    return x, y, names, known, mean


def fit_copy_head(x: np.ndarray, is_copy: Sequence[bool] | np.ndarray, *, l2: float = 0.1, max_iter: int = 500,
                  info: dict[str, Any] | None = None, features: Sequence[str] = FEATURES) -> CopyHead:
    """L2-regularized logistic regression (L-BFGS) of ``is_copy`` on standardized features: the
    ``features`` columns of the :data:`FEATURES` rows ``x``."""
    import torch

    # unknown values (nan) are left out of the standardization and enter the fit as the mean; a
    # feature never known (no thumbnails anywhere) is constant 0 after it and keeps weight 0
    x, y, features, known, mean = head_inputs(x, is_copy, features)
    count = known.sum(axis=0)
    std = np.sqrt(np.where(known, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1))
    std = np.where(std > 1e-6, std, 1.0)
    xt = torch.tensor(np.nan_to_num((x - mean) / std, nan=0.0), dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        final = float(torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt))
    meta = {"pairs": int(len(y)), "copies": int(y.sum()), "l2": l2, "final_loss": final, **(info or {})}
    return CopyHead(features, mean, std, w.detach().numpy().copy(), float(b.detach()), meta)
