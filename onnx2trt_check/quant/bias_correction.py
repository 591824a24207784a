"""Bias correction (Nagel et al. 2019, section 4.2): cancel the mean output error that quantization
leaves in a layer, per output channel, by subtracting it from the layer's bias.

`correct_bias` is the empirical version, applied to the QDQ model the quantizer made, and built so
that it cannot make a model worse:
* sequential: the Conv/Gemm layers with a quantized weight are corrected one by one in graph
  order, each measured in the QDQ model with every layer before it already quantized and
  corrected, so the error it cancels is the one it really sees (its own weights' and input's
  rounding, and what upstream layers pass on), as the paper's empirical version does;
* verified: the mean error is fitted on the calibration feeds but every 4th (at most 16 feeds held
  out; at most 48 fit), and the correction is kept only when it lowers the layer's output error
  (sum of squares against the float model, over every channel) on the held-out feeds; otherwise
  the layer is reported as skipped with both figures. A single feed has nothing to hold out: the
  check then runs on it, and the report says so;
* guarded: the corrections are kept only if, together, they leave the model's worst output SQNR on
  every feed they were not fitted on (held out, or past the 48 fitted) no lower than without them (a layer's own error cannot see errors that cancel
  downstream); otherwise all are dropped and reported as skipped.
The correction is an additive constant per channel of the layer's output, so its effect on the
held-out error follows from per-channel sums of the difference and its square: one pass of both
models over the feeds measures every layer, and a new pass is needed only after a kept correction
(it moves everything downstream).

`analytic_bias_correction` is the data-free version on the float model: with x = Relu(BN(.)) (or
BN(.)) and BN's output taken as N(beta, gamma^2) per channel, E[x] is the clipped normal expectation
and E[(W_q - W) x] = (W_q - W) E[x] (exact away from zero-padded borders, which the paper ignores
too).

The graph helpers at the bottom (initializer_array, set_constant, ensure_bias, capture_values) are
shared with quant/equalize.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
from scipy import special

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.quant.auto_range import split_held_out
from onnx2trt_check.quant.calibrate import with_outputs
from onnx2trt_check.quant.objective import output_sqnr_db
from onnx2trt_check.quant.qdq_math import (
    fake_quantize,
    per_channel_amax,
    per_tensor_amax,
    symmetric_scale,
)
from onnx2trt_check.runtime import create_session, run_model
from onnx2trt_check.transforms.base import Skip, TransformReport, TransformResult
from onnx2trt_check.transforms.graph_utils import expose_as_outputs, node_label

WeightQuantizer = Callable[[np.ndarray, int], np.ndarray]
_LAYER_OPS = ("Conv", "Gemm")
MAX_FIT_FEEDS = 48
MAX_HELD_FEEDS = 16


def per_channel_int8(weight: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8 fake quantization with one scale per slice along `axis` (the output channel)."""
    return fake_quantize(weight, symmetric_scale(per_channel_amax(weight, axis)), axis=axis)


