"""zoo16: `bisect --target ort-int8` on an ONNX Runtime QDQ model (quantize_static, uint8 activations
with zero point 0, the Relu in front of each QuantizeLinear removed) named '/f/f.3/Conv' first
divergent at SQNR 2.65 dB on a model within tolerance: the float counterpart puts the Relu that
zero point clamps with back, but the tensor after the Q/DQ pair was compared with the one before
that Relu (the Conv's raw output, negatives and all)."""

import numpy as np
import onnx

from onnx2trt_check.bisection.layerwise import layerwise_compare
from onnx2trt_check.quant.float_counterpart import float_counterpart

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 6, 6] x) => (float[1, 2, 6, 6] y) {
    c = Conv<pads = [1, 1, 1, 1]>(x, w1)
    q = QuantizeLinear(c, s, z)
    d = DequantizeLinear(q, s, z)
    y = Conv<pads = [1, 1, 1, 1]>(d, w2)
}
"""


def ort_style_qdq() -> onnx.ModelProto:
    model = onnx.parser.parse_model(MODEL)
    rng = np.random.default_rng(0)
    for name, value in (("w1", rng.normal(size=(2, 2, 3, 3))), ("w2", rng.normal(size=(2, 2, 3, 3))),
                        ("s", np.array(0.06)), ("z", np.array(0, np.uint8))):
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value, value.dtype if name == "z" else np.float32), name))
    return model


def test_the_clamped_tensor_is_compared_with_the_clamped_float_tensor():
    model = ort_style_qdq()
    feeds = [{"x": np.random.default_rng(i).normal(size=(1, 2, 6, 6)).astype(np.float32)} for i in range(4)]
    report = layerwise_compare(float_counterpart(model), model, feeds)
    rows = {row.tensor: row for row in report.tensors}
    assert rows["d"].sqnr_db > 30  # uint8 steps of 0.06 on values up to about 10: the pair is accurate
    assert report.first_divergent is None
