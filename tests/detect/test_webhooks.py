"""Delivery against real HTTP receivers on 127.0.0.1; backoff uses a fake clock and sleep."""

from __future__ import annotations

import logging
import random

import pytest

from detect.delivery_log import InMemoryDeliveryLog, SqliteDeliveryLog
from detect.signing import verify_headers
from detect.webhooks import WebhookSender, encode_body
from dupwatch.config import WebhookConfig
from tests.detect.webhook_server import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ALERT = {"alert_id": "alrt_1", "level": "copy", "query": "q1", "matched": "r9", "scores": {"normalized": 0.41}}


class FakeTime:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(script, **kw) -> Receiver:
        r = Receiver(script=list(script), **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def config(url: str, name: str = "mod", **kw) -> WebhookConfig:
    base = dict(name=name, url=url, secret=SECRET, timeout_s=2.0, max_attempts=4, backoff_initial_s=0.5, backoff_max_s=8.0)
    base.update(kw)
    return WebhookConfig(**base)


def sender(cfgs, log=None, ft=None) -> tuple[WebhookSender, FakeTime]:
    ft = ft or FakeTime()
    return WebhookSender(cfgs, log or InMemoryDeliveryLog(), clock=ft.clock, sleep=ft.sleep, rng=random.Random(7)), ft


def test_5xx_then_200_retried_and_signed(receivers):
    rcv = receivers([500, 503, 200])
    s, ft = sender([config(rcv.url)])
    [res] = s.send("alrt_1", ALERT)
    assert (res.outcome, res.attempts, res.status_code) == ("delivered", 3, 200)
    assert len(rcv.received) == 3
    assert {r.headers["webhook-id"] for r in rcv.received} == {"alrt_1"}
    assert all(r.body == encode_body(ALERT) for r in rcv.received)
    # every attempt verifies with the receiver's secret, at the time it was sent
    for r in rcv.received:
        verify_headers(SECRET, r.headers, r.body, now=int(r.headers["webhook-timestamp"]))
    # full jitter within the exponential caps 0.5, 1.0
    assert len(ft.sleeps) == 2 and 0 <= ft.sleeps[0] <= 0.5 and 0 <= ft.sleeps[1] <= 1.0
    # acknowledged: never sent again
    assert s.send("alrt_1", ALERT)[0].outcome == "already_delivered"
    assert len(rcv.received) == 3


def test_timeout_is_retried(receivers):
    rcv = receivers(["hang", 200], hang_s=1.0)
    s, _ = sender([config(rcv.url, timeout_s=0.25)])
    [res] = s.send("alrt_t", ALERT)
    assert (res.outcome, res.attempts) == ("delivered", 2)


def test_connection_reset_is_retried(receivers):
    rcv = receivers(["reset", "reset", 200])
    s, _ = sender([config(rcv.url)])
    [res] = s.send("alrt_r", ALERT)
    assert (res.outcome, res.attempts) == ("delivered", 3)


def test_connection_refused_exhausts_attempts():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    log = InMemoryDeliveryLog()
    s, ft = sender([config(f"http://127.0.0.1:{port}/x", max_attempts=3)], log)
    [res] = s.send("alrt_c", ALERT)
    assert (res.outcome, res.reason, res.attempts) == ("dead_letter", "attempts_exhausted", 3)
    assert len(ft.sleeps) == 2
    assert log.get("alrt_c", "mod").state == "dead_letter"


@pytest.mark.parametrize("status", [400, 410])
def test_4xx_not_retried_dead_letter(receivers, status):
    rcv = receivers([status, 200])
    s, ft = sender([config(rcv.url)])
    [res] = s.send("alrt_4", ALERT)
    assert (res.outcome, res.reason, res.attempts, res.status_code) == ("dead_letter", f"http_{status}", 1, status)
    assert res.dead_letter and not res.ok
    assert len(rcv.received) == 1 and ft.sleeps == []


def test_500_until_last_attempt_dead_letters(receivers):
    rcv = receivers([500])
    s, ft = sender([config(rcv.url, max_attempts=3)])
    [res] = s.send("alrt_5", ALERT)
    assert (res.outcome, res.reason, res.status_code, res.attempts) == ("dead_letter", "attempts_exhausted", 500, 3)
    assert len(rcv.received) == 3


def test_429_honours_retry_after(receivers):
    rcv = receivers([(429, {"Retry-After": "7"}), 200])
    s, ft = sender([config(rcv.url)])
    [res] = s.send("alrt_429", ALERT)
    assert res.outcome == "delivered" and ft.sleeps == [7.0]
    # the second attempt carries a fresh timestamp
    ts = [int(r.headers["webhook-timestamp"]) for r in rcv.received]
    assert ts[1] - ts[0] == 7


def test_acknowledged_alert_not_resent_after_restart(receivers, tmp_path):
    rcv = receivers([200])
    db = tmp_path / "var" / "deliveries.sqlite"
    log1 = SqliteDeliveryLog(db)
    s1, _ = sender([config(rcv.url)], log1)
    assert s1.send("alrt_once", ALERT)[0].outcome == "delivered"
    log1.close()
    # "restart": new log object on the same file, new sender
    log2 = SqliteDeliveryLog(db)
    s2, _ = sender([config(rcv.url)], log2)
    assert s2.send("alrt_once", ALERT)[0].outcome == "already_delivered"
    assert s2.send("alrt_other", ALERT)[0].outcome == "delivered"
    assert [r.headers["webhook-id"] for r in rcv.received] == ["alrt_once", "alrt_other"]
    rec = log2.get("alrt_once", "mod")
    assert rec.state == "delivered" and rec.status_code == 200
    log2.close()


def test_per_receiver_independence_and_levels(receivers):
    ok, gone, incident_only = receivers([200]), receivers([410]), receivers([200])
    cfgs = [config(ok.url, "ok"), config(gone.url, "gone"), config(incident_only.url, "inc", levels=["incident"])]
    s, _ = sender(cfgs)
    results = {r.receiver: r for r in s.send("alrt_lv", ALERT, level="copy")}
    assert results["ok"].outcome == "delivered"
    assert results["gone"].outcome == "dead_letter"
    assert results["inc"].outcome == "not_subscribed" and incident_only.received == []


def test_secrets_never_in_logs_or_reprs(receivers, caplog):
    rcv = receivers([500, 410])
    cfg = config(rcv.url, previous_secrets=["whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"])
    caplog.set_level(logging.DEBUG)
    s, _ = sender([cfg])
    results = s.send("alrt_s", ALERT)
    # two signatures (rotation)
    assert len(rcv.received[0].headers["webhook-signature"].split()) == 2
    text = caplog.text + repr(s) + str(s) + repr(cfg) + repr(results) + repr(cfg.model_dump())
    for secret_part in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"):
        assert secret_part not in text
    assert "alrt_s" in caplog.text  # the logs do say what happened


def test_injected_retry_policy_and_chained_error(receivers):
    from detect.webhooks import RetryPolicy

    rcv = receivers([404])
    policy = RetryPolicy(max_attempts=2, backoff_initial_s=1.0, backoff_max_s=1.0, retryable_status=frozenset({404}))
    ft = FakeTime()
    s = WebhookSender([config(rcv.url)], InMemoryDeliveryLog(), clock=ft.clock, sleep=ft.sleep,
                      rng=random.Random(1), retry_policy=lambda c: policy)
    [res] = s.send("alrt_p", b'{"raw": true}')
    assert (res.outcome, res.attempts, res.reason) == ("dead_letter", 2, "attempts_exhausted")
    assert len(rcv.received) == 2 and rcv.received[0].body == b'{"raw": true}'
    # full-jitter bounds of the default policy, attempt n: [0, min(max, initial·2^(n-1))]
    p = RetryPolicy(backoff_initial_s=0.5, backoff_max_s=3.0)
    rng = random.Random(3)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        assert all(0.0 <= p.delay(attempt, rng) <= cap for _ in range(50))
    assert p.delay(1, rng, retry_after=1000.0) == p.max_retry_after_s
    # a connection error is kept for chaining, not shown in the repr
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    s2, _ = sender([config(f"http://127.0.0.1:{port}/x", max_attempts=1)])
    [res2] = s2.send("alrt_e", ALERT)
    assert res2.error is not None and "127.0.0.1" not in repr(res2)
