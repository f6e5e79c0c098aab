"""Deliver signed alerts to moderation webhooks (architecture step 11).

For each configured receiver, :meth:`WebhookSender.send` POSTs the alert body with Standard
Webhooks headers (:mod:`detect.signing`): ``webhook-id`` is the alert's idempotency key and stays
the same across retries; every attempt carries a fresh ``webhook-timestamp`` and signature.

- 2xx: delivered; recorded in the :class:`~detect.delivery_log.DeliveryLog`, and that receiver is
  never sent that alert again (not after a restart either, with the SQLite log).
- 5xx, 408, 429, timeouts and connection errors: retried up to ``max_attempts`` with exponential
  backoff and full jitter (``uniform(0, min(backoff_max_s, backoff_initial_s·2^(n-1)))``). A
  ``Retry-After`` header (seconds or HTTP date) on 429/503 replaces the jittered delay, capped at
  ``max_retry_after_s``. After the last attempt of one :meth:`WebhookSender.send`:
  ``attempts_exhausted`` (recorded in the delivery log, not final: the worker's alert sink makes
  the upload wait and sends again with the same ``webhook-id``). Once the receiver has failed
  that alert for ``dead_letter_after_s`` (default 1 h, counted from the first failed attempt
  seen by this process, across sends; a restart starts the window again), the round's end is
  final instead: ``webhook_retries_exhausted``.
- Any other status (400, 401, 404, 410, 3xx …): no retry; dead letter (``http_<code>``) at once.

Every final dead letter (``webhook_retries_exhausted``, ``http_<code>``, ``request_error``) is
recorded in the delivery log **and** handed to ``dead_letters`` (a callable, e.g.
:class:`KafkaWebhookDeadLetters` for the Kafka dead-letter topic), as a
:class:`WebhookDeadLetter` whose :meth:`~WebhookDeadLetter.record` is an
``dupwatch.events.DeadLetterRecord`` (payload = the alert body) with the reason
``webhook_retries_exhausted`` (5xx/timeouts past the window), ``webhook_rejected`` (4xx) or
``webhook_request_error`` (an unusable URL). The record is published before the log row is
written, so a failing dead-letter topic (``TransientError``) leaves the alert to be retried.

With ``metrics`` (an ``ingest.metrics.WorkerMetrics``; the worker sets it) every attempt counts in
``dupwatch_webhook_requests_total{receiver,status_class}`` (``2xx``/``3xx``/``4xx``/``5xx`` by
status; ``timeout``; ``connection``: refused, reset, broken response; ``invalid_request``: an
unusable URL; ``other_error``), acknowledged alerts in ``dupwatch_webhook_deliveries_total``, each
repeated attempt in ``dupwatch_webhook_retries_total``, final dead letters in
``dupwatch_webhook_dead_letters_total{reason}`` (the dead-letter topic's reason) and rounds that
ended in ``attempts_exhausted`` in ``dupwatch_webhook_rounds_exhausted_total``.

Results are typed (:class:`DeliveryResult`); nothing here raises for a receiver's failure (only
for the delivery log's or the dead-letter sink's own outage). Secrets never appear in logs, reprs or results; only the
receiver's *name* is logged (URLs may carry tokens).
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from detect.delivery_log import DeliveryLog
from detect.signing import SigningKey

logger = logging.getLogger(__name__)

__all__ = ["DeliveryResult", "RetryPolicy", "WebhookSender", "encode_body", "RETRYABLE_STATUS", "WebhookDeadLetter",
           "KafkaWebhookDeadLetters", "CollectingWebhookDeadLetters", "DLQ_REASONS"]

Outcome = Literal["delivered", "already_delivered", "dead_letter", "not_subscribed"]
RETRYABLE_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
DEFAULT_MAX_RETRY_AFTER_S = 300.0
DEFAULT_DEAD_LETTER_AFTER_S = 3600.0
USER_AGENT = "dupwatch-webhooks/1"
NOT_FINAL = "attempts_exhausted"
"""The one dead-letter reason that is not final (the caller waits and sends again)."""
RETRIES_EXHAUSTED = "webhook_retries_exhausted"
DLQ_REASONS = {RETRIES_EXHAUSTED: RETRIES_EXHAUSTED, "request_error": "webhook_request_error"}
"""Delivery-log reason → dead-letter-topic reason (``http_<code>`` → ``webhook_rejected``)."""
MAX_TRACKED_FAILURES = 10_000


def dlq_reason(delivery_reason: str) -> str:
    if delivery_reason.startswith("http_"):
        return "webhook_rejected"
    return DLQ_REASONS.get(delivery_reason, "webhook_" + delivery_reason)


@dataclass(frozen=True)
class WebhookDeadLetter:
    """A final webhook dead letter, handed to the sender's ``dead_letters`` callable."""

    receiver: str
    alert_id: str
    delivery_reason: str
    """As in the delivery log: ``webhook_retries_exhausted``, ``http_<code>``, ``request_error``."""
    status_code: int | None
    attempts: int
    """Attempts to this receiver for this alert, over every send of this process."""
    first_failure_at: float
    at: float
    detail: str
    body: bytes = field(repr=False)

    @property
    def reason(self) -> str:
        """The dead-letter topic's reason code (README *Events*)."""
        return dlq_reason(self.delivery_reason)

    @property
    def message(self) -> str:
        status = "" if self.status_code is None else f", last HTTP {self.status_code}"
        return (f"webhook {self.receiver}: alert {self.alert_id} {self.delivery_reason} after {self.attempts} attempt(s) "
                f"over {max(0.0, self.at - self.first_failure_at):.0f}s ({self.detail}{status})")

    def record(self) -> Any:
        """The ``dupwatch.events.DeadLetterRecord`` (payload = the alert body)."""
        from datetime import datetime, timezone

        from dupwatch.errors import PermanentError
        from dupwatch.events import DeadLetterRecord

        return DeadLetterRecord.from_error(
            self.body, PermanentError(self.message, reason=self.reason), attempts=max(1, self.attempts),
            first_seen=datetime.fromtimestamp(self.first_failure_at, timezone.utc),
            last_seen=datetime.fromtimestamp(max(self.at, self.first_failure_at), timezone.utc),
        )

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("dupwatch.errors.class", b"PermanentError"),
            ("dupwatch.errors.reason", self.reason.encode()),
            ("dupwatch.errors.message", self.message[:1024].encode("utf-8", "replace")),
            ("dupwatch.errors.attempts", str(max(1, self.attempts)).encode()),
            ("dupwatch.webhook.receiver", self.receiver.encode()),
            ("dupwatch.webhook.reason", self.delivery_reason.encode()),
            ("dupwatch.alert_id", self.alert_id.encode()),
        ]


