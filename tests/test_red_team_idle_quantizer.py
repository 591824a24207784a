"""Red team: an int8 quantizer option that would change nothing is a usage error (exit 4, one line)
in every face, never silently dropped while the run reports a configuration the user did not get.

Found on foreign models: `bisect qdq_ort_s8s8.onnx --target ort-int8 --per-tensor` (the model's own
Q/DQ run as they are), `bisect --calibration-method max --percentile 99`, and `--cle-relu6
swap_to_relu` without `--cle` in bisect, quantize and pytest all ran with exit 0 or 1 as if the
option had been applied."""

import bisect_models as bm
import numpy as np
import pytest

import onnx2trt_check
from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import ConfigError

save = bm.save


@pytest.fixture
def files(tmp_path):
    """A float chain, the same chain with its own Q/DQ, and calibration data for both."""
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.stack([feed["x"] for feed in bm.feeds(6)]))
    return save(bm.chain_model(4), tmp_path / "float.onnx"), save(bm.qdq_model(4), tmp_path / "qdq.onnx"), str(calib)


@pytest.mark.parametrize(("model", "args", "message"), [
    # without calibration data nothing is quantized: a float model fails to build, a QDQ model runs as it is
    ("qdq", ["--per-tensor"], "--per-tensor would change nothing here (they shape our int8 quantization of calibration data, and this run has none"),
    ("qdq", ["--cle", "--exclude", "n1_matmul"], "--cle, --exclude would change nothing here"),
    # with calibration data, a model with its own Q/DQ is still not quantized (the data judges it)
    ("qdq+calib", ["--calibration-method", "max"], "--calibration-method would change nothing here (the model holds its own Q/DQ nodes"),
    ("qdq+calib", ["--bias-correction"], "--bias-correction would change nothing here (the model holds its own Q/DQ nodes"),
    # max, entropy and mse read no percentile
    ("float+calib", ["--calibration-method", "max", "--percentile", "99"], "--percentile would change nothing with --calibration-method max (it reads no percentile)"),
    ("float+calib", ["--calibration-method", "entropy", "--percentile", "99"], "--percentile would change nothing with --calibration-method entropy"),
    # --cle-relu6 only says what --cle does
    ("float+calib", ["--cle-relu6", "swap_to_relu"], "--cle-relu6 would change nothing without --cle (it says what equalization does with ReLU6)"),
])
def test_bisect_refuses_an_idle_quantizer_option(files, capsys, model, args, message):
    float_model, qdq_model, calib = files
    path = qdq_model if model.startswith("qdq") else float_model
    calibration = ["--calibration-data", calib] if model.endswith("+calib") else []
    assert main(["bisect", path, "--target", "ort-int8", *calibration, *args]) == 4
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--calibration-method", "percentile", "--percentile", "99"], ["--percentile", "99"],
                                  ["--cle", "--cle-relu6", "swap_to_relu"]])
def test_bisect_keeps_a_quantizer_option_that_applies(files, capsys, args):
    float_model, _, calib = files
    assert main(["bisect", float_model, "--target", "ort-int8", "--calibration-data", calib, *args]) in (0, 1)
    assert "would change nothing" not in capsys.readouterr().err


def test_bisect_still_judges_a_qdq_model_on_its_calibration_data(files, capsys):
    _, qdq_model, calib = files
    assert main(["bisect", qdq_model, "--target", "ort-int8", "--calibration-data", calib]) in (0, 1)
    assert "ort-int8 (onnxruntime) on 6 feed(s)" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--calibration-method", "max", "--percentile", "99"], "--percentile would change nothing with --calibration-method max"),
    (["--cle-relu6", "swap_to_relu"], "--cle-relu6 would change nothing without --cle"),
])
def test_quantize_refuses_an_idle_option_and_writes_nothing(files, tmp_path, capsys, args, message):
    float_model, _, calib = files
    out = tmp_path / "q.onnx"
    assert main(["quantize", float_model, "-o", str(out), "--calibration-data", calib, *args]) == 4
    assert message in capsys.readouterr().err and not out.exists()


def test_the_api_refuses_an_idle_quantize_option(files, tmp_path):
    float_model, _, calib = files
    with pytest.raises(ConfigError, match="would change nothing without --cle"):
        onnx2trt_check.quantize(float_model, calibration_data=calib, output=tmp_path / "q.onnx", cle_relu6="swap_to_relu")
    with pytest.raises(ConfigError, match="the model holds its own Q/DQ nodes"):
        onnx2trt_check.bisect(files[1], target="ort-int8", calibration_data=calib, per_channel=False)
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("model, target, options, message", [
    (0, "ort-int8", ["--calibration-data={calib}", "--cle-relu6=swap_to_relu"],
     "*--cle-relu6 would change nothing without --cle (it says what equalization does with ReLU6)*"),
    (1, "ort-int8", ["--calibration-data={calib}", "--per-tensor", "--cle"],
     "*--per-tensor, --cle would change nothing here (every model of this run: the model holds its own Q/DQ nodes*"),
    (0, "ort-fp16", ["--fp16-calibration-data={calib}", "--fp16-no-fallback"], "*--fp16-calibration-data would change nothing*--fp16-no-fallback turns off*"),
])
def test_pytest_refuses_an_idle_option(files, pytester, model, target, options, message):
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={files[model]}", f"--target={target}",
                                *(option.format(calib=files[2]) for option in options))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_pytest_keeps_quantizer_options_when_a_model_of_the_run_is_float(files, pytester):
    float_model, qdq_model, calib = files
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={float_model}", f"--model={qdq_model}", "--target=ort-int8",
                                f"--calibration-data={calib}", "--per-tensor")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    assert "would change nothing" not in result.stderr.str()