def per_tensor_int8(weight: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8 fake quantization with one scale for the whole tensor (`axis` is unused)."""
    return fake_quantize(weight, symmetric_scale(per_tensor_amax(weight)))


def correct_bias(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto, calibration_feeds: Iterable[Mapping[str, np.ndarray]],
                 *, guard: bool = True) -> TransformResult:
    """Sequential, verified bias correction of `qdq_model` (the QDQ model of `float_model`, whose
    tensor names it keeps): every Conv/Gemm with a quantized weight, in graph order, measured with
    the layers before it already quantized and corrected, keeps its correction only where it lowers
    that layer's output error on held-out feeds, and all of them only if together they do not lower
    the output SQNR there (`guard`; off only to study the layer checks alone). See the module doc.
    Neither model is mutated. Defaults to the guard on."""
    feeds = list(calibration_feeds)
    if not feeds:
        raise ConfigError("calibration_feeds is empty; pass at least one feed dict")
    report = TransformReport()
    work = ir.from_proto(qdq_model)
    layers = _select_layers(work.graph, report)
    if not layers:
        return TransformResult(qdq_model, False, report)
    fit, held, held_out = split_held_out(feeds, cap=MAX_HELD_FEEDS)
    corrector = _Sequential(float_model, work, layers, fit[:MAX_FIT_FEEDS], held)
    kept = sum(corrector.correct(index, report, held_out) for index in range(len(layers)))
    report.figures.update({"corrected": kept, "layers": len(layers), "passes": corrector.passes,
                           "fit_feeds": len(fit[:MAX_FIT_FEEDS]), "held_out_feeds": len(held) if held_out else 0})
    if not kept:
        return TransformResult(qdq_model, False, report)
    corrected = ir.to_proto(work)
    # The guard sees only the model's outputs, far fewer values than a layer's check: it takes every
    # feed the corrections were not fitted on (the held-out ones and those past MAX_FIT_FEEDS).
    if guard and not _helps_the_outputs(float_model, qdq_model, corrected, held + fit[MAX_FIT_FEEDS:], report):
        return TransformResult(qdq_model, False, report)
    return TransformResult(corrected, True, report)


def _helps_the_outputs(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto, corrected: onnx.ModelProto, feeds: list, report: TransformReport) -> bool:
    """The whole-model guard: whether the corrections together keep the model's worst output SQNR
    on `feeds` (none of them fitted the corrections) at least where it was. Each layer's check cannot see errors that cancel
    downstream (two paths with the same rounding, subtracted: correcting one breaks the
    cancellation; tests/test_quant_bias_correction.py has such a model, 131 dB -> 38 dB with every
    layer's own error lower). Otherwise every correction is dropped and reported as skipped."""
    reference = run_model(float_model, feeds)
    before = output_sqnr_db(reference, run_model(qdq_model, feeds))
    after = output_sqnr_db(reference, run_model(corrected, feeds))
    report.figures["output_sqnr_db"] = {"without": before, "with": after}
    if after >= before:
        return True
    reason = f"dropped: the corrections together lower the output SQNR on the {len(feeds)} feeds not fitted ({before:.2f} -> {after:.2f} dB)"
    report.skips.extend(Skip(match.nodes, f"{reason}; alone: {match.detail}") for match in report.matches)
    report.matches.clear()
    report.figures["corrected"] = 0
    return False


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
    for node in _float_layers(work.graph, nodes, report):
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


def _select_layers(graph: ir.Graph, report: TransformReport) -> list[ir.Node]:
    """The Conv/Gemm nodes whose weight the quantizer quantized (a DequantizeLinear of a constant),
    in graph order; the others are reported as skips with the reason."""
    layers = []
    for node in graph:
        if node.op_type not in _LAYER_OPS or node.domain not in ("", "ai.onnx"):
            continue
        reason = _layer_rejection(node)
        if reason:
            report.skipped([node_label(node)], reason)
        else:
            layers.append(node)
    return layers


def _layer_rejection(node: ir.Node) -> str:
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    producer = weight.producer() if weight is not None else None
    if producer is None or producer.op_type != "DequantizeLinear" or initializer_array(producer.inputs[0]) is None:
        return "weight is not quantized (excluded, or not a constant): nothing to correct"
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and initializer_array(bias) is None:
        return "bias is not a constant initializer"
    if node.op_type == "Gemm" and _attribute(node, "transA", 0):
        return "Gemm with transA=1: the per-channel input statistics are not along axis 1"
    if node.op_type == "Gemm" and _attribute(node, "beta", 1.0) == 0.0:
        return "Gemm with beta=0 ignores its bias input C"
    return ""


def _float_layers(graph: ir.Graph, names: Sequence[str] | None, report: TransformReport) -> list[ir.Node]:
    """The float model's Conv/Gemm with a constant float weight (only those named in `names`)."""
    candidates = [n for n in graph if n.op_type in _LAYER_OPS and n.domain in ("", "ai.onnx")]
    if names is not None:
        unknown = set(names) - {node_label(n) for n in candidates}
        if unknown:
            raise ConfigError(f"nodes {sorted(unknown)} are not Conv/Gemm nodes of the model; pass names of Conv/Gemm nodes")
        candidates = [n for n in candidates if node_label(n) in set(names)]
    layers = []
    for node in candidates:
        weight = initializer_array(node.inputs[1])
        if weight is None or weight.dtype.kind != "f":
            report.skipped([node_label(node)], "weight is not a constant float initializer")
        else:
            layers.append(node)
    return layers


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


# --- sequential, verified ----------------------------------------------------------------------


class _Sequential:
    """The QDQ model under correction with every corrected layer's bias an overridable input and
    every layer output exposed, next to the float model with the same outputs exposed. A pass runs
    both over the feeds, one feed at a time (no activations are kept), and keeps per layer and
    channel the sums that give the output error before and after a correction:
    sum d and count over the fitting feeds, sum d and sum d^2 over the held-out ones (d = q - f)."""

    def __init__(self, float_model: onnx.ModelProto, work: ir.Model, layers: list[ir.Node], fit: list, held: list):
        self.work, self.layers, self.fit, self.held = work, layers, fit, held
        self.biases = [_private_bias(work.graph, node) for node in layers]
        names = [node.outputs[0].name for node in layers]
        self.float_session = create_session(with_outputs(float_model, names), optimized=False)
        probe = with_outputs(ir.to_proto(work), names)
        probe.graph.input.extend(onnx.helper.make_tensor_value_info(v.name, v.dtype.value, None) for v in self.biases)
        self.session, self.names, self.passes, self.stats = create_session(probe, optimized=False), names, 0, None

    def correct(self, index: int, report: TransformReport, held_out: bool) -> bool:
        """Correct layer `index` if that lowers its held-out output error; whether it did."""
        if self.stats is None:
            self.stats = self._pass()
        fit_sum, fit_count, held_sum, held_sq, held_count = self.stats[index]
        error = fit_sum / fit_count
        before = float(held_sq.sum()) / held_count
        after = float((held_sq - 2 * error * held_sum + held_count * error**2).sum()) / held_count
        label, node = node_label(self.layers[index]), self.layers[index]
        where = "held-out" if held_out else "fitting (no feed to hold out)"
        if not after < before:
            report.skipped([label], f"the correction would not lower the output error on the {where} feeds (MSE {before:.3g} -> {after:.3g})")
            return False
        beta = float(_attribute(node, "beta", 1.0)) if node.op_type == "Gemm" else 1.0
        bias = self.biases[index]
        set_constant(bias, (bias.const_value.numpy() - (error / beta).reshape(_bias_shape(bias, error))).astype(bias.const_value.numpy().dtype))
        report.matched([label], f"output MSE on the {where} feeds {before:.3g} -> {after:.3g}, mean |correction| {float(np.mean(np.abs(error))):.3g}")
        self.stats = None  # everything downstream of this layer changed
        return True

    def _pass(self) -> list:
        self.passes += 1
        biases = {v.name: v.const_value.numpy() for v in self.biases}
        sums = [[0.0, 0, 0.0, 0.0, 0] for _ in self.layers]
        for feed, fitting in [(f, True) for f in self.fit] + [(f, False) for f in self.held]:
            floats = self.float_session.run(self.names, dict(feed))
            quantized = self.session.run(self.names, {**feed, **biases})
            for entry, f, q in zip(sums, floats, quantized):
                _accumulate(entry, q.astype(np.float64) - f.astype(np.float64), fitting)
        return [(s[0], s[1], s[2], s[3], s[4]) for s in sums]


def _accumulate(entry: list, difference: np.ndarray, fitting: bool) -> None:
    """Per channel (axis 1) sums of the difference (and its square on held-out feeds), and counts."""
    per_channel = np.moveaxis(difference, 1, 0).reshape(difference.shape[1], -1)
    if fitting:
        entry[0] = entry[0] + per_channel.sum(axis=1)
        entry[1] += per_channel.shape[1]
    else:
        entry[2] = entry[2] + per_channel.sum(axis=1)
        entry[3] = entry[3] + (per_channel**2).sum(axis=1)
        entry[4] += per_channel.shape[1]


def _private_bias(graph: ir.Graph, node: ir.Node) -> ir.Value:
    """The node's bias as an initializer only it uses (zeros when it has none)."""
    weight = initializer_array(node.inputs[1].producer().inputs[0])
    ensure_bias(graph, node, _output_channels(node, weight), np.float32)
    return node.inputs[2]


def _output_channels(node: ir.Node, weight: np.ndarray) -> int:
    if node.op_type == "Conv":
        return weight.shape[0]
    return weight.shape[0] if _attribute(node, "transB", 0) else weight.shape[1]


def _bias_shape(bias: ir.Value, error: np.ndarray) -> tuple[int, ...]:
    """The correction shaped like the bias (Gemm's C may be [N] or [1, N])."""
    shape = bias.const_value.numpy().shape
    return shape if int(np.prod(shape)) == error.size else error.shape


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


def ensure_bias(graph: ir.Graph, node: ir.Node, channels: int, dtype=None) -> np.ndarray:
    """The node's bias (input 2) as an array, after making it an initializer only this node uses:
    a missing bias becomes zeros of `dtype`, a shared one a private copy. Defaults to the dtype of
    the weight initializer."""
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and len(bias.uses()) == 1:
        return initializer_array(bias)
    dtype = dtype or initializer_array(node.inputs[1]).dtype
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
