"""Per-node rules of TensorRT's ONNX parser and builder beyond "is the op supported", for the op
table's fallback verdict (trt_ops.py) where no TensorRT is installed.

Each rule is what the real parser or builder rejects, measured on ONNX's node tests with
TensorRT-RTX 1.7.1.116 (onnx2trt_check.trt.differential; benchmarks/bench_trt_differential.py
prints the agreement) and stated in onnx-tensorrt's operators.md for TensorRT 10:

* data types: every input and output (and Cast's `to`) must be a type the parser converts;
  int8/int4/fp8/fp4 only on the quantized side of Q/DQ ("Quantized Types": DequantizeLinear's
  input, QuantizeLinear's output, which may be network inputs/outputs); uint8 only as a network
  input or output, and never as a Q/DQ type;
* inputs that must be build-time constants (Reduce* `axes`, Dropout `training_mode`, Resize
  `scales`, STFT `frame_step`, an integer Q/DQ zero point): an error unless they are constants
  or computed from constants only (TensorRT folds those, not Shape-derived values);
* output counts (LayerNormalization, MaxPool, Attention, BatchNormalization: one output) and
  attribute values (pooling dilations, LpPool p, Resize modes, Scatter reductions, ...), from the
  table's `max_outputs` and `attributes` fields.

A rule is a function (node, facts, entry) -> iterable of (kind, severity, reason).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np
import onnx
from onnx import helper

_T = onnx.TensorProto
# Element types the parser converts (onnx-tensorrt convertDtype); DOUBLE is cast down to FLOAT.
PARSER_TYPES = frozenset({_T.FLOAT, _T.FLOAT16, _T.BFLOAT16, _T.DOUBLE, _T.INT32, _T.INT64, _T.BOOL, _T.INT8, _T.UINT8,
                          _T.FLOAT8E4M3FN, _T.INT4, _T.FLOAT4E2M1})
# Types TensorRT has only as the quantized side of Q/DQ (int8 is also an ordinary type of
# elementwise and comparison layers, which the per-op types column covers).
QUANTIZED_TYPES = frozenset({_T.INT4, _T.FLOAT8E4M3FN, _T.FLOAT4E2M1})
FOUR_BIT_TYPES = frozenset({_T.INT4, _T.FLOAT4E2M1})
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_ALLOWED_TYPES = "float32, float16, bfloat16, int32, int64, bool (double is cast to float32)"

Rule = tuple[str, str, str]  # kind, severity, reason


def type_name(elem_type: int) -> str:
    return _T.DataType.Name(elem_type) if elem_type in _T.DataType.values() else f"type {elem_type}"


@dataclasses.dataclass(frozen=True)
class GraphFacts:
    """What the rules read about tensors: element types (0 when unknown), tensors that are not
    tensors (sequences, optionals, maps), constants (initializers, Constant outputs), graph inputs
    and outputs, static element counts, the node producing each tensor."""

    types: Mapping[str, int]
    non_tensors: frozenset[str]
    constants: frozenset[str]
    graph_inputs: frozenset[str]
    graph_outputs: frozenset[str]
    sizes: Mapping[str, int]
    producers: Mapping[str, onnx.NodeProto]
    unpacked: frozenset[str] = frozenset()


def graph_facts(model: onnx.ModelProto, graphs, *, weights: frozenset[str] = frozenset()) -> GraphFacts:
    """The facts of `model` over `graphs` (the main graph and its subgraphs). `weights` names
    initializers that `model` holds as typed graph inputs (shape inference runs without the large
    weights, context.weightless): constants all the same. Defaults to none."""
    types, sizes, non_tensors, constants, producers, unpacked = {}, {}, set(), set(weights), {}, set()
    for graph in graphs:
        for value in (*graph.input, *graph.value_info, *graph.output):
            _record_value(value, types, sizes, non_tensors)
        for tensor in graph.initializer:
            if tensor.data_type in FOUR_BIT_TYPES | {_T.UINT4} and not tensor.raw_data and not tensor.external_data:
                unpacked.add(tensor.name)
            types[tensor.name] = tensor.data_type
            sizes[tensor.name] = int(np.prod(tensor.dims, dtype=np.int64))
            constants.add(tensor.name)
        for node in graph.node:
            if node.op_type == "Constant":
                constants.update(node.output)
            producers.update((name, node) for name in node.output if name)
    main = model.graph
    initializers = {t.name for t in main.initializer}
    return GraphFacts(types, frozenset(non_tensors), frozenset(constants), frozenset(v.name for v in main.input) - initializers - weights,
                      frozenset(v.name for v in main.output), sizes, producers, frozenset(unpacked))


def _record_value(value: onnx.ValueInfoProto, types: dict, sizes: dict, non_tensors: set) -> None:
    kind = value.type.WhichOneof("value")
    if kind is not None and kind != "tensor_type":
        non_tensors.add(value.name)
        return
    tensor = value.type.tensor_type
    types[value.name] = tensor.elem_type
    dims = tensor.shape.dim if tensor.HasField("shape") else None
    if dims is not None and all(d.HasField("dim_value") for d in dims):
        sizes[value.name] = int(np.prod([d.dim_value for d in dims], dtype=np.int64))


def _tensors(node: onnx.NodeProto) -> Iterator[tuple[str, str]]:
    yield from (("input", name) for name in node.input if name)
    yield from (("output", name) for name in node.output if name)


def check_types(node: onnx.NodeProto, facts: GraphFacts, entry) -> Iterator[Rule]:
    """Every tensor a type the parser converts; Cast's target too."""
    for side, name in _tensors(node):
        if name in facts.non_tensors:
            yield "dtype", "error", f"{side} '{name}' is a sequence, optional or map: TensorRT takes tensors only"
        elif facts.types.get(name, 0) and facts.types[name] not in PARSER_TYPES:
            yield "dtype", "error", f"{side} '{name}' is {type_name(facts.types[name])}, which TensorRT cannot represent; use {_ALLOWED_TYPES}"
    for name in node.input:
        if name in facts.unpacked:
            yield "dtype", "error", (f"initializer '{name}' holds 4-bit values in int32_data; TensorRT's parser imports 4-bit weights only "
                                     "packed in raw_data: re-save it with onnx.numpy_helper.from_array")
    target = _attribute(node, "to")
    if node.op_type == "Cast" and target is not None and target not in PARSER_TYPES:
        yield "dtype", "error", f"Cast to {type_name(target)}, which TensorRT cannot represent; cast to {_ALLOWED_TYPES}"


