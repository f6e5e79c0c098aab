"""The bundle embedder on a chunked decode equals the embedder on the whole video.

``VideoModels.represent_stream`` sees the frames chunk by chunk (``ingest.decode.FrameStream``,
one reused buffer) and keeps only features; DRCA clips are cut across chunk boundaries by
carrying the frames of an unfinished clip. Chunks of 25 frames (not a multiple of the clip
length) over a 50-second generated video exercise both.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from dupwatch.config import DecodeConfig
from dupwatch.paths import REPO_ROOT
from inference.drca import DRCA, drca_tiny
from inference.embedder import VideoModels
from ingest.decode import FrameStream, decode_video
from tests.ingest.corpus import encode
from training.drca import add_drca_to_bundle

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> VideoModels:
    bundle = tmp_path_factory.mktemp("drca") / "bundle"
    shutil.copytree(REPO_ROOT / "models" / "default", bundle)
    torch.manual_seed(0)
    add_drca_to_bundle(DRCA(drca_tiny()), bundle, source="test: random init")
    return VideoModels.from_path(bundle, device="cpu")


def test_stream_and_whole_video_give_the_same_representation(models: VideoModels, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = encode(tmp_path_factory.mktemp("v") / "fifty_seconds.mp4", n_frames=500)
    config = DecodeConfig(chunk_frames=25)
    whole = models.represent(decode_video(path, config, "v"), tenant="t")
    streamed = models.represent_stream(FrameStream(path, config, "v"), tenant="t")
    assert streamed.video_id == "v" and streamed.tenant == "t"
    assert models.drca is not None and 25 % models.drca.cfg.num_frames != 0
    np.testing.assert_array_equal(streamed.timestamps, whole.timestamps)
    np.testing.assert_allclose(streamed.regions.astype(np.float32), whole.regions.astype(np.float32), atol=2e-3)
    np.testing.assert_allclose(streamed.coarse, whole.coarse, atol=1e-4)
    np.testing.assert_allclose(streamed.clips, whole.clips, atol=1e-4)
    np.testing.assert_allclose(streamed.clip_times, whole.clip_times)
    assert streamed.selfsim == pytest.approx(whole.selfsim, abs=1e-4)
    assert whole.thumbs is not None and whole.thumbs.shape[0] == whole.regions.shape[0]
    np.testing.assert_array_equal(streamed.thumbs, whole.thumbs)


def test_stream_keeps_the_inset_representation(models: VideoModels, tmp_path_factory: pytest.TempPathFactory) -> None:
    from evaluation import transforms
    from evaluation.sources import ken_burns, real_photos, real_videos
    from evaluation.video_io import read_clip, write_clip

    bikes = {v.name: v.path for v in real_videos()}["bikes"]
    copy = read_clip(bikes, fps=4.0, max_seconds=8.0, max_side=480)
    host = ken_burns(real_photos()["chelsea"], 8.0, 4.0, np.random.default_rng(3))
    path = write_clip(tmp_path_factory.mktemp("pip") / "pip.mp4", transforms.picture_in_picture(copy, host, np.random.default_rng(2)).clip)
    config = DecodeConfig(fps=4.0, chunk_frames=25)
    whole = models.represent(decode_video(path, config, "pip"))
    streamed = models.represent_stream(FrameStream(path, config, "pip"))
    assert whole.inset is not None and streamed.inset is not None
    assert streamed.inset.video_id == whole.inset.video_id
    np.testing.assert_allclose(streamed.inset.coarse, whole.inset.coarse, atol=1e-4)
    np.testing.assert_allclose(streamed.inset.clips, whole.inset.clips, atol=1e-4)
    assert whole.inset.thumbs is not None
    np.testing.assert_array_equal(streamed.inset.thumbs, whole.inset.thumbs)
