"""TensorRT engines from the bundle's ONNX exports: fp16, one optimisation profile over the dynamic axes.

Engines are cached on disk under ``<cache>/<gpu>/trt-<version>/<graph>-<onnx sha256[:16]>-fp16.engine``
(keyed by GPU model, TensorRT version and model sha256), so a restart or another pod on the same GPU
model reuses them and a changed model or TensorRT upgrade rebuilds. The ``tensorrt`` package is
imported lazily; without it or without a CUDA GPU every entry point raises
:class:`TensorRTUnavailable` with the reason (nothing is faked).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TensorRTUnavailable", "tensorrt_status", "engine_cache_path", "profile_from_entry", "build_engine",
           "build_bundle_engines"]

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]
"""input name → (min, opt, max) shapes."""


class TensorRTUnavailable(RuntimeError):
    """TensorRT cannot be used here (package missing, no GPU, or the build failed); the message says why."""


def tensorrt_status() -> tuple[bool, str]:
    """``(usable, reason)``: whether the tensorrt package imports and a CUDA GPU is visible."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return False, f"the tensorrt Python package is not installed ({exc}); pip install dupwatch[gpu] on a GPU host"
    except Exception as exc:  # e.g. the PyPI stub that could not reach NVIDIA's index, or missing CUDA libraries
        return False, f"tensorrt does not import: {type(exc).__name__}: {exc}"
    try:
        import torch

        if not torch.cuda.is_available():
            return False, "no CUDA GPU visible (torch.cuda.is_available() is False)"
        gpu = torch.cuda.get_device_name(0)
    except Exception as exc:
        return False, f"cannot query the GPU: {exc}"
    return True, f"tensorrt {trt.__version__} on {gpu}"


def _require() -> Any:
    ok, reason = tensorrt_status()
    if not ok:
        raise TensorRTUnavailable(reason)
    import tensorrt as trt

    return trt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "gpu"


def engine_cache_path(cache_dir: Path | str, graph: str, onnx_sha256: str, gpu_name: str, trt_version: str,
                      fp16: bool = True) -> Path:
    """Where the engine for this (GPU model, TensorRT version, model sha256, precision) lives."""
    return (Path(cache_dir) / _slug(gpu_name) / f"trt-{_slug(trt_version)}"
            / f"{graph}-{onnx_sha256[:16]}-{'fp16' if fp16 else 'fp32'}.engine")


def profile_from_entry(inputs: list[Any], dynamic_axes: Mapping[str, list[int]]) -> Profile:
    """Optimisation profile from manifest ``TensorSpec`` inputs and ``{axis: [min, opt, max]}``."""
    profile: Profile = {}
    for spec in inputs:
        name = spec.name if hasattr(spec, "name") else spec["name"]
        shape = spec.shape if hasattr(spec, "shape") else spec["shape"]
        dims: list[list[int]] = [[], [], []]
        for d in shape:
            if isinstance(d, str):
                if d not in dynamic_axes:
                    raise TensorRTUnavailable(f"input {name}: dynamic axis {d!r} has no [min, opt, max] in the manifest")
                lo, opt, hi = dynamic_axes[d]
                for i, v in enumerate((lo, opt, hi)):
                    dims[i].append(int(v))
            else:
                for i in range(3):
                    dims[i].append(int(d))
        profile[name] = (tuple(dims[0]), tuple(dims[1]), tuple(dims[2]))
    return profile


def build_engine(onnx_path: Path | str, profile: Profile, out_path: Path | str, *, fp16: bool = True,
                 workspace_bytes: int = 4 << 30) -> Path:
    """Parse the ONNX file, build a serialized engine (fp16, one profile) and write it atomically."""
    trt = _require()
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT >= 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTUnavailable(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name not in profile:
            raise TensorRTUnavailable(f"no optimisation profile for input {tensor.name!r} of {onnx_path.name}")
        lo, opt, hi = profile[tensor.name]
        opt_profile.set_shape(tensor.name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTUnavailable(f"TensorRT failed to build an engine for {onnx_path.name} (see the TensorRT log)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(bytes(serialized))
    os.replace(tmp, out_path)
    return out_path


def build_bundle_engines(bundle: Any, graphs: list[str] | None = None, cache_dir: Path | str | None = None,
                         fp16: bool = True) -> dict[str, Path]:
    """Engines for the bundle's ONNX exports (cached); returns ``{graph: engine path}``.

    Graphs whose engine cannot be built are logged and left out (served by another engine);
    raises :class:`TensorRTUnavailable` when TensorRT/GPU is missing or no engine could be built.
    """
    trt = _require()
    import torch

    from inference.bundle import load_bundle
    from inference.engines import ONNX_PREFIX

    if isinstance(bundle, (str, Path)):
        bundle = load_bundle(bundle)
    cache = Path(cache_dir) if cache_dir is not None else Path(bundle.root) / "tensorrt"
    gpu = torch.cuda.get_device_name(0)
    engines: dict[str, Path] = {}
    failures: list[str] = []
    for name, entry in bundle.manifest.artifacts.items():
        if entry.kind != "onnx" or not name.startswith(ONNX_PREFIX):
            continue
        graph = name[len(ONNX_PREFIX):]
        if graphs is not None and graph not in graphs:
            continue
        path = engine_cache_path(cache, graph, entry.sha256, gpu, trt.__version__, fp16)
        if path.is_file():
            engines[graph] = path
            continue
        try:
            profile = profile_from_entry(entry.inputs, entry.config.get("dynamic_axes", {}))
            log.info("building TensorRT engine for %s (%s)", graph, profile)
            engines[graph] = build_engine(bundle.path(name), profile, path, fp16=fp16)
        except TensorRTUnavailable as exc:
            log.warning("no TensorRT engine for %s: %s", graph, exc)
            failures.append(f"{graph}: {exc}")
    if not engines:
        raise TensorRTUnavailable("no TensorRT engine could be built: " + ("; ".join(failures) or "no ONNX exports"))
    return engines
