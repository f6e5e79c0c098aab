"""The background set of similarity normalization (``dupwatch background build|info``).

Query-bias normalization (:mod:`detect.normalization`) subtracts ``weight × mean`` of the top-k
similarities of the query's coarse vector to a fixed set of videos unrelated to the indexed ones.
This module fills that set: every video of a folder (or of a list file, one path a line, ``#``
comments) is decoded and embedded exactly like an upload in the worker (``ingest.decode`` with
``settings.decode``, the bundle embedder of ``settings.model``) and its coarse vector is written
to the Milvus collection ``<milvus.collection_prefix>_<detection.background_collection>``.

``build`` upserts (row id = file stem + hash of the resolved path, so building twice from the same
files keeps one row per file); ``rebuild`` embeds everything first, then drops the collection and
writes the new set, so searches see a missing or partial set only for the write time.
Files that cannot be decoded are skipped and reported, never fatal (one bad file in a corpus of
thousands must not stop the build).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dupwatch.config import Settings

log = logging.getLogger(__name__)

__all__ = ["BackgroundBuild", "background_files", "background_row_id", "build_background", "background_count"]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".3gp")


@dataclass
class BackgroundBuild:
    collection: str
    """Milvus collection name written."""
    written: int = 0
    total: int = 0
    """Rows in the collection after the build."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(file, reason)`` of files that could not be decoded or embedded."""
    rebuilt: bool = False


def background_files(directory: Path | None = None, list_file: Path | None = None, *, recursive: bool = False) -> list[Path]:
    """The video files of ``directory`` (by suffix, hidden files left out) and/or the paths of
    ``list_file`` (relative ones are relative to the list file's folder), de-duplicated, sorted."""
    found: list[Path] = []
    if directory is not None:
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"not a folder: {directory}")
        it = directory.rglob("*") if recursive else directory.iterdir()
        found += [p for p in it if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES]
    if list_file is not None:
        list_file = Path(list_file)
        for line in list_file.read_text(encoding="utf-8").splitlines():
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            path = Path(entry).expanduser()
            found.append(path if path.is_absolute() else list_file.parent / path)
    return sorted(dict.fromkeys(p.resolve() for p in found))


def background_row_id(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)[:100] or "video"
    return f"{stem}-{hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:12]}"


def _embed_coarse(files: Sequence[Path], settings: Settings, embedder: Any, decode_video: Callable[..., Any],
                  progress: Callable[[Path], None] | None) -> tuple[list[str], list[np.ndarray], list[tuple[str, str]]]:
    from dupwatch.errors import DupwatchError

    ids: list[str] = []
    vecs: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    for path in files:
        try:
            if not path.is_file():
                raise FileNotFoundError(path)
            decoded = decode_video(path, settings.decode, background_row_id(path))
            rep = embedder.embed(decoded, "background")
            ids.append(background_row_id(path))
            vecs.append(np.asarray(rep.coarse, np.float32).reshape(-1))
        except FileNotFoundError:
            skipped.append((str(path), "source_not_found"))
        except DupwatchError as exc:
            skipped.append((str(path), exc.reason))
        finally:
            if progress is not None:
                progress(path)
    return ids, vecs, skipped


def build_background(
    settings: Settings,
    files: Iterable[Path],
    *,
    embedder: Any,
    decode: Callable[..., Any],
    rebuild: bool = False,
    index: Any = None,
    progress: Callable[[Path], None] | None = None,
) -> BackgroundBuild:
    """Embed ``files`` with ``embedder`` (the worker's, with its ``index_dims``), each decoded by
    ``decode(path, settings.decode, video_id)`` (``ingest.decode.decode_video``), and write their
    coarse vectors to the configured background collection; ``rebuild`` replaces its content."""
    files = list(files)
    inner = embedder
    own_index = index is None
    if index is None:
        from index.store import VideoIndex

        index = VideoIndex(settings.milvus, inner.index_dims)
    collection = settings.detection.background_collection
    try:
        result = BackgroundBuild(collection=index.background_name(collection), rebuilt=rebuild)
        ids, vecs, result.skipped = _embed_coarse(files, settings, inner, decode, progress)
        matrix = np.stack(vecs) if vecs else np.zeros((0, index.dims.coarse), np.float32)
        if rebuild:
            index.replace_background(ids, matrix, collection=collection)
        else:
            index.add_background(ids, matrix, collection=collection)
        result.written = len(ids)
        result.total = index.count_background(collection)
        for name, reason in result.skipped:
            log.warning("background: skipped %s (%s)", name, reason)
        return result
    finally:
        if own_index:
            index.close()


def background_count(settings: Settings, *, dims: Any = None) -> tuple[str, int]:
    """``(collection name, rows)`` of the configured background collection, without loading a model
    (the dimension is only needed to create collections, which this never does)."""
    from index.schema import IndexDims
    from index.store import VideoIndex

    index = VideoIndex(settings.milvus, dims or IndexDims(coarse=1, clip=1, regions=1, region_dim=1))
    try:
        collection = settings.detection.background_collection
        return index.background_name(collection), index.count_background(collection)
    finally:
        index.close()
