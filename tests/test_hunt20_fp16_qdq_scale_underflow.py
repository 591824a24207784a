"""A Q/DQ scale below fp16's smallest normal stays fp32 in the fp16 artifact (opset >= 19).

From opset 19 Q/DQ take fp16 scales, so the converter rounded every scale to fp16. A 16-bit QDQ model
(onnxruntime quantize_static with QInt16 activations) holds int32 bias DequantizeLinears whose scale
is the product of two small scales (1e-10 here): fp16 flushed it to 0, every bias vanished, and
target::accuracy[ort-fp16] and [cpu-fp16-emu] failed a sound model at 5 dB, blaming fp16 deployment
for the artifact's own rounding. A subnormal scale loses up to half its significant bits (a 2% error
of every value it scales), so any non-zero scale below 2**-14 keeps its node fp32, with the reason.
"""

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import numpy_helper

from onnx2trt_check.precision.fp16 import convert_to_fp16
from onnx2trt_check.runtime import run_model


def qdq_matmul(bias_scale: float) -> onnx.ModelProto:
    model = onnx.parser.parse_model(
        """
        <ir_version: 9, opset_import: ["" : 21]>
        g (float[2, 4] x) => (float[2, 3] y) {
          xq = QuantizeLinear(x, xs, xz)
          xd = DequantizeLinear(xq, xs, xz)
          wd = DequantizeLinear<axis=1>(wq, ws, wz)
          m = MatMul(xd, wd)
          bd = DequantizeLinear<axis=0>(bq, bs)
          y = Add(m, bd)
        }
        """
    )
    rng = np.random.default_rng(0)
    model.graph.initializer.extend([
        numpy_helper.from_array(np.array(0.01, np.float32), "xs"),
        numpy_helper.from_array(np.array(0, np.int8), "xz"),
        numpy_helper.from_array(rng.integers(-127, 128, (4, 3)).astype(np.int8), "wq"),
        numpy_helper.from_array(np.full(3, 1e-3, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(3, np.int8), "wz"),
        numpy_helper.from_array(np.round(np.array([0.2, -0.1, 0.05]) / bias_scale).astype(np.int32), "bq"),
        numpy_helper.from_array(np.full(3, bias_scale, np.float32), "bs"),
    ])
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("bias_scale", [1e-10, 1e-6])
def test_a_scale_fp16_cannot_hold_keeps_its_qdq_node_fp32(bias_scale):
    model = qdq_matmul(bias_scale)
    feeds = [{"x": np.random.default_rng(i).uniform(-1, 1, (2, 4)).astype(np.float32)} for i in range(4)]
    result = convert_to_fp16(model, feeds)
    onnx.checker.check_model(result.model, full_check=True)
    kept = {b.name: [r.kind for r in b.reasons] for b in result.report.blocked}
    assert kept == {"DequantizeLinear(bd)": ["scale-underflow"]}
    expected, got = run_model(model, feeds), run_model(result.model, feeds)
    assert all(np.abs(e["y"] - g["y"]).max() < 0.01 for e, g in zip(expected, got))


def test_normal_scales_are_converted():
    result = convert_to_fp16(qdq_matmul(1e-3))
    assert not result.report.blocked
