"""Parity refusal, bundle export + manifest, engine selection, CLI, TensorRT builder (GPU only)."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

import export.onnx_export as onnx_export
from export.models import build_graphs, make_random_bundle, random_models
from export.parity import ParityError, install_if_parity
from export.tensorrt_builder import TensorRTUnavailable, build_bundle_engines, engine_cache_path, tensorrt_status
from inference.bundle import load_bundle
from inference.engines import Engine, EngineUnavailable, OnnxRuntimeEngine, TorchEngine, select_engine

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """2 shared cores: one intra-op thread avoids OpenMP oversubscription (10x slower otherwise)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

TRT_OK, TRT_REASON = tensorrt_status()


def _tamper(path):
    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(init).copy()
    arr += 0.05
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def fine_spec():
    return build_graphs(random_models(["fine"]))["fine"]


def test_altered_weights_are_refused_and_not_written(fine_spec, tmp_path):
    tmp = tmp_path / "fine.onnx.tmp"
    onnx_export.export_onnx_file(fine_spec, tmp)
    _tamper(tmp)
    dest = tmp_path / "fine.onnx"
    with pytest.raises(ParityError, match="refused, not written"):
        install_if_parity(fine_spec, tmp, dest)
    assert not dest.exists() and not tmp.exists()


def test_export_graph_refuses_a_broken_export(fine_spec, tmp_path, monkeypatch):
    real = onnx_export.export_onnx_file

    def broken(spec, path, *args, **kwargs):
        used = real(spec, path, *args, **kwargs)
        _tamper(path)
        return used

    monkeypatch.setattr(onnx_export, "export_onnx_file", broken)
    with pytest.raises(ParityError) as info:
        onnx_export.export_graph(fine_spec, tmp_path)
    assert info.value.report is not None and not info.value.report.ok
    assert list(tmp_path.iterdir()) == []  # neither the file nor the temporary file is left


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    root = make_random_bundle(tmp_path_factory.mktemp("bundle"), ["fine", "selector"])
    result = onnx_export.export_bundle(root, progress=False)
    assert not result.failures, result.failures
    return root


def test_manifest_records_exports(bundle_dir):
    bundle = load_bundle(bundle_dir)  # sha256 of every file verified
    for graph in ("fine", "fine_index", "selector_selfsim", "selector_mlp"):
        entry = bundle.entry(f"onnx/{graph}")
        assert entry.kind == "onnx" and entry.file == f"onnx/{graph}.onnx"
        assert entry.opset == onnx_export.OPSET and entry.config["exporter"] == "torchscript"
        assert entry.parity_max_abs_err is not None and entry.parity_max_abs_err < 1e-4
        assert entry.inputs and entry.outputs and entry.config["dynamic_axes"]
    assert [s.name for s in bundle.entry("onnx/fine").inputs] == ["query", "target"]
    assert bundle.entry("onnx/fine").arch == "dns_fg_att_student"


def test_selector_picks_onnxruntime_cpu_here(bundle_dir, caplog):
    with caplog.at_level(logging.INFO, logger="inference.engines"):
        engine, description = select_engine("auto", bundle_dir)
    assert isinstance(engine, OnnxRuntimeEngine) and isinstance(engine, Engine)
    assert "onnxruntime" in description and "CPUExecutionProvider" in description
    if not TRT_OK:
        assert "skipped tensorrt" in description
    assert any("engine: onnxruntime" in r.getMessage() for r in caplog.records)
    torch_engine, torch_desc = select_engine("torch", bundle_dir)
    assert isinstance(torch_engine, TorchEngine) and torch_desc.startswith("torch")
    rng = np.random.default_rng(0)
    q = rng.standard_normal((6, 9, 512)).astype(np.float32)
    t = rng.standard_normal((300, 9, 512)).astype(np.float32)
    for graph, inputs in (("fine_index", {"features": q[None]}), ("fine", {"query": q[None], "target": t[None]}),
                          ("selector_mlp", {"x": rng.standard_normal((4, 3)).astype(np.float32)})):
        a, b = engine.run(graph, inputs), torch_engine.run(graph, inputs)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-4)


def test_tensorrt_preference_without_tensorrt_says_why(bundle_dir):
    if TRT_OK:
        pytest.skip(f"TensorRT present: {TRT_REASON}")
    with pytest.raises(EngineUnavailable, match="tensorrt"):
        select_engine("tensorrt", bundle_dir)
    with pytest.raises(TensorRTUnavailable):
        build_bundle_engines(bundle_dir)


def test_cli_export_and_tensorrt_flag(bundle_dir):
    from dupwatch.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["export", "--bundle", str(bundle_dir), "--models", "selector"])
    assert res.exit_code == 0, res.output
    assert "selector_mlp" in res.output and "parity max_abs_err" in res.output
    res = runner.invoke(app, ["export", "--bundle", str(bundle_dir), "--models", "nope"])
    assert res.exit_code == 2
    if not TRT_OK:
        res = runner.invoke(app, ["export", "--bundle", str(bundle_dir), "--models", "selector", "--tensorrt"])
        assert res.exit_code == 3 and "TensorRT engines not built" in res.output
    load_bundle(bundle_dir)  # still valid after re-export


def test_engine_cache_key_changes_with_gpu_version_and_model(tmp_path):
    a = engine_cache_path(tmp_path, "fine", "a" * 64, "NVIDIA H100 80GB HBM3", "10.9.0")
    assert a != engine_cache_path(tmp_path, "fine", "b" * 64, "NVIDIA H100 80GB HBM3", "10.9.0")
    assert a != engine_cache_path(tmp_path, "fine", "a" * 64, "NVIDIA H200", "10.9.0")
    assert a != engine_cache_path(tmp_path, "fine", "a" * 64, "NVIDIA H100 80GB HBM3", "10.10.0")


@pytest.mark.gpu
@pytest.mark.skipif(not TRT_OK, reason=f"TensorRT unavailable: {TRT_REASON}")
def test_tensorrt_fp16_engines_match_torch(bundle_dir):
    from inference.engines import TensorRTEngine

    engines = build_bundle_engines(bundle_dir, graphs=["fine", "selector_mlp"])
    assert set(engines) == {"fine", "selector_mlp"}
    assert build_bundle_engines(bundle_dir, graphs=["fine"])["fine"] == engines["fine"]  # cached
    trt_engine = TensorRTEngine(engines)
    torch_engine, _ = select_engine("torch", bundle_dir, device="cpu")
    rng = np.random.default_rng(0)
    q = rng.standard_normal((40, 9, 512)).astype(np.float32)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    inputs = {"query": q, "target": q[::-1].copy()}
    a, b = trt_engine.run("fine", inputs), torch_engine.run("fine", inputs)
    np.testing.assert_allclose(a["similarity"], b["similarity"], atol=2e-2)  # fp16
