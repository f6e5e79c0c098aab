"""Commit policy, offset tracking and retry policy of the Kafka loop (pure logic, fake clocks)."""

from __future__ import annotations

import random

import pytest

from dupwatch.config import LimitsConfig
from dupwatch.errors import PermanentError, TransientError
from ingest.consumer import CommitPolicy, CommitPolicyState, OffsetTracker
from ingest.pipeline import make_alert_id
from ingest.retry import Aborted, RetriesExhausted, RetryPolicy, call_with_retry, is_dependency_outage


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_commit_policy_by_time_and_by_count():
    clock = FakeClock()
    state = CommitPolicyState(CommitPolicy(min_interval_s=1.0, min_messages=3), clock=clock.time)
    assert not state.should_commit()  # nothing finished
    state.finished(1)
    assert not state.should_commit()
    clock.now += 1.0
    assert state.should_commit()
    state.did_commit()
    state.finished(3)
    assert state.should_commit()  # count reached before the interval
    with pytest.raises(ValueError):
        CommitPolicy(min_interval_s=None, min_messages=None)


def test_offset_tracker_commits_only_contiguous_finished_work():
    t = OffsetTracker()
    tp = ("uploads", 0)
    for off in (10, 11, 12, 13):
        t.add(tp, off)
    t.finish(tp, 11)
    assert t.committable() == {}  # 10 is still in flight
    t.finish(tp, 10)
    assert t.committable() == {tp: 12}
    t.committed({tp: 12})
    assert t.committable() == {}
    t.finish(tp, 13)
    assert t.committable() == {}  # 12 (e.g. aborted) blocks 13
    t.finish(tp, 12)
    assert t.committable() == {tp: 14}
    assert t.in_flight() == 0


def test_offset_tracker_forgets_revoked_partitions():
    t = OffsetTracker()
    tp = ("uploads", 1)
    t.add(tp, 5)
    t.forget(tp)
    t.finish(tp, 5)  # finished after the revoke: ignored, the new owner re-processes it
    assert t.committable() == {}


def test_retry_policy_backoff_is_capped_and_jittered():
    policy = RetryPolicy(max_attempts=5, initial_s=1.0, max_s=8.0)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(1, 8)]
    caps = [1, 2, 4, 8, 8, 8, 8]
    for d, cap in zip(delays, caps):
        assert cap / 2 <= d <= cap
    assert RetryPolicy.from_limits(LimitsConfig(max_attempts=3)).max_attempts == 3


def test_input_transient_errors_exhaust_after_max_attempts():
    clock = FakeClock()
    calls = []

    def flaky():
        calls.append(1)
        raise TransientError("HTTP 503 from cdn", reason="source_http_5xx")

    with pytest.raises(RetriesExhausted) as info:
        call_with_retry(flaky, RetryPolicy(max_attempts=3, initial_s=0.5, max_s=4.0), sleep=clock.sleep)
    assert len(calls) == 3 and len(clock.sleeps) == 2
    assert isinstance(info.value.__cause__, TransientError)


def test_dependency_outage_waits_without_limit_then_recovers():
    clock = FakeClock()
    state = {"n": 0, "outages": 0, "recovered": 0}

    def milvus_down_for_a_while():
        state["n"] += 1
        if state["n"] <= 20:
            raise TransientError("connection refused", reason="milvus_unavailable")
        return "ok"

    result, _ = call_with_retry(
        milvus_down_for_a_while,
        RetryPolicy(max_attempts=2, initial_s=0.1, max_s=2.0),
        sleep=clock.sleep,
        on_outage=lambda e: state.__setitem__("outages", state["outages"] + 1),
        on_recovered=lambda: state.__setitem__("recovered", 1),
    )
    assert result == "ok" and state["outages"] == 20 and state["recovered"] == 1
    assert max(clock.sleeps) <= 2.0
    assert is_dependency_outage(TransientError("x", reason="kafka_unavailable"))
    assert not is_dependency_outage(TransientError("x", reason="source_timeout"))


def test_waiting_is_abandoned_on_shutdown_and_permanent_errors_pass_through():
    clock = FakeClock()
    with pytest.raises(Aborted):
        call_with_retry(
            lambda: (_ for _ in ()).throw(TransientError("down", reason="milvus_unavailable")),
            RetryPolicy(),
            sleep=clock.sleep,
            should_abort=lambda: len(clock.sleeps) >= 3,
        )
    with pytest.raises(PermanentError):
        call_with_retry(lambda: (_ for _ in ()).throw(PermanentError("bad", reason="not_a_video")), RetryPolicy(), sleep=clock.sleep)


def test_alert_ids_are_deterministic_and_distinct():
    a = make_alert_id("acme", "q1", "r1", "copy", "bundle-1")
    assert a == make_alert_id("acme", "q1", "r1", "copy", "bundle-1")
    assert a != make_alert_id("acme", "q1", "r1", "incident", "bundle-1")
    assert a != make_alert_id("acme", "q1", "r1", "copy", "bundle-2")
    from ingest.events import ID_PATTERN
    import re

    assert re.match(ID_PATTERN, a)
