"""Fifth foreign-model pass: a BERT put through onnxruntime.transformers' optimizer (com.microsoft
SkipLayerNormalization, BiasGelu) ended its ort-int8, quantize and trt[int8] items in errors
("Invalid tensor data type 0"): onnx's shape inference gives a contrib op's output no type, and the
automatic calibration's batched probe, clearing the shapes of the outputs it exposes, made an empty
type (element type 0) for such an output that ONNX Runtime refused to load."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check.quant.feed_batch import free_batch_dim
from onnx2trt_check.quant.quantize import quantize_model
from onnx2trt_check.runtime import create_session

# com.microsoft Gelu: ONNX Runtime runs it, onnx's shape inference leaves its output untyped
CONTRIB = """
<ir_version: 8, opset_import: ["": 17, "com.microsoft": 1]>
g (float[2,8] x) => (float[2,4] y) {
  w1 = Constant<value = float[8,8] {""" + ",".join(str((i * 7 % 11 - 5) / 5) for i in range(64)) + """}>()
  w2 = Constant<value = float[8,4] {""" + ",".join(str((i * 5 % 13 - 6) / 6) for i in range(32)) + """}>()
  h = MatMul(x, w1)
  g = com.microsoft.Gelu(h)
  y = MatMul(g, w2)
}"""


def test_an_output_without_a_type_keeps_none_when_the_batch_dim_is_freed():
    model = onnx.parser.parse_model(CONTRIB)
    model.graph.output.append(onnx.ValueInfoProto(name="g"))  # exposed, as the probe does, with no type known
    free = free_batch_dim(model, ["x"])
    assert not free.graph.output[1].HasField("type")
    create_session(free, optimized=False)  # loads: an untyped output is one ONNX Runtime types itself


def test_a_model_with_a_contrib_op_is_quantized_by_the_automatic_calibration():
    model = onnx.parser.parse_model(CONTRIB)
    feeds = [{"x": np.random.default_rng(i).standard_normal((2, 8)).astype(np.float32)} for i in range(12)]
    result = quantize_model(model, feeds, method="auto")
    assert {n.op_type for n in result.model.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    assert {"x", "g"} <= set(result.report.methods)  # the contrib op's output calibrated too