def check_quantized_types(node: onnx.NodeProto, facts: GraphFacts, entry) -> Iterator[Rule]:
    """int8/int4/fp8/fp4 only between Q and DQ; uint8 only at the network boundary, never in Q/DQ."""
    for side, name in _tensors(node):
        elem = facts.types.get(name, 0)
        if elem in QUANTIZED_TYPES:
            yield from _quantized_use(node, side, name, elem, facts)
        elif elem == _T.UINT8 and node.op_type in QDQ_OPS and (side == "input") == (node.op_type == "DequantizeLinear"):
            yield "dtype", "error", f"{node.op_type} with uint8: TensorRT quantizes to signed int8 (or fp8/int4) only"
        elif elem == _T.UINT8 and name not in facts.graph_inputs and name not in facts.graph_outputs and name not in facts.constants:
            yield "dtype", "error", f"{side} '{name}' is a uint8 tensor inside the network: TensorRT takes uint8 only as a network input or output"


def _quantized_use(node, side: str, name: str, elem: int, facts: GraphFacts) -> Iterator[Rule]:
    label = type_name(elem)
    qdq_zero_point = node.op_type in QDQ_OPS and len(node.input) > 2 and name == node.input[2]
    quantized_side = qdq_zero_point or (node.op_type == "DequantizeLinear" and side == "input") or (node.op_type == "QuantizeLinear" and side == "output")
    if not quantized_side:
        yield "dtype", "error", f"{side} '{name}' is {label}: TensorRT takes {label} only from QuantizeLinear into DequantizeLinear"
    elif elem in FOUR_BIT_TYPES and facts.sizes.get(name, 0) % 2:
        yield "dtype", "error", f"{side} '{name}' is a 4-bit tensor with an odd number of elements ({facts.sizes[name]}); TensorRT packs 4-bit values in pairs"


