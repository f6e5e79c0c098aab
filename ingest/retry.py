"""Retry policy objects (style.md rule 5) and the "dependency down" vs "input transient" split.

Two kinds of :class:`~dupwatch.errors.TransientError` reach the worker:

- **dependency outage** (reason in :data:`DEPENDENCY_REASONS`: Milvus, Kafka, the alerts
  sink): every upload would fail the same way, so the worker does *not* count attempts and never
  dead-letters the upload for it. It waits with capped exponential backoff (forever, or until
  shutdown / partition revoke), reports not-ready on ``/readyz``, and commits nothing past it.
- **input-related transient** (anything else, e.g. ``source_http_5xx``, ``source_timeout`` of one
  upload's URL): counted per event; after ``limits.max_attempts`` the event is dead-lettered with
  reason ``retries_exhausted`` so one unreachable URL cannot stall the partition forever.

The clock and the sleep are injected, so tests run without real sleeps.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dupwatch.config import LimitsConfig
from dupwatch.errors import TransientError

DEPENDENCY_REASONS: frozenset[str] = frozenset(
    {
        "milvus_unavailable",
        "kafka_unavailable",
        "alerts_unavailable",
        "webhook_unavailable",
        "model_unavailable",
        "dependency_unavailable",
        "temp_storage_unavailable",
        "delivery_log_unavailable",
    }
)


def is_dependency_outage(error: BaseException) -> bool:
    """True for a transient error that is about a shared dependency, not about this input."""
    return isinstance(error, TransientError) and error.reason in DEPENDENCY_REASONS


class Clock(Protocol):
    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: ``uniform(0, min(max, initial * multiplier**n))``.

    ``max_attempts`` bounds input-related transient failures; dependency outages ignore it.
    """

    max_attempts: int = 5
    initial_s: float = 1.0
    max_s: float = 60.0
    multiplier: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_s <= 0 or self.max_s < self.initial_s or self.multiplier < 1:
            raise ValueError(f"invalid retry policy {self}")

    @classmethod
    def from_limits(cls, limits: LimitsConfig) -> "RetryPolicy":
        return cls(
            max_attempts=limits.max_attempts,
            initial_s=limits.retry_backoff_initial_s,
            max_s=max(limits.retry_backoff_max_s, limits.retry_backoff_initial_s),
        )

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        cap = min(self.max_s, self.initial_s * self.multiplier ** max(0, failures - 1))
        if not self.jitter:
            return cap
        # "Equal jitter": never less than half the cap, so outages are not hammered.
        return cap / 2 + (rng or random).uniform(0, cap / 2)

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


class RetriesExhausted(Exception):
    """Raised by :func:`call_with_retry` after the last input-related failure (chained)."""


class Aborted(Exception):
    """The wait was abandoned (shutdown or the partition was revoked)."""


def call_with_retry(
    fn: Callable[[], object],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None],
    should_abort: Callable[[], bool] = lambda: False,
    on_outage: Callable[[TransientError], None] = lambda e: None,
    on_recovered: Callable[[], None] = lambda: None,
    on_retry: Callable[[TransientError], None] = lambda e: None,
    rng: random.Random | None = None,
    attempts_so_far: int = 0,
) -> tuple[object, int]:
    """Run ``fn`` until it succeeds; return ``(result, attempts used)``.

    Dependency outages retry without limit; other ``TransientError`` up to ``policy.max_attempts``
    (then :class:`RetriesExhausted` chained to the last error). ``PermanentError`` and bugs
    propagate at once. ``should_abort`` is checked before every wait (:class:`Aborted`).

    ``on_retry(error)`` is called exactly once per failure that is retried (after the abort check,
    before the wait): the one place to count retries (``dupwatch_retries_total``). Not for the
    failure that exhausts the attempts, nor one whose wait is aborted. ``on_outage`` is about the
    dependency's state (readiness, ``dependency_up``), not a counter.
    """
    attempts = attempts_so_far
    outage_failures = 0
    while True:
        try:
            result = fn()
        except TransientError as exc:
            if is_dependency_outage(exc):
                outage_failures += 1
                on_outage(exc)
                delay = policy.delay(outage_failures, rng)
            else:
                attempts += 1
                if policy.exhausted(attempts):
                    raise RetriesExhausted(f"{attempts} attempts: {exc.reason}: {exc}") from exc
                delay = policy.delay(attempts, rng)
            if should_abort():
                raise Aborted() from exc
            on_retry(exc)
            sleep(delay)
            if should_abort():
                raise Aborted() from exc
            continue
        if outage_failures:
            on_recovered()
        return result, attempts + 1