class KafkaWebhookDeadLetters:
    """Publishes :class:`WebhookDeadLetter` records to the Kafka dead-letter topic (key = alert
    id, value = ``DeadLetterRecord`` JSON, context in headers), synchronously; a Kafka failure is
    ``TransientError(reason="kafka_unavailable")``."""

    def __init__(self, producer: Any, topic: str, *, timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def __call__(self, dead: WebhookDeadLetter) -> None:
        from kafka.errors import KafkaError

        from dupwatch.errors import TransientError

        try:
            self.producer.send(self.topic, key=dead.alert_id.encode(), value=dead.record().model_dump_json().encode(),
                               headers=dead.headers()).get(timeout=self.timeout_s)
        except KafkaError as exc:
            raise TransientError(f"producing to {self.topic} failed: {exc}", reason="kafka_unavailable") from exc

    def __repr__(self) -> str:
        return f"KafkaWebhookDeadLetters({self.topic!r})"


class CollectingWebhookDeadLetters:
    """Keeps the dead letters in memory (``dupwatch scan``, tests)."""

    def __init__(self) -> None:
        self.records: list[WebhookDeadLetter] = []

    def __call__(self, dead: WebhookDeadLetter) -> None:
        self.records.append(dead)


@dataclass(frozen=True)
class DeliveryResult:
    receiver: str
    alert_id: str
    outcome: Outcome
    attempts: int
    status_code: int | None = None
    reason: str | None = None
    """Stable code for dead letters: ``http_<code>``, ``attempts_exhausted``, ``request_error``."""
    detail: str | None = None
    """What the last attempt ran into (status or exception class), no URL, no secret."""
    error: BaseException | None = field(default=None, repr=False, compare=False)
    """The last attempt's exception, for ``raise ... from result.error`` (not in the repr: its
    message may name the URL)."""

    @property
    def ok(self) -> bool:
        return self.outcome in ("delivered", "already_delivered", "not_subscribed")

    @property
    def dead_letter(self) -> bool:
        return self.outcome == "dead_letter"


def encode_body(payload: Any) -> bytes:
    """bytes as they are; str as UTF-8; pydantic models via ``model_dump_json``; else compact JSON."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    dump = getattr(payload, "model_dump_json", None)
    if callable(dump):
        return str(dump()).encode("utf-8")
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry one receiver (style rule 5: an injected policy object)."""

    max_attempts: int = 6
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    retryable_status: frozenset[int] = RETRYABLE_STATUS
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S
    dead_letter_after_s: float | None = DEFAULT_DEAD_LETTER_AFTER_S
    """Retryable failures of one alert for this long (across sends) make the next exhausted round
    final (``webhook_retries_exhausted``); ``None``: never (wait for the receiver forever)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff_initial_s <= 0 or self.backoff_max_s <= 0 or self.max_retry_after_s < 0:
            raise ValueError("max_attempts ≥ 1, positive backoff and non-negative max_retry_after_s required")
        if self.dead_letter_after_s is not None and not (math.isfinite(self.dead_letter_after_s) and self.dead_letter_after_s >= 0):
            raise ValueError("dead_letter_after_s must be finite and ≥ 0 (or None)")

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> "RetryPolicy":
        values = dict(max_attempts=config.max_attempts, backoff_initial_s=config.backoff_initial_s,
                      backoff_max_s=config.backoff_max_s,
                      dead_letter_after_s=getattr(config, "dead_letter_after_s", DEFAULT_DEAD_LETTER_AFTER_S))
        values.update(overrides)
        return cls(**values)

    def retryable(self, status: int) -> bool:
        return status in self.retryable_status

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Wait before attempt ``attempt + 1``: ``Retry-After`` (capped) if given, else full jitter
        ``uniform(0, min(backoff_max_s, backoff_initial_s·2^(attempt-1)))``."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        return rng.uniform(0.0, min(self.backoff_max_s, self.backoff_initial_s * (2 ** (attempt - 1))))


def _parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class _Receiver:
    __slots__ = ("config", "name", "url", "keys", "policy")

    def __init__(self, config: Any, policy: RetryPolicy) -> None:
        self.config = config
        self.policy = policy
        self.name: str = config.name
        self.url: str = str(config.url)
        secrets = [config.secret] + list(getattr(config, "previous_secrets", []) or [])
        self.keys = [SigningKey(s.get_secret_value() if hasattr(s, "get_secret_value") else s) for s in secrets]

    def __repr__(self) -> str:
        return f"_Receiver({self.name!r})"


class WebhookSender:
    """Signs and delivers alert bodies to every configured receiver (module doc).

    ``clock`` returns Unix seconds (for ``webhook-timestamp`` and the log); ``sleep`` waits between
    attempts (tests pass fakes); ``http_session`` is a ``requests.Session``-like object with
    ``post``; ``rng`` draws the jitter; ``retry_policy(config)`` builds each receiver's
    :class:`RetryPolicy` (default: its attempts/backoff/dead-letter settings plus
    ``max_retry_after_s``); ``dead_letters(WebhookDeadLetter)`` receives every final dead letter
    (the Kafka dead-letter topic in the worker: :class:`KafkaWebhookDeadLetters`).
    """

    def __init__(
        self,
        configs: Sequence[Any],
        delivery_log: DeliveryLog,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        http_session: Any | None = None,
        *,
        rng: random.Random | None = None,
        max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
        retry_policy: Callable[[Any], RetryPolicy] | None = None,
        dead_letters: Callable[[WebhookDeadLetter], None] | None = None,
        metrics: Any | None = None,
    ) -> None:
        names = [c.name for c in configs]
        if len(names) != len(set(names)):
            raise ValueError("webhook receiver names must be unique")
        make_policy = retry_policy or (lambda c: RetryPolicy.from_config(c, max_retry_after_s=max_retry_after_s))
        self._receivers = [_Receiver(c, make_policy(c)) for c in configs]
        self._log = delivery_log
        self._clock = clock
        self._sleep = sleep
        if http_session is None:
            import requests

            http_session = requests.Session()
        self._http = http_session
        self._rng = rng or random.Random()
        self.dead_letters = dead_letters
        """Receives every final dead letter; settable after construction (the worker sets it once its
        Kafka producer exists)."""
        self.metrics = metrics
        """``ingest.metrics.WorkerMetrics`` (or ``None``: nothing counted); settable after construction."""
        self._failing: dict[tuple[str, str], tuple[float, int]] = {}
        """(alert id, receiver) → (first failed attempt, attempts so far) of alerts still failing."""

    def __repr__(self) -> str:
        return f"WebhookSender(receivers={[r.name for r in self._receivers]!r})"

    __str__ = __repr__

    @property
    def receivers(self) -> list[str]:
        return [r.name for r in self._receivers]

    def send(self, alert_id: str, payload: Any, *, level: str | None = None) -> list[DeliveryResult]:
        """Deliver one alert (``alert_id`` = idempotency key) to every receiver; one result each.

        ``level`` (``copy``/``incident``) skips receivers not subscribed to it."""
        if not alert_id:
            raise ValueError("alert_id must be non-empty")
        body = encode_body(payload)
        return [self._deliver(r, alert_id, body, level) for r in self._receivers]

    def failing_since(self, alert_id: str, receiver: str) -> float | None:
        """When this process first saw the alert fail at the receiver (still undelivered), or ``None``."""
        got = self._failing.get((alert_id, receiver))
        return None if got is None else got[0]

    def _deliver(self, rcv: _Receiver, alert_id: str, body: bytes, level: str | None) -> DeliveryResult:
        cfg, policy = rcv.config, rcv.policy
        if level is not None and level not in cfg.levels:
            return DeliveryResult(rcv.name, alert_id, "not_subscribed", 0)
        if self._log.is_delivered(alert_id, rcv.name):
            logger.info("webhook %s: alert %s already acknowledged; not sent again", rcv.name, alert_id)
            return DeliveryResult(rcv.name, alert_id, "already_delivered", 0)
        import requests

        status: int | None = None
        detail = ""
        error: BaseException | None = None
        key = (alert_id, rcv.name)
        round_start = self._clock()
        for attempt in range(1, policy.max_attempts + 1):
            ts = int(self._clock())
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": alert_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": " ".join(k.sign(alert_id, ts, body) for k in rcv.keys),
            }
            retry_after: float | None = None
            error = None
            try:
                resp = self._http.post(rcv.url, data=body, headers=headers, timeout=cfg.timeout_s,
                                       allow_redirects=False, stream=True)
            except requests.Timeout as exc:
                status, detail, error = None, "timeout", exc
                self._count_request(rcv, "timeout")
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                status, detail, error = None, f"connection_error ({type(exc).__name__})", exc
                self._count_request(rcv, "connection")
            except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                    requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader) as exc:
                self._count_request(rcv, "invalid_request")
                return self._dead(rcv, alert_id, attempt, None, "request_error", type(exc).__name__, exc, body=body)
            except requests.RequestException as exc:
                status, detail, error = None, f"request_error ({type(exc).__name__})", exc
                self._count_request(rcv, "other_error")
            else:
                status = int(resp.status_code)
                self._count_request(rcv, f"{status // 100}xx" if 100 <= status < 600 else "other_error")
                resp_headers = getattr(resp, "headers", {}) or {}
                try:
                    resp.close()
                except Exception:  # noqa: BLE001 - closing a response must not fail a delivery
                    pass
                if 200 <= status < 300:
                    self._log.mark_delivered(alert_id, rcv.name, status_code=status, attempts=attempt, at=self._clock())
                    self._failing.pop(key, None)
                    if self.metrics is not None:
                        self.metrics.webhook_deliveries.labels(receiver=rcv.name).inc()
                    logger.info("webhook %s: alert %s delivered (HTTP %d, attempt %d)", rcv.name, alert_id, status, attempt)
                    return DeliveryResult(rcv.name, alert_id, "delivered", attempt, status)
                if not policy.retryable(status):
                    return self._dead(rcv, alert_id, attempt, status, f"http_{status}", f"HTTP {status}", body=body)
                detail = f"HTTP {status}"
                if status in (429, 503):
                    retry_after = _parse_retry_after(_header(resp_headers, "retry-after"), self._clock())
            logger.warning("webhook %s: alert %s attempt %d/%d failed: %s", rcv.name, alert_id, attempt, policy.max_attempts, detail)
            if attempt < policy.max_attempts:
                self._sleep(policy.delay(attempt, self._rng, retry_after))
                if self.metrics is not None:
                    self.metrics.webhook_retries.labels(receiver=rcv.name).inc()
        first, before = self._failing.get(key, (round_start, 0))
        total = before + policy.max_attempts
        now = self._clock()
        if policy.dead_letter_after_s is not None and now - first >= policy.dead_letter_after_s:
            return self._dead(rcv, alert_id, total, status, RETRIES_EXHAUSTED, detail, error, body=body)
        if len(self._failing) >= MAX_TRACKED_FAILURES and key not in self._failing:
            self._failing.pop(next(iter(self._failing)))  # oldest entry: an alert nobody sends any more
        self._failing[key] = (first, total)
        return self._dead(rcv, alert_id, policy.max_attempts, status, NOT_FINAL, detail, error)

    def _dead(self, rcv: _Receiver, alert_id: str, attempts: int, status: int | None, reason: str, detail: str,
              error: BaseException | None = None, *, body: bytes | None = None) -> DeliveryResult:
        now = self._clock()
        if reason != NOT_FINAL:
            first, before = self._failing.get((alert_id, rcv.name), (now, 0))
            if reason != RETRIES_EXHAUSTED:
                attempts = before + attempts
            if self.dead_letters is not None:
                self.dead_letters(WebhookDeadLetter(rcv.name, alert_id, reason, status, attempts, first, now, detail,
                                                     body if body is not None else b""))
            self._failing.pop((alert_id, rcv.name), None)
        self._log.mark_dead_letter(alert_id, rcv.name, reason=reason, status_code=status, attempts=attempts, at=now)
        if self.metrics is not None:
            if reason == NOT_FINAL:
                self.metrics.webhook_rounds_exhausted.labels(receiver=rcv.name).inc()
            else:
                self.metrics.webhook_dead_letters.labels(receiver=rcv.name, reason=dlq_reason(reason)).inc()
        if reason == NOT_FINAL:
            logger.warning("webhook %s: alert %s still failing after %d attempt(s): %s (%s); sent again later",
                           rcv.name, alert_id, attempts, reason, detail)
        else:
            logger.error("webhook %s: alert %s dead-lettered after %d attempt(s): %s (%s)", rcv.name, alert_id, attempts, reason, detail)
        return DeliveryResult(rcv.name, alert_id, "dead_letter", attempts, status, reason, detail, error)

    def _count_request(self, rcv: _Receiver, status_class: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_requests.labels(receiver=rcv.name, status_class=status_class).inc()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    get = getattr(headers, "get", None)
    if get is None:
        return None
    value = get(name)
    if value is None:
        value = get(name.title())
    return value
