"""The TensorRT ONNX-parser op table and the node check built on it."""

import datetime

import numpy as np
import onnx
import pytest

from onnx2trt_check.context import weightless
from onnx2trt_check.trt_ops import OpFinding, load_op_table, unsupported_nodes

HEADER = '<ir_version: 10, opset_import: ["" : 17]>'


def parse(body: str, header: str = HEADER) -> onnx.ModelProto:
    return onnx.parser.parse_model(header + "\n" + body)


SUPPORTED_ONLY = parse(
    """
    g (float[1, 2, 4, 4] x) => (float[1, 32] y) {
        w = Constant <value = float[2, 2, 1, 1] {1, 0, 0, 1}> ()
        c = Conv (x, w)
        r = Relu (c)
        s = Add (r, x)
        shape = Constant <value = int64[2] {1, 32}> ()
        y = Reshape (s, shape)
    }
    """
)


def test_table_loads_with_its_source():
    source = load_op_table().source
    assert source["repository"] == "onnx/onnx-tensorrt"
    assert source["path"] == "docs/operators.md"
    assert str(source["tensorrt_version"]).startswith("10.")
    datetime.date.fromisoformat(source["transcribed"])


@pytest.mark.parametrize(
    ("op", "supported", "fragment"),
    [
        # Rows as printed in operators.md for TensorRT 10.15 (checked by hand against the doc).
        ("Unique", False, ""),
        ("DFT", False, ""),
        ("Conv", True, ""),
        ("LayerNormalization", True, "Only the first output `Y` is supported."),
        ("TopK", True, "`sorted` must be 1."),
        ("DequantizeLinear", True, "`x_zero_point` must be zero"),
    ],
)
def test_table_rows_match_the_doc(op, supported, fragment):
    entry = load_op_table().lookup(op)
    assert entry.supported is supported
    assert fragment in entry.restrictions


def test_table_types_column_is_transcribed():
    assert load_op_table().lookup("Gelu").types == ("FP32", "FP16", "BF16", "INT8", "INT32", "INT64")


def test_supported_only_model_has_no_findings():
    assert unsupported_nodes(SUPPORTED_ONLY) == []


def test_unsupported_op_is_named_with_its_node():
    model = parse(
        """
        g (float[4] x) => (float[4] y, float[N] u) {
            y = Relu (x)
            u = Unique <sorted = 1> (x)
        }
        """
    )
    model.graph.node[1].name = "dedupe"
    [finding] = unsupported_nodes(model)
    assert (finding.node_name, finding.op_type, finding.domain, finding.kind) == ("dedupe", "Unique", "", "unsupported")
    assert "not supported by TensorRT 10." in finding.reason
    assert "onnx-tensorrt docs/operators.md" in finding.reason
    assert finding.severity == "error"


@pytest.mark.parametrize("domain", ["com.microsoft", "ai.onnx.ml", "my.plugins"])
def test_custom_domain_op_is_flagged(domain):
    model = parse(
        f"""
        g (float[4] x) => (float[4] y) {{ y = {domain}.FancyOp (x) }}
        """,
        header=f'<ir_version: 10, opset_import: ["" : 17, "{domain}" : 1]>',
    )
    [finding] = unsupported_nodes(model)
    assert (finding.kind, finding.domain, finding.op_type) == ("custom_domain", domain, "FancyOp")
    assert "plugin" in finding.reason


def test_onnx_op_missing_from_the_table_is_unknown_not_passed():
    # CumProd (opset 25) is a standard op that the TensorRT 10.15 table does not list.
    model = parse(
        "g (float[4] x) => (float[4] y) { ax = Constant <value = int64 {0}> () y = CumProd (x, ax) }", header='<ir_version: 11, opset_import: ["" : 25]>'
    )
    [finding] = unsupported_nodes(model)
    assert finding.kind == "unknown"
    assert "unknown to the table" in finding.reason


def test_ops_inside_subgraphs_are_checked():
    model = parse(
        """
        g (bool c, float[4] x) => (float[N] y) {
            y = If (c) <
                then_branch = t () => (float[N] a) { a = Unique (x) },
                else_branch = e () => (float[N] b) { b = Identity (x) }
            >
        }
        """
    )
    assert [f.op_type for f in unsupported_nodes(model)] == ["Unique"]


def test_local_function_call_is_expanded_not_flagged():
    model = parse(
        """
        g (float[4] x) => (float[4] y) { y = local.Twice (x) }
        <domain: "local", opset_import: ["" : 17]>
        Twice (a) => (b) { b = Add (a, a) }
        """,
        header='<ir_version: 10, opset_import: ["" : 17, "local" : 1]>',
    )
    assert unsupported_nodes(model) == []


