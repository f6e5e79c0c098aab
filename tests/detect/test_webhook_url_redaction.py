"""Webhook URLs carry tokens (``?token=``, ``user:pass@``): neither ``dupwatch config show`` nor the
worker's logs (DEBUG included: urllib3 logs every request line) may print them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from dupwatch.redact import redact_text, redact_url
from tests.detect.webhook_server import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "tok3nV4lue9"
PASSWORD = "pa55w0rdX"


def test_redact_url_masks_query_values_fragment_and_userinfo() -> None:
    assert redact_url(f"https://hooks.example/x?token={TOKEN}") == "https://hooks.example/x?token=***"
    assert redact_url(f"https://bot:{PASSWORD}@hooks.example:8443/x?a=1&token={TOKEN}#sig={TOKEN}") == (
        "https://***@hooks.example:8443/x?a=***&token=***#sig=***"
    )
    assert redact_url("http://127.0.0.1:9/hook") == "http://127.0.0.1:9/hook"
    assert redact_text(f'"POST /hook?token={TOKEN} HTTP/1.1" 200 0') == '"POST /hook?token=*** HTTP/1.1" 200 0'


def test_config_show_masks_webhook_url_tokens(tmp_path: Path) -> None:
    url = f"https://bot:{PASSWORD}@hooks.example/x?token={TOKEN}&tenant=a"
    path = tmp_path / "config.yaml"
    path.write_text(f"webhooks:\n  - name: mod\n    url: '{url}'\n    secret: {SECRET}\n")
    for extra in ([], ["--json"]):
        out = subprocess.run(
            [sys.executable, "-m", "dupwatch.cli", "config", "show", "--config", str(path), *extra],
            capture_output=True, text=True, check=True,
        ).stdout
        assert TOKEN not in out and PASSWORD not in out and SECRET not in out
        assert "hooks.example/x?token=***&tenant=***" in out
    shown = json.loads(out)["webhooks"][0]["url"]
    assert shown == "https://***@hooks.example/x?token=***&tenant=***"


_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import requests
    from dupwatch.cli import configure_logging
    from dupwatch.config import WebhookConfig
    from detect.delivery_log import InMemoryDeliveryLog
    from detect.webhooks import WebhookSender

    ok_url, down_url, secret = sys.argv[1:4]
    configure_logging("DEBUG")
    configs = [
        WebhookConfig(name="ok", url=ok_url, secret=secret),
        WebhookConfig(name="down", url=down_url, secret=secret, max_attempts=1, dead_letter_after_s=0, timeout_s=2),
    ]
    sender = WebhookSender(configs, InMemoryDeliveryLog(), sleep=lambda s: None)
    print([r.outcome for r in sender.send("alert-1", {"a": 1})])
    try:
        requests.post(down_url, timeout=2)
    except requests.RequestException:
        logging.getLogger("dupwatch.test").exception("a raw client error naming the URL")
    """
)


def test_debug_logs_mask_webhook_url_tokens(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        ok_url = f"{receiver.url}?token={TOKEN}"
        down_url = f"http://bot:{PASSWORD}@127.0.0.1:9/hook?token={TOKEN}"  # port 9: refused
        res = subprocess.run([sys.executable, "-c", _SCRIPT, ok_url, down_url, SECRET], capture_output=True, text=True, timeout=120)
    finally:
        receiver.close()
    assert res.returncode == 0, res.stderr[-3000:]
    assert "['delivered', 'dead_letter']" in res.stdout
    assert len(receiver.received) == 1  # the token still reached the receiver: only output is masked
    log = res.stderr
    assert TOKEN not in log and PASSWORD not in log
    assert '"POST /hook?token=*** HTTP/1.1" 200' in log  # urllib3's DEBUG request line, masked
    assert "a raw client error naming the URL" in log and "Traceback" in log
    assert "/hook?token=***" in log.split("a raw client error naming the URL", 1)[1]  # the traceback, masked
