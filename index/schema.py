"""Milvus collections of the index: names, schemas, index parameters, primary keys.

Five collections (one vector field each, architecture.md *Milvus*), names prefixed by
``MilvusConfig.collection_prefix``:

=====================  ==============  ==========================================================
collection             rows            vector
=====================  ==============  ==========================================================
``<p>_video_coarse``   one per video   DnS coarse vector, FLOAT_VECTOR ``[Dc]``, IP
``<p>_video_clips``    one per clip    DRCA clip embedding, FLOAT_VECTOR ``[Dk]``, IP
``<p>_video_frames``   one per frame   fine-grained regions flattened, FLOAT_VECTOR ``[R*D]``
``<p>_video_thumbs``   one per frame   grey thumbnail (:mod:`inference.thumbnails`), FLOAT_VECTOR ``[S*S]``
``<p>_background``     fixed set       coarse vectors of unrelated videos (normalization), IP
=====================  ==============  ==========================================================

The background collection's name after ``<p>_`` is ``detection.background_collection`` (default
``background``); ``dupwatch background build`` fills it.

Fine-grained storage (measured, see ``bench/index.py``): Milvus Lite 3.2 accepts only
FLOAT_VECTOR and SPARSE_FLOAT_VECTOR (no FLOAT16_VECTOR, no BINARY_VECTOR), and the 2.3.5 server
predates FLOAT16_VECTOR. The one type both accept is FLOAT_VECTOR, so every frame is one row
holding its ``R*D`` region values as float32; ``fetch_fine`` returns them bit-exactly. The frames
collection is only fetched by ``video_id`` (never searched), so it gets a FLAT index (required
to load a collection; costs nothing to build). The thumbnails collection is the same: fetched by
primary key for the copy head's pixel evidence, never searched. Its rows are optional: a video
indexed before it existed, or without thumbnails, is scored without that evidence.

Primary keys are VARCHAR derived from ``(video_id, part)`` (:func:`row_id`), so a replayed event
upserts the same rows. The tenant is the partition key of every per-video collection and every
search filters on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymilvus import DataType, MilvusClient

MAX_ID_CHARS = 128
MAX_PK_CHARS = MAX_ID_CHARS + 16
MAX_TENANT_CHARS = 64
MAX_VERSION_CHARS = 128
MAX_MILVUS_DIM = 32_768

COARSE = "video_coarse"
CLIPS = "video_clips"
FRAMES = "video_frames"
THUMBS = "video_thumbs"
BACKGROUND = "background"


@dataclass(frozen=True)
class IndexDims:
    """Vector sizes of one model bundle (the collections are created with these)."""

    coarse: int
    clip: int
    regions: int
    region_dim: int
    thumb: int = 1024
    """Values of one frame's thumbnail (``inference.thumbnails.THUMB_SIDE`` squared)."""

    def __post_init__(self) -> None:
        for name in ("coarse", "clip", "regions", "region_dim", "thumb"):
            if getattr(self, name) < 1:
                raise ValueError(f"IndexDims.{name} must be >= 1")
        for name, dim in (("coarse", self.coarse), ("clip", self.clip), ("fine", self.fine_dim)):
            if dim > MAX_MILVUS_DIM:
                raise ValueError(f"{name} dimension {dim} exceeds Milvus' limit of {MAX_MILVUS_DIM}")

    @property
    def fine_dim(self) -> int:
        return self.regions * self.region_dim


@dataclass(frozen=True)
class IndexSpec:
    """Vector index of one collection (type + build params + search params)."""

    index_type: str = "FLAT"
    metric_type: str = "IP"
    params: tuple[tuple[str, Any], ...] = ()
    search_params: tuple[tuple[str, Any], ...] = ()

    def build_params(self) -> dict[str, Any]:
        return dict(self.params)

    def query_params(self) -> dict[str, Any]:
        return {"metric_type": self.metric_type, "params": dict(self.search_params)}


