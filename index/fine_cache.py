"""A bounded in-process cache of indexed videos' fine tensors (``[T, R, D]`` region vectors).

Re-scoring reads the fine tensors of an upload's candidates from Milvus (``VideoIndex.fetch_fine``):
on Milvus Lite about 0.14 s per upload of ~20 candidates, most of it gRPC transfer and row
decoding, and the same popular references come back upload after upload. The cache keeps the
tensors this process wrote or read, keyed by the coarse row that made them current (video id,
event id, bundle version, ``indexed_at_ms``, frame count): a re-index, from this worker or another, writes a new
coarse row and so a new key, and a deleted video is no longer a candidate, so a stale tensor is
never served. Entries are read-only arrays; the least recently used go first once
``max_bytes`` is reached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

CacheKey = tuple[str, str, str, int, int]


def cache_key(video_id: str, row: Mapping[str, Any]) -> CacheKey | None:
    """The key of ``video_id``'s fine tensor as its coarse row ``row`` (``VideoIndex.video_info``)
    describes it; ``None`` when the row lacks what identifies a write."""
    try:
        stamp, frames = int(row["indexed_at_ms"]), int(row["num_frames"])
    except (KeyError, TypeError, ValueError):
        return None
    if frames <= 0:
        return None
    return (video_id, str(row.get("event_id", "")), str(row.get("bundle_version", "")), stamp, frames)


class FineFeatureCache:
    """LRU of fine tensors bounded by their bytes (``max_bytes`` 0: nothing is kept)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._entries: OrderedDict[CacheKey, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey | None) -> np.ndarray | None:
        if key is None or self.max_bytes == 0:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: CacheKey | None, tensor: np.ndarray) -> np.ndarray:
        """Keeps a read-only float32 copy of ``tensor`` and returns it (one larger than the whole
        cache is not kept: ``tensor`` itself is returned)."""
        if key is None or tensor.nbytes > self.max_bytes:
            return tensor
        kept = np.array(tensor, dtype=np.float32, copy=True)
        kept.setflags(write=False)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[key] = kept
            self._bytes += kept.nbytes
            while self._bytes > self.max_bytes and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes
        return kept

    def discard(self, video_id: str) -> None:
        """Forgets every tensor of ``video_id`` (deleted from the index)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == video_id]:
                self._bytes -= self._entries.pop(key).nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
