"""Engines: one interface over PyTorch (reference), ONNX Runtime and TensorRT.

Every engine runs named *graphs* (see :mod:`inference.graphs`: ``features``, ``coarse``, ``fine``,
``fine_index``, ``fine_bin``, ``fine_bin_index``, ``s2vs``, ``s2vs_index``, ``selector_selfsim``,
``selector_mlp``, ``drca``) on numpy inputs and returns numpy outputs::

    engine, description = select_engine("auto", bundle)
    out = engine.run("fine", {"query": q, "target": t})   # {"similarity": ..., "similarity_matrix": ...}

:func:`select_engine` picks TensorRT when the tensorrt package, a CUDA GPU and the bundle's ONNX
files are there, else ONNX Runtime (CUDA / TensorRT execution providers when present, CPU
otherwise) when the bundle has ONNX exports, else PyTorch; it logs its choice and why.
Heavy packages (torch, onnxruntime, tensorrt) are imported when an engine is built.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Engine",
    "EngineUnavailable",
    "TorchEngine",
    "OnnxRuntimeEngine",
    "TensorRTEngine",
    "Preference",
    "select_engine",
    "onnx_graphs",
    "ort_providers",
    "ONNX_PREFIX",
    "ARTIFACT_GRAPHS",
]

log = logging.getLogger(__name__)

Preference = Literal["auto", "torch", "onnxruntime", "tensorrt"]
ONNX_PREFIX = "onnx/"
"""Manifest artifact names of ONNX exports: ``onnx/<graph>``."""

ARTIFACT_GRAPHS: dict[str, tuple[str, ...]] = {
    "features": ("features",),
    "coarse": ("coarse",),
    "fine": ("fine_index", "fine"),
    "fine_bin": ("fine_bin_index", "fine_bin"),
    "s2vs": ("s2vs_index", "s2vs"),
    "selector": ("selector_selfsim", "selector_mlp"),
    "drca": ("drca",),
}
"""Bundle artifact (PyTorch weights) → the graphs exported from it (built by :mod:`inference.graphs`)."""


class EngineUnavailable(RuntimeError):
    """The requested back end cannot run here; the message says why."""


@runtime_checkable
class Engine(Protocol):
    name: str
    """``torch``, ``onnxruntime`` or ``tensorrt``."""
    description: str

    def graphs(self) -> list[str]: ...

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def _unknown(graph: str, known: Sequence[str], engine: str) -> KeyError:
    return KeyError(f"{engine} engine has no graph {graph!r} (has: {', '.join(sorted(known)) or 'none'})")


# --------------------------------------------------------------------------- PyTorch


class TorchEngine:
    """PyTorch modules with named inputs/outputs; optional CUDA and fp16 (weights and float inputs)."""

    name = "torch"

    def __init__(self, graphs: Mapping[str, tuple[Any, Sequence[str], Sequence[str]]], device: str = "cpu",
                 half: bool = False) -> None:
        import torch

        if half and not str(device).startswith("cuda"):
            raise EngineUnavailable("fp16 PyTorch inference needs a CUDA device")
        self._torch = torch
        self.device = torch.device(device)
        self.half = half
        self._graphs: dict[str, tuple[Any, list[str], list[str]]] = {}
        for g, (module, ins, outs) in graphs.items():
            module = module.to(self.device).eval()
            if half:
                module = module.half()
            self._graphs[g] = (module, list(ins), list(outs))
        self.description = f"torch {torch.__version__} on {self.device}{' fp16' if half else ''}"

    @classmethod
    def from_specs(cls, specs: Mapping[str, Any], device: str = "cpu", half: bool = False) -> "TorchEngine":
        """From :class:`inference.graphs.GraphSpec` objects."""
        return cls({g: (s.module, [n for n, _, _ in s.inputs], [n for n, _, _ in s.outputs]) for g, s in specs.items()},
                   device=device, half=half)

    def graphs(self) -> list[str]:
        return sorted(self._graphs)

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        if graph not in self._graphs:
            raise _unknown(graph, list(self._graphs), self.name)
        module, ins, outs = self._graphs[graph]
        args = []
        for n in ins:
            t = torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.device)
            if self.half and t.is_floating_point():
                t = t.half()
            args.append(t)
        with torch.inference_mode():
            result = module(*args)
        result = result if isinstance(result, (tuple, list)) else (result,)
        return {n: r.float().cpu().numpy() for n, r in zip(outs, result, strict=True)}


# --------------------------------------------------------------------------- ONNX Runtime


def ort_providers(include_tensorrt: bool = True) -> list[str]:
    """Execution providers in preference order among ``onnxruntime.get_available_providers()``."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    order = (["TensorrtExecutionProvider"] if include_tensorrt else []) + ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in order if p in available] or ["CPUExecutionProvider"]


