"""Model bundle manifest: written, validated, and refused when altered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.bundle import BackboneSpec, BundleError, BundleWriter, load_bundle


def _bundle(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "weights.bin").write_bytes(b"\x00\x01weights")
    writer = BundleWriter(root, name="test", version="1", backbone=BackboneSpec(name="b", weights="pypi:x", regions=9, dim=512))
    writer.add("fine", "weights.bin", kind="torch-state-dict", arch="s2vs", provenance="dupwatch-training")
    writer.set_calibration({"thresholds": {"copy": 0.4, "incident": 0.2}})
    writer.write()
    return root


def test_round_trip(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path))
    assert bundle.version == "test@1"
    assert bundle.path("fine").read_bytes() == b"\x00\x01weights"
    assert bundle.thresholds() == {"copy": 0.4, "incident": 0.2}


def test_altered_file_refused(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    (root / "weights.bin").write_bytes(b"\x00\x01weightz")
    with pytest.raises(BundleError, match="corrupted or altered"):
        load_bundle(root)


def test_missing_file_and_bad_version_refused(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    (root / "weights.bin").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["format_version"] = 99
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format_version"):
        load_bundle(root)


def test_path_escape_refused(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["artifacts"]["fine"]["file"] = "../../etc/passwd"
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="escapes"):
        load_bundle(root)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"format_version": 1, "x": ' + "{\"a\": " * 50_000 + "1" + "}" * 50_000 + "}", "nested too deeply"),
        (b"\xff\xfe{}", "cannot read"),
    ],
)
def test_malformed_manifest_is_one_bundle_error(tmp_path: Path, content: str | bytes, needle: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(BundleError, match=needle) as info:
        load_bundle(tmp_path)
    assert "\n" not in str(info.value)


def test_oversized_manifest_refused_before_parsing(tmp_path: Path) -> None:
    from inference.bundle import MAX_MANIFEST_BYTES

    (tmp_path / "manifest.json").write_text(" " * (MAX_MANIFEST_BYTES + 1) + "{}")
    with pytest.raises(BundleError, match="over the manifest limit"):
        load_bundle(tmp_path)
