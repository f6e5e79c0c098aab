"""PCA whitening (and ITQ) fitted on the training corpus's region vectors (``dupwatch train pca``).

Saved in the published layouts: PCA ``{'mean' [1752], 'd' [K], 'V' [1752, K]}`` keeping the K
largest components (K = 512, so the file stays small), ITQ ``{'proj' [K, bits]}`` fitted on the
whitened, L2-normalised vectors. Both load through :func:`inference.checkpoints.load_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.layers import PCALayer
from inference.pca import fit_itq, fit_pca, save_itq, save_pca
from training.corpus import FeatureCorpus

__all__ = ["corpus_region_vectors", "fit_corpus_pca", "fit_corpus_itq", "pca_layer", "whiten", "train_pca"]


def corpus_region_vectors(corpus: FeatureCorpus, max_vectors: int = 200_000, seed: int = 0) -> torch.Tensor:
    """All region vectors of every view, ``[N, 1752]`` float32 (subsampled to ``max_vectors``)."""
    x = np.concatenate([v.reshape(-1, v.shape[-1]) for views in corpus.videos.values() for v in views]).astype(np.float32)
    if len(x) > max_vectors:
        x = x[np.random.default_rng(seed).choice(len(x), max_vectors, replace=False)]
    return torch.from_numpy(x)


def fit_corpus_pca(corpus: FeatureCorpus, components: int = 512) -> dict[str, torch.Tensor]:
    p = fit_pca(corpus_region_vectors(corpus))
    k = min(components, p["d"].shape[0])
    return {"mean": p["mean"], "d": p["d"][:k].contiguous(), "V": p["V"][:, :k].contiguous()}


def pca_layer(pca: dict[str, torch.Tensor]) -> PCALayer:
    return PCALayer.from_pca(pca["mean"], pca["d"], pca["V"]).eval()


@torch.no_grad()
def whiten(layer: PCALayer, regions: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Raw regions ``[..., 1752]`` → whitened, L2-normalised ``[..., K]`` float32 (the serving features)."""
    x = torch.as_tensor(np.asarray(regions, dtype=np.float32)) if not isinstance(regions, torch.Tensor) else regions.float()
    return layer(x)


def fit_corpus_itq(corpus: FeatureCorpus, pca: dict[str, torch.Tensor], bits: int | None = None, iterations: int = 20) -> dict[str, torch.Tensor]:
    x = whiten(pca_layer(pca), corpus_region_vectors(corpus, max_vectors=5_000))
    return fit_itq(F.normalize(x, dim=-1), bits=bits, iterations=iterations)


def train_pca(corpus: FeatureCorpus, out_dir: str | Path, components: int = 512, itq: bool = True) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pca = fit_corpus_pca(corpus, components)
    paths = {"pca": save_pca(pca, out / "pca.pth")}
    if itq:
        paths["itq"] = save_itq(fit_corpus_itq(corpus, pca), out / "itq.pth")
    return paths
