"""DnS students and selector on a tiny real corpus with a teacher: losses fall, weights load through the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inference.registry import get_model
from inference.s2vs import S2VSSimilarityNetwork
from training.corpus import CorpusSpec, build_feature_corpus
from training.dns import (DnSTrainConfig, SelectorTrainConfig, mine_pairs, teacher_similarities, train_selector,
                          train_students)
from training.pca import fit_corpus_pca
from training.s2vs import whiten_corpus

TINY = CorpusSpec(views=2, only=("s2vs_example_video1", "bigbuckbunny"), heldout_videos=())


def test_students_and_selector(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    corpus = build_feature_corpus(TINY, progress=False)
    pca = fit_corpus_pca(corpus, 32)
    teacher = S2VSSimilarityNetwork(dims=32).eval()
    pairs = teacher_similarities(teacher, mine_pairs(whiten_corpus(corpus, pca), clip_frames=4, stride=1))
    assert pairs.teacher is not None and len(pairs.teacher) == len(pairs.pairs) > 10
    cfg = DnSTrainConfig(steps=40, batch_pairs=16, netvlad_clusters=4, netvlad_outdims=32, progress=False)
    coarse, fine, losses = train_students(pairs, tmp_path / "dns", cfg)
    for k in ("coarse", "fine"):
        assert np.mean(losses[k][-8:]) < np.mean(losses[k][:8]), k
    loaded = get_model("dns_cg_student", checkpoint=tmp_path / "dns" / "coarse.pth")
    assert loaded.netvlad.num_clusters == 4
    get_model("dns_fg_att_student", checkpoint=tmp_path / "dns" / "fine_student.pth", dims=32)
    selector, sl, stats = train_selector(pairs, coarse, teacher, tmp_path / "sel",
                                         SelectorTrainConfig(steps=30, batch_pairs=16, progress=False))
    assert 0 < stats["positive_fraction"] < 1
    assert np.mean(sl[-8:]) < np.mean(sl[:8])
    get_model("dns_selector", checkpoint=tmp_path / "sel" / "selector.pth", dims=32)
