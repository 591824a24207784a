"""zoo12 fp8_qdq_op21: Relu -> QuantizeLinear(float8e4m3fn, zero point 0) -> DequantizeLinear. ONNX
Runtime 1.32's ReluQuantRewrite drops that Relu with graph optimizations on, as if the fp8 Q clamped
negatives to 0 as a uint8 one with zero point 0 does (fp8 is signed): target[ort] and
target[ort-int8] failed at 5 dB a model whose Q/DQ arithmetic, computed here in numpy with
ml_dtypes, is 32.7 dB from its float function. The optimized sessions now keep the Relu."""

import ml_dtypes
import numpy as np
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from onnx2trt_check.runtime import run_model

RNG = np.random.default_rng(12)
W = RNG.standard_normal((16, 8)).astype(np.float32)
X = RNG.standard_normal((4, 16)).astype(np.float32)
SCALE = np.float32(0.05)


def _relu_q_dq(zero_point):
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Relu", ["m"], ["r"]),
             h.make_node("QuantizeLinear", ["r", "s", "zp"], ["q"]), h.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [4, 16])], [h.make_tensor_value_info("y", T.FLOAT, [4, 8])],
                         [nh.from_array(W, "w"), nh.from_array(np.array(SCALE), "s"), zero_point])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 21)])


def test_fp8_relu_survives_the_optimized_session():
    model = _relu_q_dq(h.make_tensor("zp", T.FLOAT8E4M3FN, [], [0.0]))
    expected = (np.maximum(X @ W, 0) / SCALE).astype(ml_dtypes.float8_e4m3fn).astype(np.float32) * SCALE
    optimized = run_model(model, [{"x": X}], optimized=True)[0]["y"]
    assert np.min(optimized) >= 0, "the Relu was dropped: negative values passed the fp8 Q/DQ"
    np.testing.assert_allclose(optimized, expected, rtol=1e-6, atol=1e-7)


def test_int8_relu_at_the_types_minimum_is_unchanged():
    """int8 with zero point -128: the Q clamps at 0 itself, the Relu or not gives the same values."""
    model = _relu_q_dq(nh.from_array(np.array(-128, np.int8), "zp"))
    q = np.clip(np.round(np.maximum(X @ W, 0) / SCALE) - 128, -128, 127)
    expected = ((q + 128) * SCALE).astype(np.float32)
    np.testing.assert_allclose(run_model(model, [{"x": X}], optimized=True)[0]["y"], expected, rtol=1e-6, atol=1e-6)
