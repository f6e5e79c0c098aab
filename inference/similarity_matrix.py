"""The ``[Tq, Tr]`` frame similarity as the alignment and the copy head read it: checked without a
copy, and read in float64 one row block or one gather at a time.

Why: the fine network gives float32, and two videos at the decoder's frame cap (4 h at 1 fps) make a
207 M-cell matrix, 791 MiB. The readers' arithmetic is float64 (sums, means, medians and
comparisons with float thresholds); a float64 copy of the whole matrix would double it, and each
reader used to make its own. Every reader here casts only what it touches, a block of rows
(:func:`row_blocks`) or the cells it gathers (:func:`cells`). A float32 value is exact in float64,
and a row's reductions do not depend on other rows, so the results are the same, bit for bit, as on
a float64 copy of the matrix.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["BLOCK_CELLS", "cells", "checked", "row_blocks"]

BLOCK_CELLS = 1 << 20
"""Cells one block of rows (or columns) holds: 8 MiB in float64."""


def checked(sim: Any) -> np.ndarray:
    """``sim`` as a finite ``[Tq, Tr]`` array with ``Tq, Tr ≥ 1``: float32 and float64 as they are
    (no copy), any other dtype as float64. ``ValueError`` otherwise."""
    arr = np.asarray(sim)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"similarity matrix must be [Tq, Tr] with Tq, Tr >= 1, got {arr.shape}")
    for _, block in row_blocks(arr, cast=False):
        if not np.isfinite(block).all():
            raise ValueError("similarity matrix holds non-finite values")
    return arr


def row_blocks(sim: np.ndarray, *, cast: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows) of ``sim`` in blocks of at most :data:`BLOCK_CELLS` cells (at least one
    row), as float64 copies (``cast=False``: views)."""
    step = max(1, BLOCK_CELLS // max(1, sim.shape[1]))
    for a in range(0, sim.shape[0], step):
        block = sim[a:a + step]
        yield a, (block.astype(np.float64) if cast else block)


def cells(sim: np.ndarray, *index: Any) -> Any:
    """``sim[index]`` in float64 (an array for fancy or sliced indices, a float64 scalar for one cell)."""
    got = sim[index]
    return got.astype(np.float64) if isinstance(got, np.ndarray) else np.float64(got)
