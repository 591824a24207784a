"""A model below opset 13 cannot be quantized by us (our Q/DQ are opset 13's); the refusal blamed
per-channel DequantizeLinear even with --per-tensor. It now names what is written and the fix."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check.cli.main import main


def test_quantize_refuses_opset_11_naming_the_conversion_even_per_tensor(tmp_path, capsys):
    model = onnx.parser.parse_model("""<ir_version: 7, opset_import: ["": 11]>
        g (float[1,2,6,6] x) => (float[1,2,6,6] y) <float[2,2,1,1] w = {1.0, 0.5, 0.25, 2.0}> { c = Conv(x, w)\n y = Relu(c) }""")
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).random((8, 1, 2, 6, 6), dtype=np.float32))
    args = ["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "q.onnx"), "--calibration-data", str(tmp_path / "c.npz"), "--per-tensor"]
    assert main(args) == 4
    err = capsys.readouterr().err
    assert "model opset 11 < 13: the quantizer writes opset-13 Q/DQ" in err and "per-tensor too" in err
    assert "onnx.version_converter.convert_version(model, 13)" in err and not (tmp_path / "q.onnx").exists()
