"""A small, real, deterministic embedder for worker tests (never a product path).

Per frame a 3×3 grid of mean colours → 9 regions of 3 values (L2-normalized); the coarse vector
is the normalized mean of the flattened frames, clips are normalized means of 8-frame windows.
It exercises every field of ``VideoRepresentation`` in milliseconds instead of a neural network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from dupwatch.records import DecodedVideo, FrameChunk, VideoRepresentation
from index.schema import IndexDims

CLIP_FRAMES = 8


def _unit(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-6)).astype(np.float32)


class ThumbnailEmbedder:
    index_dims = IndexDims(coarse=27, clip=27, regions=9, region_dim=3)
    version = "thumbnail-test-1"

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.streamed: list[int] = []

    def _regions(self, frames: np.ndarray) -> np.ndarray:
        t, h, w, _ = frames.shape
        hs, ws = np.array_split(np.arange(h), 3), np.array_split(np.arange(w), 3)
        f = frames.astype(np.float32) / 255.0
        cells = [f[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].mean(axis=(1, 2)) for rows in hs for cols in ws]
        return _unit(np.stack(cells, axis=1) + 0.05)  # [T, 9, 3]

    def embed(self, decoded: DecodedVideo, tenant: str) -> VideoRepresentation:
        return self._represent(decoded.video_id, self._regions(decoded.frames), decoded.timestamps, decoded.duration_s, tenant)

    def embed_stream(self, stream: Iterable[FrameChunk], tenant: str) -> VideoRepresentation:
        """Chunk by chunk, keeping only the regions (the pipeline's bounded-memory path)."""
        parts, times = [], []
        for chunk in stream:
            parts.append(self._regions(chunk.frames))
            times.append(np.array(chunk.timestamps))
        summary = stream.summary  # type: ignore[attr-defined]
        self.streamed.append(summary.num_frames)
        return self._represent(summary.video_id, np.concatenate(parts), np.concatenate(times), summary.duration_s, tenant)

    def _represent(self, video_id: str, regions: np.ndarray, timestamps: np.ndarray, duration_s: float, tenant: str) -> VideoRepresentation:
        flat = regions.reshape(regions.shape[0], -1)
        coarse = _unit(flat.mean(axis=0))
        n = max(1, int(np.ceil(len(flat) / CLIP_FRAMES)))
        clips = _unit(np.stack([flat[i * CLIP_FRAMES : (i + 1) * CLIP_FRAMES].mean(axis=0) for i in range(n)]))
        ts = timestamps.astype(np.float32)
        times = np.array([[ts[i * CLIP_FRAMES], ts[min(len(ts), (i + 1) * CLIP_FRAMES) - 1]] for i in range(n)], dtype=np.float32)
        unit_flat = _unit(flat)
        selfsim = float((unit_flat[1:] * unit_flat[:-1]).sum(axis=1).mean()) if len(flat) > 1 else 1.0
        return VideoRepresentation(
            video_id=video_id,
            timestamps=ts,
            regions=regions,
            coarse=coarse,
            clips=clips,
            clip_times=times,
            selfsim=selfsim,
            tenant=tenant,
            meta={"duration_s": str(duration_s)},
        )

    def embed_batch(self, videos: Sequence[DecodedVideo], tenants: Sequence[str]) -> list[VideoRepresentation]:
        self.batches.append(sum(d.num_frames for d in videos))
        return [self.embed(d, t) for d, t in zip(videos, tenants, strict=True)]


def build_embedder(settings: object) -> ThumbnailEmbedder:
    return ThumbnailEmbedder()


class CopyDetector:
    """Alerts ``copy`` when an indexed video of the tenant has (almost) the same coarse vector."""

    def __init__(self, index: object, model_version: str = ThumbnailEmbedder.version, threshold: float = 0.999) -> None:
        self.index = index
        self.model_version = model_version
        self.threshold = threshold

    def detect(self, rep: VideoRepresentation) -> list:
        from datetime import datetime, timezone

        from ingest.events import AlertEvent, AlertScores
        from ingest.pipeline import make_alert_id

        alerts = []
        for vid, score in self.index.search_coarse(rep.coarse, rep.tenant, 5, exclude_video_id=rep.video_id):
            if score >= self.threshold:
                alerts.append(
                    AlertEvent(
                        alert_id=make_alert_id(rep.tenant, rep.video_id, vid, "copy", self.model_version),
                        video_id=rep.video_id,
                        matched_video_id=vid,
                        tenant=rep.tenant,
                        level="copy",
                        scores=AlertScores(coarse=score, normalized=score),
                        model_version=self.model_version,
                        created_at=datetime.now(timezone.utc),
                    )
                )
        return alerts
