"""Second foreign-model pass, finding 8: a model ONNX Runtime's CPU provider cannot run (a bfloat16
MatMul between float casts: bf16 weights of an LLM export) failed reference::run rightly, but
fp16[artifact]::report and trt[fp16]::build ended in ONNX Runtime tracebacks (errors, "the tool
crashed"): the fp16 fallback collects activations by running the model. They now skip, naming
the reference::run item."""

import onnx
import onnx.parser
import pytest

BF16 = """
<ir_version: 9, opset_import: ["": 17]>
g (float[2,4] x) => (float[2,4] y) {
  b = Cast<to=16>(x)
  w = Constant<value = float[4,4] {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,3}>()
  wb = Cast<to=16>(w)
  m = MatMul(b, wb)
  y = Cast<to=1>(m)
}"""


def test_the_fp16_items_of_a_model_ort_cannot_run_skip_with_the_reason(tmp_path, capsys):
    onnx.save(onnx.parser.parse_model(BF16), tmp_path / "m.onnx")
    code = pytest.main([f"--model={tmp_path / 'm.onnx'}", "-p", "no:cacheprovider", "-q", "-rs", "-k", "fp16 or reference"])
    out = capsys.readouterr().out
    assert code == 1, out  # reference::run fails: ONNX Runtime cannot run it
    assert " error" not in out.splitlines()[-1], out
    assert "no fp16 artifact: its fp32 fallback is chosen on the model's activations" in out, out
