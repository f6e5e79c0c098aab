"""Query-bias similarity normalization (architecture step 8; seeds-digest §3.10 item 2, §7.1 item 3).

``bias(q) = weight × mean(top-k similarities of q against a fixed background set)`` and
``normalized = score − bias(q)``. The background set is a fixed corpus of videos unrelated to the
indexed ones. If the background yields fewer than ``k`` similarities, the mean is over all of them;
an empty background is an error (a silent bias of 0 would shift every threshold).

Scores follow one convention throughout (seeds-digest §7.1 item 7): the similarity network's
output in [-1, 1]; thresholds fitted on normalized scores are meaningless for raw ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

__all__ = ["NormalizationParams", "SimilarityNormalizer", "BackgroundSource", "query_bias", "normalize"]

BackgroundSource = Union[Sequence[float], np.ndarray, Callable[[int], Any]]
"""Either the query's similarities to background videos, or ``search(k) -> top-k similarities``
(e.g. a Milvus search of the query's coarse vector in the background collection)."""


def _as_similarities(background: BackgroundSource, k: int) -> np.ndarray:
    values = background(k) if callable(background) else background
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError("the background set returned no similarity; cannot compute the query bias")
    if not np.all(np.isfinite(arr)):
        raise ValueError("non-finite background similarity")
    return arr


def query_bias(background: BackgroundSource, k: int, weight: float = 1.0) -> float:
    """``weight × mean`` of the ``k`` largest background similarities of the query."""
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if not math.isfinite(weight):
        raise ValueError(f"non-finite weight {weight!r}")
    sims = _as_similarities(background, k)
    top = np.sort(sims)[::-1][:k]
    return float(weight * top.mean())


def normalize(score: float, bias: float) -> float:
    if not (math.isfinite(score) and math.isfinite(bias)):
        raise ValueError(f"non-finite score {score!r} or bias {bias!r}")
    return float(score - bias)


@dataclass(frozen=True)
class NormalizationParams:
    """The pair stored in the bundle's calibration (``k``, ``weight``)."""

    k: int
    weight: float

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be ≥ 1, got {self.k}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"weight must be finite and ≥ 0, got {self.weight}")

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "weight": self.weight}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NormalizationParams":
        return cls(k=int(data["k"]), weight=float(data["weight"]))


class SimilarityNormalizer:
    """Holds ``k`` and ``weight``; computes a query's bias once and applies it to its candidates."""

    def __init__(self, k: int, weight: float = 1.0) -> None:
        self.params = NormalizationParams(k, weight)

    @classmethod
    def from_params(cls, params: NormalizationParams) -> "SimilarityNormalizer":
        return cls(params.k, params.weight)

    @property
    def k(self) -> int:
        return self.params.k

    @property
    def weight(self) -> float:
        return self.params.weight

    def bias(self, background: BackgroundSource) -> float:
        return query_bias(background, self.k, self.weight)

    def normalize(self, scores: float | Sequence[float] | np.ndarray, background: BackgroundSource) -> Any:
        """Normalize one score (returns float) or an array of one query's scores (returns array)."""
        b = self.bias(background)
        if np.isscalar(scores):
            return normalize(float(scores), b)  # type: ignore[arg-type]
        arr = np.asarray(scores, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError("non-finite score")
        return arr - b

    def __repr__(self) -> str:
        return f"SimilarityNormalizer(k={self.k}, weight={self.weight})"
