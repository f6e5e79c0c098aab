"""PyTorch graphs → ONNX files, each checked against PyTorch before it is installed.

Per graph the exporter that handles its dynamic axes is used (``GraphSpec.exporter``):
the TorchScript-based exporter (``dynamo=False``) for the similarity heads, indexers and selector,
the dynamo exporter (``dynamo=True, dynamic_shapes=...``) for the feature extractor
(``adaptive_max_pool2d``), the coarse student (transformer reshapes over T) and DRCA. If the
preferred exporter raises, the other one is tried; the manifest records which one produced the file.
The opset is pinned to :data:`OPSET`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inference.graphs import GraphSpec
from export.parity import ATOL, ParityReport, install_if_parity

__all__ = ["OPSET", "BundleExport", "ExportResult", "export_bundle", "export_graph", "export_onnx_file", "store_exact_fp16",
           "tensor_specs"]

log = logging.getLogger(__name__)

OPSET = 18


@dataclass(frozen=True)
class ExportResult:
    graph: str
    artifact: str
    path: Path
    exporter: str
    opset: int
    parity: ParityReport
    seconds: float

    @property
    def parity_max_abs_err(self) -> float:
        return self.parity.max_abs_err


def tensor_specs(items: Sequence[tuple[str, str, list[int | str]]]) -> list[dict[str, Any]]:
    """``TensorSpec``-shaped dicts for the manifest."""
    return [{"name": n, "dtype": d, "shape": list(s)} for n, d, s in items]


def _example_args(spec: GraphSpec) -> tuple[torch.Tensor, ...]:
    inputs = spec.sample(spec.example, seed=12345)
    return tuple(torch.from_numpy(inputs[n]) for n, _, _ in spec.inputs)


def _export_torchscript(spec: GraphSpec, args: tuple[torch.Tensor, ...], path: Path, opset: int) -> None:
    dynamic_axes: dict[str, dict[int, str]] = {}
    for name, _, shape in spec.inputs + spec.outputs:
        axes = {i: s for i, s in enumerate(shape) if isinstance(s, str)}
        if axes:
            dynamic_axes[name] = axes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            spec.export_module or spec.module, args, str(path), dynamo=False, opset_version=opset,
            input_names=[n for n, _, _ in spec.inputs], output_names=[n for n, _, _ in spec.outputs],
            dynamic_axes=dynamic_axes, do_constant_folding=True,
        )


def _export_dynamo(spec: GraphSpec, args: tuple[torch.Tensor, ...], path: Path, opset: int) -> None:
    from torch.export import Dim

    dims: dict[str, Any] = {}
    for axis in {s for _, _, shape in spec.inputs for s in shape if isinstance(s, str)}:
        lo, hi = spec.bounds.get(axis, (1, 4096))
        dims[axis] = Dim(axis, min=lo, max=hi)
    dynamic_shapes = tuple({i: dims[s] for i, s in enumerate(shape) if isinstance(s, str)} or None
                           for _, _, shape in spec.inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            spec.export_module or spec.module, args, dynamo=True, opset_version=opset, dynamic_shapes=dynamic_shapes,
            input_names=[n for n, _, _ in spec.inputs], output_names=[n for n, _, _ in spec.outputs],
            optimize=True, verbose=False, report=False,
        )
    program.save(str(path), external_data=False)


_EXPORTERS = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}


def store_exact_fp16(path: Path | str, min_elements: int = 1024) -> int:
    """Rewrite float32 weights whose every value is exactly a float16 (weights trained or shipped
    in fp16, like the coarse student's) as float16 initializers followed by a Cast back to float32:
    the same numbers at half the file size. ONNX Runtime folds the casts when it loads the graph.
    Returns the bytes saved."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    saved, keep, casts = 0, [], []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            keep.append(init)
            continue
        arr = numpy_helper.to_array(init)
        half = arr.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), arr, equal_nan=True):
            keep.append(init)
            continue
        stored = numpy_helper.from_array(half, f"{init.name}__fp16")
        keep.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=f"{init.name}__to_fp32"))
        saved += arr.nbytes - half.nbytes
    if not casts:
        return 0
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(path))
    return saved


def export_onnx_file(spec: GraphSpec, path: Path | str, opset: int = OPSET, exporter: str | None = None) -> str:
    """Export ``spec`` to ``path`` (no parity check); returns the exporter that succeeded."""
    path = Path(path)
    args = _example_args(spec)
    first = exporter or spec.exporter
    order = [first] + ([e for e in _EXPORTERS if e != first] if exporter is None else [])
    errors = []
    for name in order:
        try:
            with torch.no_grad():
                _EXPORTERS[name](spec, args, path, opset)
            return name
        except Exception as exc:  # try the other exporter, report both if neither works
            log.info("%s exporter failed on %s: %s", name, spec.name, exc)
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise RuntimeError(f"cannot export {spec.name!r} to ONNX: " + "; ".join(errors))