class OnnxRuntimeEngine:
    """ONNX Runtime sessions, one per graph (created on first use)."""

    name = "onnxruntime"

    def __init__(self, onnx_files: Mapping[str, Path | str], providers: Sequence[str] | None = None,
                 threads: int | None = None, trt_cache_dir: Path | str | None = None,
                 graph_threads: Mapping[str, int] | None = None) -> None:
        import onnxruntime as ort

        self._ort = ort
        self._files = {g: Path(p) for g, p in onnx_files.items()}
        self.providers = list(providers) if providers is not None else ort_providers()
        self.threads = threads
        self.graph_threads = dict(graph_threads or {})
        """Intra-op threads per graph (``SessionOptions.intra_op_num_threads``); else ``threads``; 0/None: ORT's default."""
        self.trt_cache_dir = Path(trt_cache_dir) if trt_cache_dir else None
        self._sessions: dict[str, Any] = {}
        self.description = f"onnxruntime {ort.__version__} [{', '.join(self.providers)}]"

    def graphs(self) -> list[str]:
        return sorted(self._files)

    def _provider_options(self) -> list[Any]:
        out: list[Any] = []
        for p in self.providers:
            if p == "TensorrtExecutionProvider":
                opts = {"trt_fp16_enable": "True"}
                if self.trt_cache_dir is not None:
                    self.trt_cache_dir.mkdir(parents=True, exist_ok=True)
                    opts.update({"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(self.trt_cache_dir)})
                out.append((p, opts))
            else:
                out.append(p)
        return out

    def session(self, graph: str) -> Any:
        if graph not in self._files:
            raise _unknown(graph, list(self._files), self.name)
        if graph not in self._sessions:
            opts = self._ort.SessionOptions()
            opts.log_severity_level = 3
            threads = self.graph_threads.get(graph) or self.threads
            if threads:
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
            self._sessions[graph] = self._ort.InferenceSession(str(self._files[graph]), sess_options=opts,
                                                               providers=self._provider_options())
        return self._sessions[graph]

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self.session(graph)
        names = [o.name for o in sess.get_outputs()]
        feed = {i.name: np.ascontiguousarray(inputs[i.name]) for i in sess.get_inputs()}
        return dict(zip(names, sess.run(names, feed), strict=True))


# --------------------------------------------------------------------------- TensorRT


class TensorRTEngine:
    """Serialized TensorRT engines (built by :mod:`inference.tensorrt_builder`), run with torch CUDA buffers."""

    name = "tensorrt"

    def __init__(self, engine_files: Mapping[str, Path | str], device: int = 0) -> None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise EngineUnavailable(f"the tensorrt Python package is not installed ({exc})") from None
        import torch

        if not torch.cuda.is_available():
            raise EngineUnavailable("TensorRT needs a CUDA GPU; torch.cuda.is_available() is False")
        self._trt, self._torch = trt, torch
        self.device = torch.device("cuda", device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engines: dict[str, tuple[Any, Any]] = {}
        for g, path in engine_files.items():
            engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
            if engine is None:
                raise EngineUnavailable(f"cannot deserialize TensorRT engine {path} (built by another TensorRT/GPU?)")
            self._engines[g] = (engine, engine.create_execution_context())
        self.description = f"tensorrt {trt.__version__} on {torch.cuda.get_device_name(self.device)} (fp16)"

    def graphs(self) -> list[str]:
        return sorted(self._engines)

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt, torch = self._trt, self._torch
        if graph not in self._engines:
            raise _unknown(graph, list(self._engines), self.name)
        engine, ctx = self._engines[graph]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        keep: list[Any] = []
        outputs: dict[str, Any] = {}
        for n in names:
            if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT:
                t = torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.device)
                want = _torch_dtype(torch, engine.get_tensor_dtype(n), trt)
                t = t.to(want).contiguous()
                ctx.set_input_shape(n, tuple(t.shape))
                ctx.set_tensor_address(n, t.data_ptr())
                keep.append(t)
        for n in names:
            if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT:
                shape = tuple(ctx.get_tensor_shape(n))
                t = torch.empty(shape, dtype=_torch_dtype(torch, engine.get_tensor_dtype(n), trt), device=self.device)
                ctx.set_tensor_address(n, t.data_ptr())
                outputs[n] = t
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution of {graph!r} failed")
        stream.synchronize()
        return {n: t.float().cpu().numpy() for n, t in outputs.items()}


def _torch_dtype(torch: Any, dtype: Any, trt: Any) -> Any:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8,
             trt.bool: torch.bool, trt.uint8: torch.uint8}
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    return table[dtype]


# --------------------------------------------------------------------------- selection


def onnx_graphs(bundle: Any) -> dict[str, Path]:
    """``{graph: path}`` of the bundle's ONNX exports (sha256-verified)."""
    return {name[len(ONNX_PREFIX):]: bundle.path(name) for name, entry in bundle.manifest.artifacts.items()
            if entry.kind == "onnx" and name.startswith(ONNX_PREFIX)}


def _load_bundle(bundle: Any) -> Any:
    if isinstance(bundle, (str, Path)):
        from inference.bundle import load_bundle

        return load_bundle(bundle)
    return bundle


def _torch_engine(bundle: Any, device: str | None = None) -> TorchEngine:
    import torch

    from inference.graphs import build_graphs, load_torch_models

    specs = build_graphs(load_torch_models(bundle), regions=bundle.manifest.backbone.regions)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return TorchEngine.from_specs(specs, device=dev)


def _tensorrt_engine(bundle: Any) -> TensorRTEngine:
    from inference.tensorrt_builder import build_bundle_engines, tensorrt_status

    ok, reason = tensorrt_status()
    if not ok:
        raise EngineUnavailable(reason)
    if not onnx_graphs(bundle):
        raise EngineUnavailable(f"bundle {bundle.root} has no ONNX exports (run `dupwatch export --bundle {bundle.root}`)")
    return TensorRTEngine(build_bundle_engines(bundle))


def select_engine(preference: Preference | str = "auto", bundle: Any = None, *,
                  device: str | None = None, graph_threads: Mapping[str, int] | None = None,
                  allow_torch: bool = True) -> tuple[Engine, str]:
    """The best available engine for ``bundle`` (a :class:`inference.bundle.Bundle` or its directory).

    ``preference``: ``auto`` (TensorRT → ONNX Runtime → PyTorch) or a back end, which must be usable
    (else :class:`EngineUnavailable` with the reason). Returns ``(engine, description)``; the
    description (also logged) names the back end, its providers/device and why others were skipped.
    ``graph_threads``: ONNX Runtime intra-op threads per graph. ``allow_torch=False`` leaves PyTorch out
    of ``auto`` (a caller that serves PyTorch models itself need not build a second copy of them).
    """
    if preference not in ("auto", "torch", "onnxruntime", "tensorrt"):
        raise ValueError(f"engine preference must be auto, torch, onnxruntime or tensorrt; got {preference!r}")
    if bundle is None:
        raise ValueError("select_engine needs a model bundle (directory or Bundle)")
    bundle = _load_bundle(bundle)
    skipped: list[str] = []
    order = ["tensorrt", "onnxruntime", "torch"][: None if allow_torch else 2] if preference == "auto" else [preference]
    for backend in order:
        try:
            if backend == "tensorrt":
                engine: Engine = _tensorrt_engine(bundle)
            elif backend == "onnxruntime":
                files = onnx_graphs(bundle)
                if not files:
                    raise EngineUnavailable(f"bundle {bundle.root} has no ONNX exports")
                engine = OnnxRuntimeEngine(files, trt_cache_dir=Path(bundle.root) / "tensorrt" / "ort-cache",
                                           graph_threads=graph_threads)
            else:
                engine = _torch_engine(bundle, device)
        except (EngineUnavailable, ImportError) as exc:
            if preference != "auto":
                raise EngineUnavailable(f"{backend} engine unavailable: {exc}") from None
            skipped.append(f"{backend}: {exc}")
            continue
        description = f"{engine.description}; graphs: {', '.join(engine.graphs()) or 'none'}"
        if skipped:
            description += f" (skipped {'; '.join(skipped)})"
        log.info("engine: %s", description)
        return engine, description
    raise EngineUnavailable("no engine can serve this bundle: " + "; ".join(skipped))
