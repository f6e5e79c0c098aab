"""vPDQ-style matching (Meta ThreatExchange): PDQ per frame at 1 fps, bag-of-frames matching.

The thresholds are ThreatExchange's published defaults: a frame hash with quality < 50 is
dropped, two frame hashes match at Hamming distance ≤ 31, and a video matches when ≥ 80 % of the
query's (unique, good-quality) frames match some frame of the reference. Frame order and
timestamps are not used for the decision, as in vPDQ; the score used for ranking is the query
match percentage (a tie-breaker adds the mean similarity of the best matches).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.video_io import read_clip

QUALITY_THRESHOLD = 50
DISTANCE_THRESHOLD = 31
QUERY_MATCH_PERCENT = 80.0


@dataclass(frozen=True)
class VpdqHash:
    """Packed 256-bit PDQ hashes ``[N, 32]`` uint8 of a video's good-quality frames, with their timestamps."""

    bits: np.ndarray
    timestamps: np.ndarray


def hash_video(path: Path | str, *, fps: float = 1.0, max_side: int = 512) -> VpdqHash:
    import pdqhash

    clip = read_clip(path, fps=fps, max_side=max_side)
    hashes, times = [], []
    for index, frame in enumerate(clip.frames):
        vector, quality = pdqhash.compute(np.ascontiguousarray(frame))
        if quality < QUALITY_THRESHOLD:
            continue
        hashes.append(np.packbits(vector.astype(np.uint8)))
        times.append(index / clip.fps)
    bits = np.stack(hashes) if hashes else np.zeros((0, 32), np.uint8)
    # vPDQ matches unique hashes only
    if len(bits):
        _, keep = np.unique(bits, axis=0, return_index=True)
        keep.sort()
        bits, times = bits[keep], [times[i] for i in keep]
    return VpdqHash(bits, np.asarray(times, np.float32))


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[Na, Nb]`` Hamming distances between packed 256-bit hashes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.int32)
    xor = np.bitwise_xor(a[:, None, :], b[None, :, :])
    return _POPCOUNT[xor].sum(axis=2, dtype=np.int32)


def match(query: VpdqHash, reference: VpdqHash) -> tuple[float, float, bool]:
    """``(query_match_percent, score, is_match)`` for one pair."""
    if len(query.bits) == 0 or len(reference.bits) == 0:
        return 0.0, 0.0, False
    dist = hamming_matrix(query.bits, reference.bits)
    best = dist.min(axis=1)
    q_pct = 100.0 * float((best <= DISTANCE_THRESHOLD).mean())
    closeness = float(1.0 - best.mean() / 256.0)
    return q_pct, q_pct / 100.0 + 1e-3 * closeness, q_pct >= QUERY_MATCH_PERCENT
