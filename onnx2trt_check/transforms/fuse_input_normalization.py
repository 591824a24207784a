"""Fold input normalization into the first Convs, so the deployed model reads raw pixels.

Two sources of normalization:

* in the graph: a chain of per-channel affine ops on a graph input or on its Cast to a floating
  type (a uint8 image input) (Sub, Add, Mul, Div by constants, or an inference
  BatchNormalization), e.g. `Div(Sub(x, mean), std)`, whose result feeds only Convs (as their data
  input);
* outside the model (`mean=`/`std=` given): the caller normalizes before feeding; the result takes
  raw values instead, so the consumers of each graph input must all be Convs.

With y = a * x + b per channel (a = 1/std, b = -mean/std), a Conv over y is a Conv over x with
W' = W * a (per input channel) and bias' = bias + sum(W * b) over each filter.

Padding: a padded Conv over y sees zeros in the padded area, i.e. raw value -b/a = mean; the folded
Conv sees raw zeros there. So the plain fold is wrong at the border by the taps that fall in the
padding: sum over those taps of W * b. For static spatial shapes an exact per-position constant is
added after the Conv (computed here in float64); for dynamic ones the candidate is skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import onnx
import onnx_ir as ir
from numpy.lib.stride_tricks import sliding_window_view

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.transforms.base import TransformReport, TransformResult
from onnx2trt_check.transforms.graph_utils import (
    add_initializer,
    constant_array,
    conv_geometry,
    drop_unused_initializers,
    inference_batchnorm,
    is_op,
    node_label,
    to_ir,
    to_onnx,
    unique_name,
)

_AFFINE_OPS = ("Sub", "Add", "Mul", "Div", "BatchNormalization")
_FLOAT_TYPES = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16)


@dataclasses.dataclass
class _Chain:
    """Affine nodes from a graph input: their composition y = scale * x + shift per channel."""

    nodes: list[ir.Node]
    scale: np.ndarray
    shift: np.ndarray
    end: ir.Value
    stopped_because: str = ""


@dataclasses.dataclass(frozen=True)
class _ConvFold:
    conv: ir.Node
    weight: np.ndarray
    bias: np.ndarray
    correction: np.ndarray | None  # added after the Conv: the exact border term of a padded Conv


def fuse_input_normalization(
    model: onnx.ModelProto, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> TransformResult:
    """Fold input normalization into the Convs that read it.

    Without `mean`/`std`, folds the normalization ops found in the graph. With them (per-channel
    lists, or one value for all channels), folds normalization done outside the model, so the
    result reads raw values. Giving only one of them defaults the other: mean to 0, std to 1.
    """
    external = _external_affine(mean, std)
    ir_model = to_ir(model)
    report = TransformReport()
    if external is not None and _ambiguous_external(ir_model.graph, external, report):
        return TransformResult(_copy(model), False, report)
    for graph_input in list(ir_model.graph.inputs):
        if external is None:
            for source in [graph_input, *_float_casts(graph_input)]:
                _fold_graph_chains(ir_model.graph, source, report)
        else:
            _fold_external(ir_model.graph, graph_input, external, report)
    if not report.matches:
        return TransformResult(_copy(model), False, report)
    return TransformResult(to_onnx(ir_model), True, report)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _external_affine(mean, std) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) of `(x - mean) / std`, or None when neither is given."""
    if mean is None and std is None:
        return None
    mean = np.atleast_1d(np.asarray(0.0 if mean is None else mean, dtype=np.float64))
    std = np.atleast_1d(np.asarray(1.0 if std is None else std, dtype=np.float64))
    if mean.ndim != 1 or std.ndim != 1 or not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ConfigError(f"mean {mean.tolist()} / std {std.tolist()}: pass flat lists of finite numbers per channel")
    if np.any(std == 0):
        raise ConfigError(f"std {std.tolist()} has a zero; pass the nonzero per-channel std of the preprocessing")
    if mean.size != std.size and 1 not in (mean.size, std.size):
        raise ConfigError(f"mean has {mean.size} values and std {std.size}; pass one per channel for both")
    return 1.0 / std, -mean / std


