"""hunt20: the fp16 artifact's data-driven fallback measures main-graph tensors only, and the
cpu-fp16-emu target rounds main-graph tensors only. A Loop body that scales a Relu by 3e4 (1.6e5:
beyond fp16) and back was converted to fp16 whole, with no fallback, and cpu-fp16-emu passed it at
71 dB: a TensorRT fp16 engine of that artifact turns the body's activation into inf. With feeds, a
node with a body now stays fp32, body included (reason `subgraph`): nothing in it was measured."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.precision.fp16 import convert_to_fp16
from onnx2trt_check.runtime import run_model


def loop_model() -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Conv", ["x_in", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Mul", ["r", "k"], ["big"]), helper.make_node("Div", ["big", "k"], ["back"]),
         helper.make_node("Add", ["back", "x_in"], ["x_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [1, 4, 8, 8])],
    )
    rng = np.random.default_rng(11)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["x1"]), helper.make_node("Loop", ["n", "t", "x1"], ["y"], body=body, name="loop")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array((rng.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32), "w"),
         numpy_helper.from_array(np.array(30000.0, np.float32), "k"), numpy_helper.from_array(np.array(2, np.int64), "n"),
         numpy_helper.from_array(np.array(True), "t")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def body_types(model: onnx.ModelProto) -> set[int]:
    loop = next(node for node in model.graph.node if node.op_type == "Loop")
    body = loop.attribute[0].g
    return {value.type.tensor_type.elem_type for value in [*body.input, *body.output]} - {TensorProto.INT64, TensorProto.BOOL}


def test_a_loop_stays_fp32_with_its_body_when_the_fallback_is_data_driven():
    model = loop_model()
    feeds = [{"x": np.random.default_rng(i).standard_normal((1, 4, 8, 8)).astype(np.float32)} for i in range(3)]
    result = convert_to_fp16(model, feeds)
    onnx.checker.check_model(result.model, full_check=True)
    assert {b.name: [r.kind for r in b.reasons] for b in result.report.blocked} == {"loop": ["subgraph"]}
    assert body_types(result.model) == {TensorProto.FLOAT}
    assert result.report.converted_ops == {"Relu": 1}
    for expected, got in zip(run_model(model, feeds), run_model(result.model, feeds)):
        np.testing.assert_allclose(got["y"], expected["y"], atol=0.01, rtol=0.01)


def test_without_feeds_the_body_is_converted_as_before():  # --fp16-no-fallback: TensorRT 10's fp16 flag keeps nothing fp32
    assert body_types(convert_to_fp16(loop_model(), block_ops=()).model) == {TensorProto.FLOAT16}


def if_model() -> onnx.ModelProto:
    then_branch = helper.make_graph([helper.make_node("Relu", ["c"], ["t"])], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph([helper.make_node("Neg", ["c"], ["e"])], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0), helper.make_node("Greater", ["m", "zero"], ["cond"]),
         helper.make_node("If", ["cond"], ["z"], then_branch=then_branch, else_branch=else_branch, name="if"),
         helper.make_node("Add", ["z", "c"], ["y"], name="add")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array((np.random.default_rng(3).standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32), "w"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_a_branch_reading_an_activation_from_outside_reads_it_in_fp32():
    # the converter renames a blocked producer's output and gives its name to a Cast to fp16: the fp32
    # branch read fp16 by name, and ONNX Runtime refused the artifact ("bound to different types")
    model = if_model()
    feeds = [{"x": (np.random.default_rng(i).standard_normal((1, 4, 8, 8)) + (-2) ** i).astype(np.float32)} for i in range(4)]
    result = convert_to_fp16(model, feeds)
    kept = {b.name: [str(r) for r in b.reasons] for b in result.report.blocked}
    assert kept == {"conv": ["subgraph of 'c'"], "if": ["subgraph"]}
    for expected, got in zip(run_model(model, feeds), run_model(result.model, feeds)):
        np.testing.assert_allclose(got["y"], expected["y"], atol=0.01, rtol=0.01)


def test_a_branch_blocked_by_name_without_feeds_reads_its_outside_activation_in_fp32():
    # --fp16-no-fallback --fp16-block if (what bisect --sensitivity suggests): no data, the If blocked by name
    model = if_model()
    result = convert_to_fp16(model, block_ops=(), block_nodes=["if"])
    assert {b.name: [str(r) for r in b.reasons] for b in result.report.blocked} == {"conv": ["subgraph of 'c'"], "if": ["user"]}
    feeds = [{"x": (np.random.default_rng(i).standard_normal((1, 4, 8, 8)) + (-2) ** i).astype(np.float32)} for i in range(2)]
    for expected, got in zip(run_model(model, feeds), run_model(result.model, feeds)):
        np.testing.assert_allclose(got["y"], expected["y"], atol=0.01, rtol=0.01)
