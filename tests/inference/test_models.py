"""Registry contract, short videos, padded batches with masks, the ViSiL head, shape errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inference.registry import get_model, get_spec, list_models, register_model

ALL = {"resnet50_l3imac", "efficientnet_lite0_regions", "dns_cg_student", "dns_fg_att_student",
       "dns_fg_bin_student", "dns_selector", "s2vs", "visil"}


def feats(t: int, d: int = 512, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + t)
    return F.normalize(torch.randn(t, 9, d, generator=g), dim=-1)


def test_registry_entries_and_meta() -> None:
    assert ALL <= set(list_models())
    for name in ALL:
        spec = get_spec(name)
        assert spec.dims and spec.min_frames >= 1 and spec.key_layout
        for f in spec.files:
            assert f.url is None or f.url.startswith(("http://", "https://"))
    assert get_spec("dns_cg_student").files[0].url == "https://mever.iti.gr/distill-and-select/models/dns_cg_student.pth"
    assert get_spec("visil").files[0].url == "http://ndd.iti.gr/visil/visil.pth"


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        get_model("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_model("s2vs", description="", input_layout="", output_layout="", dims={}, min_frames=1)(lambda: None)


@pytest.mark.parametrize("name", ["dns_fg_att_student", "dns_fg_bin_student", "s2vs"])
@pytest.mark.parametrize("tq,tt", [(1, 1), (2, 3), (3, 9), (1, 17)])
def test_short_videos_never_crash(name: str, tq: int, tt: int) -> None:
    m = get_model(name)
    with torch.no_grad():
        s = m.calculate_video_similarity(m.index_video(feats(tq)), m.index_video(feats(tt, seed=1)))
    assert s.shape == (1,) and torch.isfinite(s).all() and -1 <= float(s) <= 1


def test_selector_and_coarse_short_videos() -> None:
    sel, cg = get_model("dns_selector"), get_model("dns_cg_student")
    with torch.no_grad():
        assert sel.index_video(feats(1)).shape == (1, 1)
        assert cg.index_video(feats(1)).shape == (1, 1024)


def test_tiling_matches_official_repetition() -> None:
    m = get_model("s2vs")
    x = feats(2)
    with torch.no_grad():
        a = m.index_video(x)
        b = m.index_video(torch.cat([x, x]))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["dns_fg_att_student", "s2vs"])
def test_padded_batch_with_masks_matches_single(name: str) -> None:
    m = get_model(name)
    lengths = [8, 16, 12]
    T = max(lengths)
    videos = [feats(t) for t in lengths]
    batch = torch.zeros(len(lengths), T, 9, 512)
    mask = torch.zeros(len(lengths), T)
    for i, v in enumerate(videos):
        batch[i, : v.shape[0]] = v
        mask[i, : v.shape[0]] = 1
    query = feats(8, seed=5)
    with torch.no_grad():
        single = torch.cat([m.calculate_video_similarity(m.index_video(query), m.index_video(v)) for v in videos])
        q = m.index_video(query.expand(len(lengths), -1, -1, -1).contiguous())
        t = m.index_video(batch, mask)
        batched = m.calculate_video_similarity(q, t, None, mask)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def test_coarse_padding_mask_ignores_padding() -> None:
    m = get_model("dns_cg_student", netvlad_clusters=8)
    v = feats(5)
    padded = torch.cat([v, torch.randn(7, 9, 512)]).unsqueeze(0)
    mask = torch.tensor([[1.0] * 5 + [0.0] * 7])
    with torch.no_grad():
        torch.testing.assert_close(m.index_video(padded, mask), m.index_video(v), atol=1e-5, rtol=0)


def test_shape_errors_name_the_layout() -> None:
    m = get_model("s2vs")
    with pytest.raises(ValueError, match=r"\[N, T, R, D\]"):
        m.index_video(torch.zeros(9, 512))
    with pytest.raises(ValueError, match="D=512"):
        m.index_video(torch.zeros(1, 4, 9, 256))


def test_visil_bare_state_dict_round_trip(tmp_path: Path) -> None:
    src = get_model("visil", dims=64)
    keys = set(src.state_dict())
    assert "attention.context_vector.weight" in keys and "video_comperator.conv1.weight" in keys
    assert not any(k.startswith("attention.transform") for k in keys)
    torch.save(src.state_dict(), tmp_path / "visil.pth")
    m = get_model("visil", checkpoint=tmp_path / "visil.pth")
    assert m.dims == 64 and m.video_comperator.padding == "replicate"
    a, b = feats(6, 64), feats(9, 64, seed=2)
    with torch.no_grad():
        s = m.calculate_video_similarity(m.index_video(a), m.index_video(b))
        s_src = src.calculate_video_similarity(src.index_video(a), src.index_video(b))
    torch.testing.assert_close(s, s_src)
    # norm=True attention: weights (w.x)/||w||/2 + 0.5
    x = feats(2, 64)
    w = m.attention.context_vector.weight
    _, weights = m.attention(x)
    torch.testing.assert_close(weights, (x @ (w / w.norm()).t()) / 2 + 0.5)


def test_wrong_checkpoint_for_model_is_a_clear_error(tmp_path: Path) -> None:
    from inference.checkpoints import CheckpointError

    torch.save({"model": get_model("dns_fg_att_student").state_dict()}, tmp_path / "att.pth")
    with pytest.raises(CheckpointError):
        get_model("dns_fg_bin_student", checkpoint=tmp_path / "att.pth")


def test_repeat_to_min_length_doubles_like_s2vs() -> None:
    from inference.similarities import repeat_to_min_length

    assert repeat_to_min_length(torch.arange(3), 4).tolist() == [0, 1, 2, 0, 1, 2]
    assert repeat_to_min_length(torch.arange(1), 4).tolist() == [0, 0, 0, 0]
    assert repeat_to_min_length(torch.arange(5), 4).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="empty video"):
        repeat_to_min_length(torch.zeros(0, 9, 512), 4)