# --- the two sources ------------------------------------------------------------------------------


def _fold_graph_chains(graph: ir.Graph, graph_input: ir.Value, report: TransformReport) -> None:
    for node in list(graph_input.consumers()):
        if not is_op(node, *_AFFINE_OPS):
            continue
        problem = _input_problem(graph_input)
        chain = None if problem else _walk_chain(node, graph_input)
        if chain is None or not chain.nodes:
            report.skipped([node_label(node)], problem or chain.stopped_because)
        elif _fold_into_convs(graph, graph_input, chain, report):
            _remove_chain(graph, chain.nodes)


def _float_casts(graph_input: ir.Value) -> list[ir.Value]:
    """Outputs of Casts of `graph_input` to a floating type: a uint8 image input is normalized
    after its Cast, and a chain from there folds as from the input (the Convs then read the Cast's
    output). The Cast keeps the input's shape, which the folds read; it is written on the output."""
    casts = []
    for node in graph_input.consumers():
        to = node.attributes.get("to") if is_op(node, "Cast") else None
        if to is not None and ir.DataType(to.value) in _FLOAT_TYPES and graph_input.shape is not None:
            output = node.outputs[0]
            output.type, output.shape = ir.TensorType(ir.DataType(to.value)), ir.Shape(list(graph_input.shape))
            casts.append(output)
    return casts


def _fold_external(graph: ir.Graph, graph_input: ir.Value, affine, report: TransformReport) -> None:
    problem = _input_problem(graph_input)
    if problem:
        report.skipped([graph_input.name], problem)
        return
    scale, shift = affine
    if _fold_into_convs(graph, graph_input, _Chain([], scale, shift, graph_input), report):
        report.figures["external_scale"] = scale.tolist()
        report.figures["external_shift"] = shift.tolist()


def _ambiguous_external(graph: ir.Graph, affine, report: TransformReport) -> bool:
    """Whether several graph inputs would take the external normalization (all skipped, with the
    reason): `mean`/`std` describe one input's preprocessing, and folding them into a second one
    (a mask, a depth map) made the result compute on (mask - mean) / std, while verification fed
    both inputs "raw" alike and passed."""
    fitting = [value.name for value in graph.inputs if _external_fits(value, affine)]
    if len(fitting) < 2:
        return False
    report.skipped(fitting, f"--mean/--std fit {len(fitting)} inputs read by Convs ({', '.join(fitting)}): which one the "
                            "preprocessing normalizes is ambiguous, and folding it into every one changes the others; "
                            "fold normalization written in the graph instead (leave --mean/--std out)")
    return True


def _external_fits(graph_input: ir.Value, affine) -> bool:
    """Whether an external (scale, shift) would fold into the Convs reading `graph_input`."""
    if _input_problem(graph_input) or _consumers_problem(graph_input):
        return False
    chain = _Chain([], *affine, graph_input)
    return all(isinstance(_plan_conv(use.node, chain, graph_input), _ConvFold) for use in graph_input.uses())


def _input_problem(graph_input: ir.Value) -> str:
    if graph_input.dtype not in _FLOAT_TYPES:
        return f"input '{graph_input.name}' is {graph_input.dtype}, not floating point"
    if graph_input.shape is None or len(graph_input.shape) < 3:
        return f"input '{graph_input.name}' has no known rank >= 3 (N, C, spatial...)"
    return ""


# --- matching the affine chain ---------------------------------------------------------------------


