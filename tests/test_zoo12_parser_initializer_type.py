"""zoo12 int16_qdq (onnxruntime quantize_static, activation_type QInt16) and uint4_qdq_op21: TensorRT's
parser rejects an initializer whose type it cannot hold (int16 zero point, uint4 weight) with an error
of its importInitializers, no node. trt_parse, trt_ops and the trt builds named it "'<unnamed
Initializers #-1>' (Initializers, #-1)", and for int16 the fix read "store the zero point as an
initializer" (the message names 'image_zero_point'), which it already was. Now the initializer and
its type are named, and the fix is a type TensorRT takes."""

from __future__ import annotations

import onnx.parser

from onnx2trt_check.trt.parse import parse_model

INT16_QDQ = """
<ir_version: 10, opset_import: ["": 21]>
g (float[2,16] image) => (float[2,16] y) {
  s = Constant<value = float {0.01}>()
  q = QuantizeLinear(image, s, image_zero_point)
  y = DequantizeLinear(q, s, image_zero_point)
}"""


def test_an_initializer_of_a_type_tensorrt_cannot_hold_is_named_with_its_type(rtx, tmp_path):
    model = onnx.parser.parse_model(INT16_QDQ)
    model.graph.initializer.append(onnx.helper.make_tensor("image_zero_point", onnx.TensorProto.INT16, [], [0]))
    onnx.save(model, tmp_path / "m.onnx")
    [issue] = parse_model(tmp_path / "m.onnx", rtx).issues
    assert issue.node_name == "initializer image_zero_point" and issue.op_type == "INT16 initializer", issue
    assert "zero point as an initializer" not in issue.fix and "int8" in issue.fix, issue.fix
