"""Options that would do nothing in the given combination say so: a usage error on the command line
(exit 4, one line), a note in the summary for project-wide configuration (issue 13, point 12)."""

import json

import numpy as np
import pytest
from tiny_models import classifier, save

CORE = ("--target", "ort", "-k", "structure or reference or target")


@pytest.fixture
def model_path(pytester):
    return save(classifier(), pytester.path / "m.onnx")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--calibration-method", "max"], "--calibration-method would change nothing here (they shape our int8 quantization of calibration data, and this run has none; pass --calibration-data calib.npz); leave out what does not apply"),
        (["--cle", "--per-tensor"], "--per-tensor, --cle would change nothing here (they shape our int8 quantization of calibration data, and this run has none*"),
        (["--exclude", "conv"], "--exclude would change nothing here (they shape our int8 quantization of calibration data*"),
        (["--calibration-data", "calib.npz", "--calibration-method", "max", "--percentile", "99.9"], "--percentile would change nothing with --calibration-method max (it reads no percentile); use --calibration-method percentile or auto, or leave --percentile out"),
        (["--output-tolerance", "logit:atol=1e-3"], "--output-tolerance names 'logit', which no model of this run has; outputs: logits"),
        # a --target selection no option of the kind applies to (they were ignored, exit 0)
        (["--target", "ort", "--fp16-no-fallback"], "--fp16-no-fallback shapes the fp16 artifact, and --target selects none of ort-fp16, cpu-fp16-emu, trt-fp16; add one of them or leave it out"),
        (["--target", "ort", "--target", "trt-int8", "--fp16-block", "n", "--fp16-calibration-data", "calib.npz"], "--fp16-calibration-data, --fp16-block shape the fp16 artifact, and --target selects none of*"),
        (["--target", "ort-fp16", "--calibration-data", "calib.npz"], "--calibration-data feeds the int8 targets, and --target selects none of trt-int8, trt-best, ort-int8; add one of them (or --calibration-sweep) or leave it out"),
    ],
)
def test_an_option_that_does_nothing_is_a_usage_error(pytester, model_path, args, message):
    np.savez(pytester.path / "calib.npz", x=np.random.default_rng(0).random((2, 1, 3, 8, 8), dtype=np.float32))
    result = pytester.runpytest_inprocess("--model", "m.onnx", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_an_output_tolerance_of_the_project_for_an_absent_output_is_a_note(pytester, model_path):
    pytester.makepyprojecttoml("[tool.onnx2trt_check.outputs.boxes]\natol = 1e-2\n")
    result = pytester.runpytest_inprocess("--model", "m.onnx", *CORE, "--report-json", "r.json")
    result.assert_outcomes(passed=8)
    note = "tolerance set for output 'boxes' (pyproject.toml or ini), which no model of this run has"
    result.stdout.fnmatch_lines(["*onnx2trt_check summary*", f"note: {note}"])
    notes = json.loads((pytester.path / "r.json").read_text())["notes"]
    assert notes[0] == note and all("item(s) deselected" in n for n in notes[1:])  # CORE's -k leaves items out: said too


@pytest.mark.parametrize("args", [["--target", "cpu-fp16-emu", "--fp16-no-fallback"], ["--target", "trt-fp16", "--fp16-block", "conv"],
                                  ["--target", "trt-best", "--calibration-data", "calib.npz"], ["--target", "ort", "--calibration-data", "calib.npz", "--calibration-sweep"],
                                  ["--calibration-data", "calib.npz", "--percentile", "99.9"]])  # auto reads the percentile (a candidate)
def test_an_option_a_selected_target_uses_is_accepted(pytester, model_path, args):
    np.savez(pytester.path / "calib.npz", x=np.random.default_rng(0).random((2, 1, 3, 8, 8), dtype=np.float32))
    assert pytester.runpytest_inprocess("--model", "m.onnx", *args, "--collect-only").ret == pytest.ExitCode.OK


def test_a_present_output_is_accepted(pytester, model_path):
    pytester.runpytest_inprocess("--model", "m.onnx", *CORE, "--output-tolerance", "logits:atol=1e-3").assert_outcomes(passed=8)
