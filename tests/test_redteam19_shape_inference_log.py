"""Red team 19: on a model whose declared output shape contradicts what it computes ([1, 8] declared,
Relu of [1, 4]), `onnx2trt-check bisect` printed onnx-ir's "Shape inference failed: %s. Model is left
unchanged" and a 15-line Traceback amid its report (its pass logs the failure with exc_info and goes
on with the model unchanged); the command's output now holds no traceback."""

import subprocess
import sys

import onnx


def test_bisect_prints_no_traceback_on_a_wrongly_declared_output(tmp_path):
    model = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]> g (float[1,4] x) => (float[1,8] y) { y = Relu(x) }')
    onnx.save(model, tmp_path / "m.onnx")
    done = subprocess.run([sys.executable, "-m", "onnx2trt_check.cli.main", "bisect", str(tmp_path / "m.onnx"), "--target", "ort-fp16"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "Shape inference failed" not in done.stderr
    assert "layerwise:" in done.stdout
