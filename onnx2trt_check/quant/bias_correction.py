"""Bias correction (Nagel et al. 2019, section 4.2): compensate the expected output error that
quantizing a layer's weights introduces, E[(W_q - W) x] per output channel, by subtracting it
from the layer's bias. The corrected model keeps float weights; the quantizer quantizes them later,
and the correction then cancels the mean of their error.

`correct_bias` is the empirical version: it measures E[(W_q - W) x] on calibration feeds.
Corrections are computed in parallel, every layer's x taken from the *float* model, not
sequentially through the quantized model as the paper's empirical version does. Why: this module
only knows the weight quantizer, not how activations will be quantized, so a "quantized model" to
run sequentially does not exist yet; with float inputs each correction is exactly the mean
error of its own layer (what the caller can verify) and one ONNX Runtime run serves every layer.
The price: the shift that upstream weight errors cause in a layer's input is not compensated.

`analytic_bias_correction` is the data-free version: with x = Relu(BN(.)) (or BN(.)) and BN's
output taken as N(beta, gamma^2) per channel, E[x] is the clipped normal expectation and
E[(W_q - W) x] = (W_q - W) E[x] (exact away from zero-padded borders, which the paper ignores too).

The graph helpers at the bottom (initializer_array, set_constant, ensure_bias, capture_values, label)
are shared with quant/equalize.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
from scipy import special

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.quant.qdq_math import (
    fake_quantize,
    per_channel_amax,
    per_tensor_amax,
    symmetric_scale,
)
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.base import TransformReport, TransformResult
from onnx2trt_check.transforms.graph_utils import expose_as_outputs, node_label

WeightQuantizer = Callable[[np.ndarray, int], np.ndarray]
_LAYER_OPS = ("Conv", "Gemm")


def per_channel_int8(weight: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8 fake quantization with one scale per slice along `axis` (the output channel)."""
    return fake_quantize(weight, symmetric_scale(per_channel_amax(weight, axis)), axis=axis)


