"""Fitting PCA whitening and ITQ rotations, saved in the published layouts.

- :func:`fit_pca` → ``{'mean' [D], 'd' [D], 'V' [D, D]}`` (eigenvalues descending, eigenvectors
  in columns), the layout of ``pca_resnet50_vcdb_1M.pth``; load with :class:`inference.layers.PCALayer`.
- :func:`fit_itq` → ``{'proj' [D, bits]}``, the layout of ``itq_resnet50W_dns100k_1M.pth``; load
  with :meth:`inference.layers.BinarizationLayer.from_itq`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["fit_pca", "save_pca", "fit_itq", "save_itq"]


def _as_matrix(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim < 2:
        raise ValueError(f"{name}: expected vectors [N, D] or region vectors [N, R, D], got {tuple(x.shape)}")
    x = x.reshape(-1, x.shape[-1]).double()
    if x.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 vectors, got {x.shape[0]}")
    return x


def fit_pca(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """PCA of vectors ``[N, D]`` (or ``[N, R, D]``, regions flattened): mean, eigenvalues ``d`` (descending), ``V``.

    ``V`` is ``[D, D]`` (``[D, N]`` when there are fewer vectors than dimensions).
    """
    x = _as_matrix(x, "fit_pca")
    mean = x.mean(dim=0)
    xc = x - mean
    if x.shape[0] <= x.shape[1]:
        # fewer vectors than dims: economy SVD, V is [D, N] (only N components carry variance)
        _, s, Vt = torch.linalg.svd(xc, full_matrices=False)
        d, V = s**2 / (x.shape[0] - 1), Vt.t()
    else:
        d, V = torch.linalg.eigh(xc.t() @ xc / (x.shape[0] - 1))
    order = torch.argsort(d, descending=True)
    d = d[order].clamp_min(0.0)
    V = V[:, order]
    return {"mean": mean.float(), "d": d.float(), "V": V.float().contiguous()}


def save_pca(pca: dict[str, torch.Tensor], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"mean": pca["mean"], "d": pca["d"], "V": pca["V"]}, path)
    return path


def fit_itq(x: torch.Tensor, bits: int | None = None, iterations: int = 50, seed: int = 0) -> dict[str, torch.Tensor]:
    """Iterative quantization (Gong & Lazebnik) on whitened, L2-normalised vectors ``[N, D]``.

    Returns ``{'proj': [D, bits]}`` such that ``sign(normalize(x) @ proj)`` are the codes. With
    ``bits < D`` the vectors are first projected on their top ``bits`` principal directions.
    """
    x = F.normalize(_as_matrix(x, "fit_itq"), p=2, dim=-1)
    D = x.shape[1]
    bits = D if bits is None else int(bits)
    if not 0 < bits <= D:
        raise ValueError(f"fit_itq: bits must be in 1..{D}, got {bits}")
    xc = x - x.mean(dim=0)
    if bits < D:
        _, _, Vt = torch.linalg.svd(xc, full_matrices=False)
        P = Vt[:bits].t()
    else:
        P = torch.eye(D, dtype=x.dtype)
    v = x @ P
    g = torch.Generator().manual_seed(seed)
    R, _ = torch.linalg.qr(torch.randn(bits, bits, generator=g, dtype=x.dtype))
    for _ in range(iterations):
        B = torch.sign(v @ R)
        B[B == 0] = 1
        U, _, Wt = torch.linalg.svd(v.t() @ B)
        R = U @ Wt
    return {"proj": (P @ R).float().contiguous()}


def save_itq(itq: dict[str, torch.Tensor], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"proj": itq["proj"]}, path)
    return path
