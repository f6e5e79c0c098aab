"""Versioned event schemas: uploads in, alerts out, dead letters aside (architecture.md step 1, 11).

The records every stage shares: ``ingest`` parses uploads and writes dead letters, ``detect``
builds alerts (with :func:`make_alert_id`) and webhook dead letters; both import this module and
neither imports the other for them.

Every model carries ``schema_version: Literal[1]``; a producer that bumps the version gets a
``PermanentError(reason="unsupported_schema_version")`` instead of a silent misparse. Ids are
restricted to :data:`ID_PATTERN` because they become Milvus primary keys and file names.
No Kafka here: the consumer hands raw bytes to :func:`parse_upload_event`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from dupwatch.errors import DupwatchError, PermanentError, TransientError

SCHEMA_VERSION = 1
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""1–128 chars, ASCII letters/digits and ``. _ -``; never starts with a dot (no ``..``, no hidden files)."""
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
MAX_URI_CHARS = 4096
MAX_METADATA_ITEMS = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024

SafeId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Tenant = Annotated[str, StringConstraints(pattern=TENANT_PATTERN)]
Seconds = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    schema_version: Literal[1] = SCHEMA_VERSION


class UploadEvent(_Event):
    """``videos.uploaded``: a new video to check and index."""

    event_id: SafeId
    video_id: SafeId
    tenant: Tenant = "default"
    uri: Annotated[str, StringConstraints(min_length=1, max_length=MAX_URI_CHARS)]
    """Local path, ``file://`` or ``http(s)://``; :mod:`ingest.sources` decides whether it may be read."""
    uploaded_at: AwareDatetime
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("uri")
    @classmethod
    def _no_control_chars(cls, value: str) -> str:
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise ValueError("uri must not contain control characters")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_ITEMS:
            raise ValueError(f"at most {MAX_METADATA_ITEMS} metadata items, got {len(value)}")
        for key, item in value.items():
            if not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
                raise ValueError(f"metadata keys hold 1..{MAX_METADATA_KEY_CHARS} characters")
            if len(item) > MAX_METADATA_VALUE_CHARS:
                raise ValueError(f"metadata value of {key[:32]!r} exceeds {MAX_METADATA_VALUE_CHARS} characters")
        return value

    @classmethod
    def json_example(cls) -> str:
        return cls(
            event_id="evt-20261122-000123",
            video_id="vid-8f14e45f",
            tenant="acme",
            uri="https://media.example.com/uploads/vid-8f14e45f.mp4",
            uploaded_at=datetime(2026, 11, 22, 4, 30, tzinfo=timezone.utc),
            metadata={"title": "Skate park", "uploader": "u-42"},
        ).model_dump_json(indent=2)


class AlertSegment(BaseModel):
    """A matched segment in seconds of both videos (mirrors :class:`dupwatch.records.Segment`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query_start: Seconds
    query_end: Seconds
    ref_start: Seconds
    ref_end: Seconds
    score: Annotated[float, Field(allow_inf_nan=False)]

    @model_validator(mode="after")
    def _ordered(self) -> "AlertSegment":
        if self.query_end < self.query_start or self.ref_end < self.ref_start:
            raise ValueError("segment ends before it starts")
        return self


class AlertScores(BaseModel):
    """Scores before (coarse, fine) and after normalization; the threshold applies to ``normalized``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    coarse: Annotated[float, Field(allow_inf_nan=False)]
    fine: Annotated[float, Field(allow_inf_nan=False)] | None = None
    normalized: Annotated[float, Field(allow_inf_nan=False)]


class AlertEvent(_Event):
    """``dupwatch.alerts``: the query upload matches an indexed video at ``level``.

    ``alert_id`` is the idempotency key (webhook ``webhook-id``, Kafka key): a re-processed event
    must produce the same id, e.g. a hash of (tenant, query, matched, level, bundle version).
    """

    alert_id: SafeId
    video_id: SafeId
    matched_video_id: SafeId
    tenant: Tenant = "default"
    level: Literal["copy", "incident"]
    scores: AlertScores
    segments: list[AlertSegment] = Field(default_factory=list, max_length=1000)
    evidence: dict[str, Any] = Field(default_factory=dict)
    model_version: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    created_at: AwareDatetime

    @classmethod
    def json_example(cls) -> str:
        return cls(
            alert_id="alr-f65b806087cb0203d32bbbb84b181880",
            video_id="vid-8f14e45f",
            matched_video_id="vid-1679091c",
            tenant="acme",
            level="copy",
            scores=AlertScores(coarse=0.71, fine=0.64, normalized=0.52),
            segments=[AlertSegment(query_start=3.0, query_end=41.0, ref_start=120.0, ref_end=158.0, score=0.66)],
            evidence={"copy_score": 0.856, "thresholds": {"copy": 0.622, "incident": 0.882}},
            model_version="s2vs-dns-1.0.0+onnx",
            created_at=datetime(2026, 11, 22, 4, 31, 7, tzinfo=timezone.utc),
        ).model_dump_json(indent=2)