def _walk_chain(first: ir.Node, graph_input: ir.Value) -> _Chain:
    """Follow affine ops from `graph_input` while each intermediate has a single reader."""
    rank = len(graph_input.shape)
    chain = _Chain([], np.ones(1), np.zeros(1), graph_input)
    node = first
    while is_op(node, *_AFFINE_OPS):
        step = _affine_step(node, chain.end, rank)
        if isinstance(step, str):
            chain.stopped_because = f"{node.op_type} '{node_label(node)}': {step}"
            break
        composed = _compose(chain, *step)
        if isinstance(composed, str):
            chain.stopped_because = f"{node.op_type} '{node_label(node)}': {composed}"
            break
        chain.nodes.append(node)
        chain.end = node.outputs[0]
        uses = chain.end.uses()
        node = uses[0].node if len(uses) == 1 and not chain.end.is_graph_output() else None
    return chain


def _compose(chain: _Chain, a: np.ndarray, b: np.ndarray) -> str | None:
    """chain := a * chain + b, per channel."""
    sizes = {chain.scale.size, np.size(a), np.size(b)} - {1}
    if len(sizes) > 1:
        return f"per-channel operands of different lengths {sorted(sizes)}"
    chain.scale, chain.shift = np.atleast_1d(a * chain.scale), np.atleast_1d(a * chain.shift + b)
    return None


def _affine_step(node: ir.Node, value: ir.Value, rank: int):
    """(a, b) with node(value) = a * value + b per channel, or why the node is not such a step."""
    if node.op_type == "BatchNormalization":
        return inference_batchnorm(node) if node.inputs[0] is value else "reads the input as a parameter"
    if len(node.inputs) != 2 or node.inputs[0] is node.inputs[1]:
        return "does not combine the input with one constant"
    data_first = node.inputs[0] is value
    operand = node.inputs[1] if data_first else node.inputs[0]
    const = constant_array(operand)
    if const is None:
        return f"operand '{operand.name}' is not a constant"
    c = _per_channel(const, rank)
    if isinstance(c, str):
        return c
    return _binary_affine(node.op_type, c, data_first)


def _binary_affine(op_type: str, c: np.ndarray, data_first: bool):
    if op_type == "Add":
        return np.ones(1), c
    if op_type == "Mul":
        return c, np.zeros(1)
    if op_type == "Sub":
        return (np.ones(1), -c) if data_first else (-np.ones(1), c)
    if not data_first:
        return "divides a constant by the input (not affine)"
    if np.any(c == 0):
        return "divisor has zeros"
    return 1.0 / c, np.zeros(1)


def _per_channel(const: np.ndarray, rank: int) -> np.ndarray | str:
    """The operand as a vector over axis 1 (length 1 or C), or why it is not per channel."""
    if const.ndim > rank:
        return f"operand of shape {list(const.shape)} broadcasts the input to a higher rank"
    shape = (1,) * (rank - const.ndim) + const.shape
    if any(dim != 1 for axis, dim in enumerate(shape) if axis != 1):
        return f"operand of shape {list(const.shape)} varies along a non-channel axis"
    return const.astype(np.float64).reshape(-1)


# --- folding into the Convs -----------------------------------------------------------------------


def _fold_into_convs(graph: ir.Graph, graph_input: ir.Value, chain: _Chain, report: TransformReport) -> bool:
    """Make every Conv reading `chain.end` read `graph_input` with folded weights; all or none."""
    labels = [node_label(n) for n in chain.nodes] or [graph_input.name]
    problem = _consumers_problem(chain.end)
    folds = [] if problem else [_plan_conv(use.node, chain, graph_input) for use in chain.end.uses()]
    problem = problem or next((f for f in folds if isinstance(f, str)), "")
    if problem:
        report.skipped(labels, problem + (f" ({chain.stopped_because})" if chain.stopped_because else ""))
        return False
    for fold in folds:
        _apply(graph, fold, graph_input)
    corrected = sum(fold.correction is not None for fold in folds)
    convs = [node_label(fold.conv) for fold in folds]
    report.matched(labels + convs, f"folded into {len(folds)} Conv(s), {corrected} with a border correction")
    return True


