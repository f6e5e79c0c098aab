"""Numeric parity of an ONNX file against the PyTorch graph it was exported from.

An export is only installed (moved into place) after :func:`check_parity` found every output of
every checked shape within ``atol`` of PyTorch: :func:`install_if_parity` runs the check on the
temporary file and either renames it to the destination or deletes it and raises
:class:`ParityError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from inference.graphs import GraphSpec

__all__ = ["ATOL", "ParityError", "ParityCase", "ParityReport", "check_parity", "install_if_parity", "ort_session"]

ATOL = 1e-4


class ParityError(RuntimeError):
    """An exported model whose outputs differ from PyTorch by more than the tolerance."""

    def __init__(self, message: str, report: "ParityReport | None" = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ParityCase:
    sizes: dict[str, int]
    output: str
    max_abs_err: float

    def line(self) -> str:
        dims = ",".join(f"{k}={v}" for k, v in self.sizes.items())
        return f"{self.output}[{dims}] max_abs_err={self.max_abs_err:.3e}"


@dataclass
class ParityReport:
    graph: str
    atol: float
    cases: list[ParityCase] = field(default_factory=list)
    error: str = ""
    """The ONNX Runtime error of a shape that could not run (counted as an infinite error)."""

    @property
    def max_abs_err(self) -> float:
        return max((c.max_abs_err for c in self.cases), default=float("nan"))

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.max_abs_err <= self.atol for c in self.cases)  # NaN fails

    def worst(self) -> ParityCase:
        return max(self.cases, key=lambda c: (np.nan_to_num(c.max_abs_err, nan=np.inf)))

    def summary(self) -> str:
        if not self.cases:
            return f"{self.graph}: no parity case ran"
        return (f"{self.graph}: {len(self.cases)} outputs checked, max_abs_err {self.max_abs_err:.3e} "
                f"(worst {self.worst().line()}) {'ok' if self.ok else 'FAIL'} at atol {self.atol:g}")


def ort_session(path: Path | str, providers: Sequence[str] | None = None, threads: int | None = None):  # noqa: ANN201
    """An ONNX Runtime session (CPU unless ``providers`` say otherwise)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers or ["CPUExecutionProvider"]))


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)))


def check_parity(spec: "GraphSpec", onnx_path: Path | str, shapes: Sequence[dict[str, int]] | None = None,
                 atol: float = ATOL, seed: int = 0, session=None) -> ParityReport:  # noqa: ANN001
    """Run the ONNX file (ORT CPU) and the PyTorch graph on the same inputs for every shape."""
    sess = session if session is not None else ort_session(onnx_path)
    report = ParityReport(spec.name, atol)
    out_names = [o for o, _, _ in spec.outputs]
    for i, sizes in enumerate(shapes if shapes is not None else spec.parity_shapes):
        inputs = spec.sample(sizes, seed=seed + i)
        expected = spec.torch_run(inputs)
        try:
            got = dict(zip(out_names, sess.run(out_names, inputs), strict=True))
        except Exception as exc:  # an ORT failure at some shape is a parity failure, not a crash
            for name in out_names:
                report.cases.append(ParityCase(dict(sizes), name, float("inf")))
            report.error = f"{type(exc).__name__}: {exc}"
            continue
        for name in out_names:
            if name in spec.sign_outputs:  # sign codes: a flip is an error unless the reference is within atol of 0
                keep = np.abs(expected[spec.sign_outputs[name]]) > atol
                err = _max_abs(got[name] * keep, expected[name] * keep) if got[name].shape == keep.shape else float("inf")
            else:
                err = _max_abs(got[name], expected[name])
            report.cases.append(ParityCase(dict(sizes), name, err))
    return report


def install_if_parity(spec: "GraphSpec", tmp_path: Path | str, dest: Path | str,
                      shapes: Sequence[dict[str, int]] | None = None, atol: float = ATOL) -> ParityReport:
    """Check ``tmp_path``; on success rename it to ``dest`` (atomic), else delete it and raise :class:`ParityError`."""
    tmp_path, dest = Path(tmp_path), Path(dest)
    try:
        report = check_parity(spec, tmp_path, shapes, atol)
    except Exception:
        tmp_path.unlink(missing_ok=True)
        raise
    if not report.ok:
        tmp_path.unlink(missing_ok=True)
        raise ParityError(f"ONNX export of {spec.name!r} refused, not written: {report.summary()}"
                          + (f" ({report.error})" if report.error else ""), report)
    os.replace(tmp_path, dest)
    return report


SERVED_LENGTHS = ((1, 3), (3, 5), (5, 40), (16, 16), (40, 7), (120, 300))
"""(query, reference) frame counts of :func:`check_served_fine`: shorter and longer than ``min_frames``."""


def check_served_fine(model: object, index_path: Path | str, fine_path: Path | str, min_frames: int,
                      lengths: Sequence[tuple[int, int]] = SERVED_LENGTHS, seed: int = 0) -> dict[str, object]:
    """The served fine path (tiling to ``min_frames`` outside the graphs, :class:`inference.served.PairScorer`
    on the ONNX ``<fine>_index`` and ``<fine>`` graphs) against the PyTorch network's own
    ``calculate_video_similarity(index_video(q), index_video(r))`` for videos shorter and longer than
    ``min_frames``. Returns ``{"lengths", "max_abs_err"}`` (score error)."""
    import torch

    from inference.engines import OnnxRuntimeEngine
    from inference.served import PairScorer

    engine = OnnxRuntimeEngine({"fine_index": index_path, "fine": fine_path}, providers=["CPUExecutionProvider"], threads=1)
    scorer = PairScorer(engine, "fine", min_frames)
    rng = np.random.default_rng(seed)
    dims = int(model.dims)  # type: ignore[attr-defined]
    worst = 0.0
    for tq, tt in lengths:
        q = rng.standard_normal((tq, 9, dims)).astype(np.float32)
        r = rng.standard_normal((tt, 9, dims)).astype(np.float32)
        r[: min(tq, tt) // 2] = q[: min(tq, tt) // 2]
        q /= np.linalg.norm(q, axis=-1, keepdims=True)
        r /= np.linalg.norm(r, axis=-1, keepdims=True)
        got = scorer.compare_many(q, [r])[0].score
        with torch.inference_mode():
            qi = model.index_video(torch.from_numpy(q)[None])  # type: ignore[attr-defined]
            ri = model.index_video(torch.from_numpy(r)[None])  # type: ignore[attr-defined]
            want = float(model.calculate_video_similarity(qi, ri)[0])  # type: ignore[attr-defined]
        worst = max(worst, abs(got - want))
    return {"lengths": [list(x) for x in lengths], "max_abs_err": worst}
