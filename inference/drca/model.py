"""DRCA backbone: divided space-time ViT + DCCM after block ``comp_insert_layer`` + RAT layers.

Parameter names equal the published checkpoint's ``backbone.*`` keys without the prefix (see
``checkpoint.py``). ``forward`` takes normalised clips ``[B, 3, T, H, W]`` (NCTHW, mean = std =
127.5) and returns L2-normalised CLS embeddings ``[B, C]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference.drca.config import DRCAConfig
from inference.drca.dccm import DCCM, DCCMOutput
from inference.drca.rat import RATLayer, TokenState
from inference.drca.vit import LN_EPS, PatchEmbed


class ResolutionAlignSequence(nn.Module):
    """``layers`` (12 blocks; those from ``comp_insert_layer`` on are RAT layers) and ``dccm``."""

    def __init__(self, cfg: DRCAConfig) -> None:
        super().__init__()
        self.insert_layer = cfg.comp_insert_layer
        self.layers = nn.ModuleList(
            [
                RATLayer(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, i >= cfg.comp_insert_layer, cfg.down_factor)
                for i in range(cfg.num_layers)
            ]
        )
        self.dccm = DCCM(
            cfg.embed_dim, cfg.comp_k, cfg.compressor_heads, cfg.down_factor, cfg.sigma, cfg.num_samples, cfg.mlp_ratio
        )
        self.last_dccm: DCCMOutput | None = None

    def forward(self, state: TokenState, compress: bool) -> TokenState:
        for i, layer in enumerate(self.layers):
            if compress and i == self.insert_layer:
                out = self.dccm(state.hi)
                self.last_dccm = out
                state = TokenState(state.cls, out.salient, out.compressed)
            state = layer(state)
        return state


class DRCA(nn.Module):
    def __init__(self, cfg: DRCAConfig, compress: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.compress = compress
        c = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, c)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + 1, c))
        self.time_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, c))
        self.transformer_layers = ResolutionAlignSequence(cfg)
        self.norm = nn.LayerNorm(c, eps=LN_EPS)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and not name.endswith("temporal_fc"):  # that one stays zero
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def check_input(self, video: Tensor) -> None:
        cfg = self.cfg
        expected = (3, cfg.num_frames, cfg.img_size, cfg.img_size)
        if video.dim() != 5 or tuple(video.shape[1:]) != expected:
            raise ValueError(
                f"DRCA expects normalised clips [B, 3, T, H, W] = [B, {', '.join(map(str, expected))}], "
                f"got {tuple(video.shape)}"
            )

    def forward_features(self, video: Tensor, compress: bool | None = None) -> Tensor:
        """``[B, 3, T, H, W] -> [B, C]`` final-LayerNorm CLS token (not normalised)."""
        self.check_input(video)
        compress = self.compress if compress is None else compress
        b, _, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, 3, h, w)
        patches = self.patch_embed(frames) + self.pos_embed[:, 1:]  # [B*T, P, C]
        patches = patches.reshape(b, t, -1, self.embed_dim) + self.time_embed[:, :, None, :]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, 1, self.embed_dim)
        state = self.transformer_layers(TokenState(cls, patches, None), compress)
        return self.norm(state.cls[:, 0])

    def forward(self, video: Tensor, compress: bool | None = None) -> Tensor:
        """L2-normalised clip embeddings ``[B, C]``."""
        return F.normalize(self.forward_features(video, compress), dim=-1)


def build_drca(cfg: DRCAConfig, compress: bool = True) -> DRCA:
    return DRCA(cfg, compress=compress)
