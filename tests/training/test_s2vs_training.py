"""S²VS trainer on a tiny real corpus: the loss falls, the checkpoint resumes, weights load in the published layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inference.checkpoints import load_checkpoint
from inference.registry import get_model
from training.corpus import CorpusSpec, build_feature_corpus
from training.pca import fit_corpus_pca
from training.s2vs import S2VSTrainConfig, sample_batch, sshn_loss, train_s2vs, whiten_corpus

TINY = CorpusSpec(views=2, only=("s2vs_example_video1", "bigbuckbunny"), heldout_videos=())


def test_batch_marks_another_moment_as_negative() -> None:
    videos = {"a": [np.zeros((16, 9, 8), np.float32)] * 2, "b": [np.ones((16, 9, 8), np.float32)] * 2}
    cfg = S2VSTrainConfig(clips=4, clip_frames=4)
    clips, positive, valid = sample_batch(videos, {}, cfg, np.random.default_rng(0))
    assert clips.shape == (8, 4, 9, 8)
    assert positive.sum(1).tolist() == [1] * 8 and not positive.diagonal().any() and not valid.diagonal().any()
    # rows 0/1 (source a, window 1) vs rows 2/3 (source a, window 2): non-overlapping → valid negatives
    assert valid[0, 2] and not positive[0, 2]
    cfg_off = S2VSTrainConfig(clips=2, clip_frames=4, moment_negatives=False)
    clips, positive, valid = sample_batch(videos, {}, cfg_off, np.random.default_rng(0))
    assert clips.shape[0] == 4 and valid[0, 2] and valid[0, 3]  # one window per source: the other rows are the other source


def test_sshn_loss_pushes_hardest_negative() -> None:
    positive = torch.tensor([[False, True], [True, False]])
    valid = ~torch.eye(2, dtype=torch.bool)
    s = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
    neg_only = torch.zeros(2, 2, dtype=torch.bool)
    assert sshn_loss(s, positive, valid) < 1e-3
    assert sshn_loss(s, neg_only, valid) > 2.0


def test_short_training_lowers_loss_and_checkpoint_loads(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    corpus = build_feature_corpus(TINY, progress=False)
    pca = fit_corpus_pca(corpus, 32)
    cfg = S2VSTrainConfig(steps=30, clips=4, clip_frames=4, lr=1e-3, warmup=4, save_every=10, warm_start_steps=6,
                          progress=False)
    res = train_s2vs(corpus, pca, tmp_path, cfg, resume=False)
    assert np.mean(res.losses[-8:]) < np.mean(res.losses[6:14])  # the S²VS stage (after the chamfer warm start)
    assert res.curve.is_file() and (tmp_path / "checkpoint.pt").is_file()
    ck = load_checkpoint(res.weights)
    assert ck.kind == "state_dict" and "attention.context_vector.weight" in ck.state_dict
    net = get_model("s2vs", checkpoint=res.weights, dims=32)
    w = whiten_corpus(corpus, pca)
    x, y = (torch.from_numpy(w[n][0]).float() for n in ("bigbuckbunny", "s2vs_example_video1"))
    with torch.no_grad():
        assert float(net(x, x)) > float(net(x, y))
    res2 = train_s2vs(corpus, pca, tmp_path, S2VSTrainConfig(**{**cfg.__dict__, "steps": 32}))  # resumes at step 30
    assert len(res2.losses) == 32
