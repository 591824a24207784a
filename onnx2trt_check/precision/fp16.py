"""fp16 conversion with an fp32 fallback list: the ONNX file TensorRT builds strongly typed.

TensorRT 11 takes precision from the graph, so this file is what gets deployed. The converter is
onnxruntime.transformers.float16 (a maintained fork of onnxconverter-common's float16 module), chosen
over onnxconverter-common 1.16 because the latter clips weights at 1e4 by default (fp16 reaches
65504), leaves an initializer shared by a blocked and a converted node in fp32 (a type error in the
converted node) and refuses models that already hold any fp16 tensor. ORT's fork converts such a
shared initializer and casts it back for the blocked node, and defaults to the real fp16 limits.

What stays fp32 (each reason is in the report, with its figures):
* op types in `block_ops` (DEFAULT_SENSITIVE_OPS) and the converter's own list (ops without fp16
  kernels in ORT, e.g. TopK, Range, the ai.onnx.ml ops);
* nodes named in `block_nodes`;
* the producer and every consumer of a tensor that, over the feeds, exceeds the fp16 range
  (max|x| > 65504 / overflow_margin) or underflows (share of non-zero |x| below 2**-14 above
  `underflow_fraction`): blocking only the producer would still store the tensor in fp16 between
  the two nodes;
* every consumer of a weight (initializer or Constant) with max|w| > 65504;
* QuantizeLinear and DequantizeLinear below opset 19, where their scale (and so DequantizeLinear's
  output and QuantizeLinear's input) must be fp32: converted, they would make invalid ONNX;
* from opset 19, a Q/DQ node whose constant scale has a non-zero value below 2**-14 (qdq_scales);
* with feeds, a Loop/If/Scan node and its body, whose activations no statistic sees (subgraphs).

Some valid models have no fp16 artifact (`not_applicable` says why): a model without nodes, one
whose inputs or outputs are fp16 already, one whose graph output is a graph input.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import onnx.inliner
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes
from onnxruntime.transformers import float16 as ort_float16

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.precision.activations import TensorStats, collect_activation_stats
from onnx2trt_check.precision.qdq_scales import tiny_qdq_scales
from onnx2trt_check.precision.subgraphs import fp32_body_reads, nodes_with_bodies, outer_producers, with_body_nodes
from onnx2trt_check.protos import default_opset, in_deployable_form
from onnx2trt_check.quant.float_counterpart import integer_ops
from onnx2trt_check.transforms.graph_utils import node_label, unique_name

FP16_MAX = 65504.0

# Op types kept in fp32 by default, each for a failure the output statistics cannot see or predict:
DEFAULT_SENSITIVE_OPS = (
    "Exp",  # e**x overflows fp16 for x > 11.1; logits routinely exceed that on unseen inputs.
    "Pow",  # x**2 overflows for |x| > 256: the variance term of decomposed LayerNorm/RMSNorm.
    "ReduceSum",  # the accumulator of a long sum overflows or drops low-order bits while
    "ReduceSumSquare",  # every input is in range; the output statistics never see the accumulator.
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceProd",
    "ReduceMean",  # same accumulator; in transformers it is the LayerNorm/RMSNorm statistic that
    # TensorRT itself warns about running in fp16.
)
# Softmax (max-subtracted, so its exp never overflows) and the fused LayerNormalization (computed in
# fp32 inside ORT's and TensorRT's kernels) are not listed: their input range is checked by the data.

# Q/DQ ops take fp16 scales from this opset on; below it their float side must stay fp32.
QDQ_FP16_OPSET = 19
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")

DEFAULT_OVERFLOW_MARGIN = 2.0
DEFAULT_UNDERFLOW_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class BlockReason:
    """Why one node stays fp32. `kind` is one of: overflow, underflow, weight-overflow, scale-underflow,
    subgraph, sensitive-op, converter-op, qdq-opset, user. The figures belong to `tensor`, the tensor that triggered the reason."""

    kind: str  # overflow, underflow, weight-overflow, scale-underflow, subgraph, sensitive-op, converter-op, qdq-opset, user
    tensor: str = ""
    max_abs: float | None = None
    underflow_fraction: float | None = None

    def __str__(self) -> str:
        figures = [f"max|x|={self.max_abs:.6g}"] if self.max_abs is not None else []
        if self.underflow_fraction is not None:
            figures.append(f"underflow={self.underflow_fraction:.1%}")
        where = f" of {self.tensor!r}" if self.tensor else ""
        return f"{self.kind}{where}" + (f" ({', '.join(figures)})" if figures else "")


@dataclasses.dataclass(frozen=True)
class BlockedNode:
    name: str
    op_type: str
    reasons: tuple[BlockReason, ...]

    @property
    def max_abs(self) -> float | None:
        """The largest max|x| among the reasons' tensors; None when no reason measured one."""
        figures = [reason.max_abs for reason in self.reasons if reason.max_abs is not None]
        return max(figures) if figures else None


