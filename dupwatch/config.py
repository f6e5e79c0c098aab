"""One configuration model for the whole worker.

Sources, highest priority first: keyword arguments, ``DUPWATCH_*`` environment variables
(nested fields with ``__``, e.g. ``DUPWATCH_KAFKA__BOOTSTRAP_SERVERS``), the YAML file named
by ``--config`` or ``DUPWATCH_CONFIG``, then the defaults below. The defaults are the
embedded set-up: Milvus Lite in a local file, ONNX Runtime on CPU, videos from a folder.

Components never read this module's globals: the edge (CLI) loads :class:`Settings` once and
passes the per-component sub-models (frozen) to constructors.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

ENV_PREFIX = "DUPWATCH_"
CONFIG_ENV = "DUPWATCH_CONFIG"
DEFAULT_MAX_DEGENERATE = 0.9
"""Default degenerate-alignment gate (``detection.max_degenerate``), chosen on training benchmarks (README, Segments)."""
DEFAULT_FLAT_LUMA_STD = 0.45
"""Frames flatter than this (luma standard deviation, 64×64, 0..255) carry no evidence
(:mod:`inference.flat_frames`; chosen on the real training benchmarks, README *Real footage*)."""
DEFAULT_MIN_MOTION_AGREEMENT: float | None = None
DEFAULT_MOTION_GATE_MAGNITUDE = 0.1
"""The motion gate (``detection.min_motion_agreement`` when both videos move at least
``detection.motion_gate_magnitude``) is off by default: the setting chosen on the real training
benchmarks lowered recall on the calibrate and check sets without raising precision (README, Segments)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaConfig(_Frozen):
    """Broker connection, topics and consumer-group behaviour."""

    bootstrap_servers: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["127.0.0.1:9092"], min_length=1)
    group_id: str = Field("dupwatch.worker", min_length=1)
    uploads_topic: str = "videos.uploaded"
    alerts_topic: str = "dupwatch.alerts"
    dead_letter_topic: str = "dupwatch.dead-letter"
    client_id: str = "dupwatch"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_records: int = Field(16, ge=1, le=10_000)
    max_poll_interval_ms: int = Field(600_000, ge=10_000)
    session_timeout_ms: int = Field(30_000, ge=6_000)
    commit_interval_s: float = Field(1.0, ge=0.0)
    """Offsets are committed at most this often (and always on shutdown and rebalance)."""
    connect_timeout_s: float = Field(10.0, gt=0.0, le=300.0)
    """How long one attempt to reach the brokers may take. A worker that cannot reach Kafka
    (at start or after losing it) stays up, reports not-ready and tries again after
    ``connect_retry_s``, logging one line per attempt."""
    connect_retry_s: float = Field(5.0, gt=0.0, le=300.0)
    stuck_call_s: float = Field(10.0, gt=0.0, le=300.0)
    """A blocking client call (poll, commit) still waiting this long past its own timeout is
    released with ``KafkaTimeoutError`` and handled like any Kafka error (:mod:`ingest.kafka_guard`).
    Never more than half of ``session_timeout_ms``, so the member is not evicted meanwhile."""
    rejoin_timeout_s: float | None = Field(None, gt=0.0)
    """A consumer still without an assignment this long after its partitions were revoked or lost
    (a rebalance it never completes) is closed and replaced by a new one, which joins the group
    afresh (``None``: ``max_poll_interval_ms``, the longest a legitimate rebalance waits for members)."""

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port(cls, value: list[str]) -> list[str]:
        for server in value:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port, got {server!r}")
        return value


