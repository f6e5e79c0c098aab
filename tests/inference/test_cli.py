"""``dupwatch models list|parity`` through the root CLI."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dupwatch.cli import app
from inference.parity import default_parity_dir

PARITY = default_parity_dir()
runner = CliRunner()


def test_cli_import_stays_light() -> None:
    code = "import sys, dupwatch.cli; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_models_list() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    for name in ("resnet50_l3imac", "efficientnet_lite0_regions", "dns_cg_student", "dns_fg_att_student",
                 "dns_fg_bin_student", "dns_selector", "s2vs", "visil"):
        assert name in result.output
    assert "https://mever.iti.gr/s2vs/weights/s2vs_dns.pth" in result.output


def test_models_parity_passes_on_fixtures() -> None:
    result = runner.invoke(app, ["models", "parity", str(PARITY)])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if "max_abs_err=" in ln]
    assert len(lines) == 17 and all(ln.endswith("ok") for ln in lines)


def test_models_parity_fails_on_a_broken_checkpoint(tmp_path: Path) -> None:
    shutil.copy(PARITY / "s2vs_similarity_network.cases.pt", tmp_path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        ck = torch.load(PARITY / "s2vs_similarity_network.pth", weights_only=True)
    w = ck["model"]["attention.transform.weight"]
    ck["model"]["attention.transform.weight"] = w.t().contiguous()
    torch.save(ck, tmp_path / "s2vs_similarity_network.pth")
    result = runner.invoke(app, ["models", "parity", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output


def test_models_parity_empty_dir(tmp_path: Path) -> None:
    assert runner.invoke(app, ["models", "parity", str(tmp_path)]).exit_code == 2
    assert runner.invoke(app, ["models", "parity", str(tmp_path / "absent")]).exit_code == 2