@dataclasses.dataclass
class Fp16Report:
    blocked: list[BlockedNode]
    # op type -> number of original nodes that now compute in fp16
    converted_ops: dict[str, int]
    overflow_limit: float
    underflow_fraction: float
    feeds_used: int

    @property
    def blocked_names(self) -> list[str]:
        return [node.name for node in self.blocked]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Fp16Result:
    model: onnx.ModelProto
    report: Fp16Report


def tensor_verdict(stats: TensorStats, *, overflow_limit: float, underflow_fraction: float) -> str | None:
    """'overflow' when max|x| > overflow_limit, else 'underflow' when the share of non-zero values
    below the fp16 smallest normal exceeds underflow_fraction, else None."""
    if stats.max_abs > overflow_limit:
        return "overflow"
    if stats.underflow_fraction > underflow_fraction:
        return "underflow"
    return None


def convert_to_fp16(
    model: onnx.ModelProto,
    feeds: Iterable[Mapping[str, np.ndarray]] | None = None,
    *,
    keep_io_types: bool = True,
    block_ops: Iterable[str] = DEFAULT_SENSITIVE_OPS,
    block_nodes: Iterable[str] = (),
    overflow_margin: float = DEFAULT_OVERFLOW_MARGIN,
    underflow_fraction: float = DEFAULT_UNDERFLOW_FRACTION,
) -> Fp16Result:
    """The model with float tensors in fp16 except its fallback list (see the module docstring).

    `feeds` drive the data-driven part; without them only op types, names and weights decide.
    `keep_io_types` keeps fp32 graph inputs/outputs (Defaults to True). `overflow_margin` divides
    65504 to give the activation limit (Defaults to 2.0: a calibration sample underestimates the
    deployment maximum, and the top binade of fp16 is one doubling from inf). `underflow_fraction`
    (Defaults to 0.1) is the share of non-zero values that may fall below 2**-14. The input model is
    not mutated.
    """
    if overflow_margin < 1.0 or not 0.0 <= underflow_fraction <= 1.0:
        raise ConfigError(f"overflow_margin={overflow_margin} / underflow_fraction={underflow_fraction} out of range; "
                          "pass overflow_margin >= 1 and 0 <= underflow_fraction <= 1")
    named = _typed_named_copy(model)
    original_names = {node.name for node in named.graph}
    _check_names(block_nodes, original_names)
    limit = FP16_MAX / overflow_margin
    reasons = _static_reasons(named.graph, set(block_ops), set(block_nodes), default_opset(model))
    feeds = list(feeds) if feeds is not None else []
    if feeds:
        stats = collect_activation_stats(named, feeds)
        _merge(reasons, _data_reasons(named.graph, stats, limit, underflow_fraction))
        _merge(reasons, {node: [BlockReason("subgraph")] for node in nodes_with_bodies(named.graph)})  # bodies: never measured
    _merge(reasons, {node: [BlockReason("subgraph", tensor)] for node, tensor in outer_producers(named.graph, set(reasons))})
    blocked = _blocked_nodes(named.graph, reasons)
    _untie_always_float_weights(named.graph)
    _precast_weights(named.graph, with_body_nodes(named.graph, {node.name for node in blocked}))
    converted = _run_converter(_without_initializer_value_info(ir.to_proto(named)), blocked, keep_io_types)
    output = _tidied(converted, original_names)
    report = Fp16Report(blocked, _converted_ops(output.graph, original_names), limit, underflow_fraction, len(feeds))
    return Fp16Result(ir.to_proto(output), report)


