"""TCA: shapes, masking, and loading a state_dict in the official key layout (anchors §1.4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inference.tca import TCA, chamfer_similarity

D, FF, HEADS = 64, 128, 8

OFFICIAL_KEYS = {
    "transformer_encoder.layers.0.self_attn.in_proj_weight": (3 * D, D),
    "transformer_encoder.layers.0.self_attn.in_proj_bias": (3 * D,),
    "transformer_encoder.layers.0.self_attn.out_proj.weight": (D, D),
    "transformer_encoder.layers.0.self_attn.out_proj.bias": (D,),
    "transformer_encoder.layers.0.linear1.weight": (FF, D),
    "transformer_encoder.layers.0.linear1.bias": (FF,),
    "transformer_encoder.layers.0.linear2.weight": (D, FF),
    "transformer_encoder.layers.0.linear2.bias": (D,),
    "transformer_encoder.layers.0.norm1.weight": (D,),
    "transformer_encoder.layers.0.norm1.bias": (D,),
    "transformer_encoder.layers.0.norm2.weight": (D,),
    "transformer_encoder.layers.0.norm2.bias": (D,),
}


def _official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.1 for k, shape in OFFICIAL_KEYS.items()}


def _reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Post-norm encoder layer written out by hand (sequence-first semantics, ReLU, no final norm)."""
    p = "transformer_encoder.layers.0."
    b, t, d = x.shape
    hd = d // HEADS
    qkv = x @ sd[p + "self_attn.in_proj_weight"].T + sd[p + "self_attn.in_proj_bias"]
    q, k, v = (z.view(b, t, HEADS, hd).transpose(1, 2) for z in qkv.split(d, dim=-1))
    att = (q @ k.transpose(-1, -2)) / hd**0.5
    att = att.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1)
    a = (att @ v).transpose(1, 2).reshape(b, t, d)
    a = a @ sd[p + "self_attn.out_proj.weight"].T + sd[p + "self_attn.out_proj.bias"]
    h = F.layer_norm(x + a, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"])
    ff = F.relu(h @ sd[p + "linear1.weight"].T + sd[p + "linear1.bias"]) @ sd[p + "linear2.weight"].T + sd[p + "linear2.bias"]
    return F.layer_norm(h + ff, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"])


def test_state_dict_keys_are_the_official_layout() -> None:
    model = TCA(feature_size=D, nlayers=1, nhead=HEADS, dim_feedforward=FF)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == OFFICIAL_KEYS


def test_official_state_dict_loads_and_matches_reference_math() -> None:
    sd = _official_state_dict()
    model = TCA(feature_size=D, nlayers=1, nhead=HEADS, dim_feedforward=FF).eval()
    model.load_state_dict(sd, strict=True)
    x = torch.randn(3, 7, D)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 2:] = False
    frames, video = model(x, mask)
    ref = _reference_forward(sd, x, mask)
    m = mask.unsqueeze(-1).float()
    torch.testing.assert_close(frames, F.normalize(ref, dim=-1) * m, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(video, F.normalize((ref * m).sum(1) / m.sum(1), dim=-1), atol=1e-5, rtol=1e-4)


def test_two_layer_keys() -> None:
    keys = TCA(feature_size=D, nlayers=2, nhead=HEADS, dim_feedforward=FF).state_dict().keys()
    assert "transformer_encoder.layers.1.self_attn.in_proj_weight" in keys
    assert not any(k.startswith("transformer_encoder.norm") for k in keys)


def test_padding_does_not_change_outputs() -> None:
    model = TCA(feature_size=D, nhead=HEADS, dim_feedforward=FF).eval()
    x = torch.randn(1, 5, D)
    f_short, v_short = model(x)
    x_pad = torch.cat([x, torch.randn(1, 4, D)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 4])
    f_pad, v_pad = model(x_pad, mask)
    torch.testing.assert_close(v_pad, v_short, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f_pad[:, :5], f_short, atol=1e-5, rtol=1e-5)
    assert torch.all(f_pad[:, 5:] == 0)
    torch.testing.assert_close(v_pad.norm(dim=-1), torch.ones(1))


def test_shape_contract() -> None:
    model = TCA(feature_size=D, nhead=HEADS, dim_feedforward=FF)
    with pytest.raises(ValueError, match=r"\[B, T, 64\]"):
        model(torch.randn(5, D))
    with pytest.raises(ValueError, match="mask"):
        model(torch.randn(2, 5, D), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one valid frame"):
        model(torch.randn(2, 5, D), torch.zeros(2, 5, dtype=torch.bool))


def test_chamfer_similarity() -> None:
    q = F.normalize(torch.randn(2, 4, 8), dim=-1)
    r = torch.cat([q[:1], F.normalize(torch.randn(1, 4, 8), dim=-1)])
    s = chamfer_similarity(q, r)
    assert s.shape == (2, 2)
    assert s[0, 0] == pytest.approx(1.0, abs=1e-5)
    mask = torch.tensor([[True, True, False, False], [True] * 4])
    s_m = chamfer_similarity(q, q, mask, mask)
    manual = (q[0, :2] @ q[0, :2].T).amax(1).mean()
    assert s_m[0, 0] == pytest.approx(float(manual), abs=1e-5)


def test_from_official_file_reads_sizes_and_strips_prefixes(tmp_path) -> None:
    sd = {f"module.encoder_q.{k}": v for k, v in _official_state_dict(1).items()}
    sd["module.queue"] = torch.randn(D, 16)
    torch.save(sd, tmp_path / "model.pth")
    model = TCA.from_official_file(str(tmp_path / "model.pth"), nhead=HEADS)
    assert (model.feature_size, model.nlayers, model.dim_feedforward) == (D, 1, FF)
    x = torch.randn(2, 3, D)
    ref = _reference_forward(_official_state_dict(1), x, torch.ones(2, 3, dtype=torch.bool))
    torch.testing.assert_close(model.encode_video(x), F.normalize(ref.mean(1), dim=-1), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="not a TCA"):
        TCA.from_official_state_dict({"foo": torch.zeros(1)})


def test_inference_mode_fast_path_matches_reference() -> None:
    """Under no-grad/eval PyTorch may take its fused encoder path; outputs must not change."""
    sd = _official_state_dict(2)
    model = TCA(feature_size=D, nhead=HEADS, dim_feedforward=FF).eval()
    model.load_state_dict(sd)
    x = torch.randn(2, 6, D)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    with torch.inference_mode():
        frames, _ = model(x, mask)
    ref = F.normalize(_reference_forward(sd, x, mask), dim=-1) * mask.unsqueeze(-1)
    torch.testing.assert_close(frames, ref, atol=1e-5, rtol=1e-4)
