"""A bundle with a DRCA network and its exported graph is served by ONNX Runtime (no PyTorch) with
the same clip vectors as the PyTorch embedder: numpy preprocessing equal to the PyTorch one, whole
videos and chunked decodes, index dimension from the manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dupwatch.config import DecodeConfig
from dupwatch.paths import REPO_ROOT
from evaluation.sources import real_videos
from ingest.decode import decode_video
from inference.drca.preprocess import normalize, resize_center_crop, split_clips, to_float_frames
from inference.served import ClipAccumulator, drca_clip_inputs

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore")]


@pytest.mark.parametrize("shape", [(5, 224, 224), (10, 90, 160), (3, 40, 30), (9, 64, 64), (16, 250, 200)])
def test_numpy_clip_inputs_equal_pytorch(shape: tuple[int, int, int]) -> None:
    frames = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    want = split_clips(normalize(resize_center_crop(to_float_frames(frames), 64)), 8).transpose(1, 2).numpy()
    got = drca_clip_inputs(frames, 64, 8)
    assert got.shape == want.shape == (-(-shape[0] // 8), 8, 3, 64, 64)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_clip_accumulator_cuts_the_clips_of_the_whole_video() -> None:
    frames = np.arange(21)[:, None]
    embed = lambda f: np.stack([f[i : i + 4].astype(np.float32).mean(0) for i in range(0, len(f), 4)])  # noqa: E731
    acc = ClipAccumulator(embed, 4)
    for lo, hi in ((0, 3), (3, 10), (10, 21)):
        acc.add(frames[lo:hi])
    np.testing.assert_array_equal(acc.finish(), embed(frames))


@pytest.fixture(scope="module")
def drca_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REPO_ROOT / "models" / "default" / "manifest.json").is_file():
        pytest.skip("the committed default bundle models/default is missing")
    from export.onnx_export import export_bundle
    from inference.drca import DRCA, drca_tiny
    from training.drca import add_drca_to_bundle

    root = tmp_path_factory.mktemp("served-drca") / "bundle"
    shutil.copytree(REPO_ROOT / "models" / "default", root)
    torch.manual_seed(0)
    if not (root / "onnx" / "drca.onnx").is_file():  # the default bundle may already carry one
        add_drca_to_bundle(DRCA(drca_tiny()), root, source="test: random init")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = export_bundle(root, ["drca"], progress=False)
    finally:
        torch.set_num_threads(before)
    assert not result.failures and [r.graph for r in result.results] == ["drca"]
    return root


def test_served_drca_clips_equal_pytorch(drca_bundle: Path) -> None:
    from dupwatch.config import ModelConfig, Settings
    from inference.embedder import VideoModels
    from inference.served import EngineModels, load_models

    served = load_models(Settings(model=ModelConfig(bundle=drca_bundle, engine="onnxruntime")))
    assert isinstance(served, EngineModels) and served.methods["clips"] == "drca"
    torch_models = VideoModels.from_path(drca_bundle, device="cpu")
    assert served.index_dims == torch_models.index_dims
    path = {v.name: v.path for v in real_videos()}["s2vs_example_video1"]
    video = decode_video(path, DecodeConfig(), "s2vs")
    a, b = served.represent(video), torch_models.represent(video)
    assert a.clips.shape == b.clips.shape == (-(-video.num_frames // 8), served.index_dims.clip)
    np.testing.assert_allclose(a.clips, b.clips, atol=1e-4)
    np.testing.assert_allclose(a.clip_times, b.clip_times)
    acc = served.drca_clip_accumulator()
    assert acc is not None
    for lo in range(0, video.num_frames, 5):
        acc.add(video.frames[lo : lo + 5])
    np.testing.assert_allclose(acc.finish(), a.clips, atol=1e-5)