def not_applicable(model: onnx.ModelProto) -> str | None:
    """Why the model has no fp16 artifact to check, or None."""
    graph = model.graph
    if not graph.node:
        return "the model has no nodes, so there is nothing to convert to fp16"
    half = [v.name for v in list(graph.input) + list(graph.output) if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16]
    if half:
        return f"the model already takes or gives fp16 tensors ('{half[0]}'); it is its own fp16 artifact: the fp32 targets check it"
    inputs = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    passed = [v.name for v in graph.output if v.name in inputs]
    if passed:
        return f"graph output '{passed[0]}' is a graph input or weight passed through unchanged, which the fp16 converter cannot retype"
    if integer := integer_ops(model):  # the converter retypes their float scales, which ONNX Runtime then refuses
        return f"the model computes in integer ops ({', '.join(sorted(integer))}): it is an int8 model, with no fp16 artifact"
    return None


def _typed_named_copy(model: onnx.ModelProto) -> ir.Model:
    """An IR copy with its local functions inlined, types inferred and every node named (the
    converter blocks nodes by name). Inlined because ORT's converter retypes a function call's
    inputs and outputs but not the function body: a Constant inside stays fp32 and the artifact is
    invalid (Div(fp16, fp32)); TensorRT's parser inlines functions the same way."""
    # onnx's inliner leaves inlined nodes unnamed (onnx-ir's names them node_N), so they get labels
    model = in_deployable_form(model)
    copy = ir.from_proto(onnx.inliner.inline_local_functions(model) if model.functions else model)
    _float_constants_as_tensors(copy.graph)
    _rename_converter_names(copy.graph)
    copy = ir_passes.ShapeInferencePass()(copy).model
    return ir_passes.NameFixPass(_OpTypeNames())(copy).model


def _rename_converter_names(graph: ir.Graph) -> None:
    """Nodes and values named as ORT's converter names the casts it puts at fp32 graph inputs and
    outputs (graph_output_cast0 making graph_output_cast_0: a model that converter made already,
    keep_io_types) take another name: the converter skips a node of its casts' names and gives
    the output a second producer, a graph no tool loads."""
    reserved = re.compile(r"graph_(input|output)_cast_?\d+")
    for item in [node for node in graph] + [value for node in graph for value in node.outputs if not value.is_graph_output()]:
        if item.name and reserved.fullmatch(item.name):
            item.name += "_own"  # the converter's names end in a digit, so this one is free of them


def _float_constants_as_tensors(graph: ir.Graph) -> None:
    """Constant<value_float(s)> (onnxscript writes scalars so) as Constant<value = float tensor>,
    the same values: ORT's converter retypes only a Constant's `value` tensor, and a value_float
    stayed fp32 beside fp16 inputs, an invalid artifact (Div(fp16, fp32))."""
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.attributes) != 1:
            continue
        for key in ("value_float", "value_floats"):
            if key in node.attributes:
                values = np.asarray(node.attributes.pop(key).value, dtype=np.float32)
                node.attributes["value"] = ir.AttrTensor("value", ir.tensor(values))


class _OpTypeNames:
    """Unnamed nodes get their report label `OpType(first output)` (graph_utils.node_label): the
    name every command prints and --fp16-block / --exclude accept, and stable when other nodes are
    added or removed. (onnx-ir's NameGenerator protocol.)"""

    def generate_node_name(self, node: ir.Node) -> str:
        return node_label(node)

    def generate_value_name(self, value: ir.Value) -> str:
        return value.name or "v"


def check_block_nodes(model: onnx.ModelProto, block_nodes: Iterable[str], *, option: str = "--fp16-block") -> None:
    """A ConfigError for a name of `block_nodes` that is no node the converter sees (the names
    convert_to_fp16 blocks by: local functions inlined, an unnamed node `OpType(first output)`):
    a typo would leave the node in fp16 and the run green. Defaults to naming --fp16-block."""
    names = [node.name for node in _typed_named_copy(model).graph]
    for name in block_nodes:
        if name not in names:
            raise ConfigError(f"{option} '{name}' is no node of the model (its nodes are named like "
                              f"{', '.join(repr(n) for n in names[:3])}; an unnamed node is OpType(first output)); check the spelling")


def _check_names(block_nodes: Iterable[str], names: set[str]) -> None:
    for name in block_nodes:
        if name not in names:
            raise ConfigError(f"block_nodes names {name!r}, which is no node of the graph; pass existing node names")


Reasons = dict[ir.Node, list[BlockReason]]


def _merge(into: Reasons, more: Reasons) -> None:
    for node, reasons in more.items():
        into.setdefault(node, []).extend(reasons)


