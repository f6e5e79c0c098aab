"""vPDQ as ThreatExchange defines it (query ≥ 80 %, compared ≥ 0 %, ranked by the query match share)
and the tie-broken variant under its own name."""

from __future__ import annotations

import numpy as np

from scoring.vpdq import VpdqHash, compare, match
from scoring.methods import METHOD_NAMES, VpdqMethod


def _hash(rows: list[int], flips: int = 0) -> VpdqHash:
    """Packed hashes: row k is the bit pattern of seed k with ``flips`` bits flipped."""
    out = []
    for k in rows:
        bits = np.random.default_rng(k).integers(0, 2, 256).astype(np.uint8)
        bits[:flips] ^= 1
        out.append(np.packbits(bits))
    return VpdqHash(np.stack(out), np.arange(len(rows), dtype=np.float32))


def test_both_percentages_and_the_rule() -> None:
    query = _hash([1, 2, 3, 4, 5])
    reference = _hash([1, 2, 3, 4, 10, 11, 12, 13, 14, 15], flips=10)  # 4 of 5 query frames there, 4 of 10 reference frames
    m = compare(query, reference)
    assert m.query_match_percent == 80.0 and m.compared_match_percent == 40.0
    assert m.is_match and m.score == 0.8  # ≥ 80 % of the query; any compared share passes (threshold 0 %)
    assert m.tiebroken_score > m.score
    q_pct, tiebroken, is_match = match(query, reference)
    assert (q_pct, tiebroken, is_match) == (80.0, m.tiebroken_score, True)
    assert not compare(_hash([1, 2, 3, 20, 21]), reference).is_match  # 60 %


def test_ties_are_kept_by_vpdq_and_ordered_by_the_variant() -> None:
    query = _hash([1])
    near, far = _hash([2], flips=0), _hash([3])  # no frame within 31 bits of the query: both 0 %
    plain, tb = VpdqMethod(), VpdqMethod(tiebreak=True)
    for method in (plain, tb):
        method._hashes = {"q": query, "a": near, "b": far}
    assert plain.name == "vpdq" and tb.name == "vpdq_tiebreak" and "vpdq_tiebreak" in METHOD_NAMES
    assert plain.score("q", "a").score == plain.score("q", "b").score == 0.0
    assert tb.score("q", "a").score != tb.score("q", "b").score
    assert "ThreatExchange" in plain.describe()["rule"] and "tie-breaker" in tb.describe()["score"]
