"""Ground-truth and score CSV files (thin I/O around :mod:`evaluation.metrics` records).

Ground truth (``pairs.csv``), UTF-8 with a header row::

    query,reference,level[,query_start,query_end,reference_start,reference_end][,kind]

- ``level`` is ``copy`` or ``incident``. Pairs that are not listed are *unrelated*.
- The four segment columns (seconds) are optional as columns and, per row, all filled or all
  empty. A pair may appear on several rows only when every one of its rows carries a segment
  (one row per matched segment), and all its rows must name the same level.
- ``kind`` (optional column, empty = none): the edit kind the pair is reported under (letterbox,
  vertical_reframe, picture_in_picture, ...; :data:`evaluation.transforms.KINDS` for generated
  benchmarks; any short name for your own). Several kinds are joined with ``+``
  (``letterbox+speed_change``): ``dupwatch eval`` reports the pair under each of them, and views
  that need one kind per pair take the first. ``dupwatch eval`` reports metrics per kind.
- Extra columns are ignored. Errors raise :class:`TruthFormatError` naming the file line.

Scores (``scores.csv``)::

    query,reference,score[,fine_score,normalized_score]

one row per scored pair (duplicates are an error; empty optional cells mean "not given").
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from evaluation.metrics import Match, ScoredPair

KIND_SEPARATOR = "+"
"""Joins the kinds of a pair that has several (``letterbox+speed_change``); the first is its main kind."""

Level = Literal["copy", "incident"]
LEVELS: tuple[Level, ...] = ("copy", "incident")
SEGMENT_COLUMNS = ("query_start", "query_end", "reference_start", "reference_end")
TRUTH_COLUMNS = ("query", "reference", "level")
SCORE_COLUMNS = ("query", "reference", "score")

__all__ = [
    "TruthFormatError",
    "TruthRow",
    "GroundTruth",
    "ScoreRow",
    "read_truth_csv",
    "write_truth_csv",
    "read_scores_csv",
    "write_scores_csv",
]


class TruthFormatError(ValueError):
    """A ground-truth or scores file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class TruthRow:
    query: str
    reference: str
    level: Level
    query_start: float | None = None
    query_end: float | None = None
    reference_start: float | None = None
    reference_end: float | None = None
    kind: str | None = None
    """The edit kind the pair is reported under (``None``: not given)."""

    def __post_init__(self) -> None:
        if not self.query or not self.reference:
            raise ValueError("query and reference must be non-empty")
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        seg = (self.query_start, self.query_end, self.reference_start, self.reference_end)
        filled = [v is not None for v in seg]
        if any(filled) and not all(filled):
            raise ValueError("segment columns must be all filled or all empty")
        if all(filled):
            if not all(math.isfinite(v) and v >= 0 for v in seg):  # type: ignore[arg-type]
                raise ValueError(f"segment times must be finite and ≥ 0, got {seg}")
            if self.query_end < self.query_start or self.reference_end < self.reference_start:  # type: ignore[operator]
                raise ValueError(f"segment ends before it starts: {seg}")

    @property
    def pair(self) -> tuple[str, str]:
        return (self.query, self.reference)

    @property
    def has_segment(self) -> bool:
        return self.query_start is not None

    def to_match(self) -> Match | None:
        if not self.has_segment:
            return None
        return Match(self.query, self.reference, self.query_start, self.query_end, self.reference_start, self.reference_end)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GroundTruth:
    rows: tuple[TruthRow, ...]

    def __post_init__(self) -> None:
        levels: dict[tuple[str, str], str] = {}
        plain: set[tuple[str, str]] = set()
        counts: dict[tuple[str, str], int] = {}
        for row in self.rows:
            prev = levels.setdefault(row.pair, row.level)
            if prev != row.level:
                raise ValueError(f"pair {row.pair!r} is listed as both {prev!r} and {row.level!r}")
            counts[row.pair] = counts.get(row.pair, 0) + 1
            if not row.has_segment:
                plain.add(row.pair)
        for pair in plain:
            if counts[pair] > 1:
                raise ValueError(f"pair {pair!r} is listed more than once without segments")
        object.__setattr__(self, "_levels", levels)

    def level_of(self, query: str, reference: str) -> Literal["copy", "incident", "unrelated"]:
        return self._levels.get((query, reference), "unrelated")  # type: ignore[attr-defined, no-any-return]

    def pairs(self, level: Level | None = None) -> set[tuple[str, str]]:
        """Positive pairs (of one level, or of both)."""
        return {p for p, lv in self._levels.items() if level is None or lv == level}  # type: ignore[attr-defined]

    def segments(self, level: Level | None = None) -> list[Match]:
        return [m for r in self.rows if (level is None or r.level == level) and (m := r.to_match()) is not None]

    @property
    def queries(self) -> set[str]:
        return {q for q, _ in self._levels}  # type: ignore[attr-defined]

    def kinds(self, level: Level | None = None) -> dict[tuple[str, str], str]:
        """Pair → its main ``kind``, the first of a ``+``-joined cell (pairs without one left out; a
        pair's first row with a kind wins)."""
        return {pair: kinds[0] for pair, kinds in self.kind_sets(level).items()}

    def kind_sets(self, level: Level | None = None) -> dict[tuple[str, str], tuple[str, ...]]:
        """Pair → every kind of its ``kind`` cell (``letterbox+speed_change`` → both), main kind first."""
        out: dict[tuple[str, str], tuple[str, ...]] = {}
        for r in self.rows:
            if r.kind and (level is None or r.level == level):
                kinds = tuple(k.strip() for k in r.kind.split(KIND_SEPARATOR) if k.strip())
                if kinds:
                    out.setdefault(r.pair, kinds)
        return out


