"""DRCA: Differentiable Resolution Compression and Alignment (issue #4).

Divided space-time ViT (DRCA-S / DRCA-B / tiny) with DCCM (perturbed-maxima top-K frame ranking +
saliency-frame-reference compression) and Resolution-Align Transformer layers.
"""

from inference.drca.checkpoint import (
    CheckpointLayoutError,
    convert_published_state_dict,
    load_published_checkpoint,
    to_published_state_dict,
)
from inference.drca.config import DRCAConfig, drca_b, drca_s, drca_tiny, get_config
from inference.drca.embed import ClipEmbeddings, embed_video
from inference.drca.model import DRCA, build_drca
from inference.drca.rank import perturbed_topk, split_indices

__all__ = [
    "DRCA",
    "CheckpointLayoutError",
    "ClipEmbeddings",
    "DRCAConfig",
    "build_drca",
    "convert_published_state_dict",
    "drca_b",
    "drca_s",
    "drca_tiny",
    "embed_video",
    "get_config",
    "load_published_checkpoint",
    "perturbed_topk",
    "split_indices",
    "to_published_state_dict",
]
