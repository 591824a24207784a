"""The float counterpart of a QDQ model: the float function its Q/DQ nodes approximate.

It is the reference a QDQ model is compared against (docs/design.md, "Precision is an ONNX
artifact"): every activation Q -> DQ pair is removed (the DQ's readers read the Q's input), and
every weight DQ of a constant (int8 initializer -> DQ, or float initializer -> Q -> DQ) becomes a
float initializer holding the dequantized weight, so the float model computes with exactly the
weights the QDQ model dequantizes.

Left in place, because they have no float meaning to restore: a DQ of a computed int8 tensor that no
Q produced (e.g. an int8 graph input), block-quantized DQ (opset 21 `block_size`), and DQ of float8
constants. Only the main graph is rewritten.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.quant import qdq_math
from onnx2trt_check.quant import qdq_rules as qr
from onnx2trt_check.transforms import graph_utils as gu

_INTEGER_TYPES = (ir.DataType.INT8, ir.DataType.UINT8, ir.DataType.INT32, ir.DataType.INT16, ir.DataType.UINT16)


def has_qdq(model: onnx.ModelProto) -> bool:
    """Whether the main graph holds any QuantizeLinear or DequantizeLinear node."""
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)


def quantizes_activations(model: onnx.ModelProto) -> bool:
    """Whether a QuantizeLinear of the main graph reads a computed tensor (not a weight): without
    one the model quantizes weights only, and its float counterpart computes the same function."""
    graph = model.graph
    constants = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return any(node.op_type == "QuantizeLinear" and node.input[0] not in constants for node in graph.node)


def quantized_types(model: onnx.ModelProto) -> list[str]:
    """The element types the main graph's Q/DQ nodes quantize to (sorted ONNX type names): what a
    QuantizeLinear writes (its output_dtype, else its zero point's type, else UINT8, as the operator
    defines) and what a DequantizeLinear reads when that is a constant."""
    graph = model.graph
    constant_types = {t.name: t.data_type for t in graph.initializer}
    constant_types |= {n.output[0]: a.t.data_type for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"}
    if any(n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] and n.input[2] not in constant_types for n in graph.node):
        constant_types = _inferred_types(model) | constant_types  # a computed zero point (an Identity or Cast of one)
    found = set()
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            found.add(_quantize_output_type(node, constant_types))
        elif node.op_type == "DequantizeLinear" and node.input[0] in constant_types:
            found.add(constant_types[node.input[0]])
    return sorted(onnx.TensorProto.DataType.Name(t) for t in found if t)


def _inferred_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element types of the main graph's values by onnx's type inference; {} where it fails."""
    try:
        values = onnx.shape_inference.infer_shapes(model).graph.value_info
    except Exception:  # noqa: BLE001 - a model onnx cannot infer (over 2 GB, a custom op): the type stays unknown
        return {}
    return {v.name: v.type.tensor_type.elem_type for v in values if v.type.HasField("tensor_type")}


def _quantize_output_type(node: onnx.NodeProto, types: dict[str, int]) -> int:
    output_dtype = next((a.i for a in node.attribute if a.name == "output_dtype"), 0)
    if output_dtype:
        return output_dtype
    if len(node.input) > 2 and node.input[2]:
        return types.get(node.input[2], 0)  # 0: a zero point whose type not even inference knows
    return onnx.TensorProto.UINT8


def non_int8_types(model: onnx.ModelProto) -> list[str]:
    """The types of `quantized_types` that are not an int8 deployment's (INT32 is its bias type):
    the int8 targets run a model's own Q/DQ as written, so float8, int4 or 16-bit Q/DQ must not
    read as an int8 figure."""
    return [t for t in quantized_types(model) if t not in ("INT8", "UINT8", "INT32")]


