"""``VideoIndex``: upsert, search and fetch of video representations in Milvus.

One code path for Milvus Lite (``MilvusConfig.uri`` is a file path) and a server
(``http://host:port``). Every call that reaches Milvus goes through :meth:`VideoIndex._call`,
which turns "Milvus is down / unreachable / not loaded" into
``TransientError(reason="milvus_unavailable")`` (the worker waits and retries; it never
dead-letters a good upload for it) and drops the client so that the next call reconnects.
Other Milvus errors (wrong dimension, bad schema) are bugs and propagate.

Write order of :meth:`upsert` (crash-safe, replay-safe): frames, clips, then the stale rows of a
previous, longer version are deleted, and the coarse row goes last, so ``has_video`` is true only
once everything else of the video is in place. Every row has a deterministic primary key, so a
replay overwrites instead of adding.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Mapping, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from dupwatch.config import MilvusConfig
from dupwatch.errors import TransientError
from dupwatch.records import VideoRepresentation, inset_id
from index.fine_cache import FineFeatureCache, cache_key
from index.schema import (
    BACKGROUND,
    CLIPS,
    COARSE,
    FRAMES,
    MAX_PK_CHARS,
    THUMBS,
    IndexDims,
    IndexSpec,
    build_schema,
    collection_name,
    default_specs,
    escape,
    row_id,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MILVUS_UNAVAILABLE = "milvus_unavailable"
_LITE_CONNECT_LOCK = threading.Lock()
"""Milvus Lite starts its in-process server on first connect; two threads racing would both try to
take the data folder's flock (DataDirLockedError), so first connects are serialized."""
MAX_WRITE_BYTES = 8 * 1024 * 1024
"""Rows per upsert/query call are capped to about this many vector bytes (gRPC limit is 64 MiB)."""
MAX_QUERY_ROWS = 16_384
_BACKGROUND_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_UNAVAILABLE_HINTS = (
    "unavailable",
    "connect",
    "deadline",
    "timeout",
    "timed out",
    "released",
    "not loaded",
    "load()",
    "socket",
    "server unavailable",
    "closed",
    "channel",
    "refused",
)


@dataclass(frozen=True)
class ClipMatch:
    """One clip hit: query clip ``query_clip`` matched clip ``ref_clip`` of the video."""

    query_clip: int
    ref_clip: int
    score: float
    ref_start: float
    ref_end: float


@dataclass
class ClipCandidate:
    """Clip hits of one indexed video, aggregated: ``score`` is the best clip similarity."""

    video_id: str
    score: float
    matches: list[ClipMatch] = field(default_factory=list)

    @property
    def num_query_clips(self) -> int:
        return len({m.query_clip for m in self.matches})


@dataclass(frozen=True)
class RowCounts:
    coarse: int
    clips: int
    frames: int

    @property
    def total(self) -> int:
        return self.coarse + self.clips + self.frames


def _is_unavailable(exc: BaseException) -> bool:
    try:
        import grpc

        if isinstance(exc, grpc.RpcError):
            return True
    except ImportError:  # pragma: no cover
        pass
    from pymilvus.exceptions import MilvusException, MilvusUnavailableException

    if isinstance(exc, (MilvusUnavailableException, ConnectionError, TimeoutError, OSError)):
        return True
    if isinstance(exc, MilvusException):
        code = getattr(exc, "code", None)
        text = str(getattr(exc, "message", "") or exc).lower()
        if code in (1, 2, 101) or any(h in text for h in _UNAVAILABLE_HINTS):
            return True
    return False


def release_lite_server(uri: str) -> None:
    """Stop the in-process Milvus Lite server that serves the file ``uri``, if one runs.

    Milvus Lite keeps one server per file until the interpreter exits and flushes it then; a caller
    about to delete a temporary Lite file calls this first (after closing every client of it), so that
    the exit-time flush does not write the file back. Server URIs are left alone."""
    if MilvusConfig(uri=uri).is_lite:
        try:
            from milvus_lite.server_manager import server_manager_instance
        except ImportError:  # pymilvus without the lite extra: there is no local server to stop
            return
        server_manager_instance.release_server(uri)


