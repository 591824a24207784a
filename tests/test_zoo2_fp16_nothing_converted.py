"""Second foreign-model pass, finding 7: a float64 model (double IO and MatMul) passed target[ort-fp16]
and target[cpu-fp16-emu] at `max abs 0, min SQNR inf dB`. The fp16 converter leaves float64 as it
is, so the "fp16 artifact" was the fp32 model and both items compared the model with itself. They now
skip with the reason; a model that converts is still compared."""

import onnx
import onnx.parser
import pytest

DOUBLE = """
<ir_version: 8, opset_import: ["": 17]>
g (double[2,4] x) => (double[2,4] y) {
  w = Constant<value = double[4,4] {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,3}>()
  m = MatMul(x, w)
  y = Tanh(m)
}"""


def _fp16_items(tmp_path, text, capsys):
    onnx.save(onnx.parser.parse_model(text), tmp_path / "m.onnx")
    code = pytest.main(
        [
            f"--model={tmp_path / 'm.onnx'}",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            "--target",
            "ort-fp16",
            "--target",
            "cpu-fp16-emu",
            "-k",
            "accuracy",
        ]
    )
    return code, capsys.readouterr().out


def test_fp16_targets_skip_a_model_with_nothing_in_fp16(tmp_path, capsys):
    code, out = _fp16_items(tmp_path, DOUBLE, capsys)
    assert code == 0, out
    assert "2 skipped" in out and "converts no node to fp16" in out, out


def test_a_float_model_is_still_compared(tmp_path, capsys):
    code, out = _fp16_items(tmp_path, DOUBLE.replace("double", "float"), capsys)
    assert code == 0, out
    assert "2 passed" in out, out
