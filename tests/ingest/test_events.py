"""Event schemas: round trips, reasons for bad payloads, id charset."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from dupwatch.errors import PermanentError, TransientError
from ingest.events import AlertEvent, DeadLetterRecord, UploadEvent, parse_upload_event

GOOD = {
    "schema_version": 1,
    "event_id": "evt-1",
    "video_id": "vid-1",
    "tenant": "acme",
    "uri": "https://media.example.com/v.mp4",
    "uploaded_at": "2026-11-22T04:30:00Z",
    "metadata": {"title": "x"},
}


def _raw(**changes: object) -> bytes:
    data = {**GOOD, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def _reason(raw: bytes, max_bytes: int = 65536) -> str:
    with pytest.raises(PermanentError) as info:
        parse_upload_event(raw, max_bytes=max_bytes)
    return info.value.reason


def test_parse_good_event() -> None:
    event = parse_upload_event(_raw(), max_bytes=65536)
    assert event.video_id == "vid-1" and event.tenant == "acme" and event.metadata == {"title": "x"}
    assert event.uploaded_at == datetime(2026, 11, 22, 4, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'"string"', "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, "event_too_large"),
        (_raw(schema_version=2), "unsupported_schema_version"),
        (_raw(schema_version="1"), "unsupported_schema_version"),
        (_raw(schema_version=True), "unsupported_schema_version"),
        (_raw(schema_version=...), "invalid_event"),
        (_raw(video_id="../../etc/passwd"), "invalid_event"),
        (_raw(video_id="a/b"), "invalid_event"),
        (_raw(video_id="vid\n"), "invalid_event"),
        (_raw(video_id="x" * 129), "invalid_event"),
        (_raw(video_id=""), "invalid_event"),
        (_raw(event_id=7), "invalid_event"),
        (_raw(tenant="a b"), "invalid_event"),
        (_raw(uri=""), "invalid_event"),
        (_raw(uri="http://a/\r\nHost: evil"), "invalid_event"),
        (_raw(uploaded_at="yesterday"), "invalid_event"),
        (_raw(uploaded_at="2026-11-22T04:30:00"), "invalid_event"),  # naive time
        (_raw(metadata={"k": "v" * 2000}), "invalid_event"),
        (_raw(metadata={f"k{i}": "v" for i in range(65)}), "invalid_event"),
        (_raw(metadata={"k": 1}), "invalid_event"),
        (_raw(extra_field=1), "invalid_event"),
    ],
)
def test_bad_payloads(raw: bytes, reason: str) -> None:
    assert _reason(raw) == reason


def test_too_large_is_checked_before_parsing() -> None:
    assert _reason(_raw(), max_bytes=10) == "event_too_large"


def test_deep_nesting_is_invalid_json_not_a_crash() -> None:
    assert _reason(b"[" * 50_000 + b"]" * 50_000, max_bytes=10**6) in {"invalid_json"}


def test_message_names_the_fields() -> None:
    with pytest.raises(PermanentError) as info:
        parse_upload_event(_raw(video_id="../x", tenant="a b"), max_bytes=65536)
    assert "video_id" in str(info.value) and "tenant" in str(info.value)


@pytest.mark.parametrize("model", [UploadEvent, AlertEvent, DeadLetterRecord])
def test_json_examples_round_trip(model: type) -> None:
    text = model.json_example()
    parsed = model.model_validate_json(text)
    assert json.loads(parsed.model_dump_json()) == json.loads(text)
    assert json.loads(text)["schema_version"] == 1


def test_upload_example_parses_with_the_parser() -> None:
    assert parse_upload_event(UploadEvent.json_example().encode(), max_bytes=65536).video_id == "vid-8f14e45f"


def test_alert_rejects_bad_segments_and_levels() -> None:
    data = json.loads(AlertEvent.json_example())
    with pytest.raises(ValueError):
        AlertEvent.model_validate({**data, "level": "maybe"})
    bad = dict(data["segments"][0], query_end=0.0)
    with pytest.raises(ValueError):
        AlertEvent.model_validate({**data, "segments": [bad]})
    with pytest.raises(ValueError):
        AlertEvent.model_validate({**data, "scores": {"coarse": float("nan"), "normalized": 0.1}})


def test_dead_letter_from_error_keeps_payload() -> None:
    binary = b"\x00\xffvideo"
    record = DeadLetterRecord.from_error(binary, PermanentError("bad", reason="invalid_json"), source_offset=5)
    assert record.payload_base64 and record.payload_text is None and record.payload() == binary
    assert record.reason == "invalid_json" and record.error_class == "PermanentError"
    text_record = DeadLetterRecord.from_error(b'{"a": 1}', TransientError("down", reason="milvus_unavailable"), attempts=5)
    assert text_record.payload_text == '{"a": 1}' and text_record.error_class == "TransientError"
    again = DeadLetterRecord.model_validate_json(text_record.model_dump_json())
    assert again == text_record
