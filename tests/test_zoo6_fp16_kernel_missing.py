"""Sixth foreign-model pass: ScatterElements with reduction 'add' (torch scatter_add) has no fp16
kernel in ONNX Runtime's CPU provider ("MLFloat16 data type is not supported with ScatterElements
... when reduction is 'add'"), so target[ort-fp16]::accuracy ended in an ONNX Runtime traceback (an
error item) while the artifact itself is sound: cpu-fp16-emu checks its rounding. It now skips,
naming ONNX Runtime's limit."""

import onnx
import onnx.parser
import pytest

SCATTER_ADD = """
<ir_version: 8, opset_import: ["": 17]>
g (float[2,16] x, int64[2,4] idx) => (float[2,16] y) {
  w = Constant<value = float[2,16] {1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16}>()
  h = Mul(x, w)
  g = GatherElements<axis = 1>(h, idx)
  y = ScatterElements<axis = 1, reduction = "add">(h, idx, g)
}"""


def test_ort_fp16_of_an_op_without_an_fp16_kernel_skips_with_the_reason(tmp_path, capsys):
    onnx.save(onnx.parser.parse_model(SCATTER_ADD), tmp_path / "m.onnx")
    code = pytest.main([f"--model={tmp_path / 'm.onnx'}", "-p", "no:cacheprovider", "-q", "-rs", "--input-range", "idx:0,15",
                        "-k", "ort-fp16 or cpu-fp16-emu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert " error" not in out.splitlines()[-1], out
    assert "ONNX Runtime's CPU provider cannot run the fp16 artifact" in out, out
    assert "1 passed" in out.splitlines()[-1], out  # cpu-fp16-emu still checks the artifact's rounding
