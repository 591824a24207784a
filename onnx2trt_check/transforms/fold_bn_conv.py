"""Fold an inference BatchNormalization into the Conv that reads it.

conv(BN(x)) with BN(x) = s * x + t per input channel becomes a conv with weight W * s (scaled along
the input-channel axis, per group) and bias b + sum(W * t). With zero pads this is exact. With pads,
the original conv sees padded zeros of BN(x) where the plain fold sees padded zeros of x, which it
then treats as if they were BN(0) = t: every output whose window overlaps the padding (a border band
as wide as the padding) is off by the out-of-bounds taps' sum of W * t.

A Pad between the two that only copies values within each channel (mode reflect, edge or wrap, on
the spatial axes: what torch's padding_mode='reflect'/'replicate' exports) commutes with the BN,
Pad(BN(x)) = BN(Pad(x)), so BN -> Pad -> Conv folds the same way into Pad -> Conv.

Modes: "exact" (the default) folds and adds a constant per-position correction, which is minus
that out-of-bounds sum, after the conv; it needs static spatial shapes. "plain" folds only (and, with
`check_feeds`, measures the border error with ONNX Runtime). "skip_padded" folds only convs with
zero pads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms import graph_utils as gu
from onnx2trt_check.transforms.base import TransformReport, TransformResult

MODES = ("exact", "plain", "skip_padded")


def fold_bn_conv(
    model: onnx.ModelProto, *, mode: str = "exact", check_feeds: Iterable[Mapping[str, np.ndarray]] | None = None
) -> TransformResult:
    """Fold every BatchNormalization -> Conv pair. `mode` is one of MODES; defaults to "exact".
    `check_feeds` (mode "plain" only) are input feeds on which the border error is measured and
    reported in `report.figures["border_error"]`; defaults to None (no measurement)."""
    if mode not in MODES:
        raise ConfigError(f"fold_bn_conv mode {mode!r} is unknown; use one of {', '.join(MODES)}")
    if check_feeds is not None and mode != "plain":
        raise ConfigError(f"check_feeds is only used with mode='plain', not mode={mode!r}; drop it or switch mode")
    ir_model = gu.to_ir(model, infer_shapes=(mode == "exact"))
    report = TransformReport()
    padded = []
    for bn in gu.live_nodes(ir_model.graph, "BatchNormalization"):
        _try_fold(ir_model.graph, bn, mode, report, padded)
    if not report.matches:
        return TransformResult(gu.copy_model(model), False, report)
    folded = gu.to_onnx(ir_model)
    if padded and check_feeds is not None:
        report.figures["border_error"] = measure_border_error(model, folded, padded, list(check_feeds))
    return TransformResult(folded, True, report)


def _try_fold(graph: ir.Graph, bn: ir.Node, mode: str, report: TransformReport, padded: list) -> None:
    """Fold one candidate or record why not; padded plain folds are appended to `padded`."""
    conv, pad = _conv_consumer(bn)
    if conv is None:
        return  # not a candidate: no Conv reads this BN as its data input
    labels = tuple(gu.node_label(n) for n in (bn, pad, conv) if n is not None)
    outcome = _pad_problem(pad) or _fold_problem(bn, conv, mode)
    if isinstance(outcome, str):
        report.skipped(labels, outcome)
        return
    geometry, (scale, shift) = outcome
    if mode == "plain" and any(geometry.pads):
        padded.append(PaddedFold(conv.inputs[0].name, conv.outputs[0].name, geometry))
    report.matched(labels, _rewrite(graph, bn, conv, geometry, scale, shift, mode, pad))


# Pad modes that copy values within a channel, so that Pad(BN(x)) = BN(Pad(x)).
_COMMUTING_PAD_MODES = ("reflect", "edge", "wrap")


def _conv_consumer(bn: ir.Node) -> tuple[ir.Node | None, ir.Node | None]:
    """(Conv, None) for a Conv that reads the BN output as its data input (the first such one);
    (Conv, Pad) for a Pad of the BN output read by a Conv; (None, None) when there is neither."""
    for usage in bn.outputs[0].uses():
        if gu.is_op(usage.node, "Conv") and usage.idx == 0:
            return usage.node, None
    for usage in bn.outputs[0].uses():
        reader = gu.sole_consumer(usage.node.outputs[0]) if gu.is_op(usage.node, "Pad") and usage.idx == 0 else None
        if gu.is_op(reader, "Conv") and reader.inputs[0] is usage.node.outputs[0]:
            return reader, usage.node
    return None, None


def _pad_problem(pad: ir.Node | None) -> str:
    """Why the BN may not move behind `pad` ("" when it may, or there is no Pad)."""
    if pad is None:
        return ""
    pad_mode = gu.attr(pad, "mode", "constant")
    pad_mode = pad_mode.decode() if isinstance(pad_mode, bytes) else pad_mode
    if pad_mode not in _COMMUTING_PAD_MODES:
        return f"Pad mode '{pad_mode}' between BN and Conv pads with a value, not copies of the BN's output; only reflect/edge/wrap commute"
    pads = gu.constant_array(pad.inputs[1]) if len(pad.inputs) > 1 else None
    if pads is None or (len(pad.inputs) > 3 and pad.inputs[3] is not None):
        return "Pad pads are not a constant over every axis (or it has an axes input)"
    rank = pads.size // 2
    if any(pads[axis] or pads[rank + axis] for axis in (0, 1)):
        return f"Pad pads {pads.tolist()} pad the batch or channel axis"
    return ""


def _fold_problem(bn: ir.Node, conv: ir.Node, mode: str):
    """(geometry, (scale, shift)) when the pair can be folded in `mode`, else the reason."""
    count = gu.consumer_count(bn.outputs[0])
    if count != 1:
        return f"BN output has {count} consumers"
    if not gu.only_feeds(conv.inputs[0], conv):
        return f"Pad output '{conv.inputs[0].name}' has {gu.consumer_count(conv.inputs[0])} consumers"
    affine = gu.inference_batchnorm(bn)
    if isinstance(affine, str):
        return affine
    geometry = gu.conv_geometry(conv)
    if isinstance(geometry, str):
        return geometry
    in_channels = geometry.weight.shape[1] * geometry.group
    if affine[0].size != in_channels:
        return f"BatchNormalization has {affine[0].size} channels, Conv reads {in_channels}"
    if any(geometry.pads) and mode == "skip_padded":
        return f"Conv pads {list(geometry.pads)} are not zero: a fold would differ at the border (mode='skip_padded')"
    if any(geometry.pads) and mode == "exact" and _input_spatial(conv) is None:
        shape = conv.inputs[0].shape
        return (f"Conv input spatial shape is dynamic ({shape}); the exact fold of a padded Conv needs static "
                "spatial dims (mode='plain' accepts a border error)")
    return geometry, affine


def _input_spatial(conv: ir.Node) -> tuple[int, ...] | None:
    shape = conv.inputs[0].shape
    if shape is None or any(not isinstance(d, int) for d in list(shape)[2:]):
        return None
    return tuple(list(shape)[2:])


def per_input_channel(values: np.ndarray, geometry: gu.ConvGeometry) -> np.ndarray:
    """`values` (one per input channel) laid out like the weight's first two axes
    [C_out, C_in/group]: output channel o of group g reads input channels g*(C_in/group) + i."""
    c_out, c_in_per_group = geometry.weight.shape[:2]
    rows = np.arange(c_out) // (c_out // geometry.group)
    return values.reshape(geometry.group, c_in_per_group)[rows]


def folded_weights(geometry: gu.ConvGeometry, scale: np.ndarray, shift: np.ndarray):
    """(W * s per input channel, b + sum(W * t)) in float64."""
    weight = geometry.weight.astype(np.float64)
    spatial = (1,) * (weight.ndim - 2)
    scaled = weight * per_input_channel(scale, geometry).reshape(weight.shape[:2] + spatial)
    shift_map = per_input_channel(shift, geometry).reshape(weight.shape[:2] + spatial)
    bias = np.zeros(weight.shape[0]) if geometry.bias is None else geometry.bias.astype(np.float64)
    return scaled, bias + (weight * shift_map).sum(axis=tuple(range(1, weight.ndim)))


def _rewrite(graph, bn, conv, geometry, scale, shift, mode, pad=None) -> str:
    """Replace bn -> [pad ->] conv by [pad ->] the folded conv (and the correction Add in exact mode)."""
    dtype = geometry.weight.dtype
    weight, bias = folded_weights(geometry, scale, shift)
    base = conv.name or conv.outputs[0].name
    new_nodes = [] if pad is None else [ir.node("Pad", [bn.inputs[0], *pad.inputs[1:]], attributes=dict(pad.attributes),
                                                name=pad.name or None)]
    source = new_nodes[0].outputs[0] if new_nodes else bn.inputs[0]
    inputs = [source, gu.add_initializer(graph, weight.astype(dtype), name_hint=f"{base}_bnfold_weight"),
              gu.add_initializer(graph, bias.astype(dtype), name_hint=f"{base}_bnfold_bias")]
    new_nodes.append(ir.node("Conv", inputs, attributes=dict(conv.attributes), name=conv.name or None))
    through = "" if pad is None else f" behind its {gu.attr(pad, 'mode', 'constant')!s} Pad"
    detail = f"folded BN into Conv{through} (no padding: exact)"
    if any(geometry.pads) and mode == "exact":
        correction = border_correction(geometry, shift, _input_spatial(conv)).astype(dtype)
        correction_value = gu.add_initializer(graph, correction, name_hint=f"{base}_bnfold_border")
        new_nodes.append(ir.node("Add", [new_nodes[-1].outputs[0], correction_value], name=f"{base}_bnfold_border_add"))
        detail = f"folded BN into Conv{through} plus a border correction of shape {list(correction.shape)}"
    elif any(geometry.pads):
        detail = f"folded BN into Conv{through} (plain: differs in the border band, pads {list(geometry.pads)})"
    old_params = conv.inputs[1:] + bn.inputs[1:]
    old_nodes = [bn, conv] if pad is None else [bn, pad, conv]
    gu.replace_with_nodes(graph, old_nodes, new_nodes, conv.outputs[0], new_nodes[-1].outputs[0])
    gu.drop_unused_initializers(graph, old_params)
    return detail


def border_correction(geometry: gu.ConvGeometry, shift: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """[1, C_out, *out_spatial]: what the original conv gives minus what the plain fold gives.

    That is minus the sum of W * t over the taps that fall into the padding, obtained by running
    the unpadded conv (ONNX Runtime, so strides, dilations and groups follow the operator's own
    definition) over a map that is t in the padding and 0 inside: interior outputs are exactly 0.
    """
    rank = len(spatial)
    padded_shape = tuple(n + b + e for n, b, e in zip(spatial, geometry.pads_begin, geometry.pads_end))
    pad_map = np.broadcast_to(shift.reshape((1, -1) + (1,) * rank), (1, shift.size) + padded_shape).copy()
    inside = tuple(slice(b, b + n) for b, n in zip(geometry.pads_begin, spatial))
    pad_map[(slice(None), slice(None)) + inside] = 0.0
    return -_run_conv(geometry, pad_map.astype(np.float32))


def _run_conv(geometry: gu.ConvGeometry, x: np.ndarray) -> np.ndarray:
    """The geometry's conv with no pads and no bias on `x`, run once in ONNX Runtime (float32)."""
    x_value = ir.Value(name="x", shape=ir.Shape(x.shape), type=ir.TensorType(ir.DataType.FLOAT))
    w_tensor = ir.tensor(geometry.weight.astype(np.float32), name="w")
    w_value = ir.Value(name="w", shape=ir.Shape(w_tensor.shape), type=ir.TensorType(ir.DataType.FLOAT),
                       const_value=w_tensor)
    attributes = {"strides": list(geometry.strides), "dilations": list(geometry.dilations), "group": geometry.group}
    node = ir.node("Conv", [x_value, w_value], attributes=attributes)
    node.outputs[0].name = "y"
    node.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
    graph = ir.Graph([x_value], node.outputs, nodes=[node], initializers=[w_value], opset_imports={"": 17})
    model = gu.to_onnx(ir.Model(graph, ir_version=8))
    return run_model(model, [{"x": x}])[0]["y"].astype(np.float64)


