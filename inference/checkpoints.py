"""Safe loading of every published checkpoint layout (DnS, S²VS, ViSiL, PCA, ITQ).

Layouts handled by :func:`load_checkpoint`:

- training checkpoints ``{'args': argparse.Namespace, 'model': state_dict, 'global_step', ...}``
  (DnS ``dns_*.pth``, S²VS ``s2vs_*.pth``);
- bare state_dicts (ViSiL ``visil.pth``; anything whose values are all tensors);
- ``{'proj'}`` ITQ rotations and ``{'mean', 'd', 'V'}`` PCA files (returned as their dict).

Everything goes through ``torch.load(weights_only=True)`` with ``argparse.Namespace`` as the only
extra allowed global. A file that pickles any other global (``os.system``, a custom class, ...)
is refused with :class:`UnsafeCheckpointError` before anything in it runs.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dupwatch.errors import PermanentError

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "UnsafeCheckpointError",
    "load_checkpoint",
    "load_into",
]

SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)


class CheckpointError(PermanentError):
    """A checkpoint file that cannot be used (bad layout, missing keys, shape mismatch)."""

    reason = "bad_checkpoint"


class UnsafeCheckpointError(CheckpointError):
    """The file pickles a global outside the allow-list; it was not executed."""

    reason = "unsafe_checkpoint"


@dataclass
class Checkpoint:
    """What a checkpoint file holds, whatever its layout.

    ``kind`` is one of ``"training"`` (``{'args', 'model', ...}``), ``"state_dict"``,
    ``"pca"`` (``{'mean', 'd', 'V'}``) or ``"itq"`` (``{'proj'}``). ``state_dict`` holds the
    tensors (for PCA/ITQ, the file's own keys).
    """

    kind: str
    state_dict: dict[str, torch.Tensor]
    args: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def shape(self, key: str) -> tuple[int, ...]:
        if key not in self.state_dict:
            raise CheckpointError(f"{self.path}: no key {key!r} in the state_dict")
        return tuple(self.state_dict[key].shape)


def _safe_torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the file pickles a global outside the allow-list "
            f"(allowed: {', '.join(t.__module__ + '.' + t.__qualname__ for t in SAFE_GLOBALS)}); "
            f"details: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise CheckpointError(f"{path}: no such checkpoint file") from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {exc}") from exc


def _tensors_only(obj: Mapping[str, Any], path: Path, what: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: {what} entry {key!r} is a {type(value).__name__}, expected a tensor")
        out[str(key)] = value
    return out


def parse_checkpoint(obj: Any, path: Path | None = None) -> Checkpoint:
    """Classify an already-loaded object into a :class:`Checkpoint`."""
    where = path if path is not None else Path("<memory>")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a dict checkpoint, got {type(obj).__name__}")
    keys = set(obj.keys())
    if "model" in keys and isinstance(obj["model"], Mapping):
        args = obj.get("args")
        args_dict = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args or {})
        extra = {k: v for k, v in obj.items() if k not in {"model", "args", "optimizer"}}
        return Checkpoint("training", _tensors_only(obj["model"], where, "'model'"), args_dict, extra, path)
    if {"mean", "d", "V"} <= keys:
        return Checkpoint("pca", _tensors_only({k: obj[k] for k in ("mean", "d", "V")}, where, "PCA"), path=path)
    if keys == {"proj"}:
        return Checkpoint("itq", _tensors_only(obj, where, "ITQ"), path=path)
    if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return Checkpoint("state_dict", _tensors_only(obj, where, "state_dict"), path=path)
    raise CheckpointError(
        f"{where}: unknown checkpoint layout with keys {sorted(map(str, keys))[:10]}; expected "
        "{'args','model',...}, a bare state_dict, {'mean','d','V'} (PCA) or {'proj'} (ITQ)"
    )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load any published layout safely (``weights_only=True`` + ``argparse.Namespace``)."""
    path = Path(path)
    return parse_checkpoint(_safe_torch_load(path), path)


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys under ``prefix`` with it removed (e.g. ``module.`` from DataParallel saves)."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_into(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "checkpoint",
              ignore: tuple[str, ...] = ()) -> nn.Module:
    """Load ``state_dict`` strictly into ``module``.

    Raises :class:`CheckpointError` that lists every missing key, unexpected key and shape
    mismatch (instead of torch's first-error-only message). Keys starting with any prefix in
    ``ignore`` are dropped from the file first.
    """
    sd = {k: v for k, v in state_dict.items() if not any(k.startswith(p) for p in ignore)}
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(sd)
        if tuple(sd[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = [f"{source} does not fit {type(module).__name__}:"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
        raise CheckpointError("\n  ".join(parts))
    module.load_state_dict(sd, strict=True)
    return module
