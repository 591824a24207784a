"""Sixth foreign-model pass: TensorRT-RTX's parser rejects ScatterElements with reduction 'add'
(torch scatter_add) with an error that carries neither node nor op, only its importer
(importScatterElements): trt_ops, trt_parse, the trt builds and `ops` named the node
"'<unnamed ? #-1>' (?, #-1)", which the user cannot find. The op comes from the importer's name and
the node is named when the model has one node of that op."""

from __future__ import annotations

import onnx
import onnx.parser

from onnx2trt_check.trt.parse import parse_model

SCATTER_ADD = """
<ir_version: 8, opset_import: ["": 17]>
g (float[2,16] x, int64[2,4] idx) => (float[2,16] y) {
  h = Relu(x)
  g = GatherElements<axis = 1>(h, idx)
  y = ScatterElements<axis = 1, reduction = "add">(h, idx, g)
}"""


def test_an_error_without_a_node_is_placed_by_its_importer(rtx, tmp_path):
    model = onnx.parser.parse_model(SCATTER_ADD)
    model.graph.node[2].name = "scatter_add"
    onnx.save(model, tmp_path / "m.onnx")
    [issue] = parse_model(tmp_path / "m.onnx", rtx).issues
    assert (issue.node_index, issue.node_name, issue.op_type) == (2, "scatter_add", "ScatterElements"), issue
    assert "reduction" in issue.message


NESTED = """
<ir_version: 8, opset_import: ["": 17]>
g (float[2,16] x, int64[2,4] idx, bool c) => (float[2,16] y, float[2,16] z) {
  h = Relu(x)
  g = GatherElements<axis = 1>(h, idx)
  y = ScatterElements<axis = 1, reduction = "add">(h, idx, g)
  z = If(c) <then_branch = t () => (float[2,16] a) { a = ScatterElements<axis = 1, reduction = "add">(h, idx, g) },
             else_branch = e () => (float[2,16] b) { b = Identity(h) }>
}"""


def test_a_second_node_of_the_op_in_a_subgraph_leaves_the_node_unnamed(rtx, tmp_path):
    # Which of the two failed is unknown: naming the main graph's one could send the user to the wrong node.
    model = onnx.parser.parse_model(NESTED)
    model.graph.node[2].name = "scatter_add"
    onnx.save(model, tmp_path / "m.onnx")
    issues = parse_model(tmp_path / "m.onnx", rtx).issues
    assert any(issue.op_type == "ScatterElements" and issue.node_index == -1 for issue in issues), issues
