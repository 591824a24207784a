"""What a derived model (pruned, distilled) costs against its original: parameters, MACs and the
channel count of every weighted layer.

* Parameters: elements of the floating-point initializers some node reads and Constant tensors, and of
  the quantized weights a DequantizeLinear or an operator-form quantized op (QLinearConv, QGemm, ...)
  reads (other integer tensors are shapes and indices; quantization scales and zero points are not counted).
* MACs: onnx-tool's profile at the feed's input shapes (its per-op conventions: a Conv counts
  C_out * H_out * W_out * C_in/group * k_h * k_w, a Gemm M * N * K plus the bias, element-wise ops
  one per element; a Q/DQ pair counts like an element-wise op, so a QDQ model shows more MACs than
  its float original). A model onnx-tool cannot profile gets no MAC figure and the reason instead.
* Channels: output channels of every Conv, ConvTranspose, Gemm and MatMul with a constant weight,
  matched by node name, else by position among those layers.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping

import numpy as np
import onnx

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# The weight (and int32 bias) inputs of ONNX Runtime's operator-form quantized ops: a QOperator model's
# weights are these integer tensors, never dequantized (hunt20: "params 78k -> 866 (0.01x)").
_AS_WEIGHTED = {"QLinearConv": ("Conv", 3), "QLinearMatMul": ("MatMul", 3), "QGemm": ("Gemm", 3)}  # (layer kind, weight input)
_MOVES = ("Gather", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten")
_INTEGER_WEIGHTS = {"QLinearConv": (3, 8), "QLinearMatMul": (3,), "QGemm": (3, 6), "ConvInteger": (1,), "MatMulInteger": (1,)}


def parameter_count(model: onnx.ModelProto) -> int:
    """Elements of the floating-point weights and of the quantized weights a DequantizeLinear reads;
    quantization scales and zero points, shapes and indices are not parameters, nor an initializer
    nothing reads (a pruned export that keeps its old weights beside the new ones counted them)."""
    from .protos import all_nodes

    read = {name for node in all_nodes(model) for name in node.input} | {o.name for o in model.graph.output}
    tensors = [t for t in model.graph.initializer if t.name in read]
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    producers = {out: n for n in model.graph.node for out in n.output}
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    # a weight gathered before it is dequantized (onnxruntime's quantized embedding: Gather(int8 table) -> DequantizeLinear)
    quantized |= {producers[name].input[0] for name in list(quantized) if name in producers and producers[name].op_type in _MOVES}
    quantized |= {n.input[i] for n in model.graph.node for i in _INTEGER_WEIGHTS.get(n.op_type, ()) if i < len(n.input)}
    scales = {i for n in model.graph.node if n.op_type in ("DequantizeLinear", "QuantizeLinear") for i in n.input[1:]}
    scales |= {name for n in model.graph.node if n.op_type in _INTEGER_WEIGHTS
               for i, name in enumerate(n.input) if i and i not in _INTEGER_WEIGHTS[n.op_type]}  # their scales, zero points
    floating = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
    counted = [t for t in tensors if (t.data_type in floating or t.name in quantized) and t.name not in scales]
    return int(sum(int(np.prod(t.dims, dtype=np.int64)) for t in counted))


def mac_count(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> tuple[float | None, str]:
    """(MACs, "") at the shapes of `feed`, or (None, why not)."""
    import onnx_tool  # here: only the derived-model comparison needs it

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints progress on some models
            graph = onnx_tool.Model(_copy(model), {"verbose": False}).graph
            graph.shape_infer({name: np.zeros(np.shape(array), np.asarray(array).dtype) for name, array in feed.items()})
            graph.profile()
        return float(graph.macs[0]), ""
    except Exception as exc:  # noqa: BLE001 - any op onnx-tool does not know: no figure, the reason instead
        return None, f"onnx-tool cannot profile the model: {type(exc).__name__}: {str(exc)[:200]}"


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def layer_channels(model: onnx.ModelProto) -> dict[str, int]:
    """Output channels of every weighted layer with a constant weight (or a dequantized one), in
    graph order."""
    weights = {t.name: t for t in model.graph.initializer}
    weights |= {n.output[0]: weights[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    channels = {}
    for index, node in enumerate(model.graph.node):
        kind, position = _AS_WEIGHTED.get(node.op_type, (node.op_type, 1))
        if kind in WEIGHTED_OPS and len(node.input) > position and node.input[position] in weights:
            dims = list(weights[node.input[position]].dims)
            channels[node.name or f"{node.op_type}#{index}"] = _output_channels(node, dims, kind)
    return {name: count for name, count in channels.items() if count is not None}


def _output_channels(node: onnx.NodeProto, dims: list[int], kind: str) -> int | None:
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if kind == "Conv" and dims:
        return dims[0]
    if kind == "ConvTranspose" and len(dims) > 1:
        return dims[1] * int(attributes.get("group", 1))
    if kind == "Gemm" and len(dims) == 2:
        return dims[0] if attributes.get("transB", 0) else dims[1]
    if kind == "MatMul" and len(dims) == 2:
        return dims[1]
    return None


def channel_differences(original: Mapping[str, int], derived: Mapping[str, int]) -> tuple[list[dict], str]:
    """The layers whose channel counts differ, and how layers were matched (by name, else by position)."""
    if set(original) == set(derived):
        pairs, how = [(name, name) for name in original], "by name"
    elif len(original) == len(derived):
        pairs, how = list(zip(original, derived)), "by position (layer names differ)"
    else:
        common = [name for name in original if name in derived]
        pairs, how = [(n, n) for n in common], f"by name ({len(original) - len(common)} original / {len(derived) - len(common)} derived layers unmatched)"
    rows = [{"layer": d, "original_layer": o, "original": original[o], "derived": derived[d]} for o, d in pairs if original[o] != derived[d]]
    return rows, how


def size_figures(original: onnx.ModelProto, derived: onnx.ModelProto, feed: Mapping[str, np.ndarray],
                 original_feed: Mapping[str, np.ndarray]) -> dict:
    """Parameters, MACs and channel differences of both models (JSON-ready)."""
    sides = {}
    for label, model, inputs in (("original", original, original_feed), ("derived", derived, feed)):
        macs, reason = mac_count(model, inputs)
        sides[label] = {"params": parameter_count(model), "macs": macs} | ({"macs_not_counted": reason} if reason else {})
    rows, how = channel_differences(layer_channels(original), layer_channels(derived))
    return sides | {"params_ratio": _ratio(sides, "params"), "macs_ratio": _ratio(sides, "macs"), "channels": rows, "layers_matched": how}


def _ratio(sides: dict, key: str) -> float | None:
    old, new = sides["original"][key], sides["derived"][key]
    return None if not old or new is None else new / old
