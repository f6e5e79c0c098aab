"""Clip autoencoder of seed 004 (Ma & Klabjan), adapted to frame *features*.

The seed's encoder is 3 LRBP blocks (bi-directional ConvLSTM + residual + LeakyReLU → pooling →
batch norm) and a dense layer to the embedding; the decoder mirrors it with URB blocks
(upsampling → recurrent + residual → batch norm). Here a clip is ``[k, D]`` frame features
(1-fps backbone features, not 256×256 pixels), so the spatial ConvLSTM becomes a temporal
``Conv1d`` followed by an ``LSTM`` over the clip's frames (bi-directional in the encoder, as in
LRBP; uni-directional in the decoder, as in URB). Pooling/upsampling act on the time axis.
There is no skip connection between encoder and decoder (seed: the embedding must carry the clip).

Embeddings are L2-normalized (our choice: it bounds the squared distances of seed Eq. (2), so the
triplet margin has a fixed meaning); two videos are compared by Bi-DTW over their clip
embedding sequences (:func:`video_distance`, see ``inference/alignment.py``).

Shapes: ``x`` ``[B, k, D]`` clips → embedding ``[B, E]``, reconstruction ``[B, k, D]``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.alignment import bi_dtw

__all__ = ["ClipAutoencoder", "split_clips", "video_distance"]


class _EncoderBlock(nn.Module):
    """LRBP analogue: conv → bi-LSTM with residual → LeakyReLU → max-pool(2) → batch norm."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError("encoder width must be even (bi-directional LSTM)")
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=3, padding=1)
        self.rnn = nn.LSTM(c_out, c_out // 2, batch_first=True, bidirectional=True)
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C] -> [B, ceil(T/2), C']
        h = F.leaky_relu(self.conv(x.transpose(1, 2)).transpose(1, 2), 0.1)
        h = F.leaky_relu(h + self.rnn(h)[0], 0.1)
        h = F.max_pool1d(h.transpose(1, 2), kernel_size=2, ceil_mode=True)
        return self.norm(h).transpose(1, 2)


class _DecoderBlock(nn.Module):
    """URB analogue: upsample(2) → conv → LSTM with residual → LeakyReLU → batch norm."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c, c, kernel_size=3, padding=1)
        self.rnn = nn.LSTM(c, c, batch_first=True)
        self.norm = nn.BatchNorm1d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C] -> [B, 2T, C]
        h = F.interpolate(x.transpose(1, 2), scale_factor=2, mode="nearest")
        h = F.leaky_relu(self.conv(h), 0.1).transpose(1, 2)
        h = F.leaky_relu(h + self.rnn(h)[0], 0.1)
        return self.norm(h.transpose(1, 2)).transpose(1, 2)


class ClipAutoencoder(nn.Module):
    """``ClipAutoencoder(feature_dim, clip_len=8, hidden=64, embed_dim=128, blocks=2)``."""

    def __init__(self, feature_dim: int, clip_len: int = 8, hidden: int = 64, embed_dim: int = 128, blocks: int = 2) -> None:
        super().__init__()
        if clip_len < 1 or blocks < 1:
            raise ValueError("clip_len and blocks must be >= 1")
        self.feature_dim, self.clip_len, self.embed_dim = feature_dim, clip_len, embed_dim
        self.enc = nn.ModuleList([_EncoderBlock(feature_dim if b == 0 else hidden, hidden) for b in range(blocks)])
        t = clip_len
        for _ in range(blocks):
            t = (t + 1) // 2
        self.t_code = t
        self.to_embed = nn.Linear(hidden * t, embed_dim)
        self.from_embed = nn.Linear(embed_dim, hidden * t)
        self.dec = nn.ModuleList([_DecoderBlock(hidden) for _ in range(blocks)])
        self.to_features = nn.Linear(hidden, feature_dim)
        self.hidden = hidden

    def __repr__(self) -> str:
        return (
            f"ClipAutoencoder(feature_dim={self.feature_dim}, clip_len={self.clip_len}, "
            f"hidden={self.hidden}, embed_dim={self.embed_dim}, blocks={len(self.enc)})"
        )

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1:] != (self.clip_len, self.feature_dim):
            raise ValueError(f"clips must be [B, {self.clip_len}, {self.feature_dim}], got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, k, D]`` → unit embeddings ``[B, E]``."""
        self._check(x)
        h = x
        for blk in self.enc:
            h = blk(h)
        return F.normalize(self.to_embed(h.flatten(1)), dim=-1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, E]`` → reconstruction ``[B, k, D]``."""
        if z.ndim != 2 or z.shape[1] != self.embed_dim:
            raise ValueError(f"z must be [B, {self.embed_dim}], got {tuple(z.shape)}")
        h = self.from_embed(z).view(z.shape[0], self.t_code, self.hidden)
        for blk in self.dec:
            h = blk(h)
        return self.to_features(h[:, : self.clip_len])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, k, D]`` → (reconstruction ``[B, k, D]``, embedding ``[B, E]``)."""
        z = self.encode(x)
        return self.decode(z), z

    @torch.no_grad()
    def embed_video(self, features: np.ndarray, stride: int | None = None) -> np.ndarray:
        """Clip embeddings ``[N, E]`` of one video's frame features ``[T, D]`` (model must be in eval)."""
        clips, _ = split_clips(features, self.clip_len, stride)
        return self.encode(torch.from_numpy(clips)).numpy()


def split_clips(features: np.ndarray, clip_len: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``[T, D]`` → (clips ``[N, k, D]`` float32, start frame ``[N]``).

    ``stride`` defaults to ``clip_len`` (disjoint clips; seed: ``N = ⌊M/k⌋``), except that a
    tail of at least one frame becomes a last clip padded by repeating its last frame, so no
    frame is lost and videos shorter than ``k`` still give one clip.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be [T, D] with T >= 1, got {features.shape}")
    step = clip_len if stride is None else stride
    if step < 1:
        raise ValueError("stride must be >= 1")
    t = features.shape[0]
    starts = list(range(0, max(t - clip_len, 0) + 1, step))
    if starts[-1] + clip_len < t:
        starts.append(starts[-1] + step)
    idx = np.minimum(np.asarray(starts)[:, None] + np.arange(clip_len)[None, :], t - 1)
    return features[idx].astype(np.float32), np.asarray(starts, dtype=np.int64)


def video_distance(emb_a: np.ndarray, emb_b: np.ndarray) -> float:
    """Bi-DTW distance (seed 004) between two clip-embedding sequences ``[N, E]``, ``[M, E]``."""
    return bi_dtw(emb_a, emb_b)
