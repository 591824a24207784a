"""Fold an inference BatchNormalization into the Conv or ConvTranspose that feeds it.

BN(conv(x)) = scale * (W*x + b) + shift per output channel, so the folded layer has weight
scale * W (scaled along its output-channel axis) and bias scale * b + shift. The fold is exact up to
rounding. Candidates are BatchNormalization nodes fed by a Conv/ConvTranspose; each is either
folded or skipped with its reason.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.transforms import graph_utils as gu
from onnx2trt_check.transforms.base import TransformReport, TransformResult


def fold_conv_bn(model: onnx.ModelProto) -> TransformResult:
    """Fold every Conv/ConvTranspose -> BatchNormalization pair into one layer with a bias."""
    ir_model = gu.to_ir(model)
    graph = ir_model.graph
    report = TransformReport()
    for bn in gu.live_nodes(graph, "BatchNormalization"):
        conv = bn.inputs[0].producer() if bn.inputs and bn.inputs[0] is not None else None
        if not gu.is_op(conv, "Conv", "ConvTranspose"):
            continue  # not a candidate: fold_bn_conv or nothing handles it
        labels = (gu.node_label(conv), gu.node_label(bn))
        outcome = _fold_pair(graph, conv, bn)
        if isinstance(outcome, str):
            report.skipped(labels, outcome)
        else:
            report.matched(labels, outcome[1])
    modified = bool(report.matches)
    return TransformResult(gu.to_onnx(ir_model) if modified else gu.copy_model(model), modified, report)


def scale_output_channels(weight: np.ndarray, scale: np.ndarray, *, transposed: bool, group: int) -> np.ndarray:
    """`weight` with output channel o multiplied by scale[o].

    A Conv weight is [C_out, C_in/group, k...]; a ConvTranspose weight is [C_in, C_out/group, k...]
    where output channel o = g * (C_out/group) + j lives at axis 1 index j of the rows of group g.
    """
    if not transposed:
        return weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    c_in, c_out_per_group = weight.shape[:2]
    grouped = weight.reshape((group, c_in // group, c_out_per_group) + weight.shape[2:])
    factor = scale.reshape((group, 1, c_out_per_group) + (1,) * (weight.ndim - 2))
    return (grouped * factor).reshape(weight.shape)


def output_channels(geometry: gu.ConvGeometry, *, transposed: bool) -> int:
    return geometry.weight.shape[1] * geometry.group if transposed else geometry.weight.shape[0]


def _fold_pair(graph: ir.Graph, conv: ir.Node, bn: ir.Node) -> tuple[ir.Node, str] | str:
    """Rewrite conv -> bn into one node, or return why not."""
    reason = _pair_problem(conv, bn)
    if reason:
        return reason
    geometry = gu.conv_geometry(conv)
    if isinstance(geometry, str):
        return geometry
    scale, shift = gu.inference_batchnorm(bn)
    transposed = conv.op_type == "ConvTranspose"
    channels = output_channels(geometry, transposed=transposed)
    if scale.size != channels:
        return f"BatchNormalization has {scale.size} channels, {conv.op_type} outputs {channels}"
    weight, bias = _folded_weights(geometry, scale, shift, transposed=transposed)
    new_conv = _rebuilt_conv(graph, conv, weight, bias)
    old_params = conv.inputs[1:] + bn.inputs[1:]
    gu.replace_with_nodes(graph, [conv, bn], [new_conv], bn.outputs[0], new_conv.outputs[0])
    gu.drop_unused_initializers(graph, old_params)
    return new_conv, f"folded into {conv.op_type} ({channels} channels)"


def _pair_problem(conv: ir.Node, bn: ir.Node) -> str:
    """Why the pair's wiring forbids the fold ("" when it does not)."""
    conv_out = conv.outputs[0]
    if conv_out.is_graph_output():
        return f"{conv.op_type} output '{conv_out.name}' is a graph output"
    if not gu.only_feeds(conv_out, bn):
        return f"{conv.op_type} output '{conv_out.name}' has {gu.consumer_count(conv_out)} consumers"
    bn_form = gu.inference_batchnorm(bn)
    return bn_form if isinstance(bn_form, str) else ""


def _folded_weights(geometry: gu.ConvGeometry, scale, shift, *, transposed: bool):
    """Folded (weight, bias), computed in float64 and cast back to the weight's dtype."""
    dtype = geometry.weight.dtype
    weight = scale_output_channels(
        geometry.weight.astype(np.float64), scale, transposed=transposed, group=geometry.group
    )
    bias = np.zeros_like(scale) if geometry.bias is None else geometry.bias.astype(np.float64)
    return weight.astype(dtype), (bias * scale + shift).astype(dtype)


def _rebuilt_conv(graph: ir.Graph, conv: ir.Node, weight: np.ndarray, bias: np.ndarray) -> ir.Node:
    """A copy of `conv` (same op and attributes) reading the new weight and bias."""
    base = conv.name or conv.outputs[0].name
    weight_value = gu.add_initializer(graph, weight, name_hint=f"{base}_folded_weight")
    bias_value = gu.add_initializer(graph, bias, name_hint=f"{base}_folded_bias")
    return ir.node(
        conv.op_type,
        [conv.inputs[0], weight_value, bias_value],
        attributes=dict(conv.attributes),
        name=conv.name or None,
    )
