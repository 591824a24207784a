"""The public API at the package top: check, optimize, quantize, bisect, called as a script would."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_transform_checks import conv_bn_sigmoid

import onnx2trt_check
from onnx2trt_check.errors import CheckError, ConfigError
from onnx2trt_check.runtime import run_model

MODELS = Path(__file__).resolve().parents[1] / "models"


def feeds_of(model: onnx.ModelProto, count: int = 3) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    return [{model.graph.input[0].name: rng.standard_normal(shape).astype(np.float32)} for _ in range(count)]


def test_the_api_names_are_functions_even_after_the_bisection_package_is_imported():
    import onnx2trt_check.bisection.run  # noqa: F401  a subpackage must not shadow the function

    assert all(callable(getattr(onnx2trt_check, name)) for name in onnx2trt_check.__all__)
    with pytest.raises(AttributeError):
        onnx2trt_check.no_such_function  # noqa: B018


def test_check_runs_pytest_and_returns_the_report(pytester):
    shutil.copy(MODELS / "convbn_classifier.onnx", pytester.path / "m.onnx")
    result = onnx2trt_check.check(pytester.path / "m.onnx", pytest_args=["--target", "ort", "-q", "-p", "no:randomly"])
    assert result.passed and result.exit_code == 0
    (entry,) = result.report["models"].values()
    assert entry["families"]["target[ort]"]["verdict"] == "passed"
    assert not list(pytester.path.glob("*.json"))  # the temporary report is gone


def test_check_reports_a_failing_model(pytester):
    model = onnx.load(str(MODELS / "convbn_classifier.onnx"))
    weight = model.graph.initializer[0]
    array = onnx.numpy_helper.to_array(weight).copy()
    array.flat[0] = np.nan
    weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
    onnx.save(model, str(pytester.path / "nan.onnx"))
    result = onnx2trt_check.check(str(pytester.path / "nan.onnx"), pytest_args=["--target", "ort", "-q", "-p", "no:randomly"],
                                  report_json=pytester.path / "r.json")
    assert not result.passed and result.exit_code == 1
    (entry,) = result.report["models"].values()
    assert entry["families"]["structure"]["checks"]["finite_weights"]["outcome"] == "failed"
    assert (pytester.path / "r.json").is_file()


def test_optimize_writes_a_model_that_computes_the_same(tmp_path):
    source = onnx.load(str(MODELS / "convbn_classifier.onnx"))
    out = tmp_path / "opt.onnx"
    result = onnx2trt_check.optimize(MODELS / "convbn_classifier.onnx", output=out, passes=["fold_conv_bn"])
    assert result.passed and result.written == out
    written = onnx.load(str(out))
    assert sum(n.op_type == "BatchNormalization" for n in written.graph.node) == 0 < result.nodes_before - len(written.graph.node)
    feeds = feeds_of(source)
    for before, after in zip(run_model(source, feeds), run_model(written, feeds)):
        for name in before:
            np.testing.assert_allclose(after[name], before[name], rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="already exists"):
        onnx2trt_check.optimize(MODELS / "convbn_classifier.onnx", output=out)
    assert onnx2trt_check.optimize(MODELS / "convbn_classifier.onnx", output=out, force=True).written == out


def test_optimize_takes_a_model_proto_and_number_sequences():
    result = onnx2trt_check.optimize(conv_bn_sigmoid(), passes=["fuse_input_normalization"], mean=[0.5, 0.25, 1], std=[2.0, 1, 1])
    assert result.written is None and result.passed
    assert result.settings.mean == (0.5, 0.25, 1.0) and result.settings.std == (2.0, 1.0, 1.0)
    assert [s.name for s in result.pipeline.steps if s.modified] == ["fuse_input_normalization"]


def test_optimize_removes_only_the_sigmoid_of_declared_scores():
    kept = onnx2trt_check.optimize(conv_bn_sigmoid(), passes=["remove_output_sigmoid"])
    assert kept.passed and not kept.pipeline.steps[0].modified
    for declared in ({"y": 0.3}, {"y": [0.3, 0.7]}, ["y:0.3"], [0.3]):
        result = onnx2trt_check.optimize(conv_bn_sigmoid(), passes=["remove_output_sigmoid"], thresholds=declared)
        assert result.passed and result.pipeline.steps[0].report.figures["stripped_outputs"] == ["y"]
    with pytest.raises(ConfigError, match="--threshold names 'boxes'"):
        onnx2trt_check.optimize(conv_bn_sigmoid(), thresholds={"boxes": 0.5})


def test_quantize_returns_the_build_and_its_accuracy(tmp_path):
    out = tmp_path / "q.onnx"
    result = onnx2trt_check.quantize(MODELS / "convbn_classifier.onnx", calibration_data=MODELS / "convbn_classifier.calib.npz",
                                     output=out, inputs=MODELS / "convbn_classifier.npz", calibration_method="max")
    assert result.written == out and result.settings.method == "max"
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    (figures,) = result.accuracy.values()
    assert figures["sqnr_db"] > 20 and figures["top1"] > 0.9
    with pytest.raises(ConfigError, match="already holds Q/DQ"):
        onnx2trt_check.quantize(out, calibration_data=MODELS / "convbn_classifier.calib.npz")


def test_quantize_refuses_a_bad_percentile_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="--percentile 0"):
        onnx2trt_check.quantize(MODELS / "convbn_classifier.onnx", calibration_data="missing.npz", percentile=0, output=tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_bisect_layerwise_and_its_misuse(tmp_path):
    outcome = onnx2trt_check.bisect(MODELS / "convbn_classifier.onnx", target="ort")
    assert outcome.mode == "layerwise" and not outcome.failed
    assert outcome.document["verdict"] == "passed" and outcome.lines[0].startswith("ort (onnxruntime)")
    with pytest.raises(ConfigError, match="runs on tensorrt"):
        onnx2trt_check.bisect(MODELS / "convbn_classifier.onnx", target="trt-fp16")
    with pytest.raises(ConfigError, match="mode 'bogus'"):
        onnx2trt_check.bisect(MODELS / "convbn_classifier.onnx", target="ort", mode="bogus")
    with pytest.raises(CheckError, match="needs -o DIR"):
        onnx2trt_check.bisect(MODELS / "convbn_classifier.onnx", target="ort", mode="reduce")


@pytest.mark.parametrize("mode", ["layerwise", "sensitivity"])
def test_the_api_leaves_nothing_in_the_temporary_folder(tmp_path, monkeypatch, mode):
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    model = MODELS / "convbn_classifier.onnx"
    onnx2trt_check.bisect(model, target="cpu-fp16-emu", mode=mode, max_feeds=2)  # builds the fp16 artifact
    onnx2trt_check.optimize(model)
    assert list(scratch.iterdir()) == []
