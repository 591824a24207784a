"""Shared matching and editing helpers for transforms, over onnx-ir.

Matching helpers answer a question about the live graph ("is this value a constant?", "is this node
its only consumer?") and never edit it. Editing helpers add or drop initializers. Every transform
starts with `to_ir(model)` (a deep copy, so the caller's proto is never touched) and ends with
`to_onnx(ir_model)`.
"""

from __future__ import annotations

import dataclasses
import itertools
import weakref

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

_ONNX_DOMAINS = ("", "ai.onnx")


# --- conversion ---------------------------------------------------------------------------------


def to_ir(model: onnx.ModelProto, *, infer_shapes: bool = False) -> ir.Model:
    """An onnx-ir model over `model`. No copy is needed for purity: the IR wraps the proto's
    tensors read-only and every edit lands in the IR, so the input proto is never mutated (each
    transform's tests compare its bytes before and after); not copying saves a full copy of the
    weights per transform.

    With `infer_shapes`, ONNX shape inference runs first so `static_shape` can answer for
    intermediate values; onnx-ir's pass infers on a copy without the large weights. A model that
    shape inference cannot handle is taken as it is. Defaults to False.
    """
    ir_model = ir.from_proto(model)
    if infer_shapes:
        ShapeInferencePass(strict_mode=False, data_prop=True)(ir_model)
    return ir_model


def to_onnx(model: ir.Model) -> onnx.ModelProto:
    return ir.to_proto(model)


# --- matching -----------------------------------------------------------------------------------


def is_op(node: ir.Node | None, *op_types: str) -> bool:
    """Whether `node` is one of the standard-domain `op_types`."""
    return node is not None and node.domain in _ONNX_DOMAINS and node.op_type in op_types


def node_label(node: ir.Node) -> str:
    """A name for reports: the node name, else `OpType(first output)`."""
    if node.name:
        return node.name
    first = node.outputs[0].name if node.outputs else "?"
    return f"{node.op_type}({first})"


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant tensor as numpy (initializer or Constant node), else None.

    An initializer that is also a graph input can be overridden at run time, so it is not a
    constant.
    """
    if value is None or value.is_graph_input():
        return None
    try:
        tensor = const_tensor(value)
    except ValueError:  # a malformed Constant node: not something we can fold
        return None
    return None if tensor is None else np.asarray(tensor.numpy())


def const_tensor(value: ir.Value) -> ir.TensorProtocol | None:
    """ir.convenience.get_const_tensor without its side effect on a Constant node's `value` tensor: it
    names that tensor after the node's output, and the IR of a proto wraps the proto's own tensor, so
    the caller's ModelProto changed (api.optimize(proto, passes=["fuse_input_normalization"]) named
    its mean and std tensors)."""
    node = value.producer()
    if value.const_value is None and node is not None and node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
        attribute = node.attributes.get("value")
        if attribute is not None and len(node.attributes) == 1 and not attribute.is_ref():
            return attribute.as_tensor()
    return ir.convenience.get_const_tensor(value)


def through_identity(value: ir.Value | None) -> ir.Value | None:
    """The value an Identity chain copies (torch's exporter writes one initializer once and an
    Identity of it for each equal copy: BN biases of zero), else `value`."""
    while value is not None and is_op(value.producer(), "Identity") and value.producer().inputs:
        value = value.producer().inputs[0]
    return value


def consumer_count(value: ir.Value) -> int:
    """Number of uses, counting a graph output as one more."""
    return len(value.uses()) + (1 if value.is_graph_output() else 0)


def sole_consumer(value: ir.Value) -> ir.Node | None:
    """The only node that reads `value`, or None if there are several, none, or it is a graph output."""
    uses = value.uses()
    if len(uses) != 1 or value.is_graph_output():
        return None
    return uses[0].node


def only_feeds(value: ir.Value, node: ir.Node) -> bool:
    """Whether `node` is the single consumer of `value` (read once, not a graph output)."""
    return sole_consumer(value) is node and sum(1 for inp in node.inputs if inp is value) == 1


def static_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's shape if every dim is a known int, else None."""
    if value is None or value.shape is None:
        return None
    dims = tuple(value.shape)
    if not all(isinstance(d, int) for d in dims):
        return None
    return dims


def attr(node: ir.Node, name: str, default=None):
    """The Python value of attribute `name`, or `default` when absent."""
    attribute = node.attributes.get(name)
    return default if attribute is None else attribute.value


def live_nodes(graph: ir.Graph, op_type: str) -> list[ir.Node]:
    """A snapshot of the standard-domain `op_type` nodes; check `node.graph is graph` before use,
    since an earlier rewrite in the same pass may have removed one."""
    return [node for node in graph if is_op(node, op_type)]


