"""TensorRT in the loop: the flavour choice, the real parser and builder (TensorRT-RTX, installed by
the test extra on Linux x86-64, builds without a GPU), the Q/DQ rules held against the builder, the
op table against the parser, and the pytest items and `ops` command over them.

Tests that need TensorRT-RTX take the fixture `rtx` and skip where it is not installed (other
platforms); every figure they check names TensorRT-RTX, never TensorRT 10/11.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import onnx.parser
import pytest

from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import ConfigError
from onnx2trt_check.quant.qdq_rules import validate_qdq
from onnx2trt_check.trt import devices, differential, flavour, isolated
from onnx2trt_check.trt.build import build_engine
from onnx2trt_check.trt.parse import failed_on_cuda, parse_model

sys.path.insert(0, os.path.dirname(__file__))
from qdq_rule_models import CASES, model  # noqa: E402

MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")
HEAD = '<ir_version: 9, opset_import: ["" : 18]>'
RUNTIME_AXES = HEAD + """
g (float[2, 3] x, int64[1] ax) => (float[2] y) { r = Relu (x)  y = ReduceSum <keepdims = 0> (r, ax) }"""
DYNAMIC = HEAD + """
g (float[N, 3] x) => (float[N, 3] y) { y = Relu (x) }"""


def save(tmp_path, text: str, name: str = "m.onnx") -> str:
    path = tmp_path / name
    onnx.save(onnx.parser.parse_model(text), path)
    return str(path)


# --- which TensorRT ---------------------------------------------------------------------------------


def test_the_option_wins_over_the_run_choice_and_the_environment(monkeypatch):
    monkeypatch.setenv(flavour.ENV_VAR, "tensorrt")
    assert flavour.requested() == "tensorrt"
    flavour.set_choice("tensorrt-rtx")
    try:
        assert flavour.requested() == "tensorrt-rtx"
        assert flavour.requested("auto") == "auto"
    finally:
        flavour.set_choice(None)


def test_a_bad_flavour_is_a_usage_error_naming_the_source(monkeypatch):
    monkeypatch.setenv(flavour.ENV_VAR, "tensorrt12")
    with pytest.raises(ConfigError, match=f"{flavour.ENV_VAR}='tensorrt12' is not one of auto, tensorrt, tensorrt-rtx"):
        flavour.requested()


def test_missing_tensorrt_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setenv(flavour.ENV_VAR, "tensorrt")
    reason = flavour.unavailable_reason()
    assert reason.startswith("TensorRT ") and "onnx2trt_check[trt]" in reason


def test_labels_name_the_product_and_rtx_is_never_a_tensorrt_major():
    rtx = flavour.Flavour("tensorrt-rtx", "1.7.1.116")
    assert rtx.label == "TensorRT-RTX 1.7.1.116" and rtx.strongly_typed_only and not rtx.has_plugin_library
    assert rtx.precision_api == 11  # the strongly typed path, not "TensorRT 1"
    trt10 = flavour.Flavour("tensorrt", "10.13.0.35")
    assert trt10.label == "TensorRT 10.13.0.35" and not trt10.strongly_typed_only and trt10.precision_api == 10
    assert flavour.Flavour("tensorrt", "11.1.0").strongly_typed_only


@pytest.mark.parametrize(("capability", "runs"), [((8, 6), True), ((8, 9), True), ((12, 0), True), ((9, 0), False), ((7, 5), False)])
def test_tensorrt_rtx_runs_engines_on_ampere_ada_blackwell_only(capability, runs):
    reason = devices.runs_on(flavour.Flavour("tensorrt-rtx", "1.7.1.116"), devices.Device("GPU", capability))
    assert (reason is None) is runs
    if not runs:
        assert f"compute capability {capability[0]}.{capability[1]}" in reason and "8.0, 8.6, 8.9, 12.0" in reason
    assert devices.runs_on(flavour.Flavour("tensorrt", "10.13"), devices.Device("H100", (9, 0))) is None


def test_no_gpu_is_the_exact_reason(monkeypatch):
    def no_driver(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(devices.ctypes, "CDLL", no_driver)
    reason = devices.inference_unavailable_reason(flavour.Flavour("tensorrt-rtx", "1.7.1.116"))
    assert reason.startswith("no CUDA device is visible (no NVIDIA driver") and "TensorRT-RTX 1.7.1.116 builds here" in reason


# --- the real parser and builder ----------------------------------------------------------------------


def test_the_parser_names_the_node_the_op_the_message_and_the_fix(rtx, tmp_path):
    result = parse_model(save(tmp_path, RUNTIME_AXES), rtx)
    assert not result.ok
    [issue] = result.issues
    assert (issue.node_index, issue.op_type) == (1, "ReduceSum")
    assert "build-time constant" in issue.message and "make that input a constant" in issue.fix
    assert result.failure().startswith("TensorRT-RTX 1.7.1.116 ONNX parser rejects 1 node(s):")


# TensorRT-RTX 1.7.1.116's own messages on this machine (no GPU), from onnx's node tests.
UINT8_ADD = ("Invalid Node - node_of_sum\nITensor::getDimensions: Error Code 4: API Usage Error (node_of_sum: ElementWiseOperation SUM "
             "requires inputs with type kFLOAT, kHALF, kBF16, kFP8, or kINT8, kINT32, or kINT64. But type is UInt8.)\n"
             "[checkMacros.cpp::catchCudaError::250] Error Code 1: Cuda Runtime (In catchCudaError (cudaError 35: CUDA driver version is insufficient))")
ONEHOT = ("Invalid Node - node_of_y\n[graphShapeAnalyzer.cpp::checkCalculationStatusSanity::2155] Error Code 2: Internal Error "
          "(Assertion !isInFlight(p.second.symbolicRep) failed.)\n"
          "[checkMacros.cpp::catchCudaError::250] Error Code 1: Cuda Runtime (In catchCudaError (cudaError 35: CUDA driver version is insufficient))")


def test_a_validation_error_before_a_cuda_error_is_a_rejection_not_a_missing_gpu():
    assert not failed_on_cuda([UINT8_ADD])  # the uint8 Add is rejected on any machine
    assert failed_on_cuda([ONEHOT])  # an internal error, then the CUDA call: no verdict here
    assert failed_on_cuda(["IBuilder::buildSerializedNetwork: [checkMacros.cpp::catchCudaError::250] Error Code 1: Cuda Runtime"])
    assert not failed_on_cuda(["Assertion failed: resolvedWeights(axesWeights): Axis input must resolve to a build-time constant"])


def test_a_parse_that_needs_a_gpu_skips_trt_parse_and_trt_ops_answers_from_the_table(rtx, pytester):
    path = save(pytester.path, HEAD + """