def test_unsupported_op_inside_local_function_is_found():
    model = parse(
        """
        g (float[4] x) => (float[4] y) { y = local.F (x) }
        <domain: "local", opset_import: ["" : 17]>
        F (a) => (b) { b = BitShift (a, a) }
        """,
        header='<ir_version: 10, opset_import: ["" : 17, "local" : 1]>',
    )
    assert [(f.op_type, f.kind) for f in unsupported_nodes(model)] == [("BitShift", "unsupported")]


def test_restriction_notes_only_on_request():
    model = parse(
        """
        g (float[1, 8, 4] x) => (float[1, 1, 4] y) {
            axes = Constant <value = int64[1] {1}> ()
            y = ReduceMean (x, axes)
        }
        """,
        header='<ir_version: 10, opset_import: ["" : 18]>',
    )
    assert unsupported_nodes(model) == []
    notes = unsupported_nodes(model, include_notes=True)
    # Constant has a restriction row too (sparse_value / value_string attributes).
    assert [(n.op_type, n.kind, n.severity) for n in notes] == [
        ("Constant", "restriction", "note"),
        ("ReduceMean", "restriction", "note"),
    ]
    assert "`axes` must be an initializer" in notes[1].reason


def test_input_type_outside_the_types_column_is_a_note():
    # MatMul lists FP32, FP16, BF16 only; ONNX allows int32 MatMul.
    model = parse("g (int32[2, 2] a, int32[2, 2] b) => (int32[2, 2] y) { y = MatMul (a, b) }")
    [note] = unsupported_nodes(model, include_notes=True)
    assert (note.kind, note.op_type) == ("dtype", "MatMul")
    assert "INT32" in note.reason
    float_model = parse("g (float[2, 2] a, float[2, 2] b) => (float[2, 2] y) { y = MatMul (a, b) }")
    assert unsupported_nodes(float_model, include_notes=True) == []


def test_input_model_is_not_mutated():
    before = SUPPORTED_ONLY.SerializeToString()
    unsupported_nodes(SUPPORTED_ONLY, include_notes=True)
    assert SUPPORTED_ONLY.SerializeToString() == before


def test_finding_is_a_value():
    finding = OpFinding("n", "Unique", "", "unsupported", "why")
    assert finding == OpFinding("n", "Unique", "", "unsupported", "why")
    assert finding.severity == "error"


@pytest.mark.parametrize("op", ["Squeeze", "Unsqueeze"])
def test_squeeze_axes_from_a_graph_input_are_an_error_and_constant_axes_pass(op):
    """TensorRT-RTX 1.7.1.116 rejects "<op> axis is not a constant" (bench_trt_differential)."""
    shapes = {"Squeeze": ("float[1, 4] x", "float[4] y"), "Unsqueeze": ("float[4] x", "float[1, 4] y")}
    x, y = shapes[op]
    runtime = parse(f"g ({x}, int64[1] axes) => ({y}) {{ y = {op} (x, axes) }}", header='<ir_version: 10, opset_import: ["" : 17]>')
    [finding] = unsupported_nodes(runtime)
    assert finding.severity == "error" and "axes (input 1) comes from graph input 'axes'" in finding.reason
    constant = parse(f"g ({x}) => ({y}) {{ axes = Constant <value = int64[1] {{0}}> () y = {op} (x, axes) }}",
                     header='<ir_version: 10, opset_import: ["" : 17]>')
    assert unsupported_nodes(constant) == []


def test_a_large_per_channel_zero_point_is_a_constant_after_weightless_inference():
    """Shape inference runs on the model without its weights above 1 kB (context.weightless), which
    turns them into graph inputs: a 2,048-channel int8 zero point was 'from a graph input'."""
    channels = 2048
    weight = onnx.numpy_helper.from_array(np.ones((channels, 4), np.int8), "w")
    scale = onnx.numpy_helper.from_array(np.full(channels, 0.1, np.float32), "s")
    zero = onnx.numpy_helper.from_array(np.zeros(channels, np.int8), "z")
    nodes = [onnx.helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wd"], axis=0),
             onnx.helper.make_node("MatMul", ["x", "wd"], ["y"])]
    graph = onnx.helper.make_graph(nodes, "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])], [weight, scale, zero])
    graph.node[1].input[1] = "wt"
    graph.node.insert(1, onnx.helper.make_node("Transpose", ["wd"], ["wt"]))
    graph.output[0].type.tensor_type.shape.dim[1].dim_value = channels
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)])
    assert unsupported_nodes(model) == []
    assert unsupported_nodes(model, inferred=onnx.shape_inference.infer_shapes(weightless(model))) == []