# Chosen by `dupwatch bench index` (numbers in bench/index.py's docstring). Server: HNSW for the
# searched collections. Milvus Lite 3.2: FLAT everywhere (with the tenant filter its HNSW and
# IVF_FLAT were slower than FLAT at 100k rows, and FLAT is exact with no build cost). The frames
# collection is fetched by video id and never searched: FLAT on both.
DEFAULT_SPECS: dict[str, IndexSpec] = {
    COARSE: IndexSpec("HNSW", "IP", (("M", 16), ("efConstruction", 200)), (("ef", 128),)),
    CLIPS: IndexSpec("HNSW", "IP", (("M", 16), ("efConstruction", 200)), (("ef", 256),)),
    FRAMES: IndexSpec("FLAT", "IP"),
    THUMBS: IndexSpec("FLAT", "IP"),
    BACKGROUND: IndexSpec("FLAT", "IP"),
}


LITE_SPECS: dict[str, IndexSpec] = {
    COARSE: IndexSpec("FLAT", "IP"),
    CLIPS: IndexSpec("FLAT", "IP"),
    FRAMES: IndexSpec("FLAT", "IP"),
    THUMBS: IndexSpec("FLAT", "IP"),
    BACKGROUND: IndexSpec("FLAT", "IP"),
}


def default_specs(is_lite: bool) -> dict[str, IndexSpec]:
    return dict(LITE_SPECS if is_lite else DEFAULT_SPECS)


def collection_name(prefix: str, kind: str) -> str:
    return f"{prefix}_{kind}"


def row_id(video_id: str, part: str) -> str:
    """Deterministic primary key: ``"{video_id}#v"`` (coarse), ``#c{i}`` (clip), ``#f{i}`` (frame)."""
    return f"{video_id}#{part}"


def _base(schema: Any, *, tenant_key: bool) -> None:
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_PK_CHARS)
    schema.add_field("video_id", DataType.VARCHAR, max_length=MAX_ID_CHARS)
    schema.add_field("tenant", DataType.VARCHAR, max_length=MAX_TENANT_CHARS, is_partition_key=tenant_key)


def build_schema(kind: str, dims: IndexDims) -> Any:
    """The ``CollectionSchema`` of one collection kind."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    if kind == COARSE:
        _base(schema, tenant_key=True)
        schema.add_field("selfsim", DataType.FLOAT)
        schema.add_field("duration_s", DataType.FLOAT)
        schema.add_field("num_frames", DataType.INT64)
        schema.add_field("num_clips", DataType.INT64)
        schema.add_field("bundle_version", DataType.VARCHAR, max_length=MAX_VERSION_CHARS)
        schema.add_field("event_id", DataType.VARCHAR, max_length=MAX_ID_CHARS)
        schema.add_field("indexed_at_ms", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims.coarse)
    elif kind == CLIPS:
        _base(schema, tenant_key=True)
        schema.add_field("clip_idx", DataType.INT64)
        schema.add_field("start_s", DataType.FLOAT)
        schema.add_field("end_s", DataType.FLOAT)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims.clip)
    elif kind == FRAMES:
        _base(schema, tenant_key=True)
        schema.add_field("frame_idx", DataType.INT64)
        schema.add_field("timestamp_s", DataType.FLOAT)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims.fine_dim)
    elif kind == THUMBS:
        _base(schema, tenant_key=True)
        schema.add_field("frame_idx", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims.thumb)
    elif kind == BACKGROUND:
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_PK_CHARS)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims.coarse)
    else:
        raise ValueError(f"unknown collection kind {kind!r}")
    return schema


def vector_dim(kind: str, dims: IndexDims) -> int:
    return {COARSE: dims.coarse, CLIPS: dims.clip, FRAMES: dims.fine_dim, THUMBS: dims.thumb, BACKGROUND: dims.coarse}[kind]


def escape(value: str) -> str:
    """A double-quoted Milvus expression string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
