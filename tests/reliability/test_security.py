"""End-to-end hostile-artifact check: the worker refuses a model bundle holding pickled code.

A real bundle (``export.models.make_random_bundle``) whose ``selector`` (or ``pca``) file is
replaced by a checkpoint that pickles ``os.system`` (sha256 re-recorded in the manifest, so
only the unpickling stands between the file and the worker): ``python -m ingest.worker`` with the
default bundle embedder exits non-zero before consuming anything, says which file it refused and
why, and the payload never ran (no marker file). Secrets in logs and /metrics are checked in
``test_webhook_faults.py``.
"""

from __future__ import annotations

import os
import sys

import pytest

from dupwatch.testing._process import ManagedProcess
from tests.reliability.harness import REPO, make_settings, write_config

pytestmark = [pytest.mark.timeout(240)]


class EvilCommand:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: D105
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def clean_bundle(tmp_path_factory):
    from export.models import make_random_bundle

    return make_random_bundle(tmp_path_factory.mktemp("bundle"), ["features", "selector"])


@pytest.mark.parametrize("artifact", ["selector", "pca"])
def test_worker_refuses_a_bundle_with_pickled_code(clean_bundle, tmp_path, artifact):
    import shutil

    import torch

    from inference.bundle import BundleWriter

    root = tmp_path / "bundle"
    shutil.copytree(clean_bundle, root)
    marker = tmp_path / "pwned"
    evil = root / f"{artifact}.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "args": EvilCommand(marker)}, evil)
    writer = BundleWriter.update(root)
    entry = writer.manifest.artifacts[artifact]
    writer.add(artifact, evil.name, kind=entry.kind, arch=entry.arch, provenance=entry.provenance, config=entry.config)
    writer.write()

    settings = make_settings("127.0.0.1:9", "uploads", str(tmp_path / "milvus.db"))
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"bundle": root, "engine": "torch", "device": "cpu"})})
    config = write_config(settings, tmp_path / "worker.yaml")
    log = tmp_path / "worker.log"
    proc = ManagedProcess([sys.executable, "-m", "ingest.worker", "--config", str(config)], log_path=log, cwd=REPO)
    try:
        proc.proc.wait(timeout=180)
    finally:
        code = proc.stop(timeout=5)
    text = log.read_text()
    print(f"\nRELIABILITY pickled-{artifact}: exit={code} last line: {text.strip().splitlines()[-2][:300]}")
    assert code not in (0, None), text[-3000:]
    assert not marker.exists(), "the pickled payload ran"
    assert "refused to load" in text and evil.name in text and "allow-list" in text, text[-3000:]
    assert "ingest.consumer: assigned" not in text  # refused at start-up, before consuming anything