def inference_batchnorm(node: ir.Node) -> tuple[np.ndarray, np.ndarray] | str:
    """(scale, shift) per channel of an inference-form BatchNormalization, as float64, so that
    BN(x) = scale * x + shift; or the reason the node is not one.
    """
    if attr(node, "training_mode", 0):
        return "BatchNormalization is in training mode"
    if attr(node, "spatial", 1) != 1:
        return "BatchNormalization has spatial=0 (per-element statistics)"
    if any(out.name or out.uses() for out in node.outputs[1:]):
        return "BatchNormalization has extra outputs (running mean/var)"
    params = [constant_array(through_identity(v)) for v in node.inputs[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        return "BatchNormalization scale/bias/mean/var are not all constants"
    gamma, beta, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
    scale = gamma / np.sqrt(var + float(attr(node, "epsilon", 1e-5)))
    return scale, beta - mean * scale


# --- conv geometry --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """The attributes of a Conv with explicit pads (auto_pad NOTSET or VALID) and its weights."""

    weight: np.ndarray
    bias: np.ndarray | None
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]  # ONNX order: all begins, then all ends
    dilations: tuple[int, ...]
    group: int

    @property
    def pads_begin(self) -> tuple[int, ...]:
        return self.pads[: len(self.kernel)]

    @property
    def pads_end(self) -> tuple[int, ...]:
        return self.pads[len(self.kernel) :]


def conv_geometry(node: ir.Node) -> ConvGeometry | str:
    """The geometry of a Conv/ConvTranspose with constant weight (and bias), or why not."""
    weight = constant_array(through_identity(node.inputs[1]) if len(node.inputs) > 1 else None)
    if weight is None:
        return f"{node.op_type} weight is not a constant"
    bias_value = node.inputs[2] if len(node.inputs) > 2 else None
    bias = constant_array(through_identity(bias_value))
    if bias_value is not None and bias is None:
        return f"{node.op_type} bias is not a constant"
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        return f"{node.op_type} has auto_pad={auto_pad}; only explicit pads are handled"
    rank = weight.ndim - 2
    ones, zeros = (1,) * rank, (0,) * (2 * rank)
    pads = zeros if auto_pad == "VALID" else tuple(attr(node, "pads", zeros))
    return ConvGeometry(
        weight=weight,
        bias=bias,
        kernel=tuple(weight.shape[2:]),
        strides=tuple(attr(node, "strides", ones)),
        pads=pads,
        dilations=tuple(attr(node, "dilations", ones)),
        group=int(attr(node, "group", 1)),
    )


# --- editing --------------------------------------------------------------------------------------


# The names each graph uses, collected once per graph and extended by unique_name: rebuilding the
# set on every call made every fold O(graph size), and a transform O(n^2) (a 2,000-block chain
# spent 196 of 219 s there). Names given out here are added, so they stay unique.
_TAKEN_NAMES: "weakref.WeakKeyDictionary[ir.Graph, set[str]]" = weakref.WeakKeyDictionary()


def unique_name(graph: ir.Graph, hint: str) -> str:
    """`hint`, or `hint_1`, `hint_2`, ... : a name no value of the graph uses yet."""
    taken = _TAKEN_NAMES.get(graph)
    if taken is None:
        taken = {v.name for v in graph.inputs} | set(graph.initializers)
        taken |= {out.name for node in graph.all_nodes() for out in node.outputs}
        _TAKEN_NAMES[graph] = taken
    for candidate in itertools.chain([hint], (f"{hint}_{i}" for i in itertools.count(1))):
        if candidate not in taken:
            taken.add(candidate)
            return candidate
    raise AssertionError("unreachable")


def add_initializer(graph: ir.Graph, array: np.ndarray, *, name_hint: str) -> ir.Value:
    """Register `array` as a new initializer under a fresh name based on `name_hint`."""
    name = unique_name(graph, name_hint)
    tensor = ir.tensor(np.ascontiguousarray(array), name=name)
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(value)
    return value


def drop_unused_initializers(graph: ir.Graph, values) -> None:
    """Remove those of `values` that are initializers nobody reads any more, and Identity copies of
    them (through_identity) nobody reads."""
    for value in values:
        while value is not None and not value.uses() and not value.is_graph_output() and is_op(value.producer(), "Identity") \
                and value.producer().graph is graph:
            copy = value.producer()
            value = copy.inputs[0]
            graph.remove(copy, safe=True)
        if value is None or not value.is_initializer() or value.uses() or value.is_graph_output():
            continue
        if value.is_graph_input():
            continue
        graph.initializers.pop(value.name, None)


def replace_with_nodes(graph: ir.Graph, old_nodes, new_nodes, old_output: ir.Value, new_output: ir.Value) -> None:
    """Insert `new_nodes` (in order) before the first of `old_nodes`, move every use of
    `old_output` to `new_output` (graph outputs included; `new_output` takes the old name), and
    remove `old_nodes`. The new nodes go right before the producer of `old_output`: they read only
    values defined before every old node, and every use of `old_output` comes after it (no
    renumbering of the graph, which made each fold O(graph size))."""
    graph.insert_before(old_output.producer(), new_nodes)
    ir.convenience.replace_nodes_and_values(
        graph, insertion_point=new_nodes[-1], old_nodes=old_nodes, new_nodes=[],
        old_values=[old_output], new_values=[new_output],
    )


def expose_as_outputs(graph: ir.Graph, values) -> None:
    """Make each value a graph output too (those already outputs stay as they are), so ONNX Runtime
    returns intermediate tensors: calibration, statistics and bias correction read them this way."""
    for value in values:
        if not value.is_graph_output() and not value.is_graph_input():
            graph.outputs.append(value)


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy: what a transform returns when it changed nothing."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    return proto

