"""DRCA model tests: perturbed ranking, DCCM, RAT shapes, batch inference, checkpoint layout, FLOPs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference.drca import (
    DRCA,
    CheckpointLayoutError,
    drca_s,
    drca_tiny,
    embed_video,
    load_published_checkpoint,
    perturbed_topk,
    split_indices,
    to_published_state_dict,
)
from inference.drca.dccm import ScoreNetwork

torch.set_num_threads(1)


def _clips(cfg, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g)


def _model(k: int = 3, seed: int = 0) -> DRCA:
    torch.manual_seed(seed)
    return DRCA(drca_tiny(k=k))


# ---------------------------------------------------------------- perturbed ranking


def test_perturbed_topk_forward_is_expected_indicator() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.2, 0.8, 0.0, 0.5, 0.3, 1.0]])
    top, rest = perturbed_topk(scores, k=3, sigma=0.05, num_samples=500)
    assert top.shape == (1, 3, 8) and rest.shape == (1, 5, 8)
    torch.testing.assert_close(top.sum(-1), torch.ones(1, 3))
    # every frame is selected exactly once across top and rest rows
    torch.testing.assert_close(top.sum(1) + rest.sum(1), torch.ones(1, 8))
    # well-separated scores: the expectation is (nearly) the hard one-hot, in temporal order
    assert torch.equal(top.argmax(-1), torch.tensor([[1, 3, 7]]))


def test_perturbed_topk_gradient_matches_direction() -> None:
    """Eq. 4 estimator: raising the weight on frame j's selection pushes its score up."""
    torch.manual_seed(0)
    scores = torch.tensor([[0.50, 0.52, 0.48, 0.51, 0.10, 0.90, 0.49, 0.53]], requires_grad=True)
    top, _ = perturbed_topk(scores, k=3, sigma=0.05, num_samples=2000)
    top[:, :, 2].sum().backward()  # reward selecting frame 2
    grad = scores.grad[0]
    assert torch.isfinite(grad).all()
    assert grad[2] > 0 and grad[2] == grad.max()


