"""TensorRT's Q/DQ placement rules for explicit quantization, as a validator.

`validate_qdq(model)` checks a QDQ model from any source (this project's quantizer, onnxruntime's
quantize_static, TensorRT Model Optimizer, pytorch-quantization QAT exports) and returns one
`Finding` per violation. Severity "error": TensorRT rejects the model. Severity "warning": it builds,
but runs slower or less accurately than it could.

Severities are held against the real builder (tests/qdq_rule_models.py, benchmarks/bench_trt_differential.py):
every "error" rule has a model TensorRT-RTX 1.7.1.116 rejects (or crashes on); a rule whose model
it builds is a "warning" whose text says so and where TensorRT 10/11 may differ.

Per-channel weight axis (QDQ003): int8 kernels accumulate in int32 and apply the weight scale
afterwards, which only works when the scale is constant along the reduced dimension, i.e. when it
runs along the output-channel axis of the weight: 0 for Conv ([C_out, C_in/g, k...]), 1 for
ConvTranspose ([C_in, C_out/g, k...]), the N axis for Gemm (0 with transB=1, else 1) and for MatMul
(the last axis of B). Another axis is a warning: TensorRT-RTX builds it (not as an int8 kernel).

Only the main graph is checked (If/Loop bodies are not). The matchers below (`is_q`,
`per_tensor_scale`, `conv_add_qdq`, ...) are shared with qdq_optimize and float_counterpart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.transforms import graph_utils as gu

# onnxruntime.quantization writes com.microsoft Q/DQ for 16-bit types; they mean the same.
_QDQ_DOMAINS = ("", "ai.onnx", "com.microsoft")
MATMUL_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
PASSTHROUGH_OPS = ("MaxPool", "Reshape", "Transpose", "Flatten")
# What TensorRT's explicit quantization accepts for Q/DQ (int4 for weight-only quantization).
TRT_QUANT_TYPES = (ir.DataType.INT8, ir.DataType.FLOAT8E4M3FN, ir.DataType.INT4)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One violated rule: a stable rule id, "error" or "warning", the nodes, what is wrong, the fix."""

    rule: str
    severity: str
    nodes: tuple[str, ...]
    message: str
    fix: str


# --- reading Q/DQ nodes ---------------------------------------------------------------------------


def is_q(node: ir.Node | None) -> bool:
    return node is not None and node.domain in _QDQ_DOMAINS and node.op_type == "QuantizeLinear"


def is_dq(node: ir.Node | None) -> bool:
    return node is not None and node.domain in _QDQ_DOMAINS and node.op_type == "DequantizeLinear"


def producer(value: ir.Value | None) -> ir.Node | None:
    return None if value is None else value.producer()


