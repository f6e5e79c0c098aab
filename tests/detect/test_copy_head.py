"""The copy head (detect.copy_head): features, fit, JSON (de)serialization, bundle rules, and the
level decision on P(copy) (detect.levels.decide_level with ``copy_score``)."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluation.metrics import average_precision
from detect.copy_head import (
    FEATURES,
    FORMAT,
    CopyHead,
    CopyHeadError,
    copy_head_for,
    copy_threshold_fits_head,
    fit_copy_head,
    motion_agreement,
    pair_features,
    region_layout,
)
from detect.levels import AlignmentEvidence, LevelThresholds, decide_level
from dupwatch.paths import REPO_ROOT
from inference.alignment import align_pair
from inference.bundle import load_bundle

DEFAULT = REPO_ROOT / "models" / "default"
IDX = {name: i for i, name in enumerate(FEATURES)}


# ---- synthetic frame-similarity matrices -------------------------------------------------------


def ridge(rng: np.random.Generator, t: int = 30, peak: float = 0.9, floor: float = 0.2) -> np.ndarray:
    """A copy: a sharp diagonal ridge over a low, noisy background."""
    sim = floor + 0.03 * rng.standard_normal((t, t))
    np.fill_diagonal(sim, peak)
    return sim


def plateau(rng: np.random.Generator, t: int = 30, level: float = 0.85) -> np.ndarray:
    """Another moment of static footage: high everywhere, no ridge."""
    return level + 0.03 * rng.standard_normal((t, t))


def features_of(sim: np.ndarray, fine: float = 0.8) -> np.ndarray:
    _, evidence = align_pair(sim)
    return pair_features(fine, sim, evidence, (1.0, 1.0), (0.0, 0.0, 0.0))


# ---- pair_features -----------------------------------------------------------------------------


def test_ridge_beats_plateau_on_temporal_features() -> None:
    rng = np.random.default_rng(0)
    r, p = features_of(ridge(rng)), features_of(plateau(rng))
    assert r.shape == p.shape == (len(FEATURES),)
    pixel = [IDX["pixel_agreement"], IDX["fine_x_pixel"]]
    assert np.all(np.isnan(r[pixel])) and np.all(np.isnan(p[pixel]))  # no thumbnails given: unknown
    known = np.ones(len(FEATURES), bool)
    known[pixel] = False
    assert r.dtype == np.float64 and np.all(np.isfinite(r[known])) and np.all(np.isfinite(p[known]))
    # same fine score: only the temporal layout tells them apart
    assert r[IDX["fine_score"]] == p[IDX["fine_score"]] == 0.8
    assert r[IDX["temporal_contrast"]] > p[IDX["temporal_contrast"]] + 0.3
    assert r[IDX["peakiness"]] > p[IDX["peakiness"]] + 0.3
    assert r[IDX["diagonality"]] > p[IDX["diagonality"]]
    assert r[IDX["diagonality"]] == pytest.approx(1.0)
    assert r[IDX["abs_log_speed"]] == pytest.approx(0.0, abs=1e-9)
    assert r[IDX["has_path"]] == 1.0
    # the products are the products
    assert r[IDX["fine_x_contrast"]] == pytest.approx(0.8 * r[IDX["temporal_contrast"]])
    assert r[IDX["fine_x_peakiness"]] == pytest.approx(0.8 * r[IDX["peakiness"]])
    assert p[IDX["fine_x_diagonality"]] == pytest.approx(0.8 * p[IDX["diagonality"]])
    # frame chamfer is the mean over query frames of the best reference frame
    sim = ridge(np.random.default_rng(1))
    assert features_of(sim)[IDX["frame_chamfer"]] == pytest.approx(sim.max(axis=1).mean())


def test_no_path_features() -> None:
    sim = np.full((10, 12), 0.1)  # below the alignment's min_sim: nothing aligned
    f = features_of(sim, fine=0.3)
    assert f.shape == (len(FEATURES),)
    assert f[IDX["has_path"]] == 0.0 and f[IDX["segments"]] == 0.0
    assert f[IDX["abs_log_speed"]] == 0.0  # speed 0 without a path must not become log(1e-2)
    assert f[IDX["temporal_contrast"]] == 0.0 and f[IDX["diagonality"]] == 0.0


@pytest.mark.parametrize("bad", [np.zeros((0, 5)), np.zeros((5, 0)), np.zeros(5), np.zeros((2, 2, 2))])
def test_pair_features_rejects_bad_matrix(bad: np.ndarray) -> None:
    _, evidence = align_pair(ridge(np.random.default_rng(0), t=6))
    with pytest.raises(ValueError):
        pair_features(0.5, bad, evidence, (1.0, 1.0), (0.0, 0.0, 0.0))


# ---- region layout ------------------------------------------------------------------------------


def _grid_frames(rng: np.random.Generator, t: int = 6, regions: int = 9, dim: int = 32) -> np.ndarray:
    x = rng.standard_normal((t, regions, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_region_layout_one_to_one_in_place_and_mirrored() -> None:
    rng = np.random.default_rng(0)
    ref = _grid_frames(rng)
    sim = np.eye(6)
    assert region_layout(ref + 0.05 * _grid_frames(rng), ref, sim) == pytest.approx((1.0, 1.0))
    mirrored = ref.reshape(6, 3, 3, -1)[:, :, ::-1].reshape(6, 9, -1)  # a flipped copy
    assert region_layout(mirrored, ref, sim) == pytest.approx((1.0, 1.0))


def test_region_layout_zoomed_second_view_piles_up() -> None:
    """A zoom into one corner: every query region resembles one of the reference's 2 corner cells."""
    rng = np.random.default_rng(1)
    ref = _grid_frames(rng)
    corner = ref[:, [0, 1, 0, 1, 0, 1, 0, 1, 0]] + 0.05 * _grid_frames(rng)
    spread, layout = region_layout(corner, ref, np.eye(6))
    assert spread == pytest.approx(2 / 9) and layout < 0.5


