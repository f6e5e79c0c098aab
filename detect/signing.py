"""Standard Webhooks signatures (anchors.md §3 "Alert webhooks"; spec v1.0.0).

- Headers: ``webhook-id`` (the alert's idempotency key, the same on every retry),
  ``webhook-timestamp`` (Unix seconds of *this* attempt) and ``webhook-signature``.
- Signature: ``v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>``; the header may hold
  several space-separated signatures (key rotation) and a receiver accepts any that matches.
- Secrets: ``whsec_<base64>`` — the part after the prefix is base64-decoded and those bytes are the
  HMAC key (as in the reference libraries). A secret without the prefix is taken as a *raw* key:
  its UTF-8 bytes are the HMAC key (for receivers that configured a plain shared string).
- Verification rejects timestamps more than ``tolerance_s`` (default 300 s) away from now, in
  either direction, and compares in constant time.

Secrets never appear in exception messages or reprs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from dupwatch.errors import PermanentError

__all__ = [
    "SECRET_PREFIX",
    "DEFAULT_TOLERANCE_S",
    "WebhookVerificationError",
    "SigningKey",
    "decode_secret",
    "sign",
    "signature_headers",
    "verify",
    "generate_secret",
]

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300
SIGNATURE_VERSION = "v1"


class WebhookVerificationError(PermanentError):
    """A delivery does not verify. ``reason`` is one of ``missing_header``, ``bad_timestamp``,
    ``timestamp_too_old``, ``timestamp_too_new``, ``no_valid_signature``, ``bad_secret``."""

    reason = "webhook_verification_failed"


def decode_secret(secret: str | bytes) -> bytes:
    """HMAC key bytes of a ``whsec_<base64>`` secret, or of a raw secret (module doc)."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX):]
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookVerificationError("the whsec_ secret's key part is not valid base64", reason="bad_secret") from None
        if not key:
            raise WebhookVerificationError("the whsec_ secret has an empty key", reason="bad_secret")
        return key
    if not secret:
        raise WebhookVerificationError("empty secret", reason="bad_secret")
    return secret.encode("utf-8")


class SigningKey:
    """A decoded key; its repr never shows the key."""

    __slots__ = ("_key",)

    def __init__(self, secret: str | bytes) -> None:
        self._key = decode_secret(secret)

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        return _sign_key(self._key, msg_id, timestamp, body)

    def __repr__(self) -> str:
        return "SigningKey(<redacted>)"

    __str__ = __repr__


def generate_secret(num_bytes: int = 24) -> str:
    import secrets

    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode("ascii")


def _sign_key(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    if not msg_id:
        raise ValueError("webhook id must be non-empty")
    to_sign = f"{msg_id}.{int(timestamp)}.".encode("utf-8") + body
    digest = hmac.new(key, to_sign, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign(secret: str | bytes | SigningKey, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 signature>`` for one key."""
    key = secret if isinstance(secret, SigningKey) else SigningKey(secret)
    return key.sign(msg_id, timestamp, body)


def signature_headers(
    secrets: str | SigningKey | Sequence[str | SigningKey], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers; several secrets give several signatures (rotation)."""
    keys = [secrets] if isinstance(secrets, (str, SigningKey)) else list(secrets)
    sigs = " ".join(sign(k, msg_id, timestamp, body) for k in keys)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(timestamp)), "webhook-signature": sigs}


def verify(
    secrets: str | bytes | Sequence[str | bytes],
    msg_id: str | None,
    timestamp: str | int | None,
    body: bytes,
    signature_header: str | None,
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise :class:`WebhookVerificationError` unless one signature in the header matches one of
    ``secrets`` and the timestamp is within ``tolerance_s`` of ``now``."""
    if not msg_id or timestamp is None or timestamp == "" or not signature_header:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature", reason="missing_header")
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer number of seconds", reason="bad_timestamp") from None
    current = time.time() if now is None else now
    if ts < current - tolerance_s:
        raise WebhookVerificationError(f"timestamp is more than {tolerance_s:g} s old", reason="timestamp_too_old")
    if ts > current + tolerance_s:
        raise WebhookVerificationError(f"timestamp is more than {tolerance_s:g} s in the future", reason="timestamp_too_new")
    keys = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
    if not keys:
        raise WebhookVerificationError("no secret to verify with", reason="bad_secret")
    try:
        expected = [_sign_key(decode_secret(k), msg_id, ts, body).split(",", 1)[1].encode("ascii") for k in keys]
    except ValueError:
        raise WebhookVerificationError("webhook-id is not valid", reason="missing_header") from None
    matched = False
    for part in signature_header.split():
        version, sep, value = part.partition(",")
        if not sep or version != SIGNATURE_VERSION:
            continue
        candidate = value.encode("ascii", "replace")
        for exp in expected:
            # evaluate every comparison (no early exit inside the inner loop)
            matched |= hmac.compare_digest(candidate, exp)
    if not matched:
        raise WebhookVerificationError("no signature matches", reason="no_valid_signature")


def verify_headers(secrets: str | Sequence[str], headers: Mapping[str, str], body: bytes, **kwargs: object) -> None:
    """:func:`verify` reading the three headers (case-insensitively) from a mapping."""
    lower = {k.lower(): v for k, v in headers.items()}
    verify(secrets, lower.get("webhook-id"), lower.get("webhook-timestamp"), body, lower.get("webhook-signature"), **kwargs)  # type: ignore[arg-type]
