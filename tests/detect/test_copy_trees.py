"""The boosted-trees copy head: scikit-learn fits it, numpy scores it from JSON, with the same answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detect.copy_head import FEATURES, TREES_FORMAT, CopyHead, CopyHeadError
from detect.copy_trees import TreeEnsemble, TreeEnsembleError
from training.copy_head import PairTable, pooled_out_of_fold_uap, select_trees_by_source
from training.copy_trees import INCREASING, TreeParams, fit_copy_head_trees


def _interaction_table(seed: int = 0, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Copies need a high fine score *and* high temporal evidence (a high fine score alone is
    another moment as often): an interaction a weighted sum draws only roughly."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, len(FEATURES)))
    y = (x[:, 0] > 0.6) & (x[:, 3] > 0.6)
    return x, y


def test_numpy_trees_match_scikit_learn_and_survive_json(tmp_path: Path) -> None:
    x, y = _interaction_table()
    x[::7, FEATURES.index("pixel_agreement")] = np.nan  # a reference indexed without thumbnails
    head = fit_copy_head_trees(x, y, params=TreeParams(depth=3, min_leaf=10, rounds=40, monotone=True))
    assert head.trees is not None and head.trees.depth <= 3 and len(head.trees.roots) == 40
    assert not np.any(head.weights) and head.info["model"] == "boosted trees"

    from sklearn.ensemble import HistGradientBoostingClassifier

    filled = np.where(np.isnan(x), head.mean, x)
    monotone = [1 if f in INCREASING else 0 for f in FEATURES]
    ref = HistGradientBoostingClassifier(max_iter=40, learning_rate=0.05, max_depth=3, min_samples_leaf=10,
                                         l2_regularization=1.0, monotonic_cst=monotone, early_stopping=False,
                                         random_state=0).fit(filled, y)
    np.testing.assert_allclose(head.probability(x), ref.predict_proba(filled)[:, 1], rtol=1e-9, atol=1e-12)

    path = head.save(tmp_path / "copy_head.json")
    data = json.loads(path.read_text())
    assert data["format"] == TREES_FORMAT and "trees" in data
    np.testing.assert_allclose(CopyHead.load(path).probability(x), head.probability(x))
    # an unknown feature reads as its training mean, as in the logistic head
    row = x[:1].copy()
    row[0, FEATURES.index("pixel_agreement")] = np.nan
    mean_row = row.copy()
    mean_row[0, FEATURES.index("pixel_agreement")] = head.mean[list(head.features).index("pixel_agreement")]
    assert head.score(row) == pytest.approx(head.score(mean_row))


def test_trees_learn_an_interaction_the_logistic_head_cannot() -> None:
    from detect.copy_head import fit_copy_head
    from evaluation.metrics import average_precision

    x, y = _interaction_table(0)
    xt, yt = _interaction_table(1)
    trees = fit_copy_head_trees(x, y, params=TreeParams(depth=2, min_leaf=10, rounds=100))
    line = fit_copy_head(x, y, l2=0.01)
    assert average_precision(trees.probability(xt), yt).ap > average_precision(line.probability(xt), yt).ap + 0.04


def _tiny_trees(**change: object) -> dict:
    d = {"n_features": 2, "roots": [0], "feature": [1, 0, 0], "threshold": [0.5, 0.0, 0.0],
         "left": [1, -1, -1], "right": [2, -1, -1], "value": [0.0, -1.0, 2.0]}
    d.update(change)
    return d


def test_tree_walk_and_validation() -> None:
    trees = TreeEnsemble.from_dict(_tiny_trees())
    np.testing.assert_allclose(trees.raw(np.array([[9.0, 0.2], [9.0, 0.5], [9.0, 0.9]])), [-1.0, -1.0, 2.0])
    for bad in (_tiny_trees(left=[0, -1, -1]),              # a child before (or at) its parent: a cycle
                _tiny_trees(right=[-1, -1, -1]),             # one child only
                _tiny_trees(feature=[5, 0, 0]),              # a feature the head does not have
                _tiny_trees(left=[7, -1, -1]),               # outside the node list
                _tiny_trees(threshold=[float("nan"), 0, 0]),
                _tiny_trees(roots=[3]),
                _tiny_trees(value=[0.0, 1.0])):
        with pytest.raises(TreeEnsembleError):
            TreeEnsemble.from_dict(bad)
    with pytest.raises(TreeEnsembleError):
        TreeEnsemble.from_dict({"n_features": 2})


def test_a_malformed_trees_head_is_refused() -> None:
    x, y = _interaction_table()
    data = fit_copy_head_trees(x, y, params=TreeParams(depth=2, min_leaf=10, rounds=5)).to_dict()
    broken = json.loads(json.dumps(data))
    broken["trees"]["left"][0] = 0
    with pytest.raises(CopyHeadError, match="trees"):
        CopyHead.from_dict(broken)
    missing = {k: v for k, v in data.items() if k != "trees"}
    with pytest.raises(CopyHeadError):
        CopyHead.from_dict(missing)
    wrong_width = json.loads(json.dumps(data))
    wrong_width["trees"]["n_features"] = 3
    with pytest.raises(CopyHeadError):
        CopyHead.from_dict(wrong_width)


def test_tree_shape_is_chosen_leave_one_source_out() -> None:
    rng = np.random.default_rng(2)
    pairs, labels, feats = [], [], []
    for src in ("a", "b", "c"):
        x, y = _interaction_table(int(rng.integers(1000)), n=120)
        for k, (row, copy) in enumerate(zip(x, y)):
            pairs.append(("b0", f"fg_{src}__f__q{k}", f"fg_{src}__f__ref"))
            labels.append("copy" if copy else "incident")
            feats.append(row)
    table = PairTable(np.asarray(feats), np.asarray(labels), pairs)
    grid = (TreeParams(depth=1, min_leaf=10, rounds=30), TreeParams(depth=2, min_leaf=10, rounds=30))
    best, scores, groups = select_trees_by_source(table, grid=grid)
    assert groups == ["a", "b", "c"] and set(scores) == {"depth1-leaf10", "depth2-leaf10"}
    assert scores[best.name] == max(scores.values())
    assert scores["depth2-leaf10"] == pytest.approx(
        pooled_out_of_fold_uap(table, lambda x, y: fit_copy_head_trees(x, y, params=grid[1])))


def test_more_agreement_never_lowers_p_copy() -> None:
    """The trees rise with every :data:`INCREASING` feature, here even against training labels that
    reward less of one (the second half of the rule), which an unconstrained fit would follow."""
    assert INCREASING <= set(FEATURES)
    x, y = _interaction_table(3)
    pix = FEATURES.index("pixel_agreement")
    y = y | (x[:, pix] < 0.1)
    free = fit_copy_head_trees(x, y, params=TreeParams(depth=2, min_leaf=10, rounds=60))
    head = fit_copy_head_trees(x, y, params=TreeParams(depth=2, min_leaf=10, rounds=60, monotone=True))
    assert free.info["monotone_increasing"] == []
    assert head.info["monotone_increasing"] == [f for f in FEATURES if f in INCREASING]
    rng = np.random.default_rng(4)
    rows = rng.uniform(0, 1, size=(200, len(FEATURES)))
    for name in INCREASING:
        col = FEATURES.index(name)
        low, high = rows.copy(), rows.copy()
        low[:, col], high[:, col] = 0.0, 1.0
        assert np.all(head.probability(high) >= head.probability(low) - 1e-12), name
    low, high = rows.copy(), rows.copy()
    low[:, pix], high[:, pix] = 0.0, 1.0
    assert np.any(free.probability(high) < free.probability(low))  # what the constraint prevents
