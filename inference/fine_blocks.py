"""Fine comparison of long videos in tiles of bounded size, with the same result as the whole.

Why: the fine network compares every query frame's regions with every reference frame's
(``[Tq, R, R, Tt]`` products), then runs its similarity head, a small CNN, over the ``[Tq, Tt]``
frame similarity; both grow with the product of the two lengths. Two 4-hour videos at 1 fps would
ask for about 67 GB in one run, and a TensorRT profile stops at 1,024 frames a side.

How: the query and the reference are cut into tiles of :data:`TILE_FRAMES` frames, each read with
:data:`MARGIN` frames of context on either side, and every (query tile, reference tile) pair is one
run of the fine graph. The head pools by 2 twice (:data:`STRIDE`) and its three 3×3 convolutions
see zero padding where a tile is cut, which reaches at most two output cells (eight frames) into
the tile; tiles start at multiples of :data:`STRIDE` and drop their margins' cells, so every kept
cell is computed from the same frames, in the same pooling pairs, as in the whole comparison. The
similarity is the mean over query cells of the maximum over reference cells (S²VS's chamfer), so
only a running maximum per query cell is kept across reference tiles, and the frame similarity,
which has no neighbourhood, is copied from each tile's kept frames. Memory per run is bounded by
the tile (``(TILE_FRAMES + 2 · MARGIN)²`` cells); the returned frame similarity is ``Tq × Tt``
float32 (829 MB for two 4-hour videos at the decoder's default cap of 14,400 frames).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["CELL_BUDGET", "MARGIN", "MAX_RUN_FRAMES", "STRIDE", "TILE_FRAMES", "Tile", "blockwise_pair", "needs_tiles", "tiles"]

STRIDE = 4
"""The similarity head's total downsampling in time (two 2×2 max-pools)."""
MARGIN = 8
"""Frames of context read on each cut side of a tile (two head output cells), a multiple of STRIDE."""
TILE_FRAMES = 512
"""Frames a tile keeps per side (a multiple of STRIDE); a run reads at most 528 × 528 frame pairs."""
CELL_BUDGET = 1 << 19
"""Frame pairs (``B · Tq · Tt``) one fine-graph run may hold; longer pairs go tile by tile and
batches of short pairs are split to stay below it (about 170 MB of region products at R = 9)."""

MAX_RUN_FRAMES = 1024
"""Longest video side one run may take: the fine graphs' TensorRT profile ends there (``bounds``
in :mod:`inference.graphs`)."""

PairRun = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]
"""One fine-graph run on a single pair ``[1, Tq, R, D]``, ``[1, Tt, R, D]`` → its named outputs."""


@dataclass(frozen=True)
class Tile:
    """Frames ``[start, stop)`` read for a tile; frames ``[keep_start, keep_stop)`` and head cells
    ``[cell_start, cell_stop)`` are the ones it contributes."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int

    @property
    def cell_start(self) -> int:
        return self.keep_start // STRIDE

    def cell_stop(self, length: int) -> int:
        return length // STRIDE if self.keep_stop == length else self.keep_stop // STRIDE

    def spans(self, length: int) -> tuple[slice, slice, slice, slice]:
        """(kept frames, the same within the tile, kept head cells, the same within the tile's head
        output) of a tile of a ``length``-frame video."""
        first, last = self.cell_start, self.cell_stop(length)
        cells0 = self.start // STRIDE
        return (slice(self.keep_start, self.keep_stop), slice(self.keep_start - self.start, self.keep_stop - self.start),
                slice(first, last), slice(first - cells0, last - cells0))


def needs_tiles(query_frames: int, target_frames: int) -> bool:
    """Whether one pair must be compared tile by tile (over the cell budget or a graph's length)."""
    return query_frames * target_frames > CELL_BUDGET or max(query_frames, target_frames) > MAX_RUN_FRAMES


def tiles(length: int, tile_frames: int = TILE_FRAMES) -> Iterator[Tile]:
    """The tiles of a ``length``-frame video: kept spans ``[k·tile, (k+1)·tile)``, read with margins."""
    if tile_frames <= 0 or tile_frames % STRIDE:
        raise ValueError(f"tile_frames must be a positive multiple of {STRIDE}, got {tile_frames}")
    for keep_start in range(0, length, tile_frames):
        keep_stop = min(length, keep_start + tile_frames)
        yield Tile(max(0, keep_start - MARGIN), min(length, keep_stop + MARGIN), keep_start, keep_stop)


def blockwise_pair(run: PairRun, query: np.ndarray, target: np.ndarray,
                   tile_frames: int = TILE_FRAMES) -> tuple[float, np.ndarray]:
    """Similarity and frame similarity ``[Tq, Tt]`` of one indexed pair (``[T, R, D]`` each, already
    tiled to the network's ``min_frames``), computed tile by tile with ``run``."""
    tq, tt = len(query), len(target)
    f2f = np.empty((tq, tt), np.float32)
    best = np.full(tq // STRIDE, -np.inf, np.float32)
    target_tiles = [(rt, rt.spans(tt)) for rt in tiles(tt, tile_frames)]
    for qt in tiles(tq, tile_frames):
        q = query[None, qt.start:qt.stop]
        q_frames, q_local, q_cells, q_cells_local = qt.spans(tq)
        for rt, (r_frames, r_local, _, r_cells_local) in target_tiles:
            res = run(q, target[None, rt.start:rt.stop])
            if "similarity_map" not in res:
                raise KeyError("the fine graph has no similarity_map output (exported before long videos were "
                               "compared in tiles); re-export the bundle with `dupwatch export`")
            f2f[q_frames, r_frames] = res["frame_similarity"][0][q_local, r_local]
            kept = res["similarity_map"][0][q_cells_local, r_cells_local]
            if kept.size:
                np.maximum(best[q_cells], kept.max(axis=1), out=best[q_cells])
    return float(best.mean(dtype=np.float64)), f2f
