"""precision/fp16.py range decisions that hand-made mutations showed no other test could tell
apart; each test names the mutation it kills. The limits are fp16's own: 65504 is its largest
finite value, 2**-14 its smallest normal."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
from hypothesis import given
from hypothesis import strategies as st
from onnx import numpy_helper

from onnx2trt_check.precision.activations import TensorStats
from onnx2trt_check.precision.fp16 import convert_to_fp16, tensor_verdict

MUL_RELU = """
<ir_version: 8, opset_import: ["" : {opset}]>
g (float[1,4] x) => (float[1,4] y) {{
  h = Mul(x, s)
  y = Relu(h)
}}"""


def _mul_relu(scale, opset: int = 17) -> onnx.ModelProto:
    model = onnx.parser.parse_model(MUL_RELU.format(opset=opset))
    model.graph.initializer.append(numpy_helper.from_array(np.asarray(scale, np.float32), "s"))
    return model


@given(st.integers(1, 60), st.data(), st.floats(0.0, 1.0))
def test_the_underflow_verdict_is_the_share_of_tiny_nonzero_values_against_the_fraction(size, data, fraction):
    # `tiny` values below 2**-14 and the rest 1.0: the share is tiny / size exactly, and the
    # verdict is underflow iff it exceeds the fraction (no factor, no other threshold).
    tiny = data.draw(st.integers(0, size))
    values = np.array([1e-6] * tiny + [1.0] * (size - tiny), np.float32)
    verdict = tensor_verdict(TensorStats.of(values), overflow_limit=65504.0, underflow_fraction=fraction)
    assert verdict == ("underflow" if tiny / size > fraction else None)


def test_a_weight_just_beyond_65504_keeps_its_consumer_fp32():
    # 70000 is inf in fp16 (anything from 65520 up rounds to it).
    result = convert_to_fp16(_mul_relu([7e4, 1.0, 1.0, 1.0]))
    assert [(n.op_type, n.reasons[0].kind) for n in result.report.blocked] == [("Mul", "weight-overflow")]


def test_an_activation_beyond_65504_over_the_margin_is_blocked():
    # Default margin 2: the limit is 32752, so an activation of 40000 (in range, but with no room
    # for unseen inputs) keeps its producer and consumer fp32; with margin 1 it converts.
    feeds = [{"x": np.full((1, 4), 40000.0, np.float32)}]
    result = convert_to_fp16(_mul_relu([1.0] * 4), feeds)
    assert result.report.overflow_limit == 32752.0
    assert {(n.op_type, n.reasons[0].kind) for n in result.report.blocked} == {("Mul", "overflow"), ("Relu", "overflow")}
    assert convert_to_fp16(_mul_relu([1.0] * 4), feeds, overflow_margin=1.0).report.blocked == []


QDQ = """
<ir_version: 9, opset_import: ["" : {opset}]>
g (float[1,4] x) => (float[1,4] y) {{
  scale = Constant<value = float {{0.1}}>()
  q = QuantizeLinear(x, scale)
  d = DequantizeLinear(q, scale)
  y = Relu(d)
}}"""


def test_quantize_and_dequantize_below_opset_19_stay_fp32():
    # Before opset 19 their scale must be float32: converted, they are invalid ONNX.
    kinds = {}
    for opset in (18, 19):
        result = convert_to_fp16(onnx.parser.parse_model(QDQ.format(opset=opset)))
        kinds[opset] = {n.op_type: n.reasons[0].kind for n in result.report.blocked if n.op_type != "Constant"}
    assert kinds[18] == {"QuantizeLinear": "qdq-opset", "DequantizeLinear": "qdq-opset"}
    assert kinds[19] == {}
