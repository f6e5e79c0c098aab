"""``dupwatch scan`` / ``dupwatch serve`` on a bundle the loader refuses: one line, exit 2, no traceback.

Real processes (``python -m dupwatch.cli``) on a copy of the real default bundle (``models/default``):
one artifact altered after its sha256 was recorded, a bundle folder that does not exist, and an
artifact replaced by a checkpoint that pickles ``os.system`` (sha256 re-recorded, so only the
unpickling refuses it). Like a configuration error, the refusal is one line on stderr naming the
bundle and the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ingest.test_worker_helpers import REPO

pytestmark = [pytest.mark.timeout(300)]

DEFAULT_BUNDLE = REPO / "models" / "default"


class EvilCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: D105
        return (os.system, (f"touch {self.marker}",))


def _dupwatch(args: list[str], bundle: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUPWATCH_")}
    env.update(
        DUPWATCH_MODEL__BUNDLE=str(bundle),
        DUPWATCH_MODEL__ENGINE="torch",
        DUPWATCH_MODEL__DEVICE="cpu",
        DUPWATCH_MILVUS__URI=str(tmp / "milvus.db"),
        DUPWATCH_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:9",
        DUPWATCH_SERVER__PORT="0",
    )
    return subprocess.run(
        [sys.executable, "-m", "dupwatch.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )


def _assert_one_line_refusal(out: subprocess.CompletedProcess, *needles: str) -> str:
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text[-3000:]
    assert out.returncode == 2, (out.returncode, text[-3000:])
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    line = lines[0]
    assert line.startswith("dupwatch: model bundle ") and " refused: " in line, line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@pytest.fixture()
def bundle_copy(tmp_path: Path) -> Path:
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        pytest.skip("models/default is not in this checkout")
    root = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, root)
    return root


@pytest.fixture()
def videos(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    return folder  # never reached: the bundle is refused first


def test_scan_refuses_an_altered_artifact_in_one_line(bundle_copy, videos, tmp_path):
    selector = bundle_copy / "dns_selector_effl0.pth"
    data = bytearray(selector.read_bytes())
    data[len(data) // 2] ^= 0xFF
    selector.write_bytes(bytes(data))
    out = _dupwatch(["scan", str(videos)], bundle_copy, tmp_path)
    _assert_one_line_refusal(out, str(bundle_copy), "selector", "sha256")


def test_scan_and_serve_refuse_a_missing_bundle_in_one_line(videos, tmp_path):
    missing = tmp_path / "no-such-bundle"
    for args in (["scan", str(videos)], ["serve"]):
        out = _dupwatch(args, missing, tmp_path)
        _assert_one_line_refusal(out, str(missing), "not a model bundle")


def test_serve_refuses_pickled_code_in_one_line(bundle_copy, tmp_path):
    import torch

    from inference.bundle import BundleWriter

    marker = tmp_path / "pwned"
    evil = bundle_copy / "dns_selector_effl0.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "args": EvilCommand(marker)}, evil)
    writer = BundleWriter.update(bundle_copy)
    entry = writer.manifest.artifacts["selector"]
    writer.add("selector", evil.name, kind=entry.kind, arch=entry.arch, provenance=entry.provenance, config=entry.config)
    writer.write()
    out = _dupwatch(["serve"], bundle_copy, tmp_path)
    _assert_one_line_refusal(out, evil.name, "refused to load", "allow-list")
    assert not marker.exists(), "the pickled payload ran"


def test_scan_refuses_a_deeply_nested_manifest_in_one_line(videos, tmp_path):
    bundle = tmp_path / "nested-bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    out = _dupwatch(["scan", str(videos)], bundle, tmp_path)
    _assert_one_line_refusal(out, str(bundle), "nested too deeply")