def per_tensor_int8(weight: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8 fake quantization with one scale for the whole tensor (`axis` is unused)."""
    return fake_quantize(weight, symmetric_scale(per_tensor_amax(weight)))


def correct_bias(
    model: onnx.ModelProto,
    calibration_feeds: Iterable[Mapping[str, np.ndarray]],
    *,
    weight_quantizer: WeightQuantizer = per_channel_int8,
    nodes: Sequence[str] | None = None,
) -> TransformResult:
    """Empirical bias correction of every Conv/Gemm with a constant weight (or only the ones named
    in `nodes`). `weight_quantizer(weight, axis)` returns the fake-quantized weight, `axis` being
    the output-channel axis; defaults to per-channel symmetric int8 (`per_channel_int8`)."""
    feeds = list(calibration_feeds)
    if not feeds:
        raise ConfigError("calibration_feeds is empty; pass at least one feed dict")
    report = TransformReport()
    work = ir.from_proto(model)
    layers = _select_layers(work.graph, nodes, report)
    if not layers:
        return TransformResult(model, False, report)
    errors = _measured_errors(work, layers, feeds, weight_quantizer)
    for node, error in zip(layers, errors):
        _subtract_from_bias(work.graph, node, error, report)
    return TransformResult(ir.to_proto(work), True, report)


def analytic_bias_correction(
    model: onnx.ModelProto,
    *,
    weight_quantizer: WeightQuantizer = per_channel_int8,
    nodes: Sequence[str] | None = None,
) -> TransformResult:
    """Data-free bias correction of every Conv/Gemm whose input is BatchNormalization or
    BatchNormalization -> Relu, from the BN's scale/shift. Run it before folding BN. Options as in
    `correct_bias`; a layer without such an input is reported as a skip."""
    report = TransformReport()
    work = ir.from_proto(model)
    corrected = False
    for node in _select_layers(work.graph, nodes, report):
        mean_input, reason = _expected_input(node)
        if reason:
            report.skipped([node_label(node)], reason)
            continue
        delta = _weight_error(node, weight_quantizer)
        _subtract_from_bias(work.graph, node, _expected_error(node, delta, mean_input), report)
        corrected = True
    return TransformResult(ir.to_proto(work) if corrected else model, corrected, report)


def relu_normal_mean(mean, std) -> np.ndarray:
    """E[max(0, X)] for X ~ N(mean, std^2): mean * Phi(mean/std) + std * phi(mean/std)
    (max(mean, 0) where std == 0)."""
    mean, std = np.asarray(mean, np.float64), np.abs(np.asarray(std, np.float64))
    safe_std = np.where(std > 0, std, 1.0)
    z = mean / safe_std
    # The standard normal's cdf and pdf; scipy.special, not scipy.stats, whose import costs 0.4 s.
    clipped = mean * special.ndtr(z) + safe_std * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return np.where(std > 0, clipped, np.maximum(mean, 0.0))


# --- layers -------------------------------------------------------------------------------------


def _select_layers(graph: ir.Graph, names: Sequence[str] | None, report: TransformReport) -> list[ir.Node]:
    candidates = [n for n in graph if n.op_type in _LAYER_OPS and n.domain in ("", "ai.onnx")]
    if names is not None:
        unknown = set(names) - {node_label(n) for n in candidates}
        if unknown:
            raise ConfigError(f"nodes {sorted(unknown)} are not Conv/Gemm nodes of the model; pass names of Conv/Gemm nodes")
        candidates = [n for n in candidates if node_label(n) in set(names)]
    layers = []
    for node in candidates:
        reason = _layer_rejection(node)
        if reason:
            report.skipped([node_label(node)], reason)
        else:
            layers.append(node)
    return layers


def _layer_rejection(node: ir.Node) -> str:
    weight = initializer_array(node.inputs[1])
    if weight is None or weight.dtype.kind != "f":
        return "weight is not a constant float initializer"
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and initializer_array(bias) is None:
        return "bias is not a constant initializer"
    if node.op_type == "Gemm" and _attribute(node, "transA", 0):
        return "Gemm with transA=1: the per-channel input statistics are not along axis 1"
    if node.op_type == "Gemm" and _attribute(node, "beta", 1.0) == 0.0:
        return "Gemm with beta=0 ignores its bias input C"
    return ""


def _attribute(node: ir.Node, name: str, default):
    attribute = node.attributes.get(name)
    return attribute.value if attribute is not None else default


def _weight_axis(node: ir.Node) -> int:
    """The output-channel axis of the weight: Conv [Cout, ...]; Gemm B is [K, N], or [N, K] with transB."""
    if node.op_type == "Conv":
        return 0
    return 0 if _attribute(node, "transB", 0) else 1


def _weight_error(node: ir.Node, weight_quantizer: WeightQuantizer) -> np.ndarray:
    weight = initializer_array(node.inputs[1])
    quantized = np.asarray(weight_quantizer(weight, _weight_axis(node)), dtype=weight.dtype)
    return quantized - weight


def _subtract_from_bias(graph: ir.Graph, node: ir.Node, error: np.ndarray, report: TransformReport) -> None:
    """bias -= error (Conv); C -= error / beta (Gemm: Y = alpha*A*B + beta*C)."""
    channels = error.shape[0]
    bias = ensure_bias(graph, node, channels)
    beta = float(_attribute(node, "beta", 1.0)) if node.op_type == "Gemm" else 1.0
    set_constant(node.inputs[2], (bias - error / beta).astype(bias.dtype))
    report.matched([node_label(node)], f"mean |correction| {float(np.mean(np.abs(error))):.3g} over {channels} channels")


# --- empirical ----------------------------------------------------------------------------------


def _measured_errors(work: ir.Model, layers: list[ir.Node], feeds: list, quantizer: WeightQuantizer) -> list[np.ndarray]:
    """Per layer, the mean over feeds, batch and positions of (W_q - W) * x per output channel
    (axis 1 of a Conv or Gemm output). x is the layer's input in the float model: a probe copy
    gets, next to each layer, a twin with weight W_q - W and no bias, whose output is that error."""
    probe = ir.from_proto(ir.to_proto(work))
    index = {id(node): i for i, node in enumerate(work.graph)}
    probe_nodes = list(probe.graph)
    twins = [_add_error_twin(probe.graph, probe_nodes[index[id(n)]], _weight_error(n, quantizer)) for n in layers]
    outputs = run_model(ir.to_proto(probe), feeds)
    return [_channel_mean([out[name] for out in outputs]) for name in twins]


def _add_error_twin(graph: ir.Graph, node: ir.Node, delta: np.ndarray) -> str:
    delta_value = _new_initializer(graph, f"{node_label(node)}_weight_error", delta)
    twin = ir.Node("", node.op_type, [node.inputs[0], delta_value], list(node.attributes.values()))
    twin.outputs[0].name = _fresh_name(graph, f"{node_label(node)}_output_error")
    graph.append(twin)
    graph.outputs.append(twin.outputs[0])
    return twin.outputs[0].name


def _channel_mean(batches: list[np.ndarray]) -> np.ndarray:
    """Mean over every axis but 1, pooled over all batches (each element weighs the same)."""
    sums = sum(b.astype(np.float64).sum(axis=tuple(a for a in range(b.ndim) if a != 1)) for b in batches)
    count = sum(b.size // b.shape[1] for b in batches)
    return sums / count


# --- analytic -----------------------------------------------------------------------------------


def _expected_input(node: ir.Node) -> tuple[np.ndarray | None, str]:
    """E[x] per input channel from BN (-> Relu) feeding the layer, or (None, reason)."""
    producer = node.inputs[0].producer()
    relu = producer is not None and producer.op_type == "Relu"
    bn = producer.inputs[0].producer() if relu else producer
    if bn is None or bn.op_type != "BatchNormalization":
        return None, "input is not produced by BatchNormalization or BatchNormalization -> Relu"
    scale, shift = initializer_array(bn.inputs[1]), initializer_array(bn.inputs[2])
    if scale is None or shift is None:
        return None, "BatchNormalization scale/B are not constant initializers"
    mean = relu_normal_mean(shift, scale) if relu else shift.astype(np.float64)
    return mean, ""


def _expected_error(node: ir.Node, delta: np.ndarray, mean_input: np.ndarray) -> np.ndarray:
    """(W_q - W) applied to a constant input E[x]: Conv sums taps and the input channels of each
    output's group; Gemm is alpha * E[x] @ B'."""
    delta = delta.astype(np.float64)
    if node.op_type == "Gemm":
        b = delta.T if _attribute(node, "transB", 0) else delta
        return float(_attribute(node, "alpha", 1.0)) * (mean_input @ b)
    group = int(_attribute(node, "group", 1))
    per_group = delta.reshape(group, delta.shape[0] // group, delta.shape[1], -1).sum(axis=3)
    return (per_group * mean_input.reshape(group, 1, delta.shape[1])).sum(axis=2).reshape(-1)


# --- graph helpers (shared with quant/equalize.py) ----------------------------------------------


def initializer_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's array when it is an initializer that is not also a graph input (those can be
    overridden at run time), else None."""
    if value is None or value.const_value is None or value.is_graph_input():
        return None
    return value.const_value.numpy()


def set_constant(value: ir.Value, array: np.ndarray) -> None:
    """Replace an initializer's data with a new tensor (the old one may view the input model)."""
    value.const_value = ir.tensor(np.ascontiguousarray(array), name=value.name)
    value.type = ir.TensorType(value.const_value.dtype)
    value.shape = ir.Shape(array.shape)


def ensure_bias(graph: ir.Graph, node: ir.Node, channels: int) -> np.ndarray:
    """The node's bias (input 2) as an array, after making it an initializer only this node uses:
    a missing bias becomes zeros of the weight's dtype, a shared one a private copy."""
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and len(bias.uses()) == 1:
        return initializer_array(bias)
    dtype = initializer_array(node.inputs[1]).dtype
    array = initializer_array(bias).copy() if bias is not None else np.zeros(channels, dtype)
    private = _new_initializer(graph, f"{node_label(node)}_bias", array)
    if len(node.inputs) < 3:
        node.resize_inputs(3)
    node.replace_input_with(2, private)
    return array


def _new_initializer(graph: ir.Graph, base: str, array: np.ndarray) -> ir.Value:
    name = _fresh_name(graph, base)
    tensor = ir.tensor(np.ascontiguousarray(array), name=name)
    value = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(array.shape), const_value=tensor)
    graph.register_initializer(value)
    return value


def _fresh_name(graph: ir.Graph, base: str) -> str:
    taken = set(graph.initializers) | {v.name for v in graph.inputs}
    taken |= {o.name for n in graph for o in n.outputs}
    name, suffix = base, 0
    while name in taken:
        suffix += 1
        name = f"{base}_{suffix}"
    return name


def capture_values(model: ir.Model, names: Sequence[str], feeds: list) -> dict[str, list[np.ndarray]]:
    """The float values named `names`, one array per feed, from a copy of `model` that exposes
    them as graph outputs (the model itself is not touched)."""
    probe = ir.from_proto(ir.to_proto(model))
    by_name = {o.name: o for n in probe.graph for o in n.outputs} | {v.name: v for v in probe.graph.inputs}
    expose_as_outputs(probe.graph, [by_name[name] for name in names])
    outputs = run_model(ir.to_proto(probe), feeds)
    return {name: [out[name] for out in outputs] for name in names}