def upsert_mode_for(server_version: str) -> str:
    """``"upsert"``, or ``"delete_insert"`` for Milvus servers before 2.4.

    Measured on the 2.3.5 standalone server: rows written with ``upsert`` into a collection with
    a partition key are invisible to every filter on that key (search and query return nothing),
    while ``insert`` works. Deleting the deterministic ids and inserting them again keeps one row
    per id on replay. Milvus Lite and 2.4+ use a real upsert.
    """
    import re

    match = re.match(r"v?(\d+)\.(\d+)", server_version.strip())
    if match is None:
        return "upsert"  # milvus_lite-x.y.z, or unknown: trust upsert
    return "delete_insert" if (int(match.group(1)), int(match.group(2))) < (2, 4) else "upsert"


def _vec_list(array: np.ndarray) -> list[list[float]]:
    return np.ascontiguousarray(array, dtype=np.float32).tolist()


class VideoIndex:
    """The Milvus index of one deployment (all tenants; the tenant is a partition key)."""

    def __init__(
        self,
        config: MilvusConfig,
        dims: IndexDims,
        *,
        specs: dict[str, IndexSpec] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.dims = dims
        self.specs = {**default_specs(config.is_lite), **(specs or {})}
        self._clock = clock
        self._client: Any = None
        self._lock = threading.RLock()
        self._ready = False
        self._background_ready: set[str] = set()
        self._call_wrappers: list[Callable[[str, Callable[[], Any]], Any]] = []
        self.server_version: str | None = None
        self.upsert_mode: str = "upsert"
        self.fine_cache = FineFeatureCache(config.fine_cache_mib * 2**20)
        """Fine tensors this process wrote or read, for :meth:`fetch_fine` with ``rows``."""
        p = config.collection_prefix
        self.names = {kind: collection_name(p, kind) for kind in (COARSE, CLIPS, FRAMES, THUMBS, BACKGROUND)}

    # -- connection -----------------------------------------------------------------------
    def _connect(self) -> Any:
        from pymilvus import MilvusClient

        uri = self.config.uri
        if self.config.is_lite:
            from pathlib import Path

            Path(uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"uri": uri, "timeout": self.config.timeout_s}
        if self.config.token is not None:
            kwargs["token"] = self.config.token.get_secret_value()
        if not self.config.is_lite and self.config.db_name != "default":
            kwargs["db_name"] = self.config.db_name
        if self.config.is_lite:
            with _LITE_CONNECT_LOCK:
                return MilvusClient(**kwargs)
        return MilvusClient(**kwargs)

    def add_call_wrapper(self, wrapper: Callable[[str, Callable[[], Any]], Any]) -> None:
        """Run every Milvus call through ``wrapper(what, proceed)`` (it calls ``proceed()`` and
        returns its result): metering, timing, fault injection. The last one added runs first."""
        self._call_wrappers.append(wrapper)

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        proceed: Callable[[], Any] = lambda: self._call_client(what, fn)
        for wrapper in self._call_wrappers:
            proceed = (lambda w, inner: lambda: w(what, inner))(wrapper, proceed)
        return proceed()

    def _call_client(self, what: str, fn: Callable[[Any], T]) -> T:
        with self._lock:
            try:
                if self._client is None:
                    self._client = self._connect()
                return fn(self._client)
            except TransientError:
                raise
            except Exception as exc:
                if not _is_unavailable(exc):
                    raise
                self._drop_client()
                raise TransientError(f"milvus {what} failed: {str(exc)[:300]}", reason=MILVUS_UNAVAILABLE) from exc

    def _drop_client(self) -> None:
        client, self._client, self._ready = self._client, None, False
        self._background_ready = set()
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken client is best effort
                pass

    def close(self) -> None:
        with self._lock:
            self._drop_client()

    def ping(self) -> bool:
        """True when Milvus answers (used by ``/readyz``; never raises, never creates anything)."""
        try:
            self._call("ping", lambda c: c.list_collections(timeout=min(5.0, self.config.timeout_s)))
            return True
        except TransientError:
            return False

    # -- collections ----------------------------------------------------------------------
    def ensure_collections(self) -> None:
        """Create the missing video collections with their indexes and load them (idempotent); the
        background collection is created when normalization first uses it."""
        if self._ready and self._client is not None:
            return

        def run(client: Any) -> None:
            timeout = self.config.timeout_s
            self.server_version = str(client.get_server_version(timeout=timeout))
            self.upsert_mode = upsert_mode_for(self.server_version)
            for kind, name in self.names.items():
                if kind == BACKGROUND:  # created on first use (normalization on), see _ensure_background
                    continue
                if not client.has_collection(name, timeout=timeout):
                    spec = self.specs[kind]
                    self._create_collection(client, kind, name)
                    log.info("created Milvus collection %s (%s)", name, spec.index_type)
                else:
                    self._check_dim(client, kind, name)
                state = client.get_load_state(name, timeout=timeout)
                if "Loaded" not in str(state.get("state", state)):
                    client.load_collection(name, timeout=timeout)
            self._ready = True

        self._call("ensure_collections", run)

    def _check_dim(self, client: Any, kind: str, name: str) -> None:
        from index.schema import vector_dim

        info = client.describe_collection(name, timeout=self.config.timeout_s)
        for fld in info.get("fields", []):
            if fld.get("name") == "vector":
                have = int(fld.get("params", {}).get("dim", 0))
                want = vector_dim(kind, self.dims)
                if have != want:
                    raise ValueError(
                        f"collection {name} has dim {have} but the model bundle needs {want}; "
                        "use another collection_prefix or drop the collection"
                    )

    def drop_all(self) -> None:
        """Drop the index's collections (tests and benchmarks)."""

        def run(client: Any) -> None:
            for name in self.names.values():
                if client.has_collection(name):
                    client.drop_collection(name)
            self._ready = False

        self._call("drop", run)
        self.fine_cache.clear()

    # -- writes ---------------------------------------------------------------------------
    def upsert(self, rep: VideoRepresentation) -> RowCounts:
        """Write (or overwrite) every row of ``rep``; returns the row counts written (of the video's
        own id; a picture-in-picture inset's rows are written first, under ``<id>#inset``, so the
        video's coarse row, written last, still marks the whole upload as indexed)."""
        self.ensure_collections()
        if rep.inset is not None:
            self.upsert(rep.inset)
        vid, tenant = rep.video_id, rep.tenant
        fine = rep.fine_index if rep.fine_index is not None else rep.regions
        t_count, r, d = fine.shape
        if (r, d) != (self.dims.regions, self.dims.region_dim):
            raise ValueError(f"fine tensor is [T, {r}, {d}] but the index holds [T, {self.dims.regions}, {self.dims.region_dim}]")
        if rep.coarse.shape != (self.dims.coarse,):
            raise ValueError(f"coarse vector is {rep.coarse.shape}, index holds ({self.dims.coarse},)")
        if rep.clips.shape[0] and rep.clips.shape[1] != self.dims.clip:
            raise ValueError(f"clip vectors are {rep.clips.shape}, index holds [N, {self.dims.clip}]")
        flat = np.ascontiguousarray(fine, dtype=np.float32).reshape(t_count, r * d)
        frame_rows = [
            {
                "id": row_id(vid, f"f{i}"),
                "video_id": vid,
                "tenant": tenant,
                "frame_idx": i,
                "timestamp_s": float(rep.timestamps[i]),
                "vector": flat[i].tolist(),
            }
            for i in range(t_count)
        ]
        clips = np.asarray(rep.clips, dtype=np.float32)
        clip_rows = [
            {
                "id": row_id(vid, f"c{i}"),
                "video_id": vid,
                "tenant": tenant,
                "clip_idx": i,
                "start_s": float(rep.clip_times[i, 0]),
                "end_s": float(rep.clip_times[i, 1]),
                "vector": clips[i].tolist(),
            }
            for i in range(clips.shape[0])
        ]
        duration = float(rep.meta.get("duration_s", rep.timestamps[-1] if t_count else 0.0))
        coarse_row = {
            "id": row_id(vid, "v"),
            "video_id": vid,
            "tenant": tenant,
            "selfsim": float(rep.selfsim),
            "duration_s": duration,
            "num_frames": t_count,
            "num_clips": int(clips.shape[0]),
            "bundle_version": str(rep.meta.get("bundle_version", "unknown"))[:128],
            "event_id": str(rep.meta.get("event_id", ""))[:128],
            "indexed_at_ms": int(self._clock() * 1000),
            "vector": np.asarray(rep.coarse, dtype=np.float32).tolist(),
        }
        # Rows a previous, longer version of this video left beyond the new counts go, by primary
        # key from the counts its coarse row recorded (a filter delete would scan the collection,
        # which on Lite costs O(collection) per upload). A write that died before its coarse row
        # can leave rows beyond the counts only if the video then changed; they are never read
        # (frames are fetched by primary key below ``num_frames``) and a replay overwrites them.
        thumb_rows = self._thumb_rows(rep)  # checked before anything is written
        previous = self.video_info([vid]).get(vid)
        self._upsert_rows(FRAMES, frame_rows, self.dims.fine_dim)
        self._upsert_rows(THUMBS, thumb_rows, self.dims.thumb)
        self._upsert_rows(CLIPS, clip_rows, self.dims.clip)
        if previous is not None:
            self._delete_ids(FRAMES, [row_id(vid, f"f{i}") for i in range(t_count, int(previous.get("num_frames") or 0))])
            self._delete_ids(THUMBS, [row_id(vid, f"f{i}") for i in range(len(thumb_rows), int(previous.get("num_frames") or 0))])
            self._delete_ids(CLIPS, [row_id(vid, f"c{i}") for i in range(clips.shape[0], int(previous.get("num_clips") or 0))])
        self._upsert_rows(COARSE, [coarse_row], self.dims.coarse)
        self.fine_cache.put(cache_key(vid, coarse_row), flat.reshape(t_count, r, d))  # what fetch_fine would read back
        return RowCounts(1, len(clip_rows), len(frame_rows))

    def _thumb_rows(self, rep: VideoRepresentation) -> list[dict[str, Any]]:
        """One row per frame thumbnail (none when the representation has no thumbnails)."""
        if rep.thumbs is None:
            return []
        flat = rep.thumbs.reshape(len(rep.thumbs), -1)
        if flat.shape[1] != self.dims.thumb:
            raise ValueError(f"thumbnails hold {flat.shape[1]} values a frame, the index holds {self.dims.thumb}")
        return [{"id": row_id(rep.video_id, f"f{i}"), "video_id": rep.video_id, "tenant": rep.tenant, "frame_idx": i,
                 "vector": flat[i].astype(np.float32).tolist()} for i in range(len(flat))]

    def _upsert_rows(self, kind: str, rows: list[dict[str, Any]], dim: int) -> None:
        self._write_rows(self.names[kind], rows, dim)

    def _write_rows(self, name: str, rows: list[dict[str, Any]], dim: int) -> None:
        """Upsert ``rows`` into the collection ``name`` in calls of about :data:`MAX_WRITE_BYTES`."""
        if not rows:
            return
        per_call = max(1, MAX_WRITE_BYTES // (dim * 4))
        timeout = self.config.timeout_s
        for start in range(0, len(rows), per_call):
            chunk = rows[start : start + per_call]
            if self.upsert_mode == "upsert":
                self._call(f"upsert {name}", lambda c, chunk=chunk: c.upsert(name, chunk, timeout=timeout))
            else:  # Milvus < 2.4: upsert ignores the partition key; delete + insert the same ids
                ids = [row["id"] for row in chunk]
                self._call(f"delete {name}", lambda c, ids=ids: c.delete(name, ids=ids, timeout=timeout))
                self._call(f"insert {name}", lambda c, chunk=chunk: c.insert(name, chunk, timeout=timeout))

    def _delete_ids(self, kind: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        name = self.names[kind]
        for start in range(0, len(ids), 1000):
            chunk = list(ids[start : start + 1000])
            self._call(f"delete {name}", lambda c, chunk=chunk: c.delete(name, ids=chunk, timeout=self.config.timeout_s))

    def _delete_where(self, kind: str, expr: str) -> int:
        deleted = 0
        while True:
            ids = self._ids_where(kind, expr)
            self._delete_ids(kind, ids)
            deleted += len(ids)
            if len(ids) < MAX_QUERY_ROWS:
                return deleted

    def delete_video(self, video_id: str) -> int:
        """Delete every row of the video and of its picture-in-picture inset view (coarse first, so
        it stops being a candidate at once)."""
        self.ensure_collections()
        expr = f"video_id in [{escape(video_id)}, {escape(inset_id(video_id))}]"  # and its inset view's rows
        self.fine_cache.discard(video_id)
        self.fine_cache.discard(inset_id(video_id))
        return sum(self._delete_where(kind, expr) for kind in (COARSE, CLIPS, FRAMES, THUMBS))

    # -- reads ----------------------------------------------------------------------------
    def has_video(self, video_id: str) -> bool:
        self.ensure_collections()
        name = self.names[COARSE]
        got = self._call(
            "get", lambda c: c.get(name, ids=[row_id(video_id, "v")], output_fields=["id"], timeout=self.config.timeout_s)
        )
        return len(got) > 0

    def indexed_event(self, video_id: str) -> tuple[str, str] | None:
        """``(event_id, bundle_version)`` of the upload that last completed indexing of the video."""
        info = self.video_info([video_id]).get(video_id)
        return None if info is None else (str(info["event_id"]), str(info["bundle_version"]))

    def count(self, video_id: str) -> RowCounts:
        """Rows stored for the video in each collection (exactly-once checks)."""
        self.ensure_collections()
        expr = f"video_id == {escape(video_id)}"
        n = {kind: self._count_where(kind, expr) for kind in (COARSE, CLIPS, FRAMES)}
        return RowCounts(n[COARSE], n[CLIPS], n[FRAMES])

    def _ids_where(self, kind: str, expr: str) -> list[str]:
        name = self.names[kind]
        got = self._call(
            f"query {name}",
            lambda c: c.query(name, filter=expr, output_fields=["id"], limit=MAX_QUERY_ROWS, timeout=self.config.timeout_s),
        )
        return [str(row["id"]) for row in got]

    def _count_where(self, kind: str, expr: str) -> int:
        name = self.names[kind]
        got = self._call(
            f"count {name}",
            lambda c: c.query(name, filter=expr, output_fields=["count(*)"], timeout=self.config.timeout_s),
        )
        return int(got[0]["count(*)"]) if got else 0

    def video_info(self, video_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Scalar fields of the coarse rows (selfsim, duration_s, num_frames, ...) by video id."""
        self.ensure_collections()
        ids = [row_id(v, "v") for v in video_ids]
        if not ids:
            return {}
        name = self.names[COARSE]
        fields = ["video_id", "tenant", "selfsim", "duration_s", "num_frames", "num_clips", "bundle_version", "event_id", "indexed_at_ms"]
        got = self._call("get", lambda c: c.get(name, ids=ids, output_fields=fields, timeout=self.config.timeout_s))
        return {str(row["video_id"]): {k: row[k] for k in fields} for row in got}

    def fetch_coarse(self, video_ids: Iterable[str]) -> dict[str, np.ndarray]:
        self.ensure_collections()
        ids = [row_id(v, "v") for v in video_ids]
        if not ids:
            return {}
        name = self.names[COARSE]
        got = self._call("get", lambda c: c.get(name, ids=ids, output_fields=["video_id", "vector"], timeout=self.config.timeout_s))
        return {str(row["video_id"]): np.asarray(row["vector"], dtype=np.float32) for row in got}

    def fetch_fine(self, video_ids: Iterable[str], num_frames: Mapping[str, int] | None = None, *,
                   rows: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, np.ndarray]:
        """``{video_id: [T, R, D] float32}`` exactly as stored (videos without rows are absent).

        With ``num_frames`` (from :meth:`video_info`) the rows are read by primary key
        (``{video}#f{i}``), batched across videos: a filter query scans the collection (on Milvus
        Lite it copies every vector, ~2.6 s at 200k frame rows; ``dupwatch bench query-latency``),
        a primary-key get does not. A video whose keyed read comes back incomplete is read again
        by filter query.

        With ``rows`` (the videos' :meth:`video_info` rows; ``num_frames`` is then taken from them
        unless given) tensors are served from and kept in :attr:`fine_cache` under the coarse row
        they belong to; those are read-only arrays."""
        wanted = list(dict.fromkeys(video_ids))
        rows = rows or {}
        if num_frames is None and rows:
            num_frames = {v: int(row.get("num_frames") or 0) for v, row in rows.items()}
        keys = {v: cache_key(v, rows[v]) for v in wanted if v in rows}
        found = {v: t for v, k in keys.items() if (t := self.fine_cache.get(k)) is not None}
        missing = [v for v in wanted if v not in found]
        if missing:
            for vid, tensor in self._read_fine(missing, num_frames).items():
                found[vid] = self.fine_cache.put(keys[vid], tensor) if vid in keys else tensor
        return {v: found[v] for v in wanted if v in found}

    def fetch_thumbs(self, video_ids: Iterable[str], *, rows: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """``{video_id: [T, S, S] uint8}`` thumbnails of the videos that have all ``num_frames`` of
        them (``rows``: the videos' :meth:`video_info`); videos without are absent."""
        side = int(round(math.sqrt(self.dims.thumb)))
        if side * side != self.dims.thumb:
            return {}
        counts = {v: int(rows[v].get("num_frames") or 0) for v in dict.fromkeys(video_ids) if v in rows}
        return {vid: np.clip(np.rint(flat), 0, 255).astype(np.uint8).reshape(len(flat), side, side)
                for vid, flat in self._frame_vectors(THUMBS, counts, self.dims.thumb).items()}

    def _frame_vectors(self, kind: str, counts: Mapping[str, int], dim: int) -> dict[str, np.ndarray]:
        """``{video_id: [n, dim] float32}``: the vectors of the per-frame rows ``{video}#f{i}``,
        ``i < counts[video]``, read by primary key in pages, for the videos whose rows are all there."""
        self.ensure_collections()
        name = self.names[kind]
        per_page = max(1, min(MAX_QUERY_ROWS, MAX_WRITE_BYTES // (dim * 4)))
        ids = [row_id(v, f"f{i}") for v, n in counts.items() for i in range(n)]
        by_video: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(ids), per_page):
            page = ids[start : start + per_page]
            got = self._call(f"get {name}", lambda c, page=page: c.get(
                name, ids=page, output_fields=["video_id", "frame_idx", "vector"], timeout=self.config.timeout_s))
            for row in got:
                by_video.setdefault(str(row["video_id"]), []).append(row)
        out: dict[str, np.ndarray] = {}
        for vid, n in counts.items():
            found = sorted(by_video.get(vid, []), key=lambda row: int(row["frame_idx"]))
            if n > 0 and len(found) == n:
                out[vid] = np.asarray([row["vector"] for row in found], dtype=np.float32)
        return out

    def _read_fine(self, wanted: list[str], num_frames: Mapping[str, int] | None) -> dict[str, np.ndarray]:
        self.ensure_collections()
        name = self.names[FRAMES]
        per_page = max(1, min(MAX_QUERY_ROWS, MAX_WRITE_BYTES // (self.dims.fine_dim * 4)))
        out: dict[str, np.ndarray] = {}
        keyed = {v: int(num_frames.get(v) or 0) for v in wanted} if num_frames else {}
        for vid, flat in self._frame_vectors(FRAMES, {v: n for v, n in keyed.items() if n > 0}, self.dims.fine_dim).items():
            out[vid] = flat.reshape(len(flat), self.dims.regions, self.dims.region_dim)
        for vid in wanted:
            if vid in out:
                continue
            rows: list[dict[str, Any]] = []
            start = 0
            while True:
                expr = f"video_id == {escape(vid)} and frame_idx >= {start} and frame_idx < {start + per_page}"
                got = self._call(
                    f"query {name}",
                    lambda c, expr=expr: c.query(
                        name, filter=expr, output_fields=["frame_idx", "vector"], limit=per_page, timeout=self.config.timeout_s
                    ),
                )
                rows.extend(got)
                if len(got) < per_page:
                    break
                start += per_page
            if not rows:
                continue
            rows.sort(key=lambda row: int(row["frame_idx"]))
            flat = np.asarray([row["vector"] for row in rows], dtype=np.float32)
            out[vid] = flat.reshape(len(rows), self.dims.regions, self.dims.region_dim)
        return out

    def _search(self, kind: str, vecs: np.ndarray, expr: str, top_k: int, fields: list[str]) -> list[list[dict[str, Any]]]:
        self.ensure_collections()
        name = self.names[kind]
        spec = self.specs[kind]
        return self._call(
            f"search {name}",
            lambda c: c.search(
                name,
                data=_vec_list(vecs),
                filter=expr,
                limit=top_k,
                output_fields=fields,
                search_params=spec.query_params(),
                consistency_level=self._search_consistency(),
                timeout=self.config.timeout_s,
            ),
        )

    def _search_consistency(self) -> str:
        return self.config.search_consistency_level or self.config.consistency_level

    def _tenant_expr(self, tenant: str | None, exclude_video_id: str | None) -> str:
        """The search filter: the tenant (``None``: every tenant, ``detection.tenant_isolation:
        false``) and the query video itself left out."""
        parts = []
        if tenant is not None:
            parts.append(f"tenant == {escape(tenant)}")
        if exclude_video_id is not None:  # the video and its own picture-in-picture inset view
            parts.append(f"video_id not in [{escape(exclude_video_id)}, {escape(inset_id(exclude_video_id))}]")
        return " and ".join(parts)

    def search_coarse(
        self, vec: np.ndarray, tenant: str | None, top_k: int, *, exclude_video_id: str | None = None
    ) -> list[tuple[str, float]]:
        """Top-k videos of ``tenant`` (``None``: of every tenant) by inner product with the coarse
        vector, best first."""
        vec = np.asarray(vec, dtype=np.float32).reshape(1, -1)
        hits = self._search(COARSE, vec, self._tenant_expr(tenant, exclude_video_id), top_k, ["video_id"])
        return [(str(h["entity"]["video_id"]), float(h["distance"])) for h in hits[0]]

    def search_clips(
        self, vecs: np.ndarray, tenant: str | None, top_k: int, *, exclude_video_id: str | None = None
    ) -> list[ClipCandidate]:
        """Top-k clips per query clip, aggregated per video (best clip score first)."""
        vecs = np.asarray(vecs, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] == 0:
            return []
        fields = ["video_id", "clip_idx", "start_s", "end_s"]
        hits = self._search(CLIPS, vecs, self._tenant_expr(tenant, exclude_video_id), top_k, fields)
        by_video: dict[str, ClipCandidate] = {}
        for q, row in enumerate(hits):
            for h in row:
                e = h["entity"]
                vid = str(e["video_id"])
                m = ClipMatch(q, int(e["clip_idx"]), float(h["distance"]), float(e["start_s"]), float(e["end_s"]))
                cand = by_video.setdefault(vid, ClipCandidate(vid, m.score))
                cand.matches.append(m)
                cand.score = max(cand.score, m.score)
        return sorted(by_video.values(), key=lambda c: -c.score)

    # -- background set -------------------------------------------------------------------
    def background_name(self, collection: str | None = None) -> str:
        """Milvus name of a background collection: ``<prefix>_<collection>`` (default
        ``<prefix>_background``; ``DetectionConfig.background_collection`` names it)."""
        kind = collection or BACKGROUND
        if kind in (COARSE, CLIPS, FRAMES, THUMBS) or not _BACKGROUND_NAME.match(kind):
            raise ValueError(f"invalid background collection name {kind!r}")
        return collection_name(self.config.collection_prefix, kind)

    def _ensure_background(self, collection: str | None) -> str:
        """The named background collection, created (empty) and loaded if missing."""
        name = self.background_name(collection)
        if name in self._background_ready and self._client is not None:
            return name

        def run(client: Any) -> None:
            timeout = self.config.timeout_s
            if not client.has_collection(name, timeout=timeout):
                self._create_background(client, name)
            else:
                self._check_dim(client, BACKGROUND, name)
            state = client.get_load_state(name, timeout=timeout)
            if "Loaded" not in str(state.get("state", state)):
                client.load_collection(name, timeout=timeout)
            self._background_ready.add(name)

        self._call("ensure background", run)
        return name

    def _create_background(self, client: Any, name: str) -> None:
        self._create_collection(client, BACKGROUND, name)
        log.info("created Milvus background collection %s", name)

    def _create_collection(self, client: Any, kind: str, name: str) -> None:
        """Create an (empty) collection and its vector index, without pymilvus's polling sleeps:
        ``create_collection(index_params=...)`` waits 0.5 s before its first look at the index
        build, which for an empty collection is done when the request returns (the caller loads it)."""
        spec = self.specs[kind]
        timeout = self.config.timeout_s
        client.create_collection(name, schema=build_schema(kind, self.dims),
                                 consistency_level=self.config.consistency_level, timeout=timeout)
        index_params = client.prepare_index_params()
        index_params.add_index(field_name="vector", index_type=spec.index_type, metric_type=spec.metric_type,
                               params=spec.build_params())
        client.create_index(name, index_params, timeout=timeout, sync=False)

    def add_background(self, ids: Sequence[str], vecs: np.ndarray, *, collection: str | None = None) -> None:
        """Upsert background (unrelated) coarse vectors used for similarity normalization."""
        name = self._ensure_background(collection)
        vecs = np.asarray(vecs, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.dims.coarse:
            raise ValueError(f"background vectors are {vecs.shape}, index holds [N, {self.dims.coarse}]")
        rows = [{"id": str(i)[:MAX_PK_CHARS], "vector": v.tolist()} for i, v in zip(ids, vecs, strict=True)]
        self._write_rows(name, rows, self.dims.coarse)

    def replace_background(self, ids: Sequence[str], vecs: np.ndarray, *, collection: str | None = None) -> None:
        """Drop the background collection and write exactly these vectors (``background build
        --rebuild``). Not atomic: a search in between sees an empty or partial set, so the caller
        embeds everything first and the gap is only the write time."""
        self.drop_background(collection)
        self._ensure_background(collection)
        self.add_background(ids, vecs, collection=collection)

    def drop_background(self, collection: str | None = None) -> bool:
        """Drop the background collection; True when it existed."""
        name = self.background_name(collection)

        def run(client: Any) -> bool:
            if not client.has_collection(name, timeout=self.config.timeout_s):
                return False
            client.drop_collection(name, timeout=self.config.timeout_s)
            return True

        dropped = self._call("drop background", run)
        self._background_ready.discard(name)
        return dropped

    def count_background(self, collection: str | None = None) -> int:
        """Rows of the background collection (0 when it does not exist)."""
        name = self.background_name(collection)

        def run(client: Any) -> int:
            timeout = self.config.timeout_s
            if not client.has_collection(name, timeout=timeout):
                return 0
            state = client.get_load_state(name, timeout=timeout)
            if "Loaded" not in str(state.get("state", state)):
                client.load_collection(name, timeout=timeout)
            got = client.query(name, filter="", output_fields=["count(*)"], timeout=self.config.timeout_s,
                               consistency_level=self.config.consistency_level)
            return int(got[0]["count(*)"]) if got else 0

        return self._call("count background", run)

    def search_background(self, vec: np.ndarray, k: int, *, collection: str | None = None) -> np.ndarray:
        """The top-``k`` inner products of ``vec`` with the background set, descending (empty when
        the collection is empty or missing)."""
        vec = np.asarray(vec, dtype=np.float32).reshape(1, -1)
        name = self._ensure_background(collection)
        hits = self._call(
            "search background",
            lambda c: c.search(
                name,
                data=_vec_list(vec),
                limit=k,
                search_params=self.specs[BACKGROUND].query_params(),
                consistency_level=self._search_consistency(),
                timeout=self.config.timeout_s,
            ),
        )
        return np.asarray([float(h["distance"]) for h in hits[0]], dtype=np.float32)