def _static_reasons(graph: ir.Graph, block_ops: set[str], block_nodes: set[str], opset: int) -> Reasons:
    """Reasons known without data: names, op types, the opset and weights."""
    reasons: Reasons = {}
    converter_ops = set(ort_float16.DEFAULT_OP_BLOCK_LIST)
    fp32_qdq = opset < QDQ_FP16_OPSET
    for node in graph:
        found = [BlockReason("user")] if node.name in block_nodes else []
        found += [BlockReason("sensitive-op")] if node.op_type in block_ops else []
        found += [BlockReason("converter-op")] if node.op_type in converter_ops else []
        found += [BlockReason("qdq-opset")] if fp32_qdq and node.op_type in QDQ_OPS and node.domain in ("", "ai.onnx") else []
        if found:
            reasons[node] = found
    _merge(reasons, _weight_reasons(graph))
    if not fp32_qdq:  # fp16 scales: one fp16 holds only as a subnormal or 0 keeps its Q/DQ node fp32
        weights = {value: tensor for value, tensor, _ in _float_weights(graph)}
        _merge(reasons, {node: [BlockReason("scale-underflow", name, max_abs=largest, underflow_fraction=share)]
                         for node, name, largest, share in tiny_qdq_scales(graph, weights, QDQ_OPS)})
    return reasons


def _weight_reasons(graph: ir.Graph) -> Reasons:
    """Consumers of weights beyond the fp16 range; for a Constant node, the node itself too."""
    reasons: Reasons = {}
    for value, tensor, producer in _float_weights(graph):
        max_abs = _max_abs(tensor.numpy())
        if max_abs > FP16_MAX:
            reason = BlockReason("weight-overflow", value.name, max_abs=max_abs)
            for node in ([producer] if producer else []) + list(value.consumers()):
                reasons.setdefault(node, []).append(reason)
    return reasons


def _float_weights(graph: ir.Graph):
    for value in graph.initializers.values():
        if value.const_value is not None and value.const_value.dtype == ir.DataType.FLOAT:
            yield value, value.const_value, None
    for node in graph:
        attribute = node.attributes.get("value")
        if node.op_type == "Constant" and attribute is not None and attribute.type == ir.AttributeType.TENSOR:
            if attribute.as_tensor().dtype == ir.DataType.FLOAT:
                yield node.outputs[0], attribute.as_tensor(), node


def _max_abs(array: np.ndarray) -> float:
    # max and -min instead of abs().max(): no temporary the size of the weight.
    return float(max(array.max(), -array.min())) if array.size else 0.0


def _data_reasons(graph: ir.Graph, stats: Mapping[str, TensorStats], limit: float, fraction: float) -> Reasons:
    """Producer and consumers of every tensor out of the fp16 range over the feeds."""
    reasons: Reasons = {}
    values = {value.name: value for node in graph for value in node.outputs} | {v.name: v for v in graph.inputs}
    for name, tensor_stats in stats.items():
        kind = tensor_verdict(tensor_stats, overflow_limit=limit, underflow_fraction=fraction)
        if kind is None:
            continue
        reason = BlockReason(kind, name, tensor_stats.max_abs, tensor_stats.underflow_fraction)
        producer = values[name].producer()
        for node in ([producer] if producer else []) + list(values[name].consumers()):
            reasons.setdefault(node, []).append(reason)
    return reasons


def _blocked_nodes(graph: ir.Graph, reasons: Reasons) -> list[BlockedNode]:
    """In graph order, each node once with its distinct reasons."""
    return [
        BlockedNode(node.name, node.op_type, tuple(dict.fromkeys(reasons[node])))
        for node in graph
        if node in reasons
    ]


def _precast_weights(graph: ir.Graph, blocked: set[str]) -> None:
    """Cast to fp16 the float initializers that only converted nodes read, in one clip + astype per
    tensor. The converter would do the same with six masked passes per tensor (3x slower on a
    ResNet-50); it leaves fp16 initializers alone. Unlike the converter, |w| < 2**-25 rounds to 0
    rather than to the smallest subnormal: a difference below fp16's own resolution."""
    for value in graph.initializers.values():
        tensor = value.const_value
        consumers = value.consumers()
        if tensor is None or tensor.dtype != ir.DataType.FLOAT or not consumers or value.is_graph_input():
            continue
        if any(node.name in blocked or node.op_type in ort_float16.ALWAYS_FLOAT_INPUTS for node in consumers):
            continue
        # Clipped in float32 straight into the fp16 array: no float32 temporary of the weight's size.
        half = np.clip(tensor.numpy(), -FP16_MAX, FP16_MAX, out=np.empty(tensor.shape.numpy(), np.float16))
        value.const_value = ir.tensor(half, name=value.name)
        value.dtype = ir.DataType.FLOAT16


