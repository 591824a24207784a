"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization
and Bias Correction", section 4.1), with optional high-bias absorption (section 4.1.1).

For Conv1 -> act -> Conv2 with a positive-homogeneous `act` (act(x / s) = act(x) / s for s > 0:
Relu, PRelu, LeakyRelu, or nothing), channel i of the value between them can be divided by s_i in
Conv1 and multiplied back in Conv2 without changing the function. Choosing
s_i = sqrt(r1_i / r2_i), with r1_i = max|W1[i]| (output channel i of Conv1) and r2_i = max over
the weights of Conv2 that read input channel i, makes both ranges sqrt(r1_i * r2_i), which evens
out the per-channel ranges that per-tensor int8 weight quantization cannot represent well.

Depthwise-separable triples (Conv -> depthwise Conv -> Conv) are two overlapping pairs; iterating
over all pairs until the scales stop changing is the paper's procedure for them. Grouped Conv2s are
handled exactly: input channel i of a Conv2 with `group` g is column i % (C/g) of the rows of
group i // (C/g).

Written by hand: no maintained library implements CLE for ONNX graphs (onnxruntime.quantization
has no equalization; AIMET implements it for PyTorch/Keras modules only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.quant.bias_correction import (
    capture_values,
    ensure_bias,
    initializer_array,
    set_constant,
)
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms import graph_utils
from onnx2trt_check.transforms.base import TransformReport, TransformResult
from onnx2trt_check.transforms.graph_utils import node_label

# act(x / s) == act(x) / s for every s > 0, elementwise and per channel.
_HOMOGENEOUS_ACTIVATIONS = frozenset({"Relu", "PRelu", "LeakyRelu"})
_BETWEEN_OPS = _HOMOGENEOUS_ACTIVATIONS | {"Clip", "BatchNormalization"}
_ABSORBABLE_ACTIVATIONS = frozenset({"Relu", "PRelu", "LeakyRelu"})
_RELU6_MODES = ("skip", "swap_to_relu")


@dataclasses.dataclass
class _Pair:
    first: ir.Node
    act: ir.Node | None
    second: ir.Node

    @property
    def nodes(self) -> tuple[ir.Node, ...]:
        return (self.first, self.act, self.second) if self.act is not None else (self.first, self.second)

    @property
    def group(self) -> int:
        return _group(self.second)


def equalize(
    model: onnx.ModelProto,
    *,
    max_iterations: int = 20,
    tolerance: float = 1e-4,
    relu6: str = "skip",
    absorb_high_bias: bool = False,
    check_feeds: Iterable[Mapping[str, np.ndarray]] | None = None,
) -> TransformResult:
    """Equalize the per-channel weight ranges of every Conv -> act -> Conv pair.

    `max_iterations` bounds the sweeps over all pairs; defaults to 20. A sweep whose scales all
    satisfy |s - 1| < `tolerance` ends the iteration; defaults to 1e-4. `relu6` decides what
    happens to a Clip(0, 6) between the convs, which is not positive-homogeneous: "skip" (the
    default) leaves the pair alone with that reason; "swap_to_relu" replaces it by Relu (this
    changes the function; with `check_feeds` the change is measured into report.figures).
    `absorb_high_bias` (default False) moves the part of Conv1's bias that the activation never
    clips into Conv2's bias; it needs `check_feeds` to estimate the pre-activation statistics.
    """
    _check_options(max_iterations, tolerance, relu6, absorb_high_bias, check_feeds)
    feeds = list(check_feeds) if check_feeds is not None else None
    report = TransformReport()
    work = ir.from_proto(model)
    pairs = _collect_pairs(work.graph, relu6, report)
    if relu6 == "swap_to_relu":
        _swap_relu6(work, pairs, model, feeds, report)
    modified = bool(pairs)
    _equalize_pairs(pairs, max_iterations, tolerance, report)
    if absorb_high_bias and pairs:
        _absorb_high_bias(work, pairs, feeds, report)
    return TransformResult(ir.to_proto(work) if modified else model, modified, report)


def _check_options(max_iterations, tolerance, relu6, absorb_high_bias, check_feeds) -> None:
    if max_iterations < 1:
        raise ConfigError(f"max_iterations={max_iterations} must be >= 1; pass a positive count")
    if not tolerance > 0:
        raise ConfigError(f"tolerance={tolerance} must be > 0; pass e.g. 1e-4")
    if relu6 not in _RELU6_MODES:
        raise ConfigError(f"relu6={relu6!r} is not one of {_RELU6_MODES}; pass 'skip' or 'swap_to_relu'")
    if absorb_high_bias and check_feeds is None:
        raise ConfigError("absorb_high_bias=True needs check_feeds to estimate pre-activation statistics; pass check_feeds")


# --- matching -----------------------------------------------------------------------------------


def _collect_pairs(graph: ir.Graph, relu6: str, report: TransformReport) -> list[_Pair]:
    pairs = []
    for node in graph:
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
            continue
        found = _chain_from(node, report)
        if found is None:
            continue
        reason = _pair_rejection(found, relu6)
        if reason:
            report.skipped([node_label(n) for n in found.nodes], reason)
        else:
            pairs.append(found)
    return pairs


def _chain_from(first: ir.Node, report: TransformReport) -> _Pair | None:
    """Conv -> [one op of _BETWEEN_OPS] -> Conv through single-consumer values, else None.
    A value with several consumers on the way to a Conv is reported as a skip."""
    chain, value = [first], first.outputs[0]
    while len(chain) <= 2:
        consumers = value.consumers()
        if len(consumers) != 1 or value.is_graph_output():
            if any(c.op_type == "Conv" or c.op_type in _BETWEEN_OPS for c in consumers):
                report.skipped([node_label(first)], f"value '{value.name}' also feeds other nodes or is a graph output")
            return None
        nxt = consumers[0]
        chain.append(nxt)
        if nxt.op_type == "Conv":
            return _Pair(first, chain[1] if len(chain) == 3 else None, nxt)
        if nxt.op_type not in _BETWEEN_OPS:
            return None
        value = nxt.outputs[0]
    return None


def _pair_rejection(pair: _Pair, relu6: str) -> str:
    """Why this pair cannot be equalized, or '' when it can."""
    if pair.act is not None:
        reason = _activation_rejection(pair.act, relu6)
        if reason:
            return reason
    between = pair.act.outputs[0] if pair.act is not None else pair.first.outputs[0]
    if pair.second.inputs[0] is not between:
        return "the first conv's output is not the second conv's data input"
    return _weights_rejection(pair)


def _activation_rejection(act: ir.Node, relu6: str) -> str:
    if act.op_type == "BatchNormalization":
        return "BatchNormalization between the convs: fold BN first"
    if act.op_type != "Clip":
        return ""
    bounds = _clip_bounds(act)
    if bounds != (0.0, 6.0):
        return f"Clip{bounds} is not positive-homogeneous: scaling does not commute with it"
    if relu6 == "skip":
        return "ReLU6 (Clip 0..6) is not positive-homogeneous: scaling would change the output; pass relu6='swap_to_relu' to replace it by Relu"
    return ""


def _weights_rejection(pair: _Pair) -> str:
    for conv in (pair.first, pair.second):
        weight = conv.inputs[1]
        if initializer_array(weight) is None:
            return f"weight of {node_label(conv)} is not a constant"
        if len(weight.uses()) != 1:
            return f"weight of {node_label(conv)} is shared with other nodes"
        if initializer_array(weight).dtype.kind != "f":
            return f"weight of {node_label(conv)} is not floating point"
    bias = pair.first.inputs[2] if len(pair.first.inputs) > 2 else None
    if bias is not None and (initializer_array(bias) is None or len(bias.uses()) != 1):
        return f"bias of {node_label(pair.first)} is not a constant used only by it"
    w1, w2 = (initializer_array(c.inputs[1]) for c in (pair.first, pair.second))
    if w1.shape[0] != w2.shape[1] * pair.group:
        return f"channel counts differ: {w1.shape[0]} out of the first conv, {w2.shape[1] * pair.group} into the second"
    return ""


def _clip_bounds(clip: ir.Node) -> tuple[float, float]:
    """Clip's (min, max) from its inputs (opset >= 11) or attributes (opset < 11); nan if unknown."""
    bounds = []
    for index, attribute, default in ((1, "min", -np.inf), (2, "max", np.inf)):
        value = clip.inputs[index] if len(clip.inputs) > index else None
        if value is not None:
            # graph_utils reads Constant nodes too: PyTorch exports ReLU6's bounds that way
            array = graph_utils.constant_array(value)
            bounds.append(float(array) if array is not None and array.size == 1 else float("nan"))
        else:
            bounds.append(float(clip.attributes[attribute].value) if attribute in clip.attributes else default)
    return tuple(bounds)


def _group(conv: ir.Node) -> int:
    attribute = conv.attributes.get("group")
    return int(attribute.value) if attribute is not None else 1


# --- ReLU6 swap ---------------------------------------------------------------------------------


def _swap_relu6(work: ir.Model, pairs: list[_Pair], original, feeds, report: TransformReport) -> None:
    """Replace each Clip(0, 6) of a pair by Relu (in place on the working copy)."""
    graph, swapped = work.graph, 0
    for pair in pairs:
        if pair.act is not None and pair.act.op_type == "Clip":
            relu = ir.Node("", "Relu", [pair.act.inputs[0]], name=f"{pair.act.name or 'clip'}_as_relu")
            graph.insert_after(pair.act, relu)
            name = pair.act.outputs[0].name
            pair.act.outputs[0].replace_all_uses_with(relu.outputs[0])
            graph.remove(pair.act, safe=True)
            relu.outputs[0].name = name
            pair.act = relu
            swapped += 1
    report.figures["relu6_swapped"] = swapped
    if swapped and feeds is not None:
        report.figures.update(_swap_effect(original, ir.to_proto(work), feeds))


def _swap_effect(original: onnx.ModelProto, swapped: onnx.ModelProto, feeds) -> dict[str, float]:
    """Max abs diff and relative L2 error (||swapped - original|| / ||original|| over every output
    of every feed) of the fp32 outputs."""
    reference, candidate = run_model(original, feeds), run_model(swapped, feeds)
    diffs = [(candidate[i][k] - ref).ravel() for i, outs in enumerate(reference) for k, ref in outs.items()]
    refs = [ref.ravel() for outs in reference for ref in outs.values()]
    diff, ref = np.concatenate(diffs).astype(np.float64), np.concatenate(refs).astype(np.float64)
    return {
        "relu6_swap_max_abs_diff": float(np.max(np.abs(diff))) if diff.size else 0.0,
        "relu6_swap_rel_l2_error": float(np.linalg.norm(diff) / max(np.linalg.norm(ref), 1e-30)),
    }


# --- equalization -------------------------------------------------------------------------------


def _equalize_pairs(pairs: list[_Pair], max_iterations: int, tolerance: float, report: TransformReport) -> None:
    """Sweep over all pairs until no scale moves by `tolerance`; weights live in float64 meanwhile
    so that many sweeps do not accumulate float32 rounding."""
    weights = {id(v): initializer_array(v).astype(np.float64) for p in pairs for v in _scaled_values(p)}
    change, sweeps = np.inf, 0
    while sweeps < max_iterations and change >= tolerance:
        change = max(_equalize_pair(pair, weights) for pair in pairs) if pairs else 0.0
        sweeps += 1
    for pair in pairs:
        for value in _scaled_values(pair):
            set_constant(value, weights[id(value)].astype(initializer_array(value).dtype))
        report.matched([node_label(n) for n in pair.nodes], f"equalized {initializer_array(pair.first.inputs[1]).shape[0]} channels")
    report.figures.update(cle_sweeps=sweeps, cle_converged=bool(change < tolerance), cle_last_change=float(change))


def _scaled_values(pair: _Pair) -> list[ir.Value]:
    bias = pair.first.inputs[2] if len(pair.first.inputs) > 2 else None
    return [v for v in (pair.first.inputs[1], bias, pair.second.inputs[1]) if v is not None]


def _equalize_pair(pair: _Pair, weights: dict) -> float:
    """Apply s_i = sqrt(r1_i / r2_i) to one pair; returns max |s_i - 1|."""
    w1_key, w2_key = id(pair.first.inputs[1]), id(pair.second.inputs[1])
    scales = equalization_scales(output_channel_ranges(weights[w1_key]), input_channel_ranges(weights[w2_key], pair.group))
    weights[w1_key] = weights[w1_key] / scales.reshape((-1,) + (1,) * (weights[w1_key].ndim - 1))
    if len(pair.first.inputs) > 2 and pair.first.inputs[2] is not None:
        weights[id(pair.first.inputs[2])] = weights[id(pair.first.inputs[2])] / scales
    weights[w2_key] = scale_input_channels(weights[w2_key], scales, pair.group)
    return float(np.max(np.abs(scales - 1.0))) if scales.size else 0.0


def output_channel_ranges(w1: np.ndarray) -> np.ndarray:
    """r1_i = max |W1[i, ...]|: the range of output channel i of a Conv weight [Cout, Cin/g, k...]."""
    return np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)


