"""QDQ insertion by TensorRT's explicit-quantization placement rules.

TensorRT fuses a DequantizeLinear into the layer that consumes it and a QuantizeLinear into the
layer that produces its input, so Q/DQ go on the INPUTS of the int8 layers, never on their outputs:
* Conv / ConvTranspose / Gemm / MatMul: the activation input gets a per-tensor Q->DQ pair
  (symmetric int8, zero point 0); a constant weight becomes an int8 initializer + DequantizeLinear,
  per output channel: axis 0 for Conv and Gemm(transB=1), axis 1 for ConvTranspose (weights are
  C_in x C_out/group x k) and Gemm(transB=0), the last axis for MatMul (B is K x N). A non-constant
  second input (activation x activation MatMul) is quantized like an activation. Bias stays float.
* Add with a Conv input: the other (residual) input gets a Q->DQ pair, so TensorRT can fuse
  Conv+Add with the residual read in int8.

Planning (`plan_qdq`) and rewriting (`insert_qdq`) are separate so calibration can run between them
on exactly the tensors the plan quantizes. Graph edits go through onnx-ir; the input is not mutated.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes

from onnx2trt_check.errors import ConfigError, ModelError
from onnx2trt_check.quant.qdq_math import (
    per_channel_amax,
    per_tensor_amax,
    quantize,
    symmetric_scale,
)
from onnx2trt_check.transforms.base import Skip
from onnx2trt_check.transforms.graph_utils import node_label

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Compute-heavy ops no Q/DQ placement rule covers: TensorRT runs them in float inside an int8 engine
# (explicit quantization computes in int8 only where Q/DQ say so). Recorded as skips, so a report
# of "1 activation quantized" on an LSTM model says why the rest stayed float.
FLOAT_ONLY_OPS = ("LSTM", "GRU", "RNN", "Einsum")
CONTROL_FLOW_OPS = ("If", "Loop", "Scan")
CONV_OPS = ("Conv", "ConvTranspose")
# Per-channel DequantizeLinear (the `axis` attribute) exists from opset 13.
MIN_OPSET = 13


@dataclasses.dataclass(frozen=True)
class QuantTarget:
    """One input of one node to quantize. `node` is the node's index in graph order; `axis` is the
    per-channel axis of a weight (None: per tensor)."""

    tensor: str
    kind: str  # "activation" | "weight"
    node: int
    input_index: int
    axis: int | None = None


@dataclasses.dataclass
class QdqPlan:
    targets: list[QuantTarget] = dataclasses.field(default_factory=list)
    skips: list[Skip] = dataclasses.field(default_factory=list)

    @property
    def activations(self) -> list[str]:
        """The activation tensors to calibrate, each once, in graph order."""
        return list(dict.fromkeys(t.tensor for t in self.targets if t.kind == "activation"))


@dataclasses.dataclass(frozen=True)
class QuantizedTensor:
    """A tensor that got Q/DQ: its amax and scale (tuples when per channel)."""

    name: str
    kind: str
    amax: float | tuple[float, ...]
    scale: float | tuple[float, ...]
    axis: int | None = None


# ---------------------------------------------------------------- planning


def excluded_by(label: str, exclude: Iterable[str]) -> str | None:
    for pattern in exclude:
        if label == pattern or re.fullmatch(pattern, label):
            return pattern
    return None


def _is_quantized(value: ir.Value) -> bool:
    producer = value.producer()
    return producer is not None and producer.op_type == "DequantizeLinear"


def _activation_problem(value: ir.Value | None) -> str | None:
    """Why this input cannot take an activation Q/DQ, or None if it can."""
    if value is None:
        return "input is missing"
    if value.const_value is not None:
        return f"input {value.name!r} is a constant, not an activation"
    if _is_quantized(value):
        return f"input {value.name!r} is already quantized"
    if value.dtype is not None and value.dtype != ir.DataType.FLOAT:
        # our scales are fp32, and QuantizeLinear's scale has its input's type: an fp16 input would
        # make an invalid graph (TensorRT quantizes fp32 activations of an fp32 export anyway)
        return f"input {value.name!r} is {value.dtype.name}, not FLOAT: int8 Q/DQ goes on fp32 tensors (quantize an fp32 export)"
    return None


def _weight_axis(node: ir.Node, weight: ir.Value, per_channel: bool) -> int | None:
    if not per_channel:
        return None
    ndim = weight.const_value.shape.rank()
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        return 0 if node.attributes.get_int("transB", 0) else 1
    return None if ndim < 2 else ndim - 1  # MatMul: B is (..., K, N), output channels last


def _plan_linear(node: ir.Node, index: int, per_channel: bool, plan: QdqPlan) -> None:
    label = node_label(node)
    problem = _activation_problem(node.inputs[0])
    if problem:
        plan.skips.append(Skip((label,), problem))
        return
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    if weight is not None and weight.const_value is not None:
        plan.targets.append(QuantTarget(weight.name, "weight", index, 1, _weight_axis(node, weight, per_channel)))
    elif node.op_type in CONV_OPS or weight is None:
        plan.skips.append(Skip((label,), "weight is not a constant initializer"))
        return
    elif problem := _activation_problem(weight):
        plan.skips.append(Skip((label,), problem))
        return
    else:  # activation x activation (e.g. attention's MatMul): both inputs per tensor
        plan.targets.append(QuantTarget(weight.name, "activation", index, 1))
    plan.targets.append(QuantTarget(node.inputs[0].name, "activation", index, 0))


def _is_conv_output(value: ir.Value) -> bool:
    """Produced by a Conv, directly or through a BatchNormalization that TensorRT folds into it."""
    producer = value.producer()
    if producer is not None and producer.op_type == "BatchNormalization":
        producer = producer.inputs[0].producer()
    return producer is not None and producer.op_type in CONV_OPS


def _plan_residual_add(node: ir.Node, index: int, plan: QdqPlan) -> None:
    label = node_label(node)
    conv_inputs = [i for i, v in enumerate(node.inputs) if v is not None and _is_conv_output(v)]
    if not conv_inputs:
        return  # a plain Add, not a Conv+Add fusion candidate: nothing to record
    residual = 1 if conv_inputs == [0, 1] else 1 - conv_inputs[0]
    problem = _activation_problem(node.inputs[residual])
    if problem:
        plan.skips.append(Skip((label,), f"residual {problem}"))
        return
    plan.targets.append(QuantTarget(node.inputs[residual].name, "activation", index, residual))


def _plan_graph(graph: ir.Graph, *, per_channel: bool, exclude: Iterable[str]) -> QdqPlan:
    plan = QdqPlan()
    for index, node in enumerate(graph):
        if node.domain in ("", "ai.onnx") and (reason := _left_in_float(node)):
            plan.skips.append(Skip((node_label(node),), reason))
            continue
        if node.op_type not in (*LINEAR_OPS, "Add") or node.domain not in ("", "ai.onnx"):
            continue
        pattern = excluded_by(node_label(node), exclude)
        if pattern is not None:
            plan.skips.append(Skip((node_label(node),), f"excluded by {pattern!r}"))
        elif node.op_type == "Add":
            _plan_residual_add(node, index, plan)
        else:
            _plan_linear(node, index, per_channel, plan)
    return plan


def _left_in_float(node: ir.Node) -> str | None:
    """Why `node` computes in float in the int8 model (an op no rule quantizes, or a subgraph
    holding linear layers, which placement does not enter), or None."""
    if node.op_type in FLOAT_ONLY_OPS:
        return f"no Q/DQ placement rule for {node.op_type}: it stays float (TensorRT computes it in fp32/fp16 in an int8 engine)"
    if node.op_type not in CONTROL_FLOW_OPS:
        return None
    inner = [n.op_type for graph in _subgraphs(node) for n in graph.all_nodes() if n.op_type in (*LINEAR_OPS, *FLOAT_ONLY_OPS)]
    if not inner:
        return None
    counts = ", ".join(f"{inner.count(op)} {op}" for op in dict.fromkeys(inner))
    return f"its subgraph(s) hold {counts}, left float: Q/DQ placement covers the main graph only"


def _subgraphs(node: ir.Node) -> list[ir.Graph]:
    found = []
    for attribute in node.attributes.values():
        if attribute.type == ir.AttributeType.GRAPH:
            found.append(attribute.value)
        elif attribute.type == ir.AttributeType.GRAPHS:
            found.extend(attribute.value)
    return found


def _load(model: onnx.ModelProto) -> ir.Model:
    ir_model = ir.serde.deserialize_model(model)
    opset = ir_model.opset_imports.get("", 0)
    if opset < MIN_OPSET:
        raise ModelError(f"model opset {opset} < {MIN_OPSET}: the quantizer writes opset-{MIN_OPSET} Q/DQ (per-channel "
                         f"DequantizeLinear, which TensorRT's explicit quantization reads), per-tensor too; convert the model "
                         f"first: onnx.version_converter.convert_version(model, {MIN_OPSET})")
    return ir_model


def plan_qdq(model: onnx.ModelProto, *, per_channel: bool = True, exclude: Iterable[str] = ()) -> QdqPlan:
    """Which inputs of which nodes get Q/DQ, and which candidate nodes are skipped and why.
    `exclude` holds node names or regexes (full match; an unnamed node is `OpType(first output)`,
    graph_utils.node_label, the label every report and bisect prints).
    Defaults: per-channel weights, nothing excluded."""
    return _plan_graph(_typed(_load(model)).graph, per_channel=per_channel, exclude=tuple(exclude))


def _typed(model: ir.Model) -> ir.Model:
    """`model` with its intermediate types inferred when some are missing (exports rarely keep
    value_info): an fp16 tensor of unknown type took an fp32-scaled Q/DQ, an invalid graph."""
    if all(value.dtype is not None for node in model.graph for value in node.outputs):
        return model
    try:
        return ir_passes.ShapeInferencePass()(model).model
    except Exception:  # noqa: BLE001 (custom ops onnx cannot infer: plan on the declared types)
        return model


# ---------------------------------------------------------------- rewriting


class _Names:
    """Fresh value names that collide with nothing in the graph."""

    def __init__(self, graph: ir.Graph):
        self.taken = {v.name for v in graph.inputs} | set(graph.initializers)
        self.taken |= {v.name for node in graph for v in node.outputs}

    def fresh(self, name: str) -> str:
        candidate, suffix = name, 1
        while candidate in self.taken:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        self.taken.add(candidate)
        return candidate


def _initializer(graph: ir.Graph, names: _Names, name: str, array: np.ndarray) -> ir.Value:
    value = ir.Value(name=names.fresh(name), const_value=ir.tensor(array))
    value.type, value.shape = ir.TensorType(value.const_value.dtype), ir.Shape(array.shape)
    graph.register_initializer(value)
    return value


def _dequantize_node(graph, names, base: str, q_input: ir.Value, scale: np.ndarray, axis: int | None) -> ir.Node:
    scale_value = _initializer(graph, names, f"{base}_scale", np.asarray(scale, np.float32))
    zero_point = _initializer(graph, names, f"{base}_zero_point", np.zeros(np.shape(scale), np.int8))
    attributes = {"axis": axis} if axis is not None else {}
    output = ir.Value(name=names.fresh(f"{base}_dequantized"))
    return ir.node("DequantizeLinear", [q_input, scale_value, zero_point], attributes, outputs=[output])


def _quantize_activation(graph, names, value: ir.Value, amax: float, before: ir.Node) -> ir.Value:
    scale = symmetric_scale(amax)
    scale_value = _initializer(graph, names, f"{value.name}_scale", np.asarray(scale, np.float32))
    zero_point = _initializer(graph, names, f"{value.name}_zero_point", np.zeros((), np.int8))
    q_output = ir.Value(name=names.fresh(f"{value.name}_quantized"))
    q_node = ir.node("QuantizeLinear", [value, scale_value, zero_point], outputs=[q_output])
    dq_node = ir.node("DequantizeLinear", [q_output, scale_value, zero_point], outputs=[ir.Value(name=names.fresh(f"{value.name}_dequantized"))])
    graph.insert_before(before, [q_node, dq_node])
    return dq_node.outputs[0]


def _quantize_weight(graph, names, value: ir.Value, axis: int | None, before: ir.Node):
    weight = value.const_value.numpy()
    amax = per_channel_amax(weight, axis) if axis is not None else per_tensor_amax(weight)
    scale = symmetric_scale(amax)
    q_value = _initializer(graph, names, f"{value.name}_quantized", quantize(weight, scale, axis=axis))
    dq_node = _dequantize_node(graph, names, value.name, q_value, scale, axis)
    graph.insert_before(before, [dq_node])
    return dq_node.outputs[0], QuantizedTensor(value.name, "weight", _plain(amax), _plain(scale), axis)


def _plain(array) -> float | tuple[float, ...]:
    array = np.asarray(array, np.float64)
    return float(array) if array.ndim == 0 else tuple(array.tolist())


def _drop_unused_initializers(graph: ir.Graph, names: Iterable[str]) -> None:
    for name in names:
        value = graph.initializers.get(name)
        if value is not None and not value.uses() and not value.is_graph_output():
            del graph.initializers[name]


def insert_qdq(
    model: onnx.ModelProto, plan: QdqPlan, activation_amax: Mapping[str, float]
) -> tuple[onnx.ModelProto, list[QuantizedTensor]]:
    """The QDQ model of `plan` (from `plan_qdq` on the same model), activations scaled by
    `activation_amax` (tensor name -> amax), weights by their own per-channel/per-tensor max;
    also the list of what was quantized."""
    missing = [name for name in plan.activations if name not in activation_amax]
    if missing:
        raise ConfigError(f"no amax for activation(s) {missing[:3]}; calibrate every tensor in plan.activations")
    ir_model = _load(model)
    graph, names = ir_model.graph, _Names(ir_model.graph)
    nodes = list(graph)
    replacements: dict[tuple[str, str, int | None], ir.Value] = {}
    quantized: list[QuantizedTensor] = []
    for target in sorted(plan.targets, key=lambda t: t.node):
        node = nodes[target.node]
        key = (target.kind, target.tensor, target.axis)
        if key not in replacements:
            value = node.inputs[target.input_index]
            if target.kind == "weight":
                replacements[key], record = _quantize_weight(graph, names, value, target.axis, node)
            else:
                amax = float(activation_amax[target.tensor])
                replacements[key] = _quantize_activation(graph, names, value, amax, node)
                record = QuantizedTensor(target.tensor, "activation", amax, _plain(symmetric_scale(amax)))
            quantized.append(record)
        node.replace_input_with(target.input_index, replacements[key])
    _drop_unused_initializers(graph, {t.tensor for t in plan.targets if t.kind == "weight"})
    return ir.serde.serialize_model(ir_model), quantized