def float_counterpart(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with activation Q/DQ pairs removed and weights dequantized; `model` is not mutated."""
    ir_model = gu.to_ir(model)
    graph = ir_model.graph
    released: list[ir.Value] = []
    for dq in [node for node in graph if qr.is_dq(node)]:
        replacement = _float_source(graph, dq)
        if replacement is not None:
            released += dq.inputs
            name = dq.outputs[0].name
            renamed = _is_clamp(replacement) and not dq.outputs[0].is_graph_output()  # a graph output keeps its name on an Identity
            _bypass(graph, dq, replacement)
            if renamed:
                # The clamped tensor takes the name of the DQ output it stands for, so bisect's
                # layerwise matching compares the pair's output with it, not with the raw input
                # before the clamp (zoo16: SQNR 2.65 dB, a false first divergence).
                replacement.name = name
    _remove_unused_quantize(graph)
    gu.drop_unused_initializers(graph, released)
    return gu.to_onnx(ir_model)


def _float_source(graph: ir.Graph, dq: ir.Node) -> ir.Value | None:
    """What the DQ's readers read in the float model: the Q's input, a new dequantized weight, or
    None when the DQ stays."""
    source = qr.producer(dq.inputs[0])
    if qr.is_q(source):
        return _clamped_at_zero(graph, dq, source) if clamps_at_zero(source) else source.inputs[0]
    weight = dequantized_weight(dq)
    if weight is None:
        return None
    return gu.add_initializer(graph, weight, name_hint=f"{dq.inputs[0].name}_dequantized")


def clamps_at_zero(q: ir.Node) -> bool:
    """Whether the Q's zero point is its type's minimum (uint8 with zero point 0, ONNX's default):
    it then clamps negatives to 0, the Relu ONNX Runtime's QDQ quantizer removes in front of it
    (onnxruntime.quantization's QDQRemovableActivation), so the float function keeps that Relu."""
    zero_point = qr.zero_point_array(q)
    if qr.input_at(q, 2) is not None and zero_point is None:
        return False  # a computed zero point: nothing known
    dtype = np.dtype(np.uint8) if zero_point is None else zero_point.dtype
    output_dtype = gu.attr(q, "output_dtype", 0)
    if output_dtype:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(output_dtype))
    if dtype.kind not in "iu":
        return False
    return bool(np.all((zero_point if zero_point is not None else 0) == np.iinfo(dtype).min))


def _clamped_at_zero(graph: ir.Graph, dq: ir.Node, q: ir.Node) -> ir.Value:
    relu = ir.node("Relu", [q.inputs[0]], name=f"{q.name or dq.name}_clamp_at_zero")
    graph.insert_before(dq, relu)
    return relu.outputs[0]


def _is_clamp(value: ir.Value) -> bool:
    producer = value.producer()
    return producer is not None and producer.op_type == "Relu" and (producer.name or "").endswith("_clamp_at_zero")


def dequantized_weight(dq: ir.Node) -> np.ndarray | None:
    """DequantizeLinear of a constant integer tensor evaluated in numpy (ONNX arithmetic, in the
    scale's dtype), else None."""
    quantized = gu.constant_array(dq.inputs[0])
    scale = qr.scale_array(dq)
    has_zero_point = qr.input_at(dq, 2) is not None
    zero_point = qr.zero_point_array(dq)
    if quantized is None or scale is None or (has_zero_point and zero_point is None):
        return None
    if gu.attr(dq, "block_size", 0) or dq.inputs[0].dtype not in _INTEGER_TYPES:
        return None
    axis = gu.attr(dq, "axis", 1) if scale.size > 1 else None
    zero_point = np.zeros_like(scale, dtype=np.int32) if zero_point is None else zero_point
    return qdq_math.dequantize(quantized, scale, zero_point, axis=axis).astype(scale.dtype)


def _bypass(graph: ir.Graph, dq: ir.Node, replacement: ir.Value) -> None:
    """Readers of the DQ output read `replacement`; a graph output keeps its name via an Identity."""
    output = dq.outputs[0]
    if output.is_graph_output():
        identity = ir.node("Identity", [replacement], name=dq.name or None)
        gu.replace_with_nodes(graph, [dq], [identity], output, identity.outputs[0])
        return
    output.replace_all_uses_with(replacement)
    graph.remove(dq, safe=True)


def _remove_unused_quantize(graph: ir.Graph) -> None:
    """Drop Q nodes nobody reads any more, then the initializers only they read."""
    for q in [node for node in graph if qr.is_q(node)]:
        if not q.outputs[0].uses() and not q.outputs[0].is_graph_output():
            old_inputs = list(q.inputs)
            graph.remove(q, safe=True)
            gu.drop_unused_initializers(graph, old_inputs)


# ONNX Runtime's other quantized forms: operator (QOperator) and dynamic quantization. Their integer
# ops compute on int8 without a float function beside them, and TensorRT's parser takes none of them
# (it reads int8 only as Q/DQ around float ops).
_INTEGER_OPS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QGemm", "QAttention", "DynamicQuantizeMatMul",
                "MatMulIntegerToFloat", "MatMulNBits", "DynamicQuantizeLSTM", "QEmbedLayerNormalization"}


def integer_ops(model: onnx.ModelProto) -> dict[str, int]:
    """The QOperator / dynamic-quantization ops of the main graph, with their counts (QLinearConv,
    QLinearMatMul, com.microsoft QLinear*/QGemm, MatMulInteger, ConvInteger, DynamicQuantizeLinear...)."""
    found: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in _INTEGER_OPS or node.op_type.startswith(("QLinear", "QOrdered")):
            found[node.op_type] = found.get(node.op_type, 0) + 1
    return found


def integer_ops_reason(model: onnx.ModelProto) -> str | None:
    """Why the model is no int8 deployment TensorRT can take, or None when it holds no integer op."""
    ops = integer_ops(model)
    if not ops:
        return None
    listed = ", ".join(f"{op} x{count}" for op, count in sorted(ops.items()))
    return (f"the model is quantized in ONNX Runtime's operator/dynamic form ({listed}): TensorRT parses int8 only as "
            "QuantizeLinear/DequantizeLinear around float ops, and these integer ops have no float counterpart to judge "
            "them by; quantize the float model as QDQ (onnxruntime quantize_static(quant_format=QuantFormat.QDQ), "
            "modelopt, or `onnx2trt-check quantize`)")


def float_outputs(model: onnx.ModelProto) -> list[str]:
    """The graph outputs no QuantizeLinear/DequantizeLinear or integer op reaches (through the main
    graph, or a subgraph reading an outer tensor): they are computed in float whatever the rest of
    the model quantizes (zoo13: one Q/DQ'd pooler weight made every output of a BERT an int8 one)."""
    def quantizing(node: onnx.NodeProto) -> bool:
        return node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.op_type in _INTEGER_OPS \
            or node.op_type.startswith(("QLinear", "QOrdered")) or any(map(quantizing, _subgraph_nodes(node)))

    reached: set[str] = set()
    pending = list(model.graph.node)
    changed = True
    while changed:  # a fixpoint, so that a graph out of topological order is covered too
        changed, left = False, []
        for node in pending:
            reads = set(node.input) | {name for inner in _subgraph_nodes(node) for name in inner.input}
            if quantizing(node) or reads & reached:
                reached.update(o for o in node.output if o)
                changed = True
            else:
                left.append(node)
        pending = left
    return [output.name for output in model.graph.output if output.name not in reached]


def _subgraph_nodes(node: onnx.NodeProto) -> list[onnx.NodeProto]:
    graphs = [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH] + \
        [g for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]
    found = []
    for graph in graphs:
        for inner in graph.node:
            found.extend([inner, *_subgraph_nodes(inner)])
    return found