@dataclass(frozen=True)
class ScoreRow:
    query: str
    reference: str
    score: float
    fine_score: float | None = None
    normalized_score: float | None = None
    copy_score: float | None = None
    """The copy head's P(copy) (:mod:`detect.copy_head`), when the bundle has one."""

    def __post_init__(self) -> None:
        for name in ("score", "fine_score", "normalized_score", "copy_score"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"non-finite {name} {v!r}")

    @property
    def pair(self) -> tuple[str, str]:
        return (self.query, self.reference)

    def scored_pair(self, field: str = "score") -> ScoredPair:
        value = getattr(self, field)
        if value is None:
            raise ValueError(f"pair {self.pair!r} has no {field}")
        return ScoredPair(self.query, self.reference, value)


def _open_rows(source: str | Path | IO[str], required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str], str]]:
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "<stream>")
    if isinstance(source, (str, Path)):
        try:
            text = Path(source).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise TruthFormatError(f"cannot read {name}: {exc.strerror or exc}") from exc
        handle: IO[str] = io.StringIO(text)
    else:
        handle = source
    reader = csv.DictReader(handle)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    if missing:
        raise TruthFormatError(f"{name}: missing column(s) {', '.join(missing)} (header: {','.join(header) or '<empty>'})")
    reader.fieldnames = header
    for row in reader:
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}, name


def _float(value: str, column: str) -> float | None:
    if value == "":
        return None
    try:
        out = float(value)
    except ValueError:
        raise ValueError(f"{column} is not a number: {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{column} is not finite: {value!r}")
    return out


def read_truth_csv(source: str | Path | IO[str]) -> GroundTruth:
    rows: list[TruthRow] = []
    name = "<stream>"
    for line, rec, name in _open_rows(source, TRUTH_COLUMNS):
        try:
            seg = {c: _float(rec.get(c, ""), c) for c in SEGMENT_COLUMNS}
            level = rec["level"].lower()
            if level not in LEVELS:
                raise ValueError(f"level must be copy or incident (unlisted pairs are unrelated), got {rec['level']!r}")
            rows.append(TruthRow(rec["query"], rec["reference"], level, **seg, kind=rec.get("kind") or None))  # type: ignore[arg-type]
        except ValueError as exc:
            raise TruthFormatError(f"{name}, line {line}: {exc}") from None
    try:
        return GroundTruth(tuple(rows))
    except ValueError as exc:
        raise TruthFormatError(f"{name}: {exc}") from None


def write_truth_csv(truth: GroundTruth | Iterable[TruthRow], target: str | Path | IO[str]) -> None:
    rows = truth.rows if isinstance(truth, GroundTruth) else tuple(truth)
    with_segments = any(r.has_segment for r in rows)
    with_kind = any(r.kind for r in rows)
    columns = list(TRUTH_COLUMNS) + (list(SEGMENT_COLUMNS) if with_segments else []) + (["kind"] if with_kind else [])

    def fmt(v: float | None) -> str:
        return "" if v is None else repr(float(v))

    def write(handle: IO[str]) -> None:
        w = csv.writer(handle, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            out = [r.query, r.reference, r.level]
            if with_segments:
                out += [fmt(r.query_start), fmt(r.query_end), fmt(r.reference_start), fmt(r.reference_end)]
            if with_kind:
                out.append(r.kind or "")
            w.writerow(out)

    if isinstance(target, (str, Path)):
        with open(target, "w", encoding="utf-8", newline="") as handle:
            write(handle)
    else:
        write(target)


def read_scores_csv(source: str | Path | IO[str]) -> list[ScoreRow]:
    out: list[ScoreRow] = []
    seen: set[tuple[str, str]] = set()
    for line, rec, name in _open_rows(source, SCORE_COLUMNS):
        try:
            if not rec["query"] or not rec["reference"]:
                raise ValueError("query and reference must be non-empty")
            score = _float(rec["score"], "score")
            if score is None:
                raise ValueError("score is empty")
            row = ScoreRow(
                rec["query"],
                rec["reference"],
                score,
                _float(rec.get("fine_score", ""), "fine_score"),
                _float(rec.get("normalized_score", ""), "normalized_score"),
                _float(rec.get("copy_score", ""), "copy_score"),
            )
            if row.pair in seen:
                raise ValueError(f"duplicate pair {row.pair!r}")
            seen.add(row.pair)
            out.append(row)
        except ValueError as exc:
            raise TruthFormatError(f"{name}, line {line}: {exc}") from None
    return out


def write_scores_csv(rows: Iterable[ScoreRow], target: str | Path | IO[str]) -> None:
    rows = list(rows)

    def write(handle: IO[str]) -> None:
        w = csv.writer(handle, lineterminator="\n")
        w.writerow(["query", "reference", "score", "fine_score", "normalized_score", "copy_score"])
        for r in rows:
            w.writerow([r.query, r.reference, repr(r.score)]
                       + ["" if v is None else repr(v) for v in (r.fine_score, r.normalized_score, r.copy_score)])

    if isinstance(target, (str, Path)):
        with open(target, "w", encoding="utf-8", newline="") as handle:
            write(handle)
    else:
        write(target)