g (int64[3] indices, float[1] depth, float[2] values) => (float[3, 10] y) { y = OneHot (indices, depth, values) }""")
    result = pytester.runpytest(f"--model={path}", "--target=ort", "-k", "trt_parse or trt_ops", "-rs", "-p", "no:cacheprovider", "--report-json=r.json")
    result.assert_outcomes(skipped=1, failed=1)
    result.stdout.fnmatch_lines(["*TensorRT-RTX 1.7.1.116 needs a GPU to parse this model (its parser made a CUDA call, no verdict here)*"])
    ops = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]["structure"]["checks"]["trt_ops"]["figures"]
    assert ops["source"].startswith("the op table of") and "needs a GPU for this model" in ops["source"]
    assert any("depth (input 1)" in line for line in ops["errors"])


def test_a_sample_model_builds_without_a_gpu(rtx):
    result = build_engine(os.path.join(MODELS, "heatmap_sigmoid.onnx"), rtx)
    assert result.ok and result.engine_bytes > 10_000 and result.parse.layers > 0
    assert result.figures()["tensorrt"] == "TensorRT-RTX 1.7.1.116"


def test_dynamic_inputs_take_their_profile_from_the_feeds(rtx, tmp_path):
    path = save(tmp_path, DYNAMIC)
    assert "input 'x' needs a shape" in build_engine(path, rtx).errors[0]
    feeds = [{"x": np.zeros((n, 3), np.float32)} for n in (2, 5, 3)]
    result = build_engine(path, rtx, feeds=feeds)
    assert result.ok and [r.text() for r in result.profile] == ["x shape 2x3..5x3 (opt 2x3)"]


def test_a_crash_inside_tensorrt_is_reported_not_fatal(rtx, tmp_path):
    crashing = next(text for name, _, text in CASES if name == "QDQ002 scale computed from the data")
    path = tmp_path / "crash.onnx"
    onnx.save(model(crashing), path)
    with pytest.raises(isolated.TrtCrashed, match="crash inside TensorRT"):
        isolated.call(build_engine, str(path), rtx)
    assert isolated.call(build_engine, os.path.join(MODELS, "heatmap_sigmoid.onnx"), rtx).ok  # a new worker takes over


def test_the_worker_runs_each_call_in_the_callers_folder(tmp_path, monkeypatch):
    """The worker is started once and kept: a caller that changed folder since (pytester does for
    every test) must not have its relative paths read in the folder the worker started in."""
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    (later / "m.onnx").write_bytes(b"")
    isolated.shutdown()
    monkeypatch.chdir(first)
    assert isolated.call(os.getcwd) == str(first)
    monkeypatch.chdir(later)
    assert isolated.call(os.getcwd) == str(later) and isolated.call(os.path.exists, "m.onnx")


@pytest.mark.parametrize(("name", "rule", "text"), CASES, ids=[c[0] for c in CASES])
def test_every_error_rule_is_backed_by_a_model_the_builder_rejects(rtx, tmp_path, name, rule, text):
    """An "error" finding must mean the builder rejects (or crashes); a model it builds has none."""
    path = tmp_path / "q.onnx"
    onnx.save(model(text), path)
    errors = {f.rule for f in validate_qdq(model(text)) if f.severity == "error"}
    try:
        builds = isolated.call(build_engine, str(path), rtx).ok
    except isolated.TrtCrashed:
        builds = False
    if builds:
        assert errors == set(), f"{name}: TensorRT-RTX builds it, but the rules say error {errors}"
    if rule and not builds:
        assert rule in errors, f"{name}: TensorRT-RTX rejects it, but {rule} is not an error"


SAMPLE_OPS = ("ReduceSum", "Cast", "LayerNormalization", "Resize", "MaxPool", "Dropout", "Clip", "TopK")


def test_the_op_table_agrees_with_the_parser_on_a_sample_of_node_tests(rtx):
    by_op = {op: differential.node_test_cases(op) for op in SAMPLE_OPS}
    # onnx's collect_testcases collects only on its first call in a process: a later call with
    # another op returned the first op's tests (this sample was 4 x the same 12 ReduceSum tests).
    assert all(found and {c.op_type for c in found} == {op} for op, found in by_op.items())
    cases = [c for found in by_op.values() for c in found]
    verdicts = differential.compare(cases, rtx, workers=2)
    agree, decided = differential.agreement(verdicts)
    print("\n".join(differential.summary(verdicts, rtx)))
    decisive = [v for v in verdicts if not v.needs_gpu]
    assert {v.name.split("_")[1] for v in decisive} >= {"reduce", "cast", "layer", "resize", "maxpool", "dropout", "clip", "top"}
    assert sum(v.trt_accepts for v in decisive) >= 30 and sum(not v.trt_accepts for v in decisive) >= 30  # both verdicts tested
    assert decided >= 200 and agree / decided >= 0.98


@pytest.mark.slow
def test_the_op_table_agrees_with_the_parser_on_every_node_test(rtx):
    """The differential (python benchmarks/bench_trt_differential.py prints the same figures)."""
    verdicts = differential.compare(differential.node_test_cases(), rtx, workers=2)
    agree, decided = differential.agreement(verdicts)
    print("\n".join(differential.summary(verdicts, rtx)))
    assert decided >= 1500 and agree / decided >= 0.98


# --- the faces ----------------------------------------------------------------------------------------


def test_ops_answers_from_the_parser_and_exits_1_when_it_rejects(rtx, tmp_path, capsys):
    assert main(["ops", save(tmp_path, RUNTIME_AXES)]) == 1
    out = capsys.readouterr().out
    assert "according to TensorRT-RTX 1.7.1.116 ONNX parser" in out and "ReduceSum" in out


def test_ops_falls_back_to_the_table_without_tensorrt(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setenv(flavour.ENV_VAR, "tensorrt")
    assert main(["ops", save(tmp_path, RUNTIME_AXES)]) == 1
    out = capsys.readouterr().out
    assert "the op table of TensorRT 10.15's ONNX parser" in out and "no TensorRT installed" in out and "axes (input 1)" in out


def test_pytest_model_runs_parse_and_builds_for_real(rtx, pytester):
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    model_path = os.path.join(MODELS, "heatmap_sigmoid.onnx")
    result = pytester.runpytest(f"--model={model_path}", "-v")
    result.stdout.fnmatch_lines(["*structure::trt_parse PASSED*", "*trt::build?fp32? PASSED*", "*trt::build?fp16? PASSED*"])
    result.stdout.fnmatch_lines(["*trt[[]fp32[]]*PASSED*[[]TensorRT-RTX 1.7.1.116[]]*bytes*layers*"])
    assert "trt::build[int8]" not in result.stdout.str()  # no int8 file in this run: no calibration data, no Q/DQ


def test_the_int8_build_takes_the_models_own_qdq_or_the_calibrated_artifact(rtx, pytester):
    """A float model without calibration data in a run with a Q/DQ model skips with the hint."""
    for name in ("convbn_classifier.onnx", "convbn_classifier.calib.npz"):
        pytester.path.joinpath(name).write_bytes(open(os.path.join(MODELS, name), "rb").read())
    onnx.save(model(next(text for name, _, text in CASES if name == "valid int8 Conv")), pytester.path / "q.onnx")
    both = pytester.runpytest("--model=convbn_classifier.onnx", "--model=q.onnx", "-k", "int8 and trt", "-rs", "-p", "no:cacheprovider")
    both.assert_outcomes(passed=1, skipped=1)
    both.stdout.fnmatch_lines(["*no int8 QDQ file: the model holds no Q/DQ nodes; pass --calibration-data*"])
    calibrated = pytester.runpytest("--model=convbn_classifier.onnx", "--calibration-data=convbn_classifier.calib.npz", "-k", "int8 and trt",
                                    "--report-json=r.json", "-p", "no:cacheprovider")
    calibrated.assert_outcomes(passed=1)
    figures = json.loads((pytester.path / "r.json").read_text())["models"]["convbn_classifier.onnx"]["families"]["trt[int8]"]["checks"]["build"]["figures"]
    assert figures["file"] == "the int8 QDQ artifact" and figures["tensorrt"] == "TensorRT-RTX 1.7.1.116" and figures["engine_bytes"] > 0


def test_an_explicit_target_list_keeps_only_its_builds(rtx, pytester):
    result = pytester.runpytest(f"--model={os.path.join(MODELS, 'heatmap_sigmoid.onnx')}", "--target=ort", "--target=trt-fp16", "--co", "-q", "-p", "no:cacheprovider")
    ids = result.stdout.str()
    assert "trt::build[fp16]" in ids and "trt::build[fp32]" not in ids and "trt::build[int8]" not in ids


def test_pytest_model_fails_trt_parse_with_the_node_line(rtx, pytester, tmp_path):
    path = save(tmp_path, RUNTIME_AXES)
    result = pytester.runpytest(f"--model={path}", "--target=ort", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*structure::trt_parse*", "*TensorRT-RTX 1.7.1.116 ONNX parser rejects 1 node(s)*", "*node 'ReduceSum(y)' (ReduceSum, #1)*fix: make that input a constant*"])


def test_without_tensorrt_the_items_skip_with_the_install_hint(pytester, monkeypatch):
    monkeypatch.setenv(flavour.ENV_VAR, "tensorrt")  # not installed here
    # (an explicit --target trt-* is a usage error there: tests/test_red_team7_trt_target_unavailable.py)
    result = pytester.runpytest(f"--model={os.path.join(MODELS, 'heatmap_sigmoid.onnx')}", "-k", "trt", "-rs", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*TensorRT is not installed (pip install 'onnx2trt_check[[]trt[]]')*"])
    assert "Traceback" not in result.stdout.str()


def test_the_runs_flavour_choice_ends_with_the_run(rtx, pytester, monkeypatch):
    monkeypatch.delenv(flavour.ENV_VAR)
    model_path = os.path.join(MODELS, "heatmap_sigmoid.onnx")
    result = pytester.runpytest_inprocess(f"--model={model_path}", "--trt-flavour=tensorrt-rtx", "-k", "trt_parse", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert flavour.requested() == "auto"


def test_asking_for_a_missing_flavour_is_a_usage_error(pytester):
    result = pytester.runpytest(f"--model={os.path.join(MODELS, 'heatmap_sigmoid.onnx')}", "--trt-flavour=tensorrt", "-p", "no:cacheprovider")
    if isinstance(flavour.probe("tensorrt"), flavour.Flavour):
        pytest.skip("TensorRT is installed here")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--trt-flavour tensorrt: TensorRT is not installed*"])
