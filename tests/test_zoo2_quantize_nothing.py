"""Second foreign-model pass, finding 2: `quantize` of a model computing in fp16 (a model.half()
export) crashed with a traceback (our fp32 scales on an fp16 QuantizeLinear input: an invalid
graph), and pytest's ort-int8, quantize and trt[int8] items ended in errors. A model whose every
candidate is skipped (float64 MatMul, the compute inside a Loop body, Einsum only) was "quantized
0 activation(s) and 0 weight(s)", written with exit 0, and its int8 item passed at SQNR inf, a claim
about an int8 model that holds no int8. Both are now one line naming why nothing can be quantized."""

import numpy as np
import onnx
import onnx.parser
import pytest

from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import ModelError
from onnx2trt_check.quant.quantize import quantize_model

MATMUL = """
<ir_version: 8, opset_import: ["": 17]>
g ({t}[2,8] x) => ({t}[2,4] y) {{
  w = Constant<value = {t}[8,4] {{1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8}}>()
  y = MatMul(x, w)
}}"""
HALF, DOUBLE = MATMUL.format(t="float16"), MATMUL.format(t="double")
HALF_COMPUTED = HALF.replace("y = MatMul(x, w)", "r = Relu(x)\n  y = MatMul(r, w)")  # no value_info for r

NO_CANDIDATE = """
<ir_version: 8, opset_import: ["": 17]>
g (float[2,8] x) => (float[2,8] y) { y = Einsum<equation="bi,bi->bi">(x, x) }"""


def feeds(dtype):
    return [{"x": np.random.default_rng(i).standard_normal((2, 8)).astype(dtype)} for i in range(6)]


@pytest.mark.parametrize(
    ("text", "dtype", "reason"),
    [
        (HALF, np.float16, "FLOAT16"),
        (HALF_COMPUTED, np.float16, "FLOAT16"),
        (DOUBLE, np.float64, "DOUBLE"),
        (NO_CANDIDATE, np.float32, "no Q/DQ placement rule for Einsum"),
    ],
)
def test_a_model_with_nothing_to_quantize_is_refused_with_the_reason(text, dtype, reason):
    with pytest.raises(ModelError, match=f"nothing in the model can be quantized.*{reason}"):
        quantize_model(onnx.parser.parse_model(text), feeds(dtype))


def test_the_cli_refuses_an_fp16_model_in_one_line_and_writes_nothing(tmp_path, capsys):
    onnx.save(onnx.parser.parse_model(HALF), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.stack([f["x"] for f in feeds(np.float16)]))
    code = main(["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "q.onnx"), "--calibration-data", str(tmp_path / "c.npz")])
    err = capsys.readouterr().err
    assert code == 4, err
    assert "nothing in the model can be quantized" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "q.onnx").exists()
