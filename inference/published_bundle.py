"""Assemble a model bundle from the authors' published ResNet-50 pipeline (``dupwatch models bundle-published``).

The bundle holds, as published and unchanged (each file copied under its published name):

- ``backbone``: torchvision's ResNet-50 ImageNet V1 weights ``resnet50-0676ba61.pth`` (the weights
  the DnS/S²VS features were computed with; loaded into :class:`inference.backbones.ResNet50Taps`);
- ``pca``: ``pca_resnet50_vcdb_1M.pth`` (``{'mean','d','V'}``, 3840 → 512 whitening);
- ``fine``: S²VS ``s2vs_vcdb.pth`` (default) or ``s2vs_dns.pth``, or the DnS ``dns_fg_att_student.pth``;
- ``coarse``: DnS ``dns_cg_student.pth`` (unless ``coarse=False``);
- ``selector``: DnS ``dns_selector_cg-fg_att.pth``, only with the coarse student (its MLP reads the
  ``dns_cg_student`` similarity; without it the selector's third input is out of distribution).

Where files come from, in order: ``weights_dir`` (a folder of files under their published names),
torch.hub's cache for the torchvision file (``$TORCH_HOME/hub/checkpoints``, where torchvision puts
it), the download cache (``cache_dir()/models``, shared with ``dupwatch models fetch``), else a download
with :func:`inference.fetch.fetch` (resume, size limit) from the published URL or a ``base_url`` mirror.

Integrity, never skipped silently. Each file is checked against, in order: a sha256 the registry
pins (:class:`inference.registry.WeightFile`), the hash prefix torchvision puts in its file names
(``resnet50-0676ba61.pth``: the sha256 starts with ``0676ba61``, torch.hub's own check), a sha256
the caller passes (``sha256={name: hex}``, ``--sha256 NAME=HEX``; it may not contradict a pin). A
file with none of these is refused unless the caller says ``allow_unpinned=True``
(``--allow-unpinned``: trust on first use; its sha256 is printed and recorded in the manifest so it
can be pinned). Then every file is loaded with the safe loader (:mod:`inference.checkpoints`,
``weights_only=True`` + allow-list) and built into its model, so a truncated file, a file of another
layout or a file that pickles code is refused before the manifest is written; the finished bundle is
then loaded like the worker loads it (:class:`inference.embedder.VideoModels`) and run once on noise frames.

The bundle is written to a staging folder next to ``out`` and renamed into place only once complete.
It is uncalibrated: run ``dupwatch eval --report`` and ``dupwatch calibrate --bundle DIR`` before the
worker alerts from it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dupwatch.errors import PermanentError

__all__ = [
    "FINE_CHOICES",
    "PublishedBundleError",
    "PublishedFile",
    "BundleResult",
    "plan_files",
    "known_pin",
    "build_published_bundle",
    "CALIBRATION_NOTE",
    "BUNDLE_NAME",
]

BUNDLE_NAME = "published-resnet50"
BACKBONE_FILE = "resnet50-0676ba61.pth"
PCA_FILE = "pca_resnet50_vcdb_1M.pth"
COARSE_FILE = "dns_cg_student.pth"
SELECTOR_FILE = "dns_selector_cg-fg_att.pth"
REGIONS, DIM, IN_DIMS = 9, 512, 3840

FINE_CHOICES: dict[str, tuple[str, str]] = {
    "s2vs_vcdb": ("s2vs", "s2vs_vcdb.pth"),
    "s2vs_dns": ("s2vs", "s2vs_dns.pth"),
    "dns_fg_att_student": ("dns_fg_att_student", "dns_fg_att_student.pth"),
}
"""``--fine`` value → (registry arch, published file name)."""

CALIBRATION_NOTE = (
    "note: this bundle is UNCALIBRATED (no thresholds): the published networks score on their own scale. "
    "Before the worker alerts from it, score a labelled benchmark and store thresholds: "
    "dupwatch eval --bench BENCH --bundle {out} --methods ours --report REPORT, then "
    "dupwatch calibrate --truth BENCH/truth.csv --scores REPORT/scores_ours_{name}.csv --plot {out}/calibration.png "
    "--bundle {out}"
)

_TORCH_HUB_HASH = re.compile(r"-([a-f0-9]{8,64})\.[^.]+$")  # torch.hub.HASH_REGEX, anchored


class PublishedBundleError(PermanentError):
    """The published bundle cannot be assembled (option, integrity or layout problem)."""

    reason = "published_bundle"


@dataclass(frozen=True)
class PublishedFile:
    artifact: str
    """Bundle artifact name: backbone, pca, fine, coarse, selector."""
    name: str
    """Published file name (also its name inside the bundle)."""
    url: str
    arch: str | None
    kind: str


@dataclass
class FileReport:
    artifact: str
    name: str
    sha256: str
    origin: str
    """Where the bytes came from: a local path or the URL that was fetched."""
    verified: str
    """How the bytes were checked: ``registry sha256``, ``--sha256``, ``torchvision file-name prefix …``, ``unpinned``."""


@dataclass
class BundleResult:
    out: Path
    files: list[FileReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _registry_file(name: str) -> tuple[str, object]:
    from inference.registry import get_spec, list_models

    for model in list_models():
        for f in get_spec(model).files:
            if f.name == name:
                return model, f
    raise PublishedBundleError(f"the registry knows no published file {name!r}")


def plan_files(fine: str = "s2vs_vcdb", *, coarse: bool = True, selector: bool = True) -> list[PublishedFile]:
    """The published files of the bundle, in artifact order."""
    if fine not in FINE_CHOICES:
        raise PublishedBundleError(f"--fine must be one of {', '.join(FINE_CHOICES)}, got {fine!r}")
    fine_arch, fine_file = FINE_CHOICES[fine]
    wanted = [("backbone", BACKBONE_FILE, "resnet50_l3imac", "torch-state-dict"),
              ("pca", PCA_FILE, None, "pca"),
              ("fine", fine_file, fine_arch, "torch-checkpoint")]
    if coarse:
        wanted.append(("coarse", COARSE_FILE, "dns_cg_student", "torch-checkpoint"))
        if selector:
            wanted.append(("selector", SELECTOR_FILE, "dns_selector", "torch-checkpoint"))
    out = []
    for artifact, name, arch, kind in wanted:
        _, wf = _registry_file(name)
        if not wf.url:  # type: ignore[attr-defined]
            raise PublishedBundleError(f"the registry has no URL for {name!r}")
        out.append(PublishedFile(artifact, name, wf.url, arch, kind))  # type: ignore[attr-defined]
    return out


def known_pin(name: str) -> tuple[str, str] | None:
    """``(hex, how)`` the project already trusts for a published file: the registry's full sha256,
    else the hash prefix torchvision writes in its file names (torch.hub checks the same prefix)."""
    _, wf = _registry_file(name)
    sha = getattr(wf, "sha256", None)
    if sha:
        return sha.lower(), "registry sha256"
    m = _TORCH_HUB_HASH.search(name)
    if m and "download.pytorch.org" in (getattr(wf, "url", None) or ""):
        return m.group(1), f"torchvision file-name prefix {m.group(1)}"
    return None


def _matches(actual: str, expected: str) -> bool:
    return actual.startswith(expected) if len(expected) < 64 else actual == expected


def _expected_hashes(files: list[PublishedFile], user: Mapping[str, str], allow_unpinned: bool) -> dict[str, tuple[str | None, str]]:
    names = {f.name for f in files}
    unknown = sorted(set(user) - names)
    if unknown:
        raise PublishedBundleError(f"--sha256 names a file that is not in this bundle: {', '.join(unknown)} "
                                   f"(files: {', '.join(f.name for f in files)})")
    expected: dict[str, tuple[str | None, str]] = {}
    unpinned = []
    for f in files:
        pin = known_pin(f.name)
        given = user.get(f.name)
        if given is not None:
            given = given.strip().lower()
            if not re.fullmatch(r"[0-9a-f]{64}", given):
                raise PublishedBundleError(f"--sha256 {f.name}: expected 64 hex digits, got {given!r}")
            if pin is not None and not _matches(given, pin[0]):
                raise PublishedBundleError(f"--sha256 {f.name}={given[:12]}… contradicts the {pin[1]} ({pin[0][:12]}…); refusing")
            expected[f.name] = (given, "--sha256")
        elif pin is not None:
            expected[f.name] = pin
        elif allow_unpinned:
            expected[f.name] = (None, "unpinned (trust on first use, --allow-unpinned)")
        else:
            unpinned.append(f.name)
    if unpinned:
        raise PublishedBundleError(
            f"no sha256 is known for {', '.join(unpinned)} (nothing pins them: no sha256 in inference/registry.py): pass --sha256 NAME=HEX for each "
            "(from the authors or a copy you trust), or --allow-unpinned to accept what is downloaded "
            "(its sha256 is then printed and recorded in the manifest)")
    return expected


def _torch_hub_checkpoints() -> Path | None:
    try:
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints"
    except Exception:  # pragma: no cover - torch always importable here
        return None


def _obtain(f: PublishedFile, expected: str | None, how: str, *, weights_dir: Path | None, cache: Path,
            base_url: str | None, max_bytes: int, echo: Callable[[str], None]) -> tuple[Path, str, str]:
    """Local path of ``f`` with its sha256 checked; returns ``(path, sha256, origin)``."""
    from inference.fetch import ChecksumError, fetch, rewrite_base_url, sha256_file

    local = []
    if weights_dir is not None:
        local.append(weights_dir / f.name)
    if f.artifact == "backbone":
        hub = _torch_hub_checkpoints()
        if hub is not None:
            local.append(hub / f.name)
    for path in local:
        if path.is_file():
            actual = sha256_file(path)
            if expected is not None and not _matches(actual, expected):
                raise PublishedBundleError(
                    f"{path}: sha256 {actual[:12]}… does not match the {how} ({expected[:12]}…): the file is truncated, "
                    "altered or another file; replace it (or remove it to download it)")
            return path, actual, str(path)
    url = rewrite_base_url(f.url, base_url)
    full = expected if expected is not None and len(expected) == 64 else None
    cached = cache / f.name
    echo(f"using {cached} (downloaded before)" if cached.is_file() else f"fetching {url} -> {cached}")
    try:
        path = fetch(url, cache / f.name, sha256=full, max_bytes=max_bytes)
    except ChecksumError as exc:
        raise PublishedBundleError(f"{f.name}: {exc} (checked against the {how})") from None
    actual = sha256_file(path)
    if expected is not None and not _matches(actual, expected):
        path.unlink()  # our own cache copy: do not keep a file that fails its pin
        raise PublishedBundleError(f"{url}: sha256 {actual[:12]}… does not match the {how} ({expected[:12]}…); "
                                   "the downloaded file was removed")
    return path, actual, url


def _check_loads(f: PublishedFile, path: Path) -> dict[str, object]:
    """Load ``path`` with the safe loader into its model; return the facts recorded in the manifest config."""
    from inference.checkpoints import CheckpointError, load_checkpoint
    from inference.registry import get_model

    try:
        if f.artifact == "backbone":
            from inference.backbones import ResNet50Taps

            ResNet50Taps().load_weights(path)
            return {"architecture": "torchvision resnet50 (ImageNet V1 weights)", "taps": "layer1..layer4 (3840-d L3-iMAC)"}
        if f.artifact == "pca":
            ck = load_checkpoint(path)
            if ck.kind != "pca":
                raise CheckpointError(f"{path}: expected the PCA layout {{'mean','d','V'}}, got a {ck.kind} checkpoint")
            mean, d, V = ck.state_dict["mean"], ck.state_dict["d"], ck.state_dict["V"]
            if mean.shape != (IN_DIMS,) or V.ndim != 2 or V.shape[0] != IN_DIMS or d.shape != (V.shape[1],) or V.shape[1] < DIM:
                raise CheckpointError(f"{path}: PCA shapes mean {tuple(mean.shape)}, d {tuple(d.shape)}, V {tuple(V.shape)}; "
                                      f"expected mean [{IN_DIMS}], V [{IN_DIMS}, K ≥ {DIM}], d [K]")
            return {"in_dims": IN_DIMS, "components": DIM, "layout": "{'mean','d','V'}"}
        model = get_model(f.arch, checkpoint=path)  # type: ignore[arg-type]
        ck = load_checkpoint(path)
        key = "netvlad.centroids" if f.artifact == "coarse" else "attention.transform.weight"
        dims = int(ck.shape(key)[1])
        if dims != DIM:
            raise CheckpointError(f"{path}: {f.arch} takes {dims}-d region features; the ResNet-50 + PCA backbone gives {DIM}")
        facts: dict[str, object] = {"dims": dims, "layout": ck.kind}
        if f.artifact == "coarse":
            facts.update(netvlad_clusters=int(ck.shape("netvlad.centroids")[0]),
                         netvlad_outdims=int(ck.shape("netvlad.reduction_layer.weight")[0]))
        if f.artifact == "selector":
            facts["trained_for"] = "dns_cg_student + dns_fg_att_student (orders re-ranking)"
        del model
        return facts
    except CheckpointError as exc:
        raise PublishedBundleError(f"{f.name} ({f.artifact}) refused: {exc}") from None


def _smoke(bundle: object) -> None:
    """Load the staged bundle the way the worker does (:class:`VideoModels`) and run it once on noise frames."""
    import numpy as np

    from inference.embedder import VideoModels

    models = VideoModels(bundle, device="cpu")  # type: ignore[arg-type]
    frames = np.random.default_rng(0).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    feats = models.regions(frames)
    if feats.shape != (4, REGIONS, DIM) or not np.isfinite(feats).all():
        raise PublishedBundleError(f"the assembled bundle gives features {feats.shape} (finite: {bool(np.isfinite(feats).all())}); "
                                   f"expected [T, {REGIONS}, {DIM}]")
    score = models.compare(feats, feats).score
    if not np.isfinite(score):
        raise PublishedBundleError(f"the assembled bundle gives a non-finite similarity ({score})")


def build_published_bundle(
    out: str | Path,
    *,
    fine: str = "s2vs_vcdb",
    coarse: bool = True,
    selector: bool = True,
    weights_dir: str | Path | None = None,
    base_url: str | None = None,
    sha256: Mapping[str, str] | None = None,
    allow_unpinned: bool = False,
    cache: str | Path | None = None,
    max_bytes: int = 2 * 1024**3,
    version: str | None = None,
    echo: Callable[[str], None] = lambda _m: None,
) -> BundleResult:
    """Assemble the published ResNet-50 bundle in ``out`` (a new or empty folder); see the module docstring."""
    from inference.bundle import BackboneSpec, BundleWriter, load_bundle
    from inference.registry import TORCHVISION_RESNET50_V1

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PublishedBundleError(f"--out {out} exists and is not an empty folder; choose a new folder")
    wdir = Path(weights_dir) if weights_dir is not None else None
    if wdir is not None and not wdir.is_dir():
        raise PublishedBundleError(f"--weights-dir {wdir} is not a folder")
    if cache is None:
        from dupwatch.paths import cache_dir

        cache = cache_dir() / "models"
    cache = Path(cache)
    files = plan_files(fine, coarse=coarse, selector=selector)
    expected = _expected_hashes(files, dict(sha256 or {}), allow_unpinned)
    if base_url:
        from inference.fetch import rewrite_base_url

        rewrite_base_url(files[0].url, base_url)  # validates the mirror URL before any work

    result = BundleResult(out=out)
    sources: dict[str, tuple[Path, str, str]] = {}
    for f in files:
        want, how = expected[f.name]
        sources[f.name] = _obtain(f, want, how, weights_dir=wdir, cache=cache, base_url=base_url, max_bytes=max_bytes, echo=echo)

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        from inference.fetch import sha256_file

        facts: dict[str, dict[str, object]] = {}
        for f in files:
            src, digest, origin = sources[f.name]
            dst = stage / f.name
            shutil.copyfile(src, dst)
            if sha256_file(dst) != digest:
                raise PublishedBundleError(f"{src} changed while it was copied into the bundle; run again")
            facts[f.name] = _check_loads(f, dst)
            result.files.append(FileReport(f.artifact, f.name, digest, origin, expected[f.name][1]))

        writer = BundleWriter(stage, name=BUNDLE_NAME, version=version or f"{fine}{'' if coarse else '-nocoarse'}",
                              backbone=BackboneSpec(name="resnet50_l3imac", weights=TORCHVISION_RESNET50_V1,
                                                    regions=REGIONS, dim=DIM, fps=1.0, short_side=256, crop=224))
        for f, rep in zip(files, result.files):
            config: dict[str, object] = dict(facts[f.name])
            config["integrity"] = rep.verified
            if rep.origin != f.url:
                config["obtained_from"] = rep.origin
            writer.add(f.artifact, f.name, kind=f.kind, arch=f.arch, provenance="published", source=f.url, config=config)
        parts = [f"fine={fine}", "coarse=dns_cg_student" if coarse else "coarse=mean-regions (fallback)",
                 "selector=dns_selector_cg-fg_att" if coarse and selector else "selector=coarse order (fallback)"]
        writer.manifest.notes = (
            "Published ResNet-50 pipeline (dupwatch models bundle-published): torchvision ResNet-50 ImageNet V1 + "
            f"PCA {PCA_FILE}, {', '.join(parts)}. Weights unchanged from the authors' files. UNCALIBRATED: run "
            "dupwatch eval --report, then dupwatch calibrate --bundle, before the worker alerts from it.")
        writer.manifest.training_data = {
            "published": "weights as released by the authors (torchvision; DnS: mever-team/distill-and-select; "
                         "S2VS: gkordo/s2vs); see their papers for the training data"}
        writer.write()
        _smoke(load_bundle(stage, verify=True))
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if coarse and selector and FINE_CHOICES[fine][0] != "dns_fg_att_student":
        result.notes.append("the published selector was trained to pick pairs for dns_fg_att_student; with "
                            f"{fine} it only orders which candidates are re-scored first (--no-selector drops it)")
    if not coarse:
        result.notes.append("no coarse student: candidates come from mean region vectors and no selector is used")
    if any(r.verified.startswith("unpinned") for r in result.files):
        result.notes.append("some files were accepted unpinned; pin them next time with --sha256 NAME=HEX "
                            "(the values above) or in inference/registry.py")
    result.notes.append(CALIBRATION_NOTE.format(out=out, name=re.sub(r"[^A-Za-z0-9_.-]+", "_", out.name)))
    return result
