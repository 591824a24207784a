"""A model below opset 13 cannot hold our Q/DQ (opset 13's); it was refused with "convert the model
first". The pipeline now converts it with onnx's version converter and uses the result only when it
computes what the original does (quant/opset_upgrade.py); else it refuses, naming why."""

import numpy as np
import onnx
import onnx.parser
import pytest

import onnx2trt_check
from onnx2trt_check.cli.main import main

# Squeeze's axes moved from an attribute to an input at opset 13: the conversion has work to do.
OPSET_11 = """<ir_version: 7, opset_import: ["": 11]>
    g (float[1,2,6,6] x) => (float[2,6,6] y) <float[2,2,1,1] w = {1.0, 0.5, 0.25, 2.0}> {
        c = Conv(x, w)
        r = Relu(c)
        y = Squeeze<axes = [0]>(r)
    }"""


def _files(tmp_path):
    onnx.save(onnx.parser.parse_model(OPSET_11), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).random((8, 1, 2, 6, 6), dtype=np.float32))
    return ["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "q.onnx"), "--calibration-data", str(tmp_path / "c.npz")]


def test_an_opset_11_model_is_converted_checked_and_quantized(tmp_path, capsys):
    args = _files(tmp_path)
    before = (tmp_path / "m.onnx").read_bytes()
    assert main(args) == 0, capsys.readouterr().err
    written = onnx.load(tmp_path / "q.onnx")
    assert next(o.version for o in written.opset_import if o.domain == "") >= 13
    assert any(n.op_type == "DequantizeLinear" for n in written.graph.node)
    assert (tmp_path / "m.onnx").read_bytes() == before  # the input model is never modified
    out = capsys.readouterr().out
    assert "step opset_upgrade: from 11, to 13, checked_feeds 7, max_abs 0.0" in out  # 7: one feed of 8 held out to verify


def test_a_conversion_that_changes_the_outputs_is_refused(tmp_path, capsys, monkeypatch):
    real = onnx.version_converter.convert_version

    def wrong_adapter(model, version):  # a converter gap that changes a weight without an error
        converted = real(model, version)
        converted.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.full((2, 2, 1, 1), 0.5, np.float32), "w"))
        return converted

    monkeypatch.setattr(onnx.version_converter, "convert_version", wrong_adapter)
    assert main(_files(tmp_path)) == 4
    err = capsys.readouterr().err
    assert "model opset 11 < 13" in err and "onnx's version converter changed output 'y'" in err
    assert "re-export the model at opset 13 or later" in err and not (tmp_path / "q.onnx").exists()


def test_a_converter_failure_is_refused_naming_it(tmp_path, capsys, monkeypatch):
    def failing(model, version):
        raise RuntimeError("No Adapter For Foo\nC++ frames ...")

    monkeypatch.setattr(onnx.version_converter, "convert_version", failing)
    assert main(_files(tmp_path)) == 4
    err = capsys.readouterr().err
    assert "onnx's version converter failed on it (No Adapter For Foo)" in err and "C++ frames" not in err


@pytest.mark.parametrize("opset", [13, 17])
def test_a_model_at_opset_13_or_later_is_not_converted(tmp_path, opset):
    onnx.save(onnx.parser.parse_model(OPSET_11.replace('"": 11', f'"": {opset}').replace("Squeeze<axes = [0]>(r)", "Relu(r)")
                                      .replace("float[2,6,6] y", "float[1,2,6,6] y")), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).random((8, 1, 2, 6, 6), dtype=np.float32))
    result = onnx2trt_check.quantize(tmp_path / "m.onnx", calibration_data=tmp_path / "c.npz")
    assert result.verdict.passed and "opset_upgrade" not in result.build.steps


def test_bisect_sensitivity_lowers_an_opset_11_model_too(tmp_path, capsys):
    _files(tmp_path)
    args = ["bisect", str(tmp_path / "m.onnx"), "--target", "ort-int8", "--calibration-data", str(tmp_path / "c.npz"), "--sensitivity"]
    assert main(args) == 0, capsys.readouterr().err
    assert "nothing to keep in fp32" in capsys.readouterr().out
