"""Published DRCA checkpoint layout (anchors.md §1.5) <-> our ``DRCA`` module.

Our parameter names equal the published backbone keys without the ``backbone.`` prefix
(``transformer_layers.layers.N.attentions.0/1.*``, ``ffns.0.*``, ``dccm.compression.*``,
``dccm.rank_net.score_network.*``), so the mapping is the prefix alone. ``sim_head.*`` entries
(CrossBatchMemory buffers of the training loss) are dropped; anything else that does not match
raises ``CheckpointLayoutError`` naming the missing and unexpected keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from inference.drca.model import DRCA

BACKBONE_PREFIX = "backbone."
DROPPED_PREFIXES = ("sim_head.loss_sim.", "sim_head.encoder.")


class CheckpointLayoutError(ValueError):
    """The checkpoint's keys or shapes do not match the DRCA configuration."""


def to_published_state_dict(model: DRCA) -> dict[str, Tensor]:
    """Our state dict under the published names (``backbone.*``)."""
    return {BACKBONE_PREFIX + key: value.detach().clone() for key, value in model.state_dict().items()}


def _unwrap(obj: object) -> Mapping[str, Tensor]:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointLayoutError(f"expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    return obj


def convert_published_state_dict(published: Mapping[str, object]) -> dict[str, Tensor]:
    """Published (optionally ``{"state_dict": ...}``-wrapped) keys -> our module's keys."""
    converted: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, value in _unwrap(published).items():
        if key.startswith(DROPPED_PREFIXES):
            continue
        if key.startswith(BACKBONE_PREFIX) and isinstance(value, Tensor):
            converted[key[len(BACKBONE_PREFIX) :]] = value
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointLayoutError(f"unexpected non-backbone keys in DRCA checkpoint: {sorted(unexpected)[:20]}")
    return converted


def load_published_checkpoint(model: DRCA, source: str | Path | Mapping[str, object]) -> DRCA:
    """Load a published-layout checkpoint (path or mapping) into ``model`` strictly; returns ``model``."""
    if isinstance(source, (str, Path)):
        source = torch.load(source, map_location="cpu", weights_only=True)
    state = convert_published_state_dict(source)  # type: ignore[arg-type]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointLayoutError(
            f"DRCA checkpoint does not match the model: {len(missing)} missing keys "
            f"{[BACKBONE_PREFIX + k for k in missing[:10]]}, {len(unexpected)} unexpected keys "
            f"{[BACKBONE_PREFIX + k for k in unexpected[:10]]}"
        )
    bad_shapes = [
        f"{BACKBONE_PREFIX}{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if bad_shapes:
        raise CheckpointLayoutError(f"DRCA checkpoint shape mismatch (wrong preset?): {bad_shapes[:10]}")
    model.load_state_dict(state, strict=True)
    return model


def load_bundle_drca(bundle: Any) -> "DRCA":
    """A model bundle's ``drca`` artifact as an eval-mode :class:`DRCA`: a ``dupwatch train drca``
    checkpoint (``{'model_config', 'model', ...}``), our own state dict (architecture from the
    manifest's ``config.model_config`` or ``preset``/``k``), or the authors' published layout
    (``backbone.*``). Read with ``weights_only=True``: nothing is unpickled beyond tensors."""
    from inference.checkpoints import load_checkpoint
    from inference.drca.config import DRCAConfig, get_config
    from inference.drca.model import DRCA

    entry = bundle.entry("drca")
    path = bundle.path("drca")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model_config" in state and "model" in state:
        model = DRCA(DRCAConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
        return model.eval()
    cfg_dict = entry.config.get("model_config")
    cfg = DRCAConfig.from_dict(cfg_dict) if cfg_dict else get_config(entry.config.get("preset", "s"), k=entry.config.get("k"))
    model = DRCA(cfg)
    if entry.kind == "torch-state-dict" and not any(k.startswith("backbone.") for k in state):
        model.load_state_dict(load_checkpoint(path).state_dict)
    else:
        load_published_checkpoint(model, state)
    return model.eval()
