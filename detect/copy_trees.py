"""Boosted regression trees for the copy head, evaluated with numpy from plain JSON.

The copy head's features interact: a high fine score means a copy on lively footage and little on a
static camera, where another moment matches frame by frame too, unless the temporal and pixel
evidence agree. A sum of shallow trees learns such interactions where the logistic head cannot; it
is fitted by scikit-learn at training time (``training.copy_head.fit_copy_head_trees``) and stored
as node arrays, so the worker needs neither scikit-learn nor pickle to score a pair.

A tree's nodes are stored in one flat list with the other trees' (``roots`` says where each tree
starts). An inner node sends a row left when ``x[feature] <= threshold``; a leaf (``left == -1``)
adds its ``value`` to the row's logit. Children always come after their parent, so every walk ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

MAX_NODES = 1_000_000
"""A file with more nodes is refused (a copy head has a few thousand)."""


class TreeEnsembleError(ValueError):
    """Node arrays that do not describe a valid ensemble."""


@dataclass(frozen=True)
class TreeEnsemble:
    """Trees over ``n_features`` inputs; :meth:`raw` sums the leaf values each row reaches."""

    n_features: int
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.feature)
        if not 0 < n <= MAX_NODES:
            raise TreeEnsembleError(f"a tree ensemble needs 1..{MAX_NODES} nodes, got {n}")
        for name in ("threshold", "left", "right", "value"):
            if getattr(self, name).shape != (n,):
                raise TreeEnsembleError(f"tree {name} must have one entry per node ({n})")
        if self.roots.ndim != 1 or not len(self.roots) or np.any((self.roots < 0) | (self.roots >= n)):
            raise TreeEnsembleError("tree roots must be node indices")
        leaf = self.left < 0
        if np.any(leaf != (self.right < 0)):
            raise TreeEnsembleError("a node has either two children or none")
        own = np.arange(n)
        inner = ~leaf
        if np.any((self.left[inner] <= own[inner]) | (self.right[inner] <= own[inner])
                  | (self.left[inner] >= n) | (self.right[inner] >= n)):
            raise TreeEnsembleError("children must come after their parent, within the node list")
        if np.any((self.feature[inner] < 0) | (self.feature[inner] >= self.n_features)):
            raise TreeEnsembleError(f"tree features must index the head's {self.n_features} features")
        if not (np.all(np.isfinite(self.threshold[inner])) and np.all(np.isfinite(self.value[leaf]))):
            raise TreeEnsembleError("tree thresholds and leaf values must be finite")

    @cached_property
    def depth(self) -> int:
        """The longest root-to-leaf walk (the number of steps :meth:`raw` takes)."""
        depth = np.zeros(len(self.feature), np.int64)
        for i in np.flatnonzero(self.left >= 0):  # parents come first, so one pass in order suffices
            depth[self.left[i]] = depth[self.right[i]] = depth[i] + 1
        return int(depth.max())

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Sum over the trees of the leaf each row of ``x`` ([N, n_features], no ``nan``) reaches."""
        x = np.atleast_2d(np.asarray(x, np.float64))
        if x.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {x.shape[1]}")
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        rows = np.arange(len(x))[:, None]
        for _ in range(self.depth):
            inner = self.left[node] >= 0
            if not inner.any():
                break
            go_left = x[rows, np.where(inner, self.feature[node], 0)] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.value[node].sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "roots": self.roots.tolist(), "feature": self.feature.tolist(),
                "threshold": self.threshold.tolist(), "left": self.left.tolist(), "right": self.right.tolist(),
                "value": self.value.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TreeEnsemble":
        try:
            return cls(int(d["n_features"]), np.asarray(d["roots"], np.int64), np.asarray(d["feature"], np.int64),
                       np.asarray(d["threshold"], np.float64), np.asarray(d["left"], np.int64),
                       np.asarray(d["right"], np.int64), np.asarray(d["value"], np.float64))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TreeEnsembleError):
                raise
            raise TreeEnsembleError(f"malformed tree ensemble: {exc}") from exc
