"""Webhook failures show in ``/metrics``: every attempt by result class, deliveries, retries,
exhausted rounds and final dead letters, per receiver. Real HTTP receivers on 127.0.0.1 (and a
closed port), the worker's real health server; the exposition passes ``promtool check metrics``.
Waits between attempts go through a fake clock, except the real client timeout of the hanging
receiver."""

from __future__ import annotations

import random

from detect.delivery_log import InMemoryDeliveryLog
from detect.webhooks import CollectingWebhookDeadLetters, WebhookSender
from dupwatch.testing._process import free_ports
from ingest.health import HealthServer, HealthState
from ingest.metrics import WorkerMetrics
from tests.detect.test_webhooks import ALERT, FakeTime, config, receivers  # noqa: F401 - fixture
from tests.ingest.test_worker_helpers import scrape
from tests.metrics_lint import assert_exposition_clean, promtool  # noqa: F401 - fixture


def test_webhook_failures_counted_by_status_class_retries_and_dead_letters(receivers, promtool):  # noqa: F811
    flaky = receivers([500, 503, 200])  # two 5xx, then delivered: 2 retries
    rejecting = receivers([400])  # a 4xx: dead letter at once, no retry
    hanging = receivers(["hang"], hang_s=1.5)  # client timeout twice: final after the round (window 0 s)
    resetting = receivers(["reset"])  # connection reset twice: not final yet (window 1 h)
    refused_port = free_ports(1)[0]  # nothing listens: connection refused
    cfgs = [
        config(flaky.url, name="flaky", max_attempts=4),
        config(rejecting.url, name="rejecting"),
        config(hanging.url, name="hanging", max_attempts=2, timeout_s=0.3, dead_letter_after_s=0.0),
        config(resetting.url, name="resetting", max_attempts=2),
        config(f"http://127.0.0.1:{refused_port}/hook", name="refused", max_attempts=3, dead_letter_after_s=0.0),
    ]
    metrics = WorkerMetrics()
    ft, dead = FakeTime(), CollectingWebhookDeadLetters()
    sender = WebhookSender(cfgs, InMemoryDeliveryLog(), clock=ft.clock, sleep=ft.sleep, rng=random.Random(1),
                           dead_letters=dead, metrics=metrics)
    results = {r.receiver: r for r in sender.send("alr-metrics-1", ALERT, level="copy")}
    assert results["flaky"].outcome == "delivered"
    assert (results["rejecting"].reason, results["hanging"].reason) == ("http_400", "webhook_retries_exhausted")
    assert (results["resetting"].reason, results["refused"].reason) == ("attempts_exhausted", "webhook_retries_exhausted")

    server = HealthServer("127.0.0.1", 0, HealthState(), metrics).start()
    try:
        samples = scrape(server.port)
        from tests.ingest.test_worker_helpers import http_get

        assert_exposition_clean(promtool, http_get(f"http://127.0.0.1:{server.port}/metrics")[1])
    finally:
        server.stop()

    def requests(receiver: str, status_class: str) -> float:
        return samples.get(f"dupwatch_webhook_requests_total{{receiver={receiver},status_class={status_class}}}", 0)

    assert (requests("flaky", "5xx"), requests("flaky", "2xx")) == (2, 1)
    assert requests("rejecting", "4xx") == 1
    assert requests("hanging", "timeout") == 2
    assert requests("resetting", "connection") == 2
    assert requests("refused", "connection") == 3
    total = sum(v for k, v in samples.items() if k.startswith("dupwatch_webhook_requests_total"))
    assert total == 2 + 1 + 1 + 2 + 2 + 3, "an attempt counted twice or not at all"

    assert samples["dupwatch_webhook_deliveries_total{receiver=flaky}"] == 1
    assert sum(v for k, v in samples.items() if k.startswith("dupwatch_webhook_deliveries_total")) == 1
    # retries: attempts repeated after a retryable failure (none after a 4xx)
    assert {k: v for k, v in samples.items() if k.startswith("dupwatch_webhook_retries_total")} == {
        "dupwatch_webhook_retries_total{receiver=flaky}": 2,
        "dupwatch_webhook_retries_total{receiver=hanging}": 1,
        "dupwatch_webhook_retries_total{receiver=resetting}": 1,
        "dupwatch_webhook_retries_total{receiver=refused}": 2,
    }
    # final dead letters by the dead-letter topic's reason; the not-final round counted apart
    assert {k: v for k, v in samples.items() if k.startswith("dupwatch_webhook_dead_letters_total")} == {
        "dupwatch_webhook_dead_letters_total{reason=webhook_rejected,receiver=rejecting}": 1,
        "dupwatch_webhook_dead_letters_total{reason=webhook_retries_exhausted,receiver=hanging}": 1,
        "dupwatch_webhook_dead_letters_total{reason=webhook_retries_exhausted,receiver=refused}": 1,
    }
    assert samples["dupwatch_webhook_rounds_exhausted_total{receiver=resetting}"] == 1
    assert sorted(d.receiver for d in dead.records) == ["hanging", "refused", "rejecting"]
