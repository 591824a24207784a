"""review9: bisect --reduce on a model whose If branch reads outer tensors (a Constant, an earlier
node's output) by name. The reduction ignored values a subgraph captures: extracting a subgraph
holding the If raised onnx_ir's "not properly bounded" ValueError (a traceback), and the Constant
read only inside the branch was neither kept inside nor made an input. Found on zoo10 lstm_text
(tf2onnx Loop bodies read outer tensors): `bisect --reduce --min-sqnr 200` was a traceback."""

import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort

from onnx2trt_check.bisection.reduce import reduce_failing_subgraph

MODEL = """
<ir_version: 8, opset_import: ["": 17]>
g (float[2] x, bool b) => (float[2] z) {
  c = Constant<value = float[2] {1.0, 2.0}>()
  x2 = Relu(x)
  y = If(b) <then_branch = t () => (float[2] ty) { ty = Add(x2, c) }, else_branch = e () => (float[2] ey) { ey = Sub(x2, c) }>
  z = Mul(y, y)
}"""


def _holds_if(model: onnx.ModelProto, feeds) -> bool:
    return any(node.op_type == "If" for node in model.graph.node)


def test_an_if_reading_outer_values_reduces_to_a_runnable_subgraph():
    feeds = [{"x": np.array([1.0, -2.0], np.float32), "b": np.array(True)}]
    reduced = reduce_failing_subgraph(onnx.parser.parse_model(MODEL), feeds, _holds_if)
    assert reduced.nodes == ["If(y)"]
    assert sorted(node.op_type for node in reduced.model.graph.node) == ["Constant", "If"]  # c stays inside
    assert sorted(value.name for value in reduced.model.graph.input) == ["b", "x2"]  # x2 computed outside: an input
    session = ort.InferenceSession(reduced.model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, reduced.feeds[0])
    np.testing.assert_array_equal(y, np.array([2.0, 2.0], np.float32))  # Relu([1, -2]) + [1, 2]