def test_gradients_flow_into_score_network() -> None:
    model = _model().train()
    emb = model(_clips(model.cfg, 2), compress=True)
    target = torch.randn_like(emb)
    (emb * target).sum().backward()
    score_net = model.transformer_layers.dccm.rank_net.score_network
    grads = [p.grad for p in score_net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # the score network reads detached tokens: its loss does not reach the patch embedding through it
    assert model.patch_embed.projection.weight.grad is not None


def test_hard_topk_at_eval_picks_highest_scores() -> None:
    scores = torch.tensor([[0.3, 0.9, 0.1, 0.7, 0.8, 0.0, 0.2, 0.4], [1.0, 0.0, 0.5, 0.6, 0.1, 0.2, 0.9, 0.3]])
    top, rest = split_indices(scores, 3)
    assert top.tolist() == [[1, 3, 4], [0, 3, 6]]
    assert rest.tolist() == [[0, 2, 5, 6, 7], [1, 2, 4, 5, 7]]

    model = _model(k=3).eval()
    with torch.no_grad():
        model(_clips(model.cfg, 2))
    out = model.transformer_layers.last_dccm
    assert out is not None and out.salient_index is not None
    expected = out.scores.topk(3, dim=1).indices.sort(dim=1).values
    assert torch.equal(out.salient_index, expected)


def test_score_network_output_is_min_max_normalised() -> None:
    net = ScoreNetwork(16).eval()
    s = net(torch.randn(3, 8, 16, 16))
    assert s.shape == (3, 8)
    torch.testing.assert_close(s.amin(1), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.amax(1), torch.ones(3), atol=1e-2, rtol=0)


# ---------------------------------------------------------------- shapes / inference


@pytest.mark.parametrize("k", [3, 4])
@pytest.mark.parametrize("training", [True, False])
def test_dccm_and_rat_shapes(k: int, training: bool) -> None:
    model = _model(k=k).train(training)
    cfg = model.cfg
    emb = model(_clips(cfg, 2))
    assert emb.shape == (2, cfg.embed_dim)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    out = model.transformer_layers.last_dccm
    low = (cfg.grid // cfg.down_factor) ** 2
    assert out.salient.shape == (2, k, cfg.num_patches, cfg.embed_dim)
    assert out.compressed.shape == (2, cfg.num_frames - k, low, cfg.embed_dim)


def test_batch_inference_matches_single_clips() -> None:
    model = _model().eval()
    clips = _clips(model.cfg, 4)
    with torch.no_grad():
        batched = model(clips)
        single = torch.cat([model(clips[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_compression_off_is_plain_timesformer() -> None:
    model = _model().eval()
    clips = _clips(model.cfg, 2)
    with torch.no_grad():
        a, b = model(clips, compress=False), model(clips, compress=True)
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_input_layout_is_checked() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        model(torch.randn(2, 8, 3, 64, 64))


def test_embed_video_uint8_clips_and_times() -> None:
    model = _model().eval()
    frames = np.random.default_rng(0).integers(0, 256, size=(19, 72, 96, 3), dtype=np.uint8)
    out = embed_video(model, frames, fps=1.0)
    assert out.embeddings.shape == (3, model.cfg.embed_dim)
    assert out.start_s.tolist() == [0.0, 8.0, 16.0] and out.end_s.tolist() == [8.0, 16.0, 19.0]
    torch.testing.assert_close(out.embeddings.norm(dim=-1), torch.ones(3))
    # float [T, 3, H, W] input in pixel scale gives the same embeddings
    as_float = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(embed_video(model, as_float).embeddings, out.embeddings)


# ---------------------------------------------------------------- published checkpoint layout


def test_parameter_names_follow_published_layout() -> None:
    keys = set(to_published_state_dict(DRCA(drca_tiny())))
    for key in [
        "backbone.patch_embed.projection.weight",
        "backbone.cls_token",
        "backbone.pos_embed",
        "backbone.time_embed",
        "backbone.norm.weight",
        "backbone.transformer_layers.layers.0.attentions.0.attn.in_proj_weight",
        "backbone.transformer_layers.layers.0.attentions.0.attn.out_proj.weight",
        "backbone.transformer_layers.layers.0.attentions.0.temporal_fc.weight",
        "backbone.transformer_layers.layers.0.attentions.0.norm.weight",
        "backbone.transformer_layers.layers.0.attentions.1.attn.in_proj_bias",
        "backbone.transformer_layers.layers.3.attentions.1.attn_low.in_proj_weight",
        "backbone.transformer_layers.layers.3.attentions.1.norm_low.weight",
        "backbone.transformer_layers.layers.0.ffns.0.layers.0.0.weight",
        "backbone.transformer_layers.layers.0.ffns.0.layers.1.weight",
        "backbone.transformer_layers.layers.0.ffns.0.norm.weight",
        "backbone.transformer_layers.dccm.compression.attn.q.weight",
        "backbone.transformer_layers.dccm.compression.attn.pool_q.weight",
        "backbone.transformer_layers.dccm.compression.attn.norm_k.weight",
        "backbone.transformer_layers.dccm.compression.mlp.fc1.weight",
        "backbone.transformer_layers.dccm.rank_net.score_network.downsample.weight",
        "backbone.transformer_layers.dccm.rank_net.score_network.bn.running_mean",
        "backbone.transformer_layers.dccm.rank_net.score_network.in_conv.0.weight",
        "backbone.transformer_layers.dccm.rank_net.score_network.in_conv.1.weight",
        "backbone.transformer_layers.dccm.rank_net.score_network.out_conv.4.weight",
    ]:
        assert key in keys, key
    # layers before DCCM have no low-resolution branch (tiny inserts DCCM after block 2)
    assert not any(k.startswith("backbone.transformer_layers.layers.1.attentions.1.attn_low") for k in keys)


def test_published_checkpoint_round_trip(tmp_path: Path) -> None:
    source = _model(seed=1).eval()
    published = to_published_state_dict(source)
    # extra loss buffers of the published recognizer and the {"state_dict": ...} wrapper
    published["sim_head.loss_sim.metric_loss.embedding_memory"] = torch.zeros(16, 64)
    published["sim_head.loss_sim.metric_loss.label_memory"] = torch.zeros(16)
    path = tmp_path / "drca.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": published}, path)

    fresh = load_published_checkpoint(_model(seed=2), path).eval()
    clips = _clips(source.cfg, 2)
    with torch.no_grad():
        assert torch.equal(source(clips), fresh(clips))
        assert torch.equal(source(clips, compress=False), fresh(clips, compress=False))


def test_checkpoint_layout_errors_are_clear() -> None:
    published = to_published_state_dict(_model())
    missing = dict(published)
    del missing["backbone.transformer_layers.dccm.compression.attn.q.weight"]
    with pytest.raises(CheckpointLayoutError, match=r"1 missing keys.*dccm\.compression\.attn\.q\.weight"):
        load_published_checkpoint(_model(), missing)

    extra = dict(published)
    extra["backbone.transformer_layers.layers.0.attentions.2.attn.in_proj_weight"] = torch.zeros(1)
    with pytest.raises(CheckpointLayoutError, match=r"1 unexpected keys.*attentions\.2"):
        load_published_checkpoint(_model(), extra)

    with pytest.raises(CheckpointLayoutError, match="non-backbone"):
        load_published_checkpoint(_model(), {**published, "cls_head.fc.weight": torch.zeros(1)})

    with pytest.raises(CheckpointLayoutError, match="shape mismatch"):
        load_published_checkpoint(DRCA(drca_tiny(img_size=32)), published)


# ---------------------------------------------------------------- FLOPs


def test_flops_ratio_within_15_percent_of_paper() -> None:
    from bench.drca import flops_table

    rows = {r.name: r for r in flops_table(["DRCA-S-K4", "DRCA-B-K4"])}
    for name, paper_ratio in (("DRCA-S-K4", 33.6 / 50.8), ("DRCA-B-K4", 129.0 / 196.0)):
        row = rows[name]
        assert abs(row.ratio - paper_ratio) / paper_ratio < 0.15, (name, row.ratio, paper_ratio)
    # absolute numbers land near the paper's too (multiply-add convention)
    assert abs(rows["DRCA-S-K4"].gflops_full - 50.8) / 50.8 < 0.15
    assert abs(rows["DRCA-B-K4"].gflops_full - 196.0) / 196.0 < 0.15


def test_drca_s_has_384_d_output() -> None:
    with torch.device("meta"):
        model = DRCA(drca_s(4))
    assert model.embed_dim == 384 and len(model.transformer_layers.layers) == 12
