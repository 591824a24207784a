"""zoo13: a QAT export whose fake-quant computes each weight's scale in the graph from the weight
(torch.fake_quantize_per_channel_affine with scale = amax(|w|) / 127, exported as Abs -> ReduceMax ->
Div on the float weight) passed every `qdq::placement` item, `qdq check` printed "no problems found",
and TensorRT-RTX 1.7.1.116 rejected the build ("Myelin ... CHECK(is_constant()) failed"; the same
model built once onnxsim had folded the scales: `onnx2trt-check optimize` fixes it). QDQ002 treats a
scale computed from constants as folded ("builds: no finding"); this one does not build.

QDQ002 now flags a scale computed from constants through a reduction (tests/qdq_rule_models.py
holds the case against the builder), with the fix `onnx2trt-check optimize`."""


import onnx
import onnx.parser

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


def test_qdq002_flags_a_weight_scale_computed_from_the_weight():
    errors = {f.rule for f in validate_qdq(onnx.parser.parse_model(QAT_CONV)) if f.severity == "error"}
    assert "QDQ002-scale" in errors