def export_graph(spec: GraphSpec, out_dir: Path | str, opset: int = OPSET, atol: float = ATOL,
                 shapes: Sequence[dict[str, int]] | None = None, exporter: str | None = None) -> ExportResult:
    """Export to a temporary file next to ``out_dir/<graph>.onnx``, check parity, then move it into place.

    Raises :class:`export.parity.ParityError` (and leaves no file) when the check fails.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{spec.name}.onnx"
    start = time.perf_counter()
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".onnx.tmp", dir=out_dir)
    os.close(fd)
    try:
        used = export_onnx_file(spec, tmp, opset, exporter)
        saved = store_exact_fp16(tmp)
        if saved:
            log.info("%s: %.1f MiB of exactly-fp16 weights stored as fp16", spec.name, saved / 2**20)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report = install_if_parity(spec, tmp, dest, shapes, atol)
    seconds = time.perf_counter() - start
    log.info("exported %s with the %s exporter (opset %d): %s", spec.name, used, opset, report.summary())
    return ExportResult(spec.name, spec.artifact, dest, used, opset, report, seconds)


# --------------------------------------------------------------------------- bundles


@dataclass
class BundleExport:
    results: list[ExportResult]
    failures: dict[str, str]


def _dynamic_axes(spec: GraphSpec) -> dict[str, list[int]]:
    axes = {s for _, _, shape in spec.inputs for s in shape if isinstance(s, str)}
    out = {}
    for a in sorted(axes):
        lo, hi = spec.bounds.get(a, (1, 4096))
        out[a] = [lo, min(max(spec.opt.get(a, lo), lo), hi), hi]
    return out


def _source_hashes(bundle: Any, artifact: str) -> dict[str, str]:
    """sha256 of the bundle artifacts a graph was exported from (the server refuses a graph whose
    sources changed since: retrained weights with stale graphs)."""
    names = ("features", "pca") if artifact == "features" else (artifact,)
    return {n: bundle.entry(n).sha256 for n in names if bundle.has(n)}


def export_bundle(root: Path | str, models: Sequence[str] | None = None, opset: int = OPSET, atol: float = ATOL,
                  progress: bool = True, torch_models: dict[str, Any] | None = None,
                  frames_dtype: str = "uint8") -> BundleExport:
    """Export every graph of the bundle's PyTorch models into ``root/onnx/`` and record them in the manifest.

    ``models`` filters by artifact name (``features``, ``coarse``, ``fine``, ``fine_bin``, ``selector``,
    ``s2vs``, ``drca``); absent artifacts are skipped. A graph failing parity is not written and is
    listed in ``failures``; the manifest gets one ``onnx/<graph>`` entry per installed file.
    ``torch_models`` replaces loading from the bundle (tests, benchmarks); ``frames_dtype`` is the
    feature extractor's input type (``uint8`` or ``float32`` on the 0-255 scale).
    """
    from tqdm import tqdm

    from inference.graphs import build_graphs, load_torch_models
    from inference.bundle import BundleWriter, load_bundle
    from inference.engines import ONNX_PREFIX

    root = Path(root).resolve()  # result paths are absolute, whatever the working directory
    bundle = load_bundle(root)
    loaded = torch_models if torch_models is not None else load_torch_models(bundle, list(models) if models else None)
    if models:
        loaded = {k: v for k, v in loaded.items() if k in models}
    specs = build_graphs(loaded, regions=bundle.manifest.backbone.regions, frames_dtype=frames_dtype)
    out_dir = root / "onnx"
    results: list[ExportResult] = []
    failures: dict[str, str] = {}
    bar = tqdm(list(specs.values()), desc="export", unit="graph", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        try:
            results.append(export_graph(spec, out_dir, opset=opset, atol=atol))
        except Exception as exc:
            log.error("export of %s failed: %s", spec.name, exc)
            failures[spec.name] = str(exc)
    served: dict[str, dict[str, Any]] = {}
    done = {r.graph: r for r in results}
    for artifact in ("fine", "fine_bin", "s2vs"):
        if artifact in done and f"{artifact}_index" in done:
            from export.parity import check_served_fine

            check = check_served_fine(loaded[artifact], done[f"{artifact}_index"].path, done[artifact].path,
                                      int(specs[artifact].config.get("min_frames", 4)))
            log.info("%s served path (tiling outside the graph) vs PyTorch: %s", artifact, check)
            if not check["max_abs_err"] <= atol:
                failures[artifact] = f"served-path parity {check['max_abs_err']:.3e} > {atol:g} at lengths {check['lengths']}"
                for g in (artifact, f"{artifact}_index"):
                    done[g].path.unlink(missing_ok=True)
                results = [r for r in results if r.graph not in (artifact, f"{artifact}_index")]
                continue
            served[artifact] = check
    if results:
        writer = BundleWriter.update(root)
        for r in results:
            spec = specs[r.graph]
            source = bundle.manifest.artifacts.get(r.artifact)
            writer.add(
                f"{ONNX_PREFIX}{r.graph}", r.path, kind="onnx",
                arch=(source.arch if source is not None else None),
                provenance=(source.provenance if source is not None else "untrained"),
                source=f"dupwatch export ({r.exporter} exporter) of artifact {r.artifact!r}",
                config={"exporter": r.exporter, "graph": r.graph, "artifact": r.artifact,
                        "dynamic_axes": _dynamic_axes(spec), "atol": atol,
                        "parity_shapes": [dict(s) for s in spec.parity_shapes], **spec.config,
                        **({"served_parity": served[r.graph]} if r.graph in served else {}),
                        "source_sha256": _source_hashes(bundle, r.artifact),
                        "torch": torch.__version__},
                inputs=tensor_specs(spec.inputs), outputs=tensor_specs(spec.outputs),
                parity_max_abs_err=r.parity_max_abs_err, opset=r.opset,
            )
        writer.write()
    return BundleExport(results, failures)
