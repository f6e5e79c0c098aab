"""Settings: YAML + environment, one-line errors naming the field, masked secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dupwatch.config import ConfigError, load_settings, masked_dump

SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_yaml_then_env_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _yaml(tmp_path, "kafka:\n  group_id: from-file\n  client_id: file-client\n")
    monkeypatch.setenv("DUPWATCH_KAFKA__GROUP_ID", "from-env")
    monkeypatch.setenv("DUPWATCH_KAFKA__BOOTSTRAP_SERVERS", "a:9092, b:9093")
    settings = load_settings(path)
    assert settings.kafka.group_id == "from-env"
    assert settings.kafka.client_id == "file-client"  # env on one field keeps the file's others
    assert settings.kafka.bootstrap_servers == ["a:9092", "b:9093"]


@pytest.mark.parametrize(
    ("text", "env", "field"),
    [
        ("decode:\n  crop: 300\n", {}, "decode"),
        ("limits:\n  batch_frames: lots\n", {}, "limits.batch_frames"),
        ("", {"DUPWATCH_KAFKA__BOOTSTRAP_SERVERS": "no-port"}, "kafka.bootstrap_servers"),
        ("nonsense_section: 1\n", {}, "nonsense_section"),
        ("webhooks:\n  - name: a\n    url: not a url\n    secret: " + SECRET + "\n", {}, "webhooks.0.url"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str], field: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_yaml(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert field in message


def test_secrets_masked(tmp_path: Path) -> None:
    path = _yaml(tmp_path, f"webhooks:\n  - name: mod\n    url: http://127.0.0.1:9/h\n    secret: {SECRET}\n")
    settings = load_settings(path)
    assert settings.webhooks[0].secret.get_secret_value() == SECRET
    dumped = str(masked_dump(settings))
    assert SECRET not in dumped and "**********" in dumped
    assert SECRET not in repr(settings)


def test_cli_config_show_and_error(tmp_path: Path) -> None:
    path = _yaml(tmp_path, f"webhooks:\n  - name: mod\n    url: http://127.0.0.1:9/h\n    secret: {SECRET}\n")
    out = subprocess.run([sys.executable, "-m", "dupwatch.cli", "config", "show", "--config", str(path)], capture_output=True, text=True, check=True)
    assert "group_id: dupwatch.worker" in out.stdout and SECRET not in out.stdout
    bad = _yaml(tmp_path, "decode:\n  fps: -1\n")
    res = subprocess.run([sys.executable, "-m", "dupwatch.cli", "config", "show", "--config", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "decode.fps" in res.stderr


def test_cli_help_lists_subcommands() -> None:
    out = subprocess.run([sys.executable, "-m", "dupwatch.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("config", "bench", "train"):
        assert command in out.stdout
