from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from detect.signing import (
    SigningKey,
    WebhookVerificationError,
    decode_secret,
    generate_secret,
    sign,
    signature_headers,
    verify,
    verify_headers,
)

# Published Standard Webhooks test vector (reference libraries' tests).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_known_vector():
    assert sign(SECRET, MSG_ID, TS, BODY) == EXPECTED


def test_matches_independent_hmac():
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{MSG_ID}.{TS}.".encode() + BODY, hashlib.sha256).digest()
    assert sign(SECRET, MSG_ID, TS, BODY) == "v1," + base64.b64encode(mac).decode()


def test_raw_secret_is_utf8_key():
    raw = "a-plain-shared-secret"
    mac = hmac.new(raw.encode(), f"id1.{TS}.".encode() + BODY, hashlib.sha256).digest()
    assert sign(raw, "id1", TS, BODY) == "v1," + base64.b64encode(mac).decode()
    assert decode_secret(raw) == raw.encode()


def test_verify_accepts_valid_and_rotated():
    verify(SECRET, MSG_ID, str(TS), BODY, EXPECTED, now=TS + 10)
    other = generate_secret()
    header = signature_headers([other, SECRET], MSG_ID, TS, BODY)["webhook-signature"]
    assert len(header.split()) == 2
    verify(SECRET, MSG_ID, TS, BODY, header, now=TS)  # receiver still on the old key
    verify([other], MSG_ID, TS, BODY, header, now=TS)  # receiver on the new key
    verify(SECRET, MSG_ID, TS, BODY, "v1,bm9wZQ== " + EXPECTED, now=TS)
    verify_headers(SECRET, {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(TS), "Webhook-Signature": EXPECTED}, BODY, now=TS)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"body": BODY + b" "}, "no_valid_signature"),
        ({"secret": generate_secret()}, "no_valid_signature"),
        ({"msg_id": "msg_other"}, "no_valid_signature"),
        ({"now": TS + 301}, "timestamp_too_old"),
        ({"now": TS - 301}, "timestamp_too_new"),
        ({"timestamp": "yesterday"}, "bad_timestamp"),
        ({"signature": None}, "missing_header"),
        ({"signature": "v2," + EXPECTED[3:]}, "no_valid_signature"),
        ({"secret": "whsec_!!notbase64!!"}, "bad_secret"),
    ],
)
def test_verify_rejects(kwargs, reason):
    args = {"secret": SECRET, "msg_id": MSG_ID, "timestamp": TS, "body": BODY, "signature": EXPECTED, "now": TS}
    args.update(kwargs)
    with pytest.raises(WebhookVerificationError) as info:
        verify(args["secret"], args["msg_id"], args["timestamp"], args["body"], args["signature"], now=args["now"])
    assert info.value.reason == reason
    assert SECRET not in str(info.value)


def test_tolerance_boundary_and_key_repr():
    verify(SECRET, MSG_ID, TS, BODY, EXPECTED, now=TS + 300)
    assert "MfKQ" not in repr(SigningKey(SECRET))
