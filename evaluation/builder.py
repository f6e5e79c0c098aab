"""Generate a copy-detection benchmark with ground truth from real source media.

Every generated video remembers where it came from (:class:`Derivation`: source, the source
window it shows, speed, offset, camera). Labels follow from that alone (see :func:`label_pair`):

- same source, same camera, source windows overlapping by ≥ ``min_overlap`` seconds → ``copy``,
  with the overlapping segment's times in both videos (so copies of copies, and two edits of
  the same moment, are copies of each other);
- same source otherwise (another moment of the same footage, or of another camera where the
  derivations name one) → ``incident``;
- different sources → unrelated (not listed in the truth CSV).

The output folder holds ``videos/*.mp4``, ``truth.csv`` (the eval harness's format) and
``benchmark.json`` (seed, sources, derivations, transformations and the implementation that
made each edit: ``dupwatch`` or ``augly-<version>``). Deterministic from the seed (and, for the
``text`` and ``emoji`` edits, from whether AugLy is installed: ``use_augly=False`` pins ours).

Sources are the registry media of :mod:`evaluation.sources` and, with ``video_dirs`` (``dupwatch bench
build --videos DIR``), every video under user folders (recursively, :data:`VIDEO_EXTENSIONS`, in
sorted relative-path order, named ``user_<relative path>`` sanitized; ``user1_``, ``user2_``… with several folders); byte-identical files
are used once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evaluation import transforms as T
from evaluation.sources import SourceVideo, folder_videos, ken_burns, real_photos, real_videos
from evaluation.truth import TruthRow, write_truth_csv
from evaluation.video_io import Clip, read_clip, write_clip



@dataclass(frozen=True)
class Derivation:
    """How a benchmark video was made from a source."""

    video: str
    source: str
    window: tuple[float, float]
    """The source seconds it shows."""
    speed: float = 1.0
    offset: float = 0.0
    camera: int = 0
    edits: tuple[str, ...] = ()
    is_query: bool = True
    implementations: tuple[str, ...] = ()
    """Per entry of ``edits``: the code that made it (``dupwatch``, ``augly-1.0.0``)."""
    filler: str = ""
    """The filler content an insertion or picture in picture used (:class:`FillerPool`), else empty."""

    def to_video_time(self, source_t: float) -> float:
        return self.offset + (source_t - self.window[0]) / self.speed


def label_pair(a: Derivation, b: Derivation, min_overlap: float = 1.0) -> TruthRow | None:
    """Ground truth for the pair (a as query, b as reference), or ``None`` when unrelated."""
    if a.source != b.source:
        return None
    start, end = max(a.window[0], b.window[0]), min(a.window[1], b.window[1])
    if a.camera == b.camera and end - start >= min_overlap:
        return TruthRow(
            a.video,
            b.video,
            "copy",
            round(a.to_video_time(start), 3),
            round(a.to_video_time(end), 3),
            round(b.to_video_time(start), 3),
            round(b.to_video_time(end), 3),
            kind=T.pair_kind(a.edits, relative_speed=a.speed / b.speed),
        )
    return TruthRow(a.video, b.video, "incident", kind="another_camera" if a.camera != b.camera else "another_moment")


def read_derivations(bench_dir: Path) -> list[Derivation]:
    """The derivations recorded in a benchmark folder's ``benchmark.json``. A sheared corner crop
    (edit ``viewpoint``) is the same camera's frames whatever camera its record names: benchmarks
    built before it counted as a copy recorded it as a second camera."""
    meta = json.loads((Path(bench_dir) / "benchmark.json").read_text())
    return [Derivation(**{**d, "window": tuple(d["window"]), "edits": tuple(d["edits"]),
                          "implementations": tuple(d.get("implementations", ())),
                          **({"camera": 0} if "viewpoint" in d["edits"] else {})}) for d in meta["derivations"]]


def relabel_benchmark(bench_dir: Path) -> list[TruthRow]:
    """Rewrite ``truth.csv`` from ``benchmark.json`` (the labels follow from the derivations alone, so
    a benchmark built before a labelling change gets today's labels without re-rendering a video)."""
    root = Path(bench_dir)
    spec = json.loads((root / "benchmark.json").read_text()).get("spec", {})
    rows = truth_rows(read_derivations(root), float(spec.get("min_overlap", 1.0)))
    text = io.StringIO()
    write_truth_csv(rows, text)
    path = root / "truth.csv"
    if not path.is_file() or path.read_text(encoding="utf-8") != text.getvalue():  # unchanged labels keep the file as it is
        path.write_text(text.getvalue(), encoding="utf-8")
    return rows


def truth_rows(derivations: list[Derivation], min_overlap: float = 1.0) -> list[TruthRow]:
    rows = []
    for a in derivations:
        if not a.is_query:
            continue
        for b in derivations:
            if a.video != b.video:
                row = label_pair(a, b, min_overlap)
                if row is not None:
                    rows.append(row)
    return rows


@dataclass
class BenchmarkSpec:
    seed: int = 0
    copies_per_source: int = 4
    footage_photos: int = 3
    """Photos turned into long Ken Burns "footage" (sources with incident cuts)."""
    footage_seconds: float = 24.0
    distractors: int = 4
    fps: float = 10.0
    max_side: int = 480
    min_overlap: float = 1.0
    include_real_videos: bool = True
    exclude_sources: tuple[str, ...] = ()
    """Source names to leave out (for example the ones a model was trained on)."""
    prefix: str = ""
    """Prepended to every video name, so that benchmarks built from the same sources with other
    seeds never share a (query, reference) name (calibration set vs holdout set)."""
    photo_pool: tuple[str, ...] = ()
    """When set, footage, distractor and filler photos are drawn from these photos only (for
    example the ones a model may be trained on, or the ones held out from training)."""
    video_dirs: tuple[str, ...] = ()
    """User folders of real videos added as sources (searched recursively)."""
    max_source_seconds: float = 60.0
    """Videos from ``video_dirs`` are read up to this many seconds (registry sources in full)."""
    extra_edits: tuple[str, ...] = ()
    """Names of :data:`evaluation.transforms.EXTRA_SPATIAL` edits added to the spatial pool (``emoji``)."""
    use_augly: bool = True
    """Use AugLy for the edits it covers when it is importable (recorded per edit either way)."""
    upload_edits: bool = False
    """Each copy gets one edit of :data:`evaluation.transforms.UPLOAD_EDITS` (bars with a resolution change,
    9:16 reframes, heavy combinations, grey/sepia, logo) instead of 1–2 of the classic spatial pool."""
    upload_spatial: tuple[str, ...] = ()
    """Names of :data:`evaluation.transforms.SPATIAL` edits that join the upload pool (``crop``, ``flip``):
    plain crops and mirrors are uploaded too, and a head fitted only on the upload edits never sees one."""
    footage_split: str = ""
    """Add the real-footage corpus videos of this split (``train``, ``calibrate``, ``check``;
    ``dupwatch train corpus fetch``) as sources, read up to ``max_source_seconds``."""
    moment_cuts: int = 2
    """Non-overlapping 4 s cuts per source ("another moment" of each other): two from sources of 12 s
    or more; with more, as many as fit one per 6 s of the source (a head learns static footage from
    the pairs they make)."""
    own_filler: bool = False
    """Every insertion and picture in picture gets filler content no other video shows (a Ken Burns
    clip over its own quarter of a photo, :class:`FillerPool`). With the shared pool (the default,
    which the seeded benchmarks of the README were built with), two videos that drew the same filler
    clip show the same frames, so their pair, labelled unrelated, is a partial copy."""


@dataclass
class Benchmark:
    root: Path
    derivations: list[Derivation] = field(default_factory=list)
    rows: list[TruthRow] = field(default_factory=list)

    @property
    def videos_dir(self) -> Path:
        return self.root / "videos"

    @property
    def truth_path(self) -> Path:
        return self.root / "truth.csv"


def _encode_options(rng: np.random.Generator) -> dict[str, object]:
    if rng.random() < 0.25:
        return {"codec": "mpeg4", "crf": None, "bitrate": int(rng.integers(300_000, 900_000))}
    return {"codec": "libx264", "crf": int(rng.integers(20, 34))}


def _random_window(length: float, rng: np.random.Generator, min_len: float = 3.0) -> tuple[float, float]:
    if length <= min_len + 0.5 or rng.random() < 0.3:
        return (0.0, length)
    span = float(rng.uniform(min_len, length))
    start = float(rng.uniform(0, length - span))
    return (round(start, 2), round(start + span, 2))


class FillerPool:
    """Content that insertions and pictures in picture put around or behind a copy.

    Shared (``own=False``): one 8 s Ken Burns clip per filler photo, made up front; every draw picks
    one of them, so several videos may show the same filler frames. Own (``own=True``): each photo is
    cut into four quarters, and each draw takes a quarter no earlier draw took and pans across it
    with a random generator of its own (``seed``, draw number), so no two videos share a filler
    pixel and the benchmark's own random stream only picks the quarter; once every quarter is taken
    the pool is empty and copies get no filler edit."""

    QUARTERS = 4
    SIZE = (320, 180)
    SECONDS = 8.0

    def __init__(self, photos: dict[str, np.ndarray], names: Sequence[str], fps: float, rng: np.random.Generator, *,
                 own: bool = False, seed: int = 0) -> None:
        self.photos, self.fps, self.own, self.seed = photos, fps, own, seed
        self.shared = [] if own else [(name, ken_burns(photos[name], self.SECONDS, fps, rng, size=self.SIZE)) for name in names]
        self.quarters = [(name, q) for name in names for q in range(self.QUARTERS)] if own else []
        self.drawn = 0

    def __bool__(self) -> bool:
        return bool(self.quarters if self.own else self.shared)

    def draw(self, rng: np.random.Generator) -> tuple[str, Clip]:
        """A filler clip and its name (``photo`` shared, ``photo#q<k>`` own)."""
        if not self.own:
            return self.shared[int(rng.integers(len(self.shared)))]
        name, q = self.quarters.pop(int(rng.integers(len(self.quarters))))
        self.drawn += 1
        clip = ken_burns(photo_quarter(self.photos[name], q), self.SECONDS, self.fps,
                         np.random.default_rng([self.seed, self.drawn]), size=self.SIZE)
        return f"{name}#q{q}", clip


def photo_quarter(photo: np.ndarray, q: int) -> np.ndarray:
    """Quarter ``q`` (0–3, row by row) of a photo: filler content no other quarter shares."""
    h, w = photo.shape[:2]
    y, x = divmod(q, 2)
    return photo[y * h // 2: (y + 1) * h // 2, x * w // 2: (x + 1) * w // 2]


def _derive(name: str, source: str, clip: Clip, window: tuple[float, float], filler: FillerPool | None, rng: np.random.Generator,
            extra_edits: tuple[str, ...] = (), upload_edits: bool = False,
            upload_spatial: tuple[str, ...] = ()) -> tuple[Clip, Derivation]:
    """Apply 1–2 spatial edits (one upload edit with ``upload_edits``) and maybe one temporal edit to ``clip.window(window)``."""
    part = clip.window(*window)
    edits: list[str] = []
    impls: list[str] = []
    if upload_edits:
        pool = {**T.UPLOAD_EDITS, **{k: T.SPATIAL[k] for k in upload_spatial}}
    else:
        pool = {**T.SPATIAL, **{k: T.EXTRA_SPATIAL[k] for k in extra_edits}}
    count = 1 if upload_edits else int(rng.integers(1, 3))
    for key in rng.choice(list(pool), size=count, replace=False):
        edit = pool[str(key)](part, rng)
        part, edits, impls = edit.clip, edits + [edit.name], impls + [T.implementation(edit)]
    speed, offset, used = 1.0, 0.0, ""
    temporal = rng.choice(["none", "speed", "insert", "pip"], p=[0.4, 0.2, 0.2, 0.2])
    if temporal == "speed":
        edit = T.speed(part, rng)
        part, speed = edit.clip, edit.speed
        edits.append(f"speed{edit.speed:g}")
    elif temporal == "insert" and filler:
        used, other = filler.draw(rng)  # type: ignore[union-attr]
        edit = T.insert_into(part, other, rng)
        part, offset = edit.clip, edit.offset
        edits.append("insert")
    elif temporal == "pip" and filler:
        used, other = filler.draw(rng)  # type: ignore[union-attr]
        edit = T.picture_in_picture(part, other, rng)
        part = edit.clip
        edits.append("pip")
    impls += [T.OWN_IMPL] * (len(edits) - len(impls))
    return part, Derivation(name, source, window, speed=speed, offset=offset, edits=tuple(edits), implementations=tuple(impls),
                            filler=used)


def _moment_windows(length: float, cuts: int, rng: np.random.Generator) -> list[tuple[str, tuple[float, float]]]:
    """``cuts`` non-overlapping 4 s windows of a source ``length`` seconds long, tagged cutA, cutB, ...:
    two (one in each half) from 12 s on; more only where each gets its own 6 s stretch."""
    if cuts <= 2:
        if cuts < 2 or length < 12.0:
            return []
        half = length / 2
        first = round(float(rng.uniform(0, half - 5.0)), 2)
        second = round(float(rng.uniform(half, length - 4.0)), 2)
        return [("cutA", (first, round(first + 4.0, 2))), ("cutB", (second, round(second + 4.0, 2)))]
    k = min(cuts, int(length // 6.0))
    if k < 2:
        return []
    span = length / k
    out = []
    for i in range(k):
        start = round(float(rng.uniform(i * span, (i + 1) * span - 4.0)), 2)
        out.append((f"cut{chr(ord('A') + i)}", (start, round(start + 4.0, 2))))
    return out


def build_benchmark(out_dir: Path | str, spec: BenchmarkSpec | None = None, *, progress: bool = True,
                    footage: Sequence[SourceVideo] = ()) -> Benchmark:
    """Write a benchmark (videos + truth.csv + benchmark.json) into ``out_dir``.

    ``footage``: the real-footage corpus videos of ``spec.footage_split``
    (:func:`training.footage.footage_videos`), passed in by the caller that reads the corpus.
    """
    spec = spec or BenchmarkSpec()
    unknown = [e for e in spec.extra_edits if e not in T.EXTRA_SPATIAL]
    if unknown:
        raise ValueError(f"unknown extra edit(s) {', '.join(unknown)}; known: {', '.join(sorted(T.EXTRA_SPATIAL))}")
    unknown = [e for e in spec.upload_spatial if e not in T.SPATIAL or e in T.UPLOAD_EDITS]
    if unknown:
        raise ValueError(f"unknown upload spatial edit(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(set(T.SPATIAL) - set(T.UPLOAD_EDITS)))}")
    T.use_augly(spec.use_augly)
    try:
        return _build(out_dir, spec, progress, footage)
    finally:
        T.use_augly(True)


def _user_sources(spec: BenchmarkSpec, registry: list[SourceVideo]) -> tuple[list[SourceVideo], list[dict[str, str]]]:
    """The videos of ``spec.video_dirs``, minus byte-identical copies (of each other or of a registry source)."""
    import hashlib

    def digest(path: Path) -> str:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    seen = {digest(v.path): v.name for v in registry}
    kept, skipped = [], []
    for i, folder in enumerate(spec.video_dirs):
        for video in folder_videos(folder, "user" if len(spec.video_dirs) == 1 else f"user{i + 1}"):
            key = digest(video.path)
            if key in seen:
                skipped.append({"path": str(video.path), "reason": f"byte-identical to source {seen[key]}"})
                continue
            seen[key] = video.name
            kept.append(video)
    return kept, skipped


def _build(out_dir: Path | str, spec: BenchmarkSpec, progress: bool, footage: Sequence[SourceVideo]) -> Benchmark:
    rng = np.random.default_rng(spec.seed)
    bench = Benchmark(Path(out_dir))
    bench.videos_dir.mkdir(parents=True, exist_ok=True)

    photos = real_photos()
    names = sorted(n for n in photos if not spec.photo_pool or n in spec.photo_pool)
    rng.shuffle(names)
    footage_names = names[: spec.footage_photos]
    distractor_names = names[spec.footage_photos : spec.footage_photos + spec.distractors]
    filler_names = names[spec.footage_photos + spec.distractors :]
    if not filler_names:
        # filler content (insertion, picture in picture) from a footage photo would make its "unrelated" pairs related
        raise ValueError(f"{len(names)} photo(s) for {spec.footage_photos} footage + {spec.distractors} distractors: "
                         "none left for filler content; lower footage_photos or distractors")

    sources: dict[str, Clip] = {}
    registry = [v for v in real_videos() if v.name not in spec.exclude_sources] if spec.include_real_videos else []
    for video in registry:
        sources[video.name] = read_clip(video.path, fps=spec.fps, max_side=spec.max_side)
    user, skipped = _user_sources(spec, registry) if spec.video_dirs else ([], [])
    if spec.footage_split:
        corpus = [v for v in footage if v.name not in spec.exclude_sources]
        if not corpus:
            raise ValueError(f"no real-footage corpus videos in split {spec.footage_split!r}: run `dupwatch train corpus fetch`")
        user = corpus + user
    source_files = [{"name": v.name, "path": str(v.path), "licence": v.licence} for v in registry]
    for video in user:
        try:
            clip = read_clip(video.path, fps=spec.fps, max_side=spec.max_side, max_seconds=spec.max_source_seconds)
        except Exception as exc:  # not decodable: recorded, not fatal (a folder may hold anything)
            skipped.append({"path": str(video.path), "reason": f"unreadable: {type(exc).__name__}: {exc}"[:300]})
            continue
        if len(clip.frames) < 2 or clip.duration < 2 * spec.min_overlap:
            skipped.append({"path": str(video.path), "reason": f"too short ({clip.duration:.2f} s)"})
            continue
        sources[video.name] = clip
        source_files.append({"name": video.name, "path": str(video.path), "licence": video.licence})
    for name in footage_names:
        if f"kb_{name}" not in spec.exclude_sources:
            sources[f"kb_{name}"] = ken_burns(photos[name], spec.footage_seconds, spec.fps, rng)
    filler = FillerPool(photos, filler_names, spec.fps, rng, own=spec.own_filler, seed=spec.seed)

    jobs: list[tuple[Clip, Derivation, dict[str, object]]] = []
    for source, clip in sources.items():
        length = round(clip.duration, 2)
        jobs.append((clip, Derivation(f"{spec.prefix}{source}__ref", source, (0.0, length), is_query=False), {"codec": "libx264", "crf": 20}))
        for k in range(spec.copies_per_source):
            part, derivation = _derive(f"{spec.prefix}{source}__copy{k}", source, clip, _random_window(length, rng), filler, rng,
                                       spec.extra_edits, spec.upload_edits, spec.upload_spatial)
            jobs.append((part, derivation, _encode_options(rng)))
        for tag, window in _moment_windows(length, spec.moment_cuts, rng):
            # non-overlapping moments of the same footage: incident to each other, copies of the reference
            jobs.append((clip.window(*window), Derivation(f"{spec.prefix}{source}__{tag}", source, window, edits=("cut",),
                                                          implementations=(T.OWN_IMPL,)), _encode_options(rng)))
        # a sheared corner crop of the same moment: the same camera's frames, a copy (T.viewpoint_change);
        # its id keeps the ``camera2`` name so that benchmarks built before keep their video ids
        window = _random_window(length, rng, min_len=4.0)
        edit = T.viewpoint_change(clip.window(*window), rng)
        jobs.append((edit.clip, Derivation(f"{spec.prefix}{source}__camera2", source, window, edits=("viewpoint",),
                                           implementations=(T.OWN_IMPL,)), _encode_options(rng)))
    for name in distractor_names:
        clip = ken_burns(photos[name], float(rng.uniform(6, 12)), spec.fps, rng)
        jobs.append((clip, Derivation(f"{spec.prefix}distractor_{name}", f"distractor_{name}", (0.0, clip.duration), is_query=False), {"codec": "libx264", "crf": 23}))

    for clip, derivation, options in tqdm(jobs, desc="writing benchmark videos", disable=not progress):
        write_clip(bench.videos_dir / f"{derivation.video}.mp4", clip, **options)  # type: ignore[arg-type]
        bench.derivations.append(derivation)

    bench.rows = truth_rows(bench.derivations, spec.min_overlap)
    write_truth_csv(bench.rows, bench.truth_path)
    (bench.root / "benchmark.json").write_text(
        json.dumps({"spec": asdict(spec), "augly": T.augly_version() if spec.use_augly else None, "source_files": source_files,
                    "skipped_files": skipped, "derivations": [asdict(d) for d in bench.derivations]}, indent=2)
    )
    return bench