# --- measuring the plain fold's border error -------------------------------------------------------


class PaddedFold:
    """Where a padded plain fold happened: the BN input, the conv output, the conv geometry."""

    def __init__(self, input_name: str, output_name: str, geometry: gu.ConvGeometry):
        self.input_name, self.output_name, self.geometry = input_name, output_name, geometry


def border_band(geometry: gu.ConvGeometry, spatial: tuple[int, ...], out_spatial: tuple[int, ...]) -> np.ndarray:
    """Boolean mask over the conv output: True where the window reaches into the padding."""
    band = np.zeros(out_spatial, dtype=bool)
    for axis, (n, size) in enumerate(zip(spatial, out_spatial)):
        first_tap = np.arange(size) * geometry.strides[axis] - geometry.pads_begin[axis]
        last_tap = first_tap + (geometry.kernel[axis] - 1) * geometry.dilations[axis]
        outside = (first_tap < 0) | (last_tap > n - 1)
        band |= outside.reshape([-1 if a == axis else 1 for a in range(len(spatial))])
    return band


def measure_border_error(original: onnx.ModelProto, folded: onnx.ModelProto, padded, feeds) -> dict:
    """Per folded conv: max abs error inside the border band and in the interior over `feeds`."""
    names = [name for fold in padded for name in (fold.input_name, fold.output_name)]
    reference = run_model(_exposing(original, names), feeds)
    candidate = run_model(_exposing(folded, [fold.output_name for fold in padded]), feeds)
    figures = {}
    for fold in padded:
        border, interior = 0.0, 0.0
        for ref, got in zip(reference, candidate):
            error = np.abs(got[fold.output_name].astype(np.float64) - ref[fold.output_name])
            band = border_band(fold.geometry, ref[fold.input_name].shape[2:], error.shape[2:])
            border = max(border, float(error[..., band].max(initial=0.0)))
            interior = max(interior, float(error[..., ~band].max(initial=0.0)))
        figures[fold.output_name] = {"border_max_abs": border, "interior_max_abs": interior,
                                     "pads": list(fold.geometry.pads)}
    return figures


def _exposing(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` whose graph outputs also include the values called `names`."""
    ir_model = gu.to_ir(model)
    graph = ir_model.graph
    by_name = {value.name: value for node in graph for value in node.outputs}
    by_name.update({value.name: value for value in graph.inputs})
    for name in dict.fromkeys(names):
        if not any(out.name == name for out in graph.outputs):
            graph.outputs.append(by_name[name])
    return gu.to_onnx(ir_model)