class MilvusConfig(_Frozen):
    """Vector index. A path (``*.db``) means Milvus Lite; ``http(s)://host:port`` a server."""

    uri: str = "./var/dupwatch.db"
    token: SecretStr | None = None
    db_name: str = "default"
    collection_prefix: str = Field("dupwatch", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    consistency_level: Literal["Strong", "Bounded", "Session", "Eventually"] = "Strong"
    search_consistency_level: Literal["Strong", "Bounded", "Session", "Eventually"] | None = None
    """Consistency of candidate searches (``None``: ``consistency_level``). On a 2.3.5 server Strong
    adds ~200 ms per search (waits for the time tick); Bounded avoids it but may miss a video
    indexed within the last few seconds. Writes and exactly-once checks always use ``consistency_level``."""
    timeout_s: float = Field(30.0, gt=0)
    fine_cache_mib: int = Field(256, ge=0, le=65536)
    """Fine tensors of indexed videos kept in the worker's memory for re-scoring (0: read every
    candidate's from Milvus each time). Entries are keyed by the video's coarse row, so a
    re-indexed video is read again; count this much into the pod's memory limit."""

    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://", "tcp://", "grpc://"))


class ModelConfig(_Frozen):
    """Which model bundle to serve and on which engine."""

    bundle: Path = Path("models/default")
    engine: Literal["auto", "torch", "onnxruntime", "tensorrt"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    fp16: bool = True
    """Use half precision where the engine and device support it (GPU only)."""
    engine_cache_dir: Path = Path("./var/engines")
    features_threads: int = Field(1, ge=0, le=256)
    """Intra-op threads of the frame feature extractor (ONNX Runtime session; ``torch.set_num_threads``
    on the PyTorch path); 0 = the library's default (all cores). See README "Engine threads and batches"."""
    heads_threads: int = Field(1, ge=0, le=256)
    """Intra-op threads of the small per-video and per-pair graphs (coarse, selector, fine index and
    similarity): on a few cores one thread beats several for work this small."""
    features_batch: int = Field(16, ge=1, le=256)
    """Frames per feature-extractor run."""
    pair_batch: int = Field(64, ge=1, le=1024)
    """Candidate pairs of one tiled shape per fine-similarity run."""


class DecodeConfig(_Frozen):
    """Frame sampling and the limits that protect the worker from hostile files."""

    fps: float = Field(1.0, gt=0, le=30)
    short_side: int = Field(256, ge=32, le=1024)
    crop: int = Field(224, ge=32, le=1024)
    max_duration_s: float = Field(4 * 3600.0, gt=0)
    max_frames: int = Field(14_400, ge=1)
    max_width: int = Field(7680, ge=16)
    max_height: int = Field(4320, ge=16)
    max_pixels: int = Field(7680 * 4320, ge=256)
    max_decoded_bytes: int = Field(8 * 1024**3, ge=1024)
    timeout_s: float = Field(600.0, gt=0)
    threads: int = Field(0, ge=0, le=64)
    """Decoder threads; 0 lets FFmpeg choose."""
    chunk_frames: int = Field(64, ge=24, le=4096)
    """Sampled frames decoded into one reused buffer before they are handed to the embedder: a
    long upload costs one chunk of pixels plus its features, never all its frames at once
    (at least ``ingest.inset.DETECT_FRAMES`` = 24, the inset detector's window)."""
    inset_views: bool = True
    """Look for a picture-in-picture inset (persistent rectangle, ``ingest/inset.py``) on the first
    sampled frames and, when found, also return it as a second view that is indexed and searched."""
    reframe_views: bool = True
    """With ``inset_views``: a portrait video without an inset gets a second view at a landscape
    original's scale (``ingest/reframe.py``), so 9:16 reframes meet their originals."""
    flat_luma_std: float = Field(DEFAULT_FLAT_LUMA_STD, ge=0.0, le=255.0)
    """Frames whose luma is flatter than this (standard deviation of the 64×64 box-downscaled luma,
    0..255) carry no evidence: their region vectors are zeroed, so a blank screen matches nothing
    (:mod:`inference.flat_frames`). 0 switches the rule off."""
    crop_borders: bool = True
    """Detect letterbox/pillarbox bars and padded fill on the first sampled frames (``ingest/borders.py``)
    and take the main view from the content inside them (the crop is in ``DecodedVideo.borders``)."""

    @model_validator(mode="after")
    def _crop_fits(self) -> "DecodeConfig":
        if self.crop > self.short_side:
            raise ValueError(f"crop ({self.crop}) must not exceed short_side ({self.short_side})")
        return self


class SourceConfig(_Frozen):
    """Where video bytes may come from. Anything else is refused with a reason."""

    local_roots: list[Path] = Field(default_factory=list)
    """Local files are read only below these folders (no traversal, no symlinks out)."""
    http_allow_hosts: list[str] = Field(default_factory=list)
    """Host names (or ``*.suffix``) that http(s) URLs may point to; empty refuses all URLs."""
    allow_private_addresses: bool = False
    """Let URLs resolve to private, loopback or link-local addresses (tests, on-prem stores)."""
    max_bytes: int = Field(4 * 1024**3, ge=1)
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    max_redirects: int = Field(3, ge=0, le=10)
    temp_dir: Path | None = None
    download_timeout_s: float = Field(1800.0, gt=0)
    """Wall-clock budget for one whole download (a slow drip of bytes cannot hold a worker forever)."""


class ThresholdsConfig(_Frozen):
    """Alert thresholds on the normalized score; ``None`` takes the bundle's calibrated values."""

    copy_level: float | None = Field(None, ge=-2.0, le=2.0, alias="copy")
    incident: float | None = Field(None, ge=-2.0, le=2.0)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class DetectionConfig(_Frozen):
    """The candidate cascade, normalization and alert levels."""

    coarse_top_k: int = Field(50, ge=1, le=16_384)
    clip_top_k: int = Field(100, ge=1, le=16_384)
    rerank_top_n: int = Field(20, ge=0, le=10_000)
    """Cap on the candidates the fine-grained network re-scores per upload. Without
    ``selector_threshold`` and ``rerank_fraction`` it is also the budget: the best coarse hits, then
    the selector's order, fill it."""
    selector_threshold: float | None = Field(None, ge=0.0, le=1.0)
    """DnS selection: re-score the candidates whose selector score is at least this (the
    selector's P(re-ranking helps); the coarse score when the bundle has no selector)."""
    rerank_fraction: float | None = Field(None, gt=0.0, le=1.0)
    """DnS selection: re-score the top this fraction of the candidates by selector score
    (rounded up). With ``selector_threshold`` too, a candidate is re-scored when either selects it."""
    rerank_always_top_coarse: int = Field(5, ge=0, le=1000)
    """The best coarse hits re-scored whatever the selector says (within ``rerank_top_n``)."""
    rerank_always_top_clips: int = Field(5, ge=0, le=1000)
    """The videos behind this many best clip hits (by best clip similarity) re-scored right after
    the best coarse hits, whatever the selector says (within ``rerank_top_n``): a partial copy's
    clip can match while its whole-video coarse vector is diluted. 0 = clip hits only add
    candidates. 5 re-scored more true references than 0 on both real-footage sets and no fewer of
    any edit kind (README, "DRCA clip vectors")."""
    normalization_k: int | None = Field(None, ge=1, le=1000)
    """Top-k of the background set whose mean similarity is the query bias; ``None`` = bundle."""
    normalization_weight: float | None = Field(None, ge=0.0, le=2.0)
    background_collection: str = Field("background", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    """Milvus collection ``<milvus.collection_prefix>_<this>`` holding the background set
    (``dupwatch background build``)."""
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig)
    min_segment_s: float = Field(2.0, ge=0.0)
    max_degenerate: float | None = Field(DEFAULT_MAX_DEGENERATE, ge=0.0, le=1.0)
    """Degenerate-alignment gate: a pair whose share of matched query frames piled onto one
    reference instant (speed ≈ 0, as in static footage) exceeds this is at most an incident, never
    a copy (:mod:`detect.levels`); ``null`` turns the gate off. Chosen on the training benchmarks."""
    min_motion_agreement: float | None = Field(DEFAULT_MIN_MOTION_AGREEMENT, ge=-1.0, le=1.0)
    """Motion gate: when both videos change over time (``motion_gate_magnitude``) but the query's
    changes do not follow those of its matched reference frames (:func:`detect.copy_head.motion_agreement`
    below this), the pair is another moment of the same place, at most an incident; ``null`` turns it off."""
    motion_gate_magnitude: float = Field(DEFAULT_MOTION_GATE_MAGNITUDE, ge=0.0)
    tenant_isolation: bool = True
    """Only compare uploads with videos of the same tenant; ``false`` searches every tenant."""

    @field_validator("background_collection")
    @classmethod
    def _not_a_video_collection(cls, value: str) -> str:
        if value in ("video_coarse", "video_clips", "video_frames"):
            raise ValueError(f"{value!r} is one of the video collections")
        return value


class WebhookConfig(_Frozen):
    """A moderation receiver. Alerts are signed per the Standard Webhooks spec."""

    name: str = Field(min_length=1, max_length=64)
    url: AnyHttpUrl
    secret: SecretStr
    secret_file: Path | None = None
    """Read ``secret`` from this file instead (a mounted Kubernetes Secret); give one of the two."""
    timeout_s: float = Field(10.0, gt=0)
    max_attempts: int = Field(6, ge=1, le=50)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    dead_letter_after_s: float = Field(3600.0, ge=0)
    """A receiver failing with 5xx/408/429/timeouts/connection errors for this long (since the
    first failed attempt of an alert, across the upload's retries) gets that alert dead-lettered
    (``webhook_retries_exhausted``) and the upload is committed; until then the upload waits."""
    levels: list[Literal["copy", "incident"]] = Field(default_factory=lambda: ["copy", "incident"])
    previous_secrets: list[SecretStr] = Field(default_factory=list, max_length=4)
    """Older secrets also signed with during key rotation (one extra signature each)."""

    @model_validator(mode="before")
    @classmethod
    def _read_secret_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("secret_file") is None:
            return data
        if data.get("secret") is not None:
            raise ValueError("give either secret or secret_file, not both")
        path = Path(data["secret_file"])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read secret_file {path}: {exc.strerror or exc}") from None
        return {**data, "secret": text.strip()}

    @field_validator("secret")
    @classmethod
    def _secret_format(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if len(raw) < 16:
            raise ValueError("webhook secret must hold at least 16 characters (whsec_<base64> recommended)")
        return value


class AlertsConfig(_Frozen):
    """Where the worker remembers which receiver acknowledged which alert (never sent twice)."""

    delivery_log: Literal["auto", "milvus", "sqlite"] = "auto"
    """``auto``: a Milvus collection when Milvus is a server (shared by every pod), else SQLite."""
    sqlite_path: Path = Path("./var/webhook-deliveries.db")
    milvus_collection: str = Field("dupwatch_webhook_deliveries", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


class LimitsConfig(_Frozen):
    """Bounds on in-flight work: the worker never holds more than this."""

    max_in_flight_videos: int = Field(8, ge=1, le=1024)
    batch_frames: int = Field(64, ge=1, le=4096)
    """Frames of several videos batched together for the feature extractor."""
    batch_decoded_bytes: int = Field(256 * 1024**2, ge=1024**2)
    """Decoded frame bytes (crops and inset views) one batch holds before it embeds them and
    decodes the next upload. Uploads longer than one ``decode.chunk_frames`` chunk never count:
    they are embedded chunk by chunk as they decode."""
    decode_threads: int = Field(2, ge=0, le=64)
    """Uploads decoded at once on a pool while the polling thread embeds and decides (PyAV
    releases the GIL); 0 decodes on the polling thread, one upload after the other."""
    embed_max_wait_s: float = Field(0.25, ge=0)
    """The longest a decoded upload waits for others to share its feature-extractor batch."""
    max_event_bytes: int = Field(64 * 1024, ge=256)
    max_attempts: int = Field(5, ge=1, le=100)
    """Transient failures of one event before it is dead-lettered."""
    retry_backoff_initial_s: float = Field(1.0, gt=0)
    retry_backoff_max_s: float = Field(60.0, gt=0)
    dlq_max_consecutive: int = Field(100, ge=1)
    """Stop consuming (crash, let Kubernetes restart) after this many dead letters in a row."""


class ServerConfig(_Frozen):
    """Health and metrics endpoint (``/healthz``, ``/readyz``, ``/metrics``)."""

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)


class Settings(BaseSettings):
    """Everything the worker needs. See README section *Configuration*."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    milvus: MilvusConfig = Field(default_factory=MilvusConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    sources: SourceConfig = Field(default_factory=SourceConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line, structured fields as keys (``dupwatch.logs``)."""

    @field_validator("webhooks")
    @classmethod
    def _unique_webhook_names(cls, value: list[WebhookConfig]) -> list[WebhookConfig]:
        names = [hook.name for hook in value]
        if len(names) != len(set(names)):
            raise ValueError("webhook names must be unique")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = _YAML_PATH.get()
        if yaml_path is not None:
            sources.append(_YamlSource(settings_cls, yaml_path))
        return tuple(sources)


class ConfigError(ValueError):
    """A configuration problem, phrased for one line of output."""


_YAML_PATH: ContextVar[Path | None] = ContextVar("dupwatch_yaml_path", default=None)


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file, below the environment in priority (pydantic-settings deep-merges sources)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self._data = _read_yaml(path)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _format_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item.get("loc", ())) or "<root>"
        parts.append(f"{field}: {item.get('msg', 'invalid')}")
    return "invalid configuration: " + "; ".join(parts)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}".replace("\n", " ")) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings from YAML + environment; raise :class:`ConfigError` with a one-line message."""
    path = config_file or os.environ.get(CONFIG_ENV)
    token = _YAML_PATH.set(Path(path) if path else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    finally:
        _YAML_PATH.reset(token)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with every secret replaced by ``**********``
    and every URL's userinfo and query/fragment values by ``***`` (webhook tokens)."""
    return _redact_urls(settings.model_dump(mode="json", by_alias=True))


def _redact_urls(value: Any) -> Any:
    from dupwatch.redact import redact_url

    if isinstance(value, dict):
        return {k: _redact_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_urls(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value