def test_region_layout_uses_each_query_frames_best_reference_frame() -> None:
    rng = np.random.default_rng(2)
    ref = _grid_frames(rng)
    query = ref[::-1].copy()  # reversed in time: the similarity matrix says which frames match
    assert region_layout(query, ref, np.fliplr(np.eye(6)))[1] == pytest.approx(1.0)
    assert region_layout(query, ref, np.eye(6))[1] < 0.5


def test_region_layout_rejects_mismatched_shapes() -> None:
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError):
        region_layout(_grid_frames(rng, t=4), _grid_frames(rng, t=5), np.eye(4))
    with pytest.raises(ValueError):
        region_layout(_grid_frames(rng, regions=9), _grid_frames(rng, regions=4), np.eye(6))


# ---- fit and serialization ---------------------------------------------------------------------


def toy_table(seed: int, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Copies (ridges) and plateaus with overlapping fine scores: only the layout separates them."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(n):
        rows.append(features_of(ridge(rng, t=int(rng.integers(12, 30)), peak=float(rng.uniform(0.7, 0.95))),
                                fine=float(rng.uniform(0.5, 0.9))))
        labels.append(True)
        rows.append(features_of(plateau(rng, t=int(rng.integers(12, 30)), level=float(rng.uniform(0.7, 0.9))),
                                fine=float(rng.uniform(0.5, 0.9))))
        labels.append(False)
    return np.asarray(rows), np.asarray(labels)


@pytest.fixture(scope="module")
def fitted() -> tuple[CopyHead, np.ndarray, np.ndarray]:
    x, y = toy_table(0)
    return fit_copy_head(x, y, l2=0.1), x, y


def test_fit_ranks_copies_first(fitted) -> None:  # type: ignore[no-untyped-def]
    head, x, y = fitted
    assert head.features == FEATURES
    p = head.probability(x)
    assert p.shape == (len(x),) and np.all((p > 0) & (p < 1))
    assert average_precision(p, y).ap >= 0.99
    assert p[y].mean() > 0.5 > p[~y].mean()
    # unseen data from the same process
    x2, y2 = toy_table(1, n=12)
    assert average_precision(head.probability(x2), y2).ap >= 0.95
    assert head.info["pairs"] == len(y) and head.info["copies"] == int(y.sum())
    assert head.score(x[0]) == pytest.approx(float(p[0]))


def test_fit_rejects_bad_input() -> None:
    x, y = toy_table(2, n=4)
    with pytest.raises(ValueError):
        fit_copy_head(x, np.ones(len(x), bool))  # no negative
    with pytest.raises(ValueError):
        fit_copy_head(x, np.zeros(len(x), bool))  # no positive
    with pytest.raises(ValueError):
        fit_copy_head(x[:, :5], y)
    with pytest.raises(ValueError):
        fit_copy_head(x, y[:-1])


def test_json_round_trip(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    head, x, _ = fitted
    path = head.save(tmp_path / "head.json")
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT == "dupwatch-copy-head/1"
    assert data["features"] == list(FEATURES)
    again = CopyHead.load(path)
    np.testing.assert_array_equal(again.probability(x), head.probability(x))
    assert again.info == json.loads(json.dumps(head.info))
    assert CopyHead.from_dict(head.to_dict()).bias == head.bias


def _mutations(d: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    n = len(FEATURES)
    out = {}
    out["format"] = {**d, "format": "dupwatch-copy-head/2"}
    out["no_format"] = {k: v for k, v in d.items() if k != "format"}
    out["unknown_feature"] = {**d, "features": ["not_a_feature", *FEATURES[1:]]}
    out["repeated_feature"] = {**d, "features": [FEATURES[1], *FEATURES[1:]]}
    out["missing_feature"] = {**d, "features": list(FEATURES[:-1])}
    out["short_weights"] = {**d, "weights": d["weights"][:-1]}
    out["long_mean"] = {**d, "mean": d["mean"] + [0.0]}
    out["nan_weight"] = {**d, "weights": [math.nan] + d["weights"][1:]}
    out["inf_mean"] = {**d, "mean": [math.inf] + d["mean"][1:]}
    out["nan_bias"] = {**d, "bias": math.nan}
    out["zero_std"] = {**d, "std": [0.0] + d["std"][1:]}
    out["negative_std"] = {**d, "std": [-1.0] * n}
    out["no_weights"] = {k: v for k, v in d.items() if k != "weights"}
    out["text_weights"] = {**d, "weights": ["a"] * n}
    out["matrix_weights"] = {**d, "weights": [d["weights"]]}
    return out


@pytest.mark.parametrize("case", sorted(_mutations(CopyHead(FEATURES, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), np.zeros(len(FEATURES)), 0.0, {}).to_dict())))
def test_from_dict_rejects(fitted, case: str) -> None:  # type: ignore[no-untyped-def]
    head, _, _ = fitted
    bad = _mutations(json.loads(json.dumps(head.to_dict())))[case]
    with pytest.raises(CopyHeadError):
        CopyHead.from_dict(bad)


def test_load_rejects_non_object_json(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    with pytest.raises(CopyHeadError):
        CopyHead.load(tmp_path / "list.json")
    (tmp_path / "text.json").write_text("not json at all")
    with pytest.raises(CopyHeadError):
        CopyHead.load(tmp_path / "text.json")
    with pytest.raises(CopyHeadError):
        CopyHead.load(tmp_path / "missing.json")


def test_load_never_unpickles(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    head, _, _ = fitted
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (marker,))

    pickled = tmp_path / "head.pkl"
    pickled.write_bytes(pickle.dumps(Boom()))
    try:
        with pytest.raises(CopyHeadError):
            CopyHead.load(pickled)
    finally:
        assert not marker.exists()  # whatever it raises, it never unpickles
    pickled.write_bytes(pickle.dumps(head.to_dict()))  # even a pickle of a valid dict is refused
    with pytest.raises(CopyHeadError):
        CopyHead.load(pickled)


# ---- motion agreement ---------------------------------------------------------------------------


def _scene(rng: np.random.Generator, t: int, regions: int = 9, dim: int = 32, motion: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """A static background (shared by every moment) and ``t`` frames of what moves over it."""
    background = rng.standard_normal((regions, dim))
    return background, motion * rng.standard_normal((t, regions, dim))


def _identity_sim(t: int) -> np.ndarray:
    return np.eye(t) + 0.01


def test_motion_agreement_tells_a_copy_from_another_moment() -> None:
    rng = np.random.default_rng(3)
    background, moving = _scene(rng, 12)
    original = background + moving
    logo = np.zeros_like(background)
    logo[0] = 2.0  # a static overlay on one region: cancels out of the change over time
    copy = original + logo + 0.02 * rng.standard_normal(original.shape)
    other_moment = background + 0.3 * rng.standard_normal(moving.shape)  # same place, other movement
    sim = _identity_sim(12)
    agree_copy, magnitude, self_copy = motion_agreement(copy, original, sim)
    agree_other, _, self_other = motion_agreement(other_moment, original, sim)
    assert agree_copy > 0.9 and self_copy > 0.9
    assert abs(agree_other) < 0.35 and abs(self_other) < 0.5
    assert magnitude > 0.0


def test_motion_agreement_without_motion_or_frames() -> None:
    rng = np.random.default_rng(4)
    still = np.repeat(rng.standard_normal((1, 9, 32)), 6, axis=0)
    agreement, magnitude, self_sim = motion_agreement(still, still, _identity_sim(6))
    assert magnitude == pytest.approx(0.0, abs=1e-5) and self_sim == 0.0
    # fewer than three frames on either side: nothing to compare
    assert motion_agreement(still[:2], still, np.ones((2, 6))) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        motion_agreement(still, still, np.ones((6, 5)))


def test_head_fitted_on_some_features_reads_whole_rows(fitted) -> None:  # type: ignore[no-untyped-def]
    """A head fitted before a feature existed keeps working: it picks its columns by name."""
    _, x, y = fitted
    old = FEATURES[:17]
    head = fit_copy_head(x, y, l2=0.1, features=old)
    again = CopyHead.from_dict(json.loads(json.dumps(head.to_dict())))
    assert again.features == old
    manual = 1 / (1 + np.exp(-(((x[:, :17] - head.mean) / head.std) @ head.weights + head.bias)))
    np.testing.assert_allclose(again.probability(x), manual)
    with pytest.raises(ValueError):
        fit_copy_head(x, y, features=("not_a_feature",))


def test_wrong_feature_count_at_inference(fitted) -> None:  # type: ignore[no-untyped-def]
    head, _, _ = fitted
    with pytest.raises(ValueError):
        head.probability(np.zeros((2, len(FEATURES) - 1)))


# ---- the bundle: copy_head_for / copy_threshold_fits_head / Detector ---------------------------


@pytest.fixture()
def bundle_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(DEFAULT, dst)
    return dst


def _edit_manifest(root: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


class Tripwire:
    """An index that records every attribute access (Detector.__init__ must not need the index)."""

    def __init__(self) -> None:
        object.__setattr__(self, "touched", [])

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        self.touched.append(name)
        raise AssertionError(f"the index was used: {name}")


def test_committed_default_bundle_has_a_fitting_head() -> None:
    bundle = load_bundle(DEFAULT)
    head = copy_head_for(bundle)
    # fitted before the motion features existed: it reads its own columns of every FEATURES row
    assert isinstance(head, CopyHead) and set(head.features) <= set(FEATURES) and "fine_score" in head.features
    assert copy_threshold_fits_head(bundle)
    cal = bundle.manifest.calibration or {}
    assert cal["level_fields"]["copy"] == "copy_score"


def test_detector_accepts_the_committed_layout(bundle_copy: Path) -> None:
    from detect.detector import Detector
    from dupwatch.config import DetectionConfig
    from inference.embedder import VideoModels

    models = VideoModels.from_path(bundle_copy, device="cpu")
    index = Tripwire()
    det = Detector(models, index, DetectionConfig())
    assert det.copy_head is not None and det.copy_head.features == copy_head_for(load_bundle(bundle_copy)).features
    assert det.thresholds.copy == pytest.approx(load_bundle(bundle_copy).thresholds()["copy"])
    assert index.touched == []


def test_head_without_copy_score_calibration_is_refused(bundle_copy: Path) -> None:
    from detect.detector import Detector
    from dupwatch.config import DetectionConfig, ThresholdsConfig
    from inference.embedder import VideoModels

    _edit_manifest(bundle_copy, lambda d: d["calibration"].pop("level_fields"))
    bundle = load_bundle(bundle_copy)
    assert copy_head_for(bundle) is not None  # the head is still there and loads
    assert not copy_threshold_fits_head(bundle)

    models = VideoModels.from_path(bundle_copy, device="cpu")
    index = Tripwire()
    with pytest.raises(CopyHeadError, match="calibrated on another score"):
        Detector(models, index, DetectionConfig())
    assert index.touched == []
    # explicit thresholds (argument or configuration) are the operator's choice: accepted
    Detector(models, index, DetectionConfig(), thresholds=LevelThresholds(copy=0.9, incident=0.8))
    Detector(models, index, DetectionConfig(thresholds=ThresholdsConfig(copy=0.9)))
    assert index.touched == []


def test_copy_level_on_another_field_does_not_fit(bundle_copy: Path) -> None:
    def edit(d: dict) -> None:  # type: ignore[type-arg]
        d["calibration"]["level_fields"]["copy"] = "fine_score"

    _edit_manifest(bundle_copy, edit)
    assert not copy_threshold_fits_head(load_bundle(bundle_copy))


def test_missing_head_with_copy_score_calibration_raises(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, lambda d: d["artifacts"].pop("copy_head"))
    bundle = load_bundle(bundle_copy)
    assert not bundle.has("copy_head")
    with pytest.raises(CopyHeadError, match="no copy_head"):
        copy_head_for(bundle)
    assert copy_threshold_fits_head(bundle)  # no head: nothing to mismatch


def test_no_head_and_plain_calibration_is_fine(bundle_copy: Path) -> None:
    def edit(d: dict) -> None:  # type: ignore[type-arg]
        d["artifacts"].pop("copy_head")
        d["calibration"].pop("level_fields")

    _edit_manifest(bundle_copy, edit)
    bundle = load_bundle(bundle_copy)
    assert copy_head_for(bundle) is None
    assert copy_threshold_fits_head(bundle)


def test_altered_head_file_is_refused(bundle_copy: Path) -> None:
    from inference.bundle import BundleError

    head = json.loads((bundle_copy / "copy_head.json").read_text())
    head["bias"] = head["bias"] + 1.0
    (bundle_copy / "copy_head.json").write_text(json.dumps(head))
    with pytest.raises(BundleError):
        copy_head_for(load_bundle(bundle_copy, verify=False))


# ---- decide_level with copy_score --------------------------------------------------------------

EVIDENCE = AlignmentEvidence(aligned_length_s=5.0, query_coverage=0.9, reference_coverage=0.5, fine_score=0.8)
TH = LevelThresholds(copy=0.7, incident=0.5)


def test_copy_threshold_applies_to_copy_score() -> None:
    # normalized score below the copy threshold, P(copy) above it: copy
    assert decide_level(0.55, EVIDENCE, TH, copy_score=0.9) == "copy"
    assert decide_level(0.55, EVIDENCE, TH) == "incident"
    # normalized score above, P(copy) below: not a copy, but still an incident on the normalized score
    assert decide_level(0.95, EVIDENCE, TH, copy_score=0.1) == "incident"
    assert decide_level(0.95, EVIDENCE, TH) == "copy"
    # inclusive at the threshold
    assert decide_level(0.0, EVIDENCE, TH, copy_score=0.7) == "copy"
    # the incident threshold never looks at copy_score
    assert decide_level(0.3, EVIDENCE, LevelThresholds(copy=None, incident=0.5), copy_score=0.99) == "none"
    assert decide_level(0.5, EVIDENCE, LevelThresholds(copy=None, incident=0.5), copy_score=0.0) == "incident"


def test_copy_score_still_needs_temporal_evidence() -> None:
    short = AlignmentEvidence(aligned_length_s=0.5, query_coverage=0.1, reference_coverage=0.1)
    assert decide_level(0.55, short, TH, copy_score=0.99) == "incident"
    assert decide_level(0.3, None, TH, copy_score=0.99) == "none"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_copy_score_raises(bad: float) -> None:
    with pytest.raises(ValueError):
        decide_level(0.5, EVIDENCE, TH, copy_score=bad)
