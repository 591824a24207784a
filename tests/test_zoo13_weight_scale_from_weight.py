"""zoo13: a QAT export whose fake-quant computes each weight's scale in the graph from the weight
(torch.fake_quantize_per_channel_affine with scale = amax(|w|) / 127, exported as Abs -> ReduceMax ->
Div on the float weight) passed every `qdq::placement` item, `qdq check` printed "no problems found",
and TensorRT-RTX 1.7.1.116 rejected the build ("Myelin ... CHECK(is_constant()) failed"; the same
model built once onnxsim had folded the scales: `onnx2trt-check optimize` fixes it). QDQ002 treats a
scale computed from constants as folded ("builds: no finding"); this one does not build.

Proposed fix: QDQ002 an error for a scale computed from constants through anything but the cases
the builder folds (tests/qdq_rule_models.py's Mul of two constants builds), with the fix "fold it:
onnx2trt-check optimize (onnxsim) or store the scale as an initializer"; held by
test_trt_builder.py's every-error-rule-is-backed test once the case joins qdq_rule_models.CASES."""


import onnx
import onnx.parser
import pytest

from onnx2trt_check.quant.qdq_rules import validate_qdq
from onnx2trt_check.trt import isolated
from onnx2trt_check.trt.build import build_engine

QAT_CONV = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 8, 8] x) => (float[1, 4, 6, 6] y) <float[4, 2, 3, 3] w = {%s}> {
    xs = Constant <value = float {0.05}> ()
    xz = Constant <value = int8 {0}> ()
    xq = QuantizeLinear (x, xs, xz)
    xd = DequantizeLinear (xq, xs, xz)
    a = Abs (w)
    m = ReduceMax <axes = [1, 2, 3], keepdims = 0> (a)
    k = Constant <value = float {127.0}> ()
    ws = Div (m, k)
    wz = Constant <value = int8[4] {0, 0, 0, 0}> ()
    wq = QuantizeLinear <axis = 0> (w, ws, wz)
    wd = DequantizeLinear <axis = 0> (wq, ws, wz)
    y = Conv (xd, wd)
}""" % ", ".join(f"{(i % 7 - 3) / 10:.1f}" for i in range(72))


# The same Conv with the scales the graph computes stored as a constant: it builds.
FOLDED = QAT_CONV.replace("ws = Div (m, k)", "ws = Constant <value = float[4] {0.00236, 0.00236, 0.00236, 0.00236}> ()")


def _builds(tmp_path, text: str, rtx) -> bool:
    path = tmp_path / "q.onnx"
    onnx.save(onnx.parser.parse_model(text), path)
    try:
        return isolated.call(build_engine, str(path), rtx).ok
    except isolated.TrtCrashed:
        return False


def test_tensorrt_rejects_a_weight_scale_computed_from_the_weight(rtx, tmp_path):
    assert not _builds(tmp_path, QAT_CONV, rtx)
    assert _builds(tmp_path, FOLDED, rtx)


@pytest.mark.xfail(strict=True, reason="zoo13: QDQ002 takes a scale computed from constants as folded; TensorRT-RTX 1.7 "
                   "rejects Abs -> ReduceMax -> Div of the weight; fix proposed in the module docstring")
def test_qdq002_flags_a_weight_scale_computed_from_the_weight():
    errors = {f.rule for f in validate_qdq(onnx.parser.parse_model(QAT_CONV)) if f.severity == "error"}
    assert "QDQ002-scale" in errors


