"""Parity against the authors' reference outputs (the layout of ``tests/fixtures/parity``).

:func:`run_parity` loads every fixture checkpoint through the safe loader and the registry,
recomputes every output listed in the fixture README and reports the largest absolute error per
case. ``perturb(name, module)`` lets tests break a layer to prove the check can fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["ParityResult", "run_parity", "default_parity_dir", "ATOL"]

ATOL = 1e-4
Perturb = Callable[[str, nn.Module], None]


@dataclass(frozen=True)
class ParityResult:
    fixture: str
    case: str
    max_abs_err: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.max_abs_err <= self.atol  # NaN compares False: a NaN output fails

    def line(self) -> str:
        return f"{self.fixture + '/' + self.case:<48} max_abs_err={self.max_abs_err:.3e}  {'ok' if self.ok else 'FAIL'}"


def default_parity_dir() -> Path:
    """The fixtures kept in the repository (``tests/fixtures/parity``, see its README)."""
    from dupwatch.paths import REPO_ROOT

    return REPO_ROOT / "tests" / "fixtures" / "parity"


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    if a.shape != b.shape:
        return float("inf")
    if a.numel() == 0:
        return 0.0
    return float((a - b).abs().max())


def _cases(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _model(name: str, checkpoint: Path, perturb: Perturb | None) -> nn.Module:
    from inference.registry import get_model

    model = get_model(name, checkpoint=checkpoint)
    if perturb is not None:
        perturb(name, model)
    return model.eval()


def _pairwise(model: nn.Module, indexed: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.cat([model.calculate_video_similarity(q, t).reshape(1) for t in indexed]) for q in indexed])


def _padded(videos: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The videos zero-padded to the longest one, with the mask of real frames (the authors' batch)."""
    longest = max(len(v) for v in videos)
    batch = torch.zeros(len(videos), longest, *videos[0].shape[1:], dtype=videos[0].dtype)
    mask = torch.zeros(len(videos), longest, dtype=videos[0].dtype)
    for i, video in enumerate(videos):
        batch[i, : len(video)] = video
        mask[i, : len(video)] = 1
    return batch, mask


def _dns_cg(d: Path, perturb: Perturb | None) -> Iterator[tuple[str, float]]:
    m = _model("dns_cg_student", d / "dns_cg_student.pth", perturb)
    c = _cases(d / "dns_cg_student.cases.pt")
    if "batch" not in c:  # the lean copy leaves out what padding the videos rebuilds
        c["batch"], c["mask"] = _padded(c["videos"])
    emb = torch.cat([m.index_video(v) for v in c["videos"]])
    yield "embeddings", _err(emb, c["embeddings"])
    yield "batch_embeddings", _err(m.index_video(c["batch"], c["mask"]), c["batch_embeddings"])
    yield "similarity", _err(m.calculate_video_similarity(emb, emb), c["similarity"])


def _dns_fg(kind: str) -> Callable[[Path, Perturb | None], Iterator[tuple[str, float]]]:
    def run(d: Path, perturb: Perturb | None) -> Iterator[tuple[str, float]]:
        m = _model(f"dns_fg_{kind}_student", d / f"dns_fg_{kind}_student.pth", perturb)
        c = _cases(d / f"dns_fg_{kind}_student.cases.pt")
        idx = [m.index_video(v) for v in c["videos"]]
        yield "indexed", max(_err(a, b) for a, b in zip(idx, c["indexed"], strict=True))
        yield "similarity", _err(_pairwise(m, idx), c["similarity"])
        yield "similarity_matrix_2_1", _err(m.similarity_matrix(idx[2], idx[1])[0], c["similarity_matrix_2_1"])

    return run


def _selector(d: Path, perturb: Perturb | None) -> Iterator[tuple[str, float]]:
    m = _model("dns_selector", d / "dns_selector_cg-fg_att.pth", perturb)
    c = _cases(d / "dns_selector_cg-fg_att.cases.pt")
    yield "self_similarity", _err(torch.cat([m.index_video(v) for v in c["videos"]]), c["self_similarity"])
    yield "mlp_output", _err(m(c["mlp_input"]), c["mlp_output"])


def _s2vs(d: Path, perturb: Perturb | None) -> Iterator[tuple[str, float]]:
    m = _model("s2vs", d / "s2vs_similarity_network.pth", perturb)
    c = _cases(d / "s2vs_similarity_network.cases.pt")
    idx = [m.index_video(v) for v in c["videos"]]
    yield "indexed", max(_err(a, b) for a, b in zip(idx, c["indexed"], strict=True))
    yield "similarity", _err(_pairwise(m, idx), c["similarity"])
    yield "similarity_matrix_3_1", _err(m.similarity_matrix(idx[3], idx[1])[0], c["similarity_matrix_3_1"])
    yield "frame_to_frame_3_1", _err(m.frame_to_frame_similarity(idx[3], idx[1]), c["frame_to_frame_3_1"])


def _features(d: Path, perturb: Perturb | None) -> Iterator[tuple[str, float]]:
    from inference.checkpoints import load_checkpoint
    from inference.features import l3imac_regions
    from inference.layers import PCALayer

    c = _cases(d / "features.cases.pt")
    acts = [c["activations"][k] for k in ("layer1", "layer2", "layer3", "layer4")]
    kernels = [28, 14, 6, 3]
    holder = nn.Module()
    holder.kernels = kernels  # type: ignore[assignment]
    p = load_checkpoint(d / "pca_small.pth").state_dict
    pca = PCALayer.from_pca(p["mean"], p["d"], p["V"], int(c["pca_components"]))
    if perturb is not None:
        perturb("features", holder)
        perturb("pca", pca)
    yield "regions", _err(l3imac_regions(acts, holder.kernels), c["regions"])
    yield "pca_output", _err(pca(c["pca_input"].clone()), c["pca_output"])


FIXTURES: dict[str, tuple[tuple[str, ...], Callable[[Path, Perturb | None], Iterator[tuple[str, float]]]]] = {
    "dns_cg_student": (("dns_cg_student.pth", "dns_cg_student.cases.pt"), _dns_cg),
    "dns_fg_att_student": (("dns_fg_att_student.pth", "dns_fg_att_student.cases.pt"), _dns_fg("att")),
    "dns_fg_bin_student": (("dns_fg_bin_student.pth", "dns_fg_bin_student.cases.pt"), _dns_fg("bin")),
    "dns_selector_cg-fg_att": (("dns_selector_cg-fg_att.pth", "dns_selector_cg-fg_att.cases.pt"), _selector),
    "s2vs_similarity_network": (("s2vs_similarity_network.pth", "s2vs_similarity_network.cases.pt"), _s2vs),
    "features": (("features.cases.pt", "pca_small.pth"), _features),
}


def run_parity(directory: str | Path | None = None, atol: float = ATOL, perturb: Perturb | None = None,
               only: list[str] | None = None) -> list[ParityResult]:
    """Recompute every fixture output; returns one :class:`ParityResult` per (fixture, output).

    Fixtures whose files are absent from ``directory`` are skipped; an empty result means none was found.
    """
    d = Path(directory) if directory is not None else default_parity_dir()
    if not d.is_dir():
        raise FileNotFoundError(f"parity directory not found: {d}")
    results: list[ParityResult] = []
    with torch.no_grad():
        for name, (files, run) in FIXTURES.items():
            if only is not None and name not in only:
                continue
            if not all((d / f).is_file() for f in files):
                continue
            for case, err in run(d, perturb):
                results.append(ParityResult(name, case, err, atol))
    return results
