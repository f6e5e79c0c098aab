"""Decoded bytes held between the decode and embed steps, shared by both."""

from __future__ import annotations

import threading


class DecodedBytes:
    """Bytes of decoded frames not embedded yet, against ``limit`` (``limits.batch_decoded_bytes``).

    The decode step starts no new upload while the budget is full; the embed step flushes its
    batch when it is. Bound by construction: ``limit`` plus one chunk per upload in flight in the
    decode step (each decoding or decoded upload was admitted below the limit and holds at most one
    chunk; one longer than a chunk never counts: it is embedded chunk by chunk as it decodes).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._peak = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self._held += n
            self._peak = max(self._peak, self._held)

    def release(self, n: int) -> None:
        with self._lock:
            self._held = max(0, self._held - n)

    @property
    def held(self) -> int:
        return self._held

    @property
    def peak(self) -> int:
        return self._peak

    def full(self) -> bool:
        return self._held >= self.limit