def input_channel_ranges(w2: np.ndarray, group: int) -> np.ndarray:
    """r2_i = max |W2[o, i % (C/g), ...]| over the output rows o of group i // (C/g): the range of
    input channel i of a Conv weight [Cout, C/g, k...] with `group` g."""
    return np.abs(_by_group(w2, group)).max(axis=(1, 3)).reshape(-1)


def scale_input_channels(w2: np.ndarray, scales: np.ndarray, group: int) -> np.ndarray:
    """W2 with every weight that reads input channel i multiplied by scales[i]."""
    per_group = scales.reshape(group, 1, w2.shape[1], 1)
    return (_by_group(w2, group) * per_group).reshape(w2.shape)


def _by_group(w2: np.ndarray, group: int) -> np.ndarray:
    """[Cout, C/g, k...] viewed as [g, Cout/g, C/g, k]: rows of each group, input column, taps."""
    return w2.reshape(group, w2.shape[0] // group, w2.shape[1], -1)


def equalization_scales(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """s_i = sqrt(r1_i / r2_i); 1 for a channel with a zero range on either side (a dead channel
    has nothing to balance and a 0 or inf scale would destroy the other side)."""
    alive = (r1 > 0) & (r2 > 0)
    return np.where(alive, np.sqrt(np.where(alive, r1, 1.0) / np.where(alive, r2, 1.0)), 1.0)


# --- high-bias absorption -----------------------------------------------------------------------


def _absorb_high_bias(work: ir.Model, pairs: list[_Pair], feeds: list, report: TransformReport) -> None:
    """Move c_i = clip(mean_i - 3 std_i, 0, min_i) of each pre-activation channel from Conv1's bias
    into Conv2's bias (b2 += sum over taps of W2 * c). The paper uses c = max(0, beta - 3 gamma) with
    BN's shift/scale; BN is folded before CLE here, so its statistics are gone and the mean/std
    measured on `feeds` stand in for beta/gamma. Capping c at the observed minimum keeps
    act(x - c) == act(x) - c exact on every feed (it needs x >= c)."""
    absorbable = [p for p in pairs if _absorb_rejection(p, report) == ""]
    if not absorbable:
        return
    stats = capture_values(work, [p.first.outputs[0].name for p in absorbable], feeds)
    absorbed = 0
    for pair in absorbable:
        amount = high_bias_amount(stats[pair.first.outputs[0].name])
        _move_bias(work.graph, pair, amount)
        absorbed += int(np.count_nonzero(amount))
    report.figures["high_bias_channels_absorbed"] = absorbed


def _absorb_rejection(pair: _Pair, report: TransformReport) -> str:
    reason = ""
    if pair.act is None or pair.act.op_type not in _ABSORBABLE_ACTIVATIONS:
        reason = "high-bias absorption needs a Relu-like activation between the convs"
    elif _pads_zeros(pair.second):
        reason = "second conv pads with zeros: an absorbed bias would be wrong at the borders"
    elif len(pair.second.inputs) > 2 and pair.second.inputs[2] is not None and initializer_array(pair.second.inputs[2]) is None:
        reason = "bias of the second conv is not a constant initializer"
    if reason:
        report.skipped([node_label(n) for n in pair.nodes], reason)
    return reason


def _pads_zeros(conv: ir.Node) -> bool:
    auto_pad = conv.attributes.get("auto_pad")
    if auto_pad is not None and auto_pad.value not in ("NOTSET", "VALID"):
        return True
    pads = conv.attributes.get("pads")
    return pads is not None and any(int(p) != 0 for p in pads.value)


def high_bias_amount(batches: list[np.ndarray]) -> np.ndarray:
    """Per channel (axis 1) c = clip(mean - 3 * std, 0, observed min) of the pre-activation."""
    per_channel = np.concatenate([np.moveaxis(b, 1, 0).reshape(b.shape[1], -1) for b in batches], axis=1)
    per_channel = per_channel.astype(np.float64)
    low = per_channel.mean(axis=1) - 3.0 * per_channel.std(axis=1)
    return np.clip(low, 0.0, np.maximum(per_channel.min(axis=1), 0.0))


def _move_bias(graph: ir.Graph, pair: _Pair, amount: np.ndarray) -> None:
    w2 = initializer_array(pair.second.inputs[1]).astype(np.float64)
    b1 = ensure_bias(graph, pair.first, w2.shape[1] * pair.group)
    b2 = ensure_bias(graph, pair.second, w2.shape[0])
    # Each output row o of group g reads input channels g*C/g .. (g+1)*C/g - 1 through all its taps.
    group_amount = amount.reshape(pair.group, 1, w2.shape[1], 1)
    shift = (_by_group(w2, pair.group) * group_amount).sum(axis=(2, 3)).reshape(-1)
    set_constant(pair.first.inputs[2], (b1 - amount).astype(b1.dtype))
    set_constant(pair.second.inputs[2], (b2 + shift).astype(b2.dtype))