def input_at(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if len(node.inputs) > index else None


_CONST_KEY = "onnx2trt_check.qdq_rules.const"


def const(value: ir.Value | None) -> np.ndarray | None:
    """gu.constant_array memoized in the value's (never serialized) meta: every rule reads the same
    scales, and the reads were half the validator's time. Rewrites add new scale initializers
    rather than editing one, so a memoized array never goes stale."""
    if value is None:
        return None
    if _CONST_KEY not in value.meta:
        value.meta[_CONST_KEY] = gu.constant_array(value)
    return value.meta[_CONST_KEY]


def scale_array(node: ir.Node) -> np.ndarray | None:
    """The constant scale of a Q/DQ node, else None."""
    return const(input_at(node, 1))


def zero_point_array(node: ir.Node) -> np.ndarray | None:
    """The constant zero point of a Q/DQ node; None when absent or not constant."""
    return const(input_at(node, 2))


def per_tensor_scale(node: ir.Node) -> float | None:
    """The scale of a per-tensor Q/DQ with a zero (or absent) zero point, as a float, else None."""
    scale = scale_array(node)
    zero_point = zero_point_array(node)
    if scale is None or scale.size != 1 or (zero_point is not None and np.any(zero_point != 0)):
        return None
    if input_at(node, 2) is not None and zero_point is None:
        return None  # a zero point that is computed at run time
    return float(scale.reshape(()))


def quant_dtype(node: ir.Node) -> ir.DataType | None:
    """The quantized type of a Q (its output) or DQ (its input), None when it cannot be told.

    A QuantizeLinear without zero point and without `output_dtype` produces uint8 (ONNX spec).
    """
    if is_dq(node):
        source = producer(node.inputs[0])
        if is_q(source):
            return quant_dtype(source)
        if node.inputs[0] is not None and node.inputs[0].dtype is not None:
            return node.inputs[0].dtype
        data = const(node.inputs[0])  # a Constant node's output carries no dtype before shape inference
        if data is not None:
            return ir.DataType.from_numpy(data.dtype)
    zero_point = input_at(node, 2)
    if zero_point is not None and zero_point.dtype is not None:
        return zero_point.dtype
    array = const(zero_point)  # a Constant node's output carries no dtype before shape inference
    if array is not None:
        return ir.DataType.from_numpy(array.dtype)
    output_dtype = gu.attr(node, "output_dtype", 0)
    if output_dtype:
        return ir.DataType(output_dtype)
    return ir.DataType.UINT8 if is_q(node) else None


def weight_array(node: ir.Node) -> np.ndarray | None:
    """The constant a weight DQ reads: an int8 initializer, or the float constant behind its Q
    (float weight -> Q -> DQ); None when `node` is not such a DQ."""
    if not is_dq(node):
        return None
    source = producer(node.inputs[0])
    return gu.constant_array(source.inputs[0] if is_q(source) else node.inputs[0])


def weight_rank(node: ir.Node) -> int | None:
    """The rank of the constant `weight_array` would read, without reading its data (a copy of
    every weight was most of check_weight_axis's time); None when `node` is not such a DQ."""
    if not is_dq(node):
        return None
    source = producer(node.inputs[0])
    value = source.inputs[0] if is_q(source) else node.inputs[0]
    if value is None or value.is_graph_input():
        return None
    try:
        tensor = gu.const_tensor(value)
    except ValueError:  # a malformed Constant node, as gu.constant_array treats it
        return None
    return None if tensor is None else len(tensor.shape)


def dq_of(value: ir.Value | None) -> ir.Node | None:
    """The DQ producing `value`, else None."""
    node = producer(value)
    return node if is_dq(node) else None


def conv_add_qdq(graph: ir.Graph) -> Iterator[tuple[ir.Node, ir.Node, ir.Node, ir.Node, int]]:
    """Every (conv, q, dq, add, index): Conv -> Q -> DQ -> input `index` of an Add whose other input
    is a residual (see `_is_residual`). TensorRT fuses Conv+Add only when the Conv output is not quantized."""
    for add in gu.live_nodes(graph, "Add"):
        if len(add.inputs) != 2:
            continue
        for index, value in enumerate(add.inputs):
            other = add.inputs[1 - index]
            dq = dq_of(value)
            q = producer(dq.inputs[0]) if dq else None
            conv = producer(q.inputs[0]) if is_q(q) else None
            if gu.is_op(conv, "Conv") and _is_residual(other, value):
                yield conv, q, dq, add, index


def _is_residual(other: ir.Value, value: ir.Value) -> bool:
    """Whether `other` can be the residual input of an Add whose input `value` is a Conv branch:
    computed, and not itself a float Conv output (that one would be the fused branch)."""
    return other is not value and gu.constant_array(other) is None and not gu.is_op(producer(other), "Conv")


def has_qdq_nodes(graph: ir.Graph) -> bool:
    return any(is_q(node) or is_dq(node) for node in graph)


def _label(*nodes: ir.Node) -> tuple[str, ...]:
    return tuple(gu.node_label(node) for node in nodes)


# --- rules: one function each ---------------------------------------------------------------------


def check_zero_point(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ001: TensorRT quantization is signed and symmetric: int8 (or fp8/int4), zero point 0.
    Errors (backed by builds that fail): a non-zero zero point, a type TensorRT has no Q/DQ for
    (int16, ...). Warning: uint8 with zero point 0, which TensorRT-RTX 1.7 builds; TensorRT 10/11
    document uint8 Q/DQ for DLA only and may reject it."""
    for node in graph:
        if not (is_q(node) or is_dq(node)):
            continue
        dtype = quant_dtype(node)
        zero_point = zero_point_array(node)
        if dtype is not None and dtype not in (ir.DataType.INT32, ir.DataType.UINT8) and dtype not in TRT_QUANT_TYPES:
            # the type first: a symmetric int16 Q/DQ is no more buildable than an asymmetric one
            yield Finding("QDQ001-zero-point", "error", _label(node), f"{node.op_type} quantizes to {dtype.name}; TensorRT takes signed int8 (or fp8/int4)",
                          "quantize with int8 and zero point 0 (onnxruntime: activation_type=QuantType.QInt8)")
        elif zero_point is not None and np.any(zero_point != 0):
            yield Finding("QDQ001-zero-point", "error", _label(node), f"{node.op_type} has a non-zero zero point ({zero_point.ravel()[0]})",
                          "quantize symmetrically (onnxruntime: extra_options ActivationSymmetric/WeightSymmetric=True)")
        elif dtype == ir.DataType.UINT8:
            yield Finding("QDQ001-zero-point", "warning", _label(node), f"{node.op_type} quantizes to UINT8 with zero point 0: TensorRT-RTX 1.7 builds it, TensorRT 10/11 may reject it (uint8 Q/DQ is documented for DLA only)",
                          "quantize with int8 and zero point 0 (onnxruntime: activation_type=QuantType.QInt8)")


def check_scale(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ002: the scale is a build-time constant, finite and > 0. Errors (backed by builds that
    fail): a scale <= 0, a scale computed from the data (TensorRT-RTX 1.7 crashes building it;
    TensorRT 10 rejects it), a scale computed from constants through a reduction (a QAT export's
    amax(|w|) / 127 as Abs -> ReduceMax -> Div of the weight: TensorRT-RTX 1.7 does not fold it,
    "CHECK(is_constant()) failed", zoo13). A scale computed from constants elementwise is folded
    (builds: no finding). Warning: an infinite or NaN scale, which TensorRT-RTX 1.7 builds (every
    value quantizes to 0 or NaN); TensorRT 10/11 may reject it."""
    for node in graph:
        if not (is_q(node) or is_dq(node)):
            continue
        scale = scale_array(node)
        if scale is None and not _from_constants(input_at(node, 1), set()):
            yield Finding("QDQ002-scale", "error", _label(node), f"{node.op_type} scale is computed from the data, not a build-time constant",
                          "store the scale as an initializer")
        elif scale is None and (reduction := _reduction(input_at(node, 1), set())) is not None:
            yield Finding("QDQ002-scale", "error", _label(node),
                          f"{node.op_type} scale is computed from constants through {reduction.op_type} '{gu.node_label(reduction)}', which "
                          "TensorRT-RTX 1.7 does not fold at build time (the build fails: CHECK(is_constant()))",
                          "fold it: `onnx2trt-check optimize` (onnxsim folds constants), or store the scale as an initializer")
        elif scale is not None and np.any(scale <= 0):
            bad = scale.ravel()[scale.ravel() <= 0][0]
            yield Finding("QDQ002-scale", "error", _label(node), f"{node.op_type} scale has a non-positive entry ({bad})",
                          "recalibrate: scale = amax / 127 with amax > 0")
        elif scale is not None and not np.all(np.isfinite(scale)):
            bad = scale.ravel()[~np.isfinite(scale.ravel())][0]
            yield Finding("QDQ002-scale", "warning", _label(node), f"{node.op_type} scale has a non-finite entry ({bad}): TensorRT-RTX 1.7 builds it, TensorRT 10/11 may reject it; the values become 0 or NaN",
                          "recalibrate: scale = amax / 127 with a finite amax > 0")


def _from_constants(value: ir.Value | None, seen: set) -> bool:
    """Computed from constants only (TensorRT folds it at build time); graph inputs are not."""
    if value is None or value.is_graph_input() or id(value) in seen:
        return False
    if const(value) is not None:
        return True
    seen.add(id(value))
    node = value.producer()
    return node is not None and all(_from_constants(v, seen) for v in node.inputs if v is not None)


def _reduction(value: ir.Value | None, seen: set) -> ir.Node | None:
    """The first Reduce* node on the way from constants to `value`, else None."""
    if value is None or const(value) is not None or id(value) in seen or (node := value.producer()) is None:
        return None
    seen.add(id(value))
    if node.op_type.startswith("Reduce"):
        return node
    return next((found for v in node.inputs if (found := _reduction(v, seen)) is not None), None)


def expected_weight_axis(consumer: ir.Node, index: int, rank: int) -> int | None:
    """The output-channel axis of the weight read at input `index` of `consumer`, else None."""
    if index != 1:
        return None
    if gu.is_op(consumer, "Conv"):
        return 0
    if gu.is_op(consumer, "ConvTranspose"):
        return 1
    if gu.is_op(consumer, "Gemm"):
        return 0 if gu.attr(consumer, "transB", 0) else 1
    return rank - 1 if gu.is_op(consumer, "MatMul") else None


def check_weight_axis(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ003: a per-channel weight DQ runs along the output-channel axis of the op reading it."""
    for dq in graph:
        rank = weight_rank(dq)
        scale = scale_array(dq) if rank is not None else None
        if scale is None or scale.size == 1:
            continue
        axis = gu.attr(dq, "axis", 1) % rank
        for use in dq.outputs[0].uses():
            expected = expected_weight_axis(use.node, use.idx, rank)
            if expected is not None and axis != expected:
                yield Finding("QDQ003-weight-axis", "warning", _label(dq, use.node),
                              f"per-channel weight scale along axis {axis}; {use.node.op_type} needs its output-channel axis {expected} for int8 kernels "
                              "(TensorRT-RTX 1.7 builds it, likely with the weight dequantized to float; TensorRT 10/11 may reject it)",
                              f"quantize the weight per channel along axis {expected}")


def check_int32_bias(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ004: no int32 DQ (a quantized bias); TensorRT takes the bias in float."""
    for dq in graph:
        if is_dq(dq) and quant_dtype(dq) == ir.DataType.INT32:
            users = [use.node for use in dq.outputs[0].uses()]
            yield Finding("QDQ004-int32-bias", "error", _label(dq, *users), "int32 DequantizeLinear (a quantized bias)",
                          "keep the bias in float (onnxruntime: extra_options QuantizeBias=False)")


def check_inputs_quantized(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ005: both the data and the weight input of Conv/ConvTranspose/Gemm/MatMul come from DQ."""
    if not has_qdq_nodes(graph):
        return
    for node in graph:
        if not gu.is_op(node, *MATMUL_OPS) or len(node.inputs) < 2:
            continue
        missing = [i for i in (0, 1) if dq_of(node.inputs[i]) is None]
        if missing:
            which = " and ".join(("data", "weight")[i] for i in missing)
            yield Finding("QDQ005-unquantized-input", "warning", _label(node), f"{node.op_type} {which} input is not quantized: it runs in higher precision",
                          f"insert Q/DQ on the {which} input, or accept float for this layer")


def check_conv_add_fusion(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ006: a Q/DQ between a Conv and the Add it should fuse with."""
    for conv, q, dq, add, _ in conv_add_qdq(graph):
        yield Finding("QDQ006-conv-add-qdq", "warning", _label(conv, q, dq, add), "Conv output is quantized before the Add: TensorRT cannot fuse Conv+Add",
                      "quantize the Add's other (residual) input instead (optimize_qdq does this)")


def check_residual_quantized(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ007: the residual input of an Add fed by a quantized Conv is itself quantized."""
    for add in gu.live_nodes(graph, "Add"):
        if len(add.inputs) != 2:
            continue
        convs = [producer(v) for v in add.inputs if gu.is_op(producer(v), "Conv") and dq_of(producer(v).inputs[0])]
        floats = [v for v in add.inputs if dq_of(v) is None and gu.constant_array(v) is None and not gu.is_op(producer(v), "Conv")]
        if len(convs) == 2 or (convs and floats):
            yield Finding("QDQ007-residual-unquantized", "warning", _label(*convs, add), "residual input of the Add is not quantized: the Add runs apart, in higher precision",
                          "insert Q/DQ on the residual input of the Add")


def check_concat_scales(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ008: the quantized inputs of a Concat share one scale (else TensorRT requantizes)."""
    for concat in gu.live_nodes(graph, "Concat"):
        dqs = [dq_of(v) for v in concat.inputs if dq_of(v) is not None]
        scales = {per_tensor_scale(dq) for dq in dqs} - {None}
        if len(scales) > 1:
            yield Finding("QDQ008-concat-scales", "warning", _label(concat, *dqs), f"Concat inputs have {len(scales)} different scales: a requantize",
                          "give every Concat input the same scale (optimize_qdq aligns them to the largest)")


def check_passthrough_scale(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ009: MaxPool/Reshape/Transpose/Flatten keep the scale of their input."""
    for node in graph:
        dq = dq_of(input_at(node, 0)) if gu.is_op(node, *PASSTHROUGH_OPS) else None
        scale_in = per_tensor_scale(dq) if dq else None
        if scale_in is None:
            continue
        for use in node.outputs[0].uses():
            scale_out = per_tensor_scale(use.node) if is_q(use.node) else None
            if scale_out is not None and not np.float32(scale_out) == np.float32(scale_in):
                yield Finding("QDQ009-passthrough-scale", "warning", _label(node, use.node), f"{node.op_type} input scale {scale_in:g} differs from output scale {scale_out:g}: a requantize",
                              "quantize the output with the input scale (optimize_qdq carries it through)")


def check_dangling_q(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ010: every QuantizeLinear feeds DequantizeLinear nodes only."""
    for q in graph:
        if not is_q(q):
            continue
        users = [use.node for use in q.outputs[0].uses()]
        if not users or q.outputs[0].is_graph_output() or not all(is_dq(user) for user in users):
            yield Finding("QDQ010-dangling-q", "warning", _label(q, *users),
                          "QuantizeLinear output is not (only) read by DequantizeLinear (TensorRT-RTX 1.7 builds it, with an int8 tensor outside Q/DQ; TensorRT 10/11 may reject it)",
                          "pair every QuantizeLinear with a DequantizeLinear, or remove it")


def check_graph_outputs(graph: ir.Graph) -> Iterator[Finding]:
    """QDQ011: graph outputs are not produced by Q/DQ (TensorRT keeps the last layer in int8 for nothing)."""
    for output in graph.outputs:
        node = producer(output)
        if is_q(node) or is_dq(node):
            yield Finding("QDQ011-output-qdq", "warning", _label(node), f"graph output '{output.name}' is produced by {node.op_type}",
                          "remove the Q/DQ on the graph output; let the last layer output float")


RULES = (
    check_zero_point,
    check_scale,
    check_weight_axis,
    check_int32_bias,
    check_inputs_quantized,
    check_conv_add_fusion,
    check_residual_quantized,
    check_concat_scales,
    check_passthrough_scale,
    check_dangling_q,
    check_graph_outputs,
)


def validate_qdq(model: onnx.ModelProto, *, ir_model: ir.Model | None = None) -> list[Finding]:
    """Every Finding of every rule in RULES, in registry order. `model` is not mutated.

    `ir_model` is `ir.from_proto(model)` when the caller already has it (converting is a third of
    the time on a ResNet-50), e.g. to hand it to optimize_qdq next; it is only read here. Defaults
    to converting `model`."""
    graph = (ir.from_proto(model) if ir_model is None else ir_model).graph  # read-only: no copy needed
    return [finding for rule in RULES for finding in rule(graph)]


def format_findings(findings: list[Finding]) -> str:
    """Findings for humans: one block per finding, then a count line."""
    if not findings:
        return "Q/DQ placement: no problems found"
    lines = []
    for f in findings:
        lines.append(f"{f.severity.upper():7} {f.rule} at {', '.join(f.nodes)}: {f.message}")
        lines.append(f"        fix: {f.fix}")
    errors = sum(f.severity == "error" for f in findings)
    lines.append(f"Q/DQ placement: {errors} error(s) (TensorRT rejects), {len(findings) - errors} warning(s) (slower or less accurate)")
    return "\n".join(lines)
