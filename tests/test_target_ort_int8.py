"""The ort-int8 target end to end (pytester on the sample models) and its QDQ-input reference."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tiny_models import classifier, save

from onnx2trt_check.context import ModelContext, RunOptions
from onnx2trt_check.runtime import run_model
from onnx2trt_check.targets.ort_int8 import NO_CALIBRATION_REASON, OrtInt8Target

MODELS = Path(__file__).resolve().parents[1] / "models"
SWEEP_IDS = [f"m.onnx::calibration::accuracy[{c}]" for c in ("max", "percentile-99.99", "percentile-99.999", "entropy", "mse")]


def sample(pytester, name: str, *, data: bool = True) -> None:
    """Copy a sample model as m.onnx, its test data as test.npz and calibration data as calib.npz."""
    shutil.copy(MODELS / f"{name}.onnx", pytester.path / "m.onnx")
    if data:
        shutil.copy(MODELS / f"{name}.npz", pytester.path / "test.npz")
        shutil.copy(MODELS / f"{name}.calib.npz", pytester.path / "calib.npz")


def ids(result) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def qdq_matmul(activation_scale: float) -> onnx.ModelProto:
    """x[1,4] -> Q/DQ (activation_scale) -> MatMul with an int8 weight (scale 0.05) -> y[1,8]."""
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, size=(4, 8)).astype(np.int8)
    inits = [
        numpy_helper.from_array(weight, "w_q"),
        numpy_helper.from_array(np.array(0.05, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(activation_scale, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "zp"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "zp"], ["w"]),
        helper.make_node("MatMul", ["x_dq", "w"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", 1, [1, 4])], [helper.make_tensor_value_info("y", 1, [1, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_ids_with_calibration_data_and_sweep(pytester):
    sample(pytester, "convbn_classifier")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--calibration-data", "calib.npz", "--calibration-sweep", "--collect-only", "-q")
    found = ids(result)
    assert "m.onnx::target::accuracy[ort-int8]" in found
    assert "m.onnx::quantize::report[int8]" in found
    assert [i for i in found if "::calibration::" in i] == SWEEP_IDS


def test_without_calibration_data_the_target_is_left_out_and_a_usage_error_with_the_reason_when_asked(pytester):
    sample(pytester, "convbn_classifier", data=False)
    default = pytester.runpytest_inprocess("--model", "m.onnx", "--collect-only", "-q")
    assert not [i for i in ids(default) if "int8" in i]
    # asked for alone, it skipped on every model and the run was green (redteam14): a usage error now
    asked = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort-int8", "-k", "int8", "-rs")
    assert asked.ret == 4
    asked.stderr.fnmatch_lines([f"*--target ort-int8: {NO_CALIBRATION_REASON}*"])
    beside = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort-int8", "--target", "ort", "-k", "int8", "-rs")
    beside.assert_outcomes(skipped=2)  # beside a target that runs: skipped with the reason
    beside.stdout.fnmatch_lines([f"*{NO_CALIBRATION_REASON}*"])


def test_int8_accuracy_passes_with_the_report_figures_in_the_json(pytester):
    sample(pytester, "convbn_classifier")
    result = pytester.runpytest_inprocess(
        "--model", "m.onnx", "--inputs", "test.npz", "--calibration-data", "calib.npz", "--calibration-method", "max",
        "-k", "int8 and not trt", "--report-json", "r.json",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*target[[]ort-int8[]]*PASSED*[[]onnxruntime[]]*SQNR*top-1*"])
    checks = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]
    report = checks["quantize[int8]"]["checks"]["report"]["figures"]
    # the manifest lists 4 Conv + 1 Gemm: each gets its weight and its data input quantized
    assert report["tensors_quantized"] == {"activations": 5, "weights": 5}
    assert report["method"] == "max" and report["steps"]["fold_conv_bn"] == {"folded": 4}
    result.stdout.fnmatch_lines(["*quantize[[]int8[]]*PASSED*max: 5 activation(s), 5 weight(s) quantized"])
    accuracy = checks["target[ort-int8]"]["checks"]["accuracy"]["figures"]
    assert accuracy["engine"] == "onnxruntime" and accuracy["outputs"]["logits"]["top1"] >= 0.95


def test_excluded_nodes_are_reported_with_the_pattern(pytester):
    sample(pytester, "convbn_classifier")
    result = pytester.runpytest_inprocess(
        "--model", "m.onnx", "--calibration-data", "calib.npz", "--calibration-method", "max",
        "--exclude", "/0/.*", "--exclude", ".*Gemm", "-k", "quantize", "--report-json", "r.json",
    )
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]["quantize[int8]"]["checks"]["report"]["figures"]
    assert report["tensors_quantized"] == {"activations": 3, "weights": 3}
    assert [s["reason"] for s in report["skipped"]] == ["excluded by '/0/.*'", "excluded by '.*Gemm'"]
    result.stdout.fnmatch_lines(["*quantize[[]int8[]]*PASSED*max: 3 activation(s), 3 weight(s) quantized; 2 node(s) left float*"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--calibration-data", "missing.npz"], "*calibration data file 'missing.npz' does not exist*"),
        (["--calibration-data", "wrong.npz"], "*--calibration-data 'wrong.npz' has array 'images', which is not an input*"),
        (["--calibration-data", "calib.npz", "--percentile", "0"], "*--percentile 0.0 is outside (0, 100]*"),
        (["--calibration-sweep"], "*--calibration-sweep needs calibration data*"),
        (["--calibration-data", "calib.npz", "--exclude", "("], "*--exclude '(' is not a valid regex*"),
    ],
)
def test_bad_calibration_options_are_usage_errors(pytester, args, message):
    sample(pytester, "convbn_classifier")
    np.savez(pytester.path / "wrong.npz", images=np.zeros((2, 1, 1, 16, 16), np.float32))
    result = pytester.runpytest_inprocess("--model", "m.onnx", *args)
    assert result.ret == 4
    result.stderr.fnmatch_lines([message])


def test_a_qdq_model_is_compared_with_its_float_counterpart(tmp_path):
    path = tmp_path / "q.onnx"
    onnx.save(qdq_matmul(activation_scale=0.25), str(path))
    ctx = ModelContext(path, RunOptions(artifact_dir=tmp_path / "artifacts"))  # not the system temporary folder
    target = OrtInt8Target()
    reference = target.reference(ctx)
    weight = onnx.numpy_helper.to_array(ctx.loaded.proto.graph.initializer[0]).astype(np.float32) * np.float32(0.05)
    for feed, outputs in zip(ctx.feeds, reference.outputs):
        np.testing.assert_allclose(outputs["y"], feed["x"] @ weight, rtol=1e-5, atol=1e-5)
    # the QDQ model itself computes something else at this coarse activation scale
    own = run_model(ctx.loaded.proto, ctx.feeds)
    assert not np.allclose(own[0]["y"], reference.outputs[0]["y"], atol=1e-2)
    assert target.artifact(ctx) == ctx.path


@pytest.mark.parametrize("scale, outcome", [(1 / 127, "passed"), (0.25, "failed")])
def test_qdq_input_needs_no_calibration_data_and_is_judged_against_the_float_counterpart(pytester, scale, outcome):
    onnx.save(qdq_matmul(activation_scale=scale), str(pytester.path / "m.onnx"))
    default = pytester.runpytest_inprocess("--model", "m.onnx", "--collect-only", "-q")
    assert "m.onnx::target::accuracy[ort-int8]" in ids(default)
    result = pytester.runpytest_inprocess("--model", "m.onnx", "-k", "int8 and not trt")
    result.assert_outcomes(**{outcome: 1}, skipped=1)  # the report item: nothing quantized by us
    if outcome == "failed":
        result.stdout.fnmatch_lines(["*ort-int8*differs from the reference*"])


def test_a_qdq_model_with_calibration_data_is_judged_on_every_feed_and_says_nothing_was_calibrated(pytester):
    # It was judged on a held-out fifth "not used to calibrate", described as "the quantizer
    # calibrated on the other 8": nothing is calibrated on a model with its own Q/DQ.
    onnx.save(qdq_matmul(activation_scale=1 / 127), str(pytester.path / "m.onnx"))
    x = np.random.default_rng(0).uniform(-1, 1, (10, 1, 4)).astype(np.float32)
    np.savez(pytester.path / "calib.npz", x=x)
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--calibration-data", "calib.npz", "-k", "ort-int8", "--report-json", "r.json")
    result.assert_outcomes(passed=1)
    model = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]
    figures = model["families"]["target[ort-int8]"]["checks"]["accuracy"]["figures"]
    assert figures["inputs"] == "the 10 feed(s) of the calibration data 'calib.npz' (the model's own Q/DQ: nothing was calibrated on them)"
    assert figures["outputs"]["y"]["rows"] == 10
    assert [n for n in model["notes"] if n.startswith("ort-int8")] == [
        "ort-int8: no --inputs, so the model's own Q/DQ are judged on every feed of the calibration data (nothing is calibrated on them), not on the generated inputs"]


@pytest.mark.slow
def test_sweep_summary_shows_every_calibrator(pytester):
    sample(pytester, "heatmap_sigmoid")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--inputs", "test.npz", "--calibration-data", "calib.npz", "--calibration-sweep", "-k", "calibration")
    result.stdout.fnmatch_lines(["*int8 calibration sweep*", "m.onnx"] + [f"*calibration[[]{c}[]]*SQNR*" for c in ("max", "percentile-99.99", "percentile-99.999", "entropy", "mse")])


def test_calibration_data_from_a_data_loader_script(pytester):
    """--calibration-data takes a data-loader script as well as a .npz, as --data-loader does."""
    save(classifier(), pytester.path / "m.onnx")
    pytester.makepyfile(
        loader="import numpy as np\n"
        "def calibration():\n"
        "    rng = np.random.default_rng(0)\n"
        "    for _ in range(16):\n"
        "        yield {'x': rng.uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)}\n"
    )
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort-int8", "--calibration-data", "loader.py:calibration", "-k", "int8")
    result.assert_outcomes(passed=2)
    assert pytester.runpytest_inprocess("--model", "m.onnx", "--calibration-data", "nope.py:calibration").ret == pytest.ExitCode.USAGE_ERROR