def _untie_always_float_weights(graph: ir.Graph) -> None:
    """A weight read both where the converter keeps fp32 (Resize's scales) and elsewhere gets a copy
    for the fp32 slot. tf2onnx passes one empty initializer as Resize's roi and scales: converted for
    roi and cast back for scales, the scales became a computed value ONNX Runtime cannot see is
    empty ("Either sizes or scales must be provided, but not both"): no artifact loaded."""
    for value in list(graph.initializers.values()):
        uses = value.uses()
        kept = [use for use in uses if use.idx in ort_float16.ALWAYS_FLOAT_INPUTS.get(use.node.op_type, ())]
        if value.const_value is None or not kept or len(kept) == len(uses):
            continue
        name = unique_name(graph, value.name + "_fp32")
        # A new tensor: naming a value renames its const_value, and the one loaded wraps the caller's proto
        copy = ir.Value(name=name, type=value.type, shape=value.shape, const_value=ir.tensor(value.const_value.numpy(), name=name))
        graph.register_initializer(copy)
        for node, index in kept:
            node.replace_input_with(index, copy)


def _without_initializer_value_info(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx-ir writes value_info for initializers; the converter retypes every float value_info to
    fp16 but keeps an initializer used only by blocked nodes fp32, so such an entry would contradict
    its initializer. Dropped on our own copy (onnx's inference never writes them)."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    kept = [info for info in model.graph.value_info if info.name not in initializers]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    return model


def _run_converter(model: onnx.ModelProto, blocked: list[BlockedNode], keep_io_types: bool) -> onnx.ModelProto:
    # Blocking is by node name only: the op-type reasons were already resolved into names above,
    # so the report and the converter agree on every node. The model is typed already.
    names = [node.name for node in blocked]
    converted = ort_float16.convert_float_to_float16(model, keep_io_types=keep_io_types, disable_shape_infer=True, op_block_list=[],
                                                     node_block_list=names)
    return fp32_body_reads(converted, set(names))


def _tidied(model: onnx.ModelProto, original_names: set[str]) -> ir.Model:
    """Drop the converter's fp32->fp16->fp32 cast round trips and sort the graph topologically
    (the converter appends its casts at the end of the node list)."""
    tidy = ir.from_proto(model)
    for cast in [node for node in tidy.graph if _is_new_cast(node, original_names, ir.DataType.FLOAT)]:
        _bypass_round_trip(tidy.graph, cast, original_names)
    tidy.graph.sort()
    return tidy


def _is_new_cast(node: ir.Node | None, original_names: set[str], to: ir.DataType) -> bool:
    return (
        node is not None
        and node.op_type == "Cast"
        and node.name not in original_names
        and node.attributes["to"].as_int() == to
    )


def _bypass_round_trip(graph: ir.Graph, cast32: ir.Node, original_names: set[str]) -> None:
    """Cast16(x: fp32) -> Cast32: the consumers read x itself, without the fp16 rounding or overflow
    in between, which is the point of keeping both ends in fp32."""
    cast16 = cast32.inputs[0].producer()
    if not _is_new_cast(cast16, original_names, ir.DataType.FLOAT16):
        return
    source, result = cast16.inputs[0], cast32.outputs[0]
    if source.dtype != ir.DataType.FLOAT:
        return
    if result.is_graph_output() and (source.is_graph_input() or source.is_graph_output() or source.is_initializer()):
        return  # renaming `source` to the output's name would rename another graph tensor
    if result.is_graph_output():
        # The graph output keeps its name; the source tensor takes it over.
        name, result.name = result.name, None
        source.name = name
    result.replace_all_uses_with(source, replace_graph_outputs=True)
    graph.remove(cast32, safe=True)
    if not cast16.outputs[0].uses() and not cast16.outputs[0].is_graph_output():
        graph.remove(cast16, safe=True)


def _converted_ops(graph: ir.Graph, original_names: set[str]) -> dict[str, int]:
    """Op type -> count of original nodes with an fp16 output in the converted graph."""
    counts = collections.Counter(
        node.op_type
        for node in graph
        if node.name in original_names and any(value.dtype == ir.DataType.FLOAT16 for value in node.outputs)
    )
    return dict(sorted(counts.items()))