def _consumers_problem(value: ir.Value) -> str:
    if value.is_graph_output():
        return f"normalized value '{value.name}' is a graph output"
    if not value.uses():
        return f"normalized value '{value.name}' has no reader"
    for node, index in value.uses():
        if not is_op(node, "Conv"):
            return f"normalized value '{value.name}' also feeds {node.op_type} '{node_label(node)}'"
        if index != 0:
            return f"normalized value '{value.name}' is a parameter of Conv '{node_label(node)}'"
    return ""


def _plan_conv(conv: ir.Node, chain: _Chain, graph_input: ir.Value) -> _ConvFold | str:
    """The folded weight, bias and border correction for one Conv, or why it cannot fold."""
    geometry = conv_geometry(conv)
    if isinstance(geometry, str):
        return f"Conv '{node_label(conv)}': {geometry}"
    channels = geometry.weight.shape[1] * geometry.group
    problem = _channel_problem(conv, chain, graph_input, channels)
    if problem:
        return problem
    shift = np.broadcast_to(chain.shift, channels)
    correction = None
    if any(geometry.pads) and np.any(shift != 0):
        spatial = _static_spatial(graph_input)
        if spatial is None:
            return (f"Conv '{node_label(conv)}' pads its input and input '{graph_input.name}' has a dynamic "
                    f"spatial shape; the plain fold would be wrong at the border")
        correction = _border_correction(shift, geometry, spatial).astype(geometry.weight.dtype)
    weight, bias = _folded_weights(geometry, np.broadcast_to(chain.scale, channels), shift)
    return _ConvFold(conv, weight, bias, correction)