def check_constant_inputs(node: onnx.NodeProto, facts: GraphFacts, entry) -> Iterator[Rule]:
    """Inputs TensorRT must know at build time: an error from a graph input, a note when computed."""
    wanted = dict(entry.constant_inputs)
    if node.op_type in QDQ_OPS and len(node.input) > 2 and facts.types.get(node.input[2]) != _T.FLOAT8E4M3FN:
        wanted[2] = "zero point"  # measured: a graph-input scale or fp8 zero point builds, an integer zero point does not
    for index, role in sorted(wanted.items()):
        name = node.input[index] if index < len(node.input) else ""
        if not name or _foldable(name, facts, set()):
            continue
        source = f"graph input '{name}'" if name in facts.graph_inputs else f"'{name}', computed from a graph input or a shape"
        yield "constant_input", "error", f"{role} (input {index}) comes from {source}; TensorRT needs it at build time: make it an initializer"


def _foldable(name: str, facts: GraphFacts, seen: set) -> bool:
    """A constant, or computed from constants only (TensorRT folds that); Shape and graph inputs are not."""
    if name in facts.constants:
        return True
    node = facts.producers.get(name)
    if node is None or node.op_type == "Shape" or name in seen:
        return False
    seen.add(name)
    return all(_foldable(i, facts, seen) for i in node.input if i)


def check_outputs(node: onnx.NodeProto, facts: GraphFacts, entry) -> Iterator[Rule]:
    used = sum(1 for name in node.output if name)
    if entry.max_outputs is not None and used > entry.max_outputs:
        yield "outputs", "error", f"{used} outputs; TensorRT imports {node.op_type} with {entry.max_outputs} output only: re-export without the extra outputs"


def check_attributes(node: onnx.NodeProto, facts: GraphFacts, entry) -> Iterator[Rule]:
    for name, rule in entry.attributes.items():
        value = _attribute(node, name)
        value = rule.get("default") if value is None else value
        if value is None:
            continue
        if rule.get("all_ones") and any(v != 1 for v in value):
            yield "attribute", "error", f"{name}={list(value)}: TensorRT supports only {name} of 1"
        elif "allowed" in rule and value not in rule["allowed"]:
            yield "attribute", "error", f"{name}={value!r}: TensorRT supports {name} in {rule['allowed']}"
        elif "types_when" in rule and str(value) in rule["types_when"]:
            yield from _types_when(node, facts, name, value, rule["types_when"][str(value)])


def _types_when(node, facts: GraphFacts, name: str, value, allowed: list[str]) -> Iterator[Rule]:
    kinds = {type_name(facts.types.get(i, 0)) for i in node.input if i and facts.types.get(i, 0)}
    if kinds - set(allowed):
        yield "attribute", "error", f"{name}={value!r} needs inputs of {', '.join(allowed)}; got {', '.join(sorted(kinds))}"


def _attribute(node: onnx.NodeProto, name: str):
    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            value = value.decode() if isinstance(value, bytes) else value
            return list(value) if isinstance(value, (list, tuple)) else value
    return None


RULES = (check_types, check_quantized_types, check_constant_inputs, check_outputs, check_attributes)


def node_rules(node: onnx.NodeProto, facts: GraphFacts, entry) -> Iterator[Rule]:
    """Every rule's findings for one node whose op the table supports."""
    for rule in RULES:
        yield from rule(node, facts, entry)
