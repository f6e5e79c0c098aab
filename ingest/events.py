"""The event schemas, for importers that name them by their ingest path: :mod:`dupwatch.events`."""

from dupwatch.events import *  # noqa: F403
from dupwatch.events import (  # noqa: F401
    ID_PATTERN,
    MAX_METADATA_ITEMS,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_VALUE_CHARS,
    MAX_URI_CHARS,
    SCHEMA_VERSION,
    TENANT_PATTERN,
    AlertEvent,
    AlertScores,
    AlertSegment,
    DeadLetterRecord,
    SafeId,
    Seconds,
    Tenant,
    UploadEvent,
    make_alert_id,
    parse_upload_event,
)