def _folded_weights(geometry, scale: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W * scale per input channel and bias + sum(W * shift) per filter, computed in float64 and
    returned in the weight's dtype."""
    weight = geometry.weight.astype(np.float64)
    scale, shift = (_per_filter(v, weight.shape, geometry.group) for v in (scale, shift))
    bias = 0.0 if geometry.bias is None else geometry.bias.astype(np.float64)
    dtype = geometry.weight.dtype
    return (weight * scale).astype(dtype), (bias + _filter_sums(weight * shift)).astype(dtype)


def _channel_problem(conv: ir.Node, chain: _Chain, graph_input: ir.Value, channels: int) -> str:
    sizes = {chain.scale.size, chain.shift.size} - {1}
    if sizes and sizes != {channels}:
        return f"normalization has {sizes.pop()} channels, Conv '{node_label(conv)}' reads {channels}"
    input_channels = graph_input.shape[1]
    if input_channels != channels:
        return f"input '{graph_input.name}' has {input_channels} channels, Conv '{node_label(conv)}' reads {channels}"
    return ""


def _per_filter(per_channel: np.ndarray, weight_shape: tuple[int, ...], group: int) -> np.ndarray:
    """A per-input-channel vector laid out like the weight [M, C/group, 1...]: the channel each
    weight element multiplies, accounting for groups."""
    filters, per_group = weight_shape[0], weight_shape[1]
    group_of_filter = np.arange(filters) // (filters // group)
    laid_out = per_channel.reshape(group, per_group)[group_of_filter]
    return laid_out.reshape(filters, per_group, *([1] * (len(weight_shape) - 2)))


def _filter_sums(weighted: np.ndarray) -> np.ndarray:
    return weighted.sum(axis=tuple(range(1, weighted.ndim)))


def _static_spatial(value: ir.Value) -> tuple[int, ...] | None:
    dims = tuple(value.shape)[2:]
    return dims if all(isinstance(d, int) for d in dims) else None


def _border_correction(shift: np.ndarray, geometry, spatial) -> np.ndarray:
    """What the folded Conv adds too much at each output position: the taps landing in padding,
    times the shift of their channel. Returned negated and shaped [1, M, *out] to add after it."""
    ring = _padding_ring(shift, spatial, geometry.pads_begin, geometry.pads_end)
    weight = geometry.weight.astype(np.float64)
    return -_correlate(ring, weight, geometry.strides, geometry.dilations, geometry.group)[None]


def _padding_ring(per_channel: np.ndarray, spatial, begin, end) -> np.ndarray:
    """A padded image [C, *padded] holding each channel's value in the padding and 0 inside."""
    padded = tuple(s + b + e for s, b, e in zip(spatial, begin, end))
    ring = np.broadcast_to(per_channel.reshape(-1, *([1] * len(spatial))), (per_channel.size, *padded)).copy()
    ring[(slice(None), *(slice(b, b + s) for b, s in zip(begin, spatial)))] = 0.0
    return ring


def _correlate(image: np.ndarray, weight: np.ndarray, strides, dilations, group: int) -> np.ndarray:
    """ONNX Conv (no padding, no bias) of one image [C, *spatial] in float64.

    Written by hand because it must run in float64 on the weights of one Conv at fold time; ONNX
    Runtime's CPU Conv is float32 only and scipy has no strided, dilated, grouped correlation.
    """
    rank = weight.ndim - 2
    extent = [(k - 1) * d + 1 for k, d in zip(weight.shape[2:], dilations)]
    windows = sliding_window_view(image, extent, axis=tuple(range(1, 1 + rank)))
    steps = (*(slice(None, None, s) for s in strides), *(slice(None, None, d) for d in dilations))
    windows = windows[(slice(None), *steps)]
    filters, per_group = weight.shape[0] // group, weight.shape[1]
    weight_axes = list(range(1, 2 + rank))
    window_axes = [0, *range(1 + rank, 1 + 2 * rank)]
    parts = [
        np.tensordot(weight[g * filters:(g + 1) * filters], windows[g * per_group:(g + 1) * per_group],
                     axes=(weight_axes, window_axes))
        for g in range(group)
    ]
    return np.concatenate(parts, axis=0)


# --- editing --------------------------------------------------------------------------------------


def _apply(graph: ir.Graph, fold: _ConvFold, graph_input: ir.Value) -> None:
    conv, label = fold.conv, node_label(fold.conv)
    old_params = list(conv.inputs[1:])
    if len(conv.inputs) < 3:
        conv.resize_inputs(3)
    conv.replace_input_with(0, graph_input)
    conv.replace_input_with(1, add_initializer(graph, fold.weight, name_hint=f"{label}_weight_raw_input"))
    conv.replace_input_with(2, add_initializer(graph, fold.bias, name_hint=f"{label}_bias_raw_input"))
    drop_unused_initializers(graph, old_params)
    if fold.correction is not None:
        _add_after(graph, conv, add_initializer(graph, fold.correction, name_hint=f"{label}_border_correction"))


def _add_after(graph: ir.Graph, conv: ir.Node, constant: ir.Value) -> None:
    """Insert `Add(conv output, constant)`; it takes over the output's name and every reader."""
    out = conv.outputs[0]
    uses = list(out.uses())
    add = ir.node("Add", [out, constant], name=f"{node_label(conv)}_border_correction")
    name = out.name
    out.name = unique_name(graph, f"{name}_before_border_correction")
    add.outputs[0].name, add.outputs[0].type, add.outputs[0].shape = name, out.type, out.shape
    for node, index in uses:
        node.replace_input_with(index, add.outputs[0])
    for position, output in enumerate(graph.outputs):
        if output is out:
            graph.outputs[position] = add.outputs[0]
    graph.insert_after(conv, add)


def _remove_chain(graph: ir.Graph, nodes: list[ir.Node]) -> None:
    operands = [value for node in nodes for value in node.inputs[1:] if value is not None]
    operands += [node.inputs[0] for node in nodes if node.inputs[0] is not None]
    graph.remove(nodes, safe=True)
    for value in operands:
        producer = value.producer()
        if is_op(producer, "Constant") and not value.uses() and not value.is_graph_output():
            graph.remove(producer, safe=True)
    drop_unused_initializers(graph, operands)
