"""Smoke version of ``dupwatch bench load``: 30 real-video events through one worker."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def test_load_smoke_thirty_events(kafka_broker):
    from bench.load import run_load

    result = run_load(30, bootstrap=kafka_broker.bootstrap_servers, timeout_s=120)
    print(f"\nRELIABILITY load-smoke:\n{result.table()}")
    assert result.indexed == 30 and result.dead_lettered == 0
    assert result.lost == 0 and result.duplicate_rows == 0 and result.duplicate_alerts == 0
    assert result.alerts > 0  # reused files: later uploads are copies of earlier ones
    assert result.frames > 0 and result.videos_per_hour > 0
    assert result.latency_p50_s <= result.latency_p99_s
    assert 0 < result.peak_rss_mib < 4096


def test_load_cli_help():
    from typer.testing import CliRunner

    from dupwatch.cli import app

    out = CliRunner().invoke(app, ["bench", "load", "--help"])
    assert out.exit_code == 0 and "--events" in out.output