class DeadLetterRecord(_Event):
    """What goes to the dead-letter topic: enough to replay the event and to see why it failed."""

    payload_text: str | None = None
    """The original payload when it was valid UTF-8, else ``None`` and ``payload_base64`` is set."""
    payload_base64: str | None = None
    error_class: Literal["PermanentError", "TransientError"]
    reason: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    message: Annotated[str, StringConstraints(max_length=4096)]
    attempts: int = Field(1, ge=1)
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    source_topic: str | None = None
    source_partition: int | None = Field(None, ge=0)
    source_offset: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_payload(self) -> "DeadLetterRecord":
        if (self.payload_text is None) == (self.payload_base64 is None):
            raise ValueError("exactly one of payload_text and payload_base64 is set")
        if self.last_seen < self.first_seen:
            raise ValueError("last_seen is before first_seen")
        return self

    @classmethod
    def from_error(
        cls,
        payload: bytes,
        error: DupwatchError,
        *,
        attempts: int = 1,
        first_seen: datetime | None = None,
        last_seen: datetime | None = None,
        source_topic: str | None = None,
        source_partition: int | None = None,
        source_offset: int | None = None,
    ) -> "DeadLetterRecord":
        """Build the record for ``payload`` that failed with ``error`` (text if UTF-8, else base64)."""
        now = datetime.now(timezone.utc)

        def aware(value: datetime | None) -> datetime:
            if value is None:
                return now
            return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)

        try:
            text: str | None = payload.decode("utf-8")
            b64 = None
        except UnicodeDecodeError:
            text, b64 = None, base64.b64encode(payload).decode("ascii")
        return cls(
            payload_text=text,
            payload_base64=b64,
            error_class="TransientError" if isinstance(error, TransientError) else "PermanentError",
            reason=error.reason,
            message=error.message[:4096],
            attempts=attempts,
            first_seen=min(aware(first_seen), aware(last_seen)),
            last_seen=aware(last_seen),
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
        )

    def payload(self) -> bytes:
        """The original bytes."""
        if self.payload_text is not None:
            return self.payload_text.encode("utf-8")
        return base64.b64decode(self.payload_base64 or "")

    @classmethod
    def json_example(cls) -> str:
        return cls(
            payload_text='{"schema_version": 1, "event_id": "evt-1", "video_id": "../etc"}',
            error_class="PermanentError",
            reason="invalid_event",
            message="invalid upload event: video_id: String should match pattern ...; tenant ...",
            attempts=1,
            first_seen=datetime(2026, 11, 22, 4, 32, tzinfo=timezone.utc),
            last_seen=datetime(2026, 11, 22, 4, 32, tzinfo=timezone.utc),
            source_topic="videos.uploaded",
            source_partition=3,
            source_offset=18231,
        ).model_dump_json(indent=2)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:10]:
        field = ".".join(str(p) for p in item.get("loc", ())) or "<root>"
        parts.append(f"{field}: {item.get('msg', 'invalid')}")
    more = error.error_count() - 10
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_upload_event(raw: bytes, *, max_bytes: int) -> UploadEvent:
    """Parse one ``videos.uploaded`` payload; every failure is a :class:`PermanentError`.

    Reasons: ``event_too_large`` (checked before parsing), ``invalid_json`` (not UTF-8 JSON or
    not an object), ``unsupported_schema_version``, ``invalid_event`` (message names the fields).
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise PermanentError(f"event payload must be bytes, got {type(raw).__name__}", reason="invalid_json")
    raw = bytes(raw)
    if len(raw) > max_bytes:
        raise PermanentError(f"event of {len(raw)} bytes exceeds the limit of {max_bytes}", reason="event_too_large")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PermanentError(f"event is not valid UTF-8 JSON: {str(exc)[:200]}", reason="invalid_json") from None
    if not isinstance(data, dict):
        raise PermanentError(f"event must be a JSON object, got {type(data).__name__}", reason="invalid_json")
    if "schema_version" not in data:
        raise PermanentError("invalid upload event: schema_version: Field required", reason="invalid_event")
    version = data["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise PermanentError(
            f"schema_version {str(version)[:40]!r} is not supported (this worker reads {SCHEMA_VERSION})",
            reason="unsupported_schema_version",
        )
    try:
        return UploadEvent.model_validate(data)
    except ValidationError as exc:
        raise PermanentError(f"invalid upload event: {_describe(exc)}", reason="invalid_event") from None
    except (ValueError, TypeError, RecursionError) as exc:  # pragma: no cover - defensive
        raise PermanentError(f"invalid upload event: {str(exc)[:200]}", reason="invalid_event") from None


def make_alert_id(tenant: str, video_id: str, matched_video_id: str, level: str, model_version: str) -> str:
    """Deterministic alert id (the idempotency key of Kafka alerts and webhooks)."""
    digest = hashlib.sha256("\x1f".join((tenant, video_id, matched_video_id, level, model_version)).encode()).hexdigest()
    return f"alr-{digest[:32]}"
