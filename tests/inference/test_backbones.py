"""ResNet-50 backbone: torchvision key layout and L3-iMAC region shapes (random weights)."""

from __future__ import annotations

from pathlib import Path

import torch

from inference.registry import get_model


def test_resnet50_torchvision_keys_and_region_shapes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = get_model("resnet50_l3imac")
    # torchvision layout (conv1.*, layer1..4.*, fc.*), perturbed so that loading is visible
    sd = {k: v + 1.0 if k == "conv1.weight" else v for k, v in model.backbone.cnn.state_dict().items()}
    sd.update({"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})
    torch.save(sd, tmp_path / "resnet50.pth")
    model.backbone.load_weights(tmp_path / "resnet50.pth")
    torch.testing.assert_close(model.backbone.cnn.conv1.weight, sd["conv1.weight"])
    with torch.no_grad():
        r = model(torch.randint(0, 256, (1, 224, 224, 3), dtype=torch.uint8))
        assert r.shape == (1, 9, 3840)
        torch.testing.assert_close(r.norm(dim=-1), torch.ones(1, 9))
        wide = model(torch.randint(0, 256, (1, 256, 340, 3), dtype=torch.uint8))
    assert wide.shape == (1, 15, 3840)  # fixed kernels, as in the official extractor
