"""Q/DQ-flow rewrites that make a QDQ model build into a faster, equally accurate TensorRT engine.

`optimize_qdq(model, feeds=None)` runs the rewrites of REWRITES in order, repeating the round until
nothing changes (so optimizing twice equals optimizing once). Each rewrite returns one `Site` per
place it changed: the tensors whose values may change, and the per-element bound on that change:

* fold_weight_quantize: float weight -> Q -> DQ becomes int8 weight -> DQ. Exact.
* remove_redundant_chains: x -> Q(s1) -> DQ -> Q(s2) -> DQ. Same scale: the inner DQ -> Q is the
  identity on int8, exact. Different scales: one Q/DQ at the coarser scale s_c (finer s_f) replaces
  the chain; change <= s_c + s_f/2 + max(0, |x| - 127 s_f) (the last term where the chain clipped).
* carry_scale_through: DQ(s_in) -> MaxPool/Reshape/Transpose/Flatten -> Q(s_out) -> DQ takes s_in.
* align_concat_scales: every quantized Concat input takes the largest input scale.
  Both requantize x from s_old to s_new: change <= (s_old + s_new)/2 + max(0, |x| - 127 min(s)).
* move_qdq_to_residual: Conv -> Q -> DQ -> Add(., r) becomes Conv -> Add(., DQ(Q(r))) with the
  same scale, so TensorRT fuses the Add into the Conv; change at the Add output <= the fake-quantize
  error of the Conv output plus that of r: s/2 + max(0, |c| - 127 s) for each.

With `feeds`, every rewrite is checked with onnxruntime against the model before it: the site
tensors are made graph outputs of both models and the change must stay within the bound (plus a
few float32 ulps); a rewrite that fails is undone and reported as a skip. The report's figures hold,
per rewrite, the number of sites and the largest change and bound measured (or, without feeds, the
bound for in-range values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.quant import qdq_math
from onnx2trt_check.quant import qdq_rules as qr
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms import graph_utils as gu
from onnx2trt_check.transforms.base import TransformReport, TransformResult

MAX_ROUNDS = 4
# float32 arithmetic slack of the verification, in ulps of the compared values.
ULP_SLACK = 4


def _exact(*_arrays) -> float:
    return 0.0


@dataclasses.dataclass(frozen=True)
class Site:
    """One rewritten place: `outputs` may change by at most `bound(*inputs)` per element, where
    `inputs` are tensors of the model before the rewrite; `nominal` is the bound for in-range data."""

    nodes: tuple[str, ...]
    detail: str
    outputs: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    bound: Callable[..., np.ndarray | float] = _exact
    nominal: float = 0.0


def excess(x, scale: float) -> np.ndarray:
    """How far |x| lies beyond the int8 range of `scale` (0 inside): what a Q(scale) clips."""
    return np.maximum(0.0, np.abs(np.asarray(x, dtype=np.float64)) - qdq_math.INT8_MAX * scale)


def requantize_bound(s_old: float, s_new: float) -> Callable[[np.ndarray], np.ndarray]:
    """|fq(x, s_old) - fq(x, s_new)| <= (s_old + s_new)/2 + what the narrower range clips."""
    return lambda x: (s_old + s_new) / 2 + excess(x, min(s_old, s_new))


# --- small graph edits ----------------------------------------------------------------------------


def _set_scale(graph: ir.Graph, node: ir.Node, scale: float) -> None:
    """Give a per-tensor Q/DQ a fresh scale initializer (the old one may be shared)."""
    old = node.inputs[1]
    array = np.asarray(scale, dtype=qr.scale_array(node).dtype).reshape(qr.scale_array(node).shape)
    node.replace_input_with(1, gu.add_initializer(graph, array, name_hint=f"{old.name}_requantized"))
    gu.drop_unused_initializers(graph, [old])


def _dq_readers(q: ir.Node) -> list[ir.Node] | None:
    """The DQ nodes reading a Q, or None when something else reads it (or it is a graph output)."""
    users = [use.node for use in q.outputs[0].uses()]
    if q.outputs[0].is_graph_output() or not users or not all(qr.is_dq(u) for u in users):
        return None
    return users


def _set_pair_scale(graph: ir.Graph, q: ir.Node, dqs: list[ir.Node], scale: float) -> None:
    for node in [q, *dqs]:
        _set_scale(graph, node, scale)


def _remove_if_unused(graph: ir.Graph, *nodes: ir.Node) -> None:
    for node in nodes:
        if node.graph is graph and not any(o.uses() or o.is_graph_output() for o in node.outputs):
            inputs = list(node.inputs)
            graph.remove(node, safe=True)
            gu.drop_unused_initializers(graph, inputs)


def _insert_qdq_before(graph: ir.Graph, anchor: ir.Node, x: ir.Value, q: ir.Node, dq: ir.Node) -> ir.Value:
    """A copy of the pair q -> dq reading `x`, placed right before `anchor` (which reads its
    output, so node order stays topological); returns the new DQ output."""
    label = gu.node_label(q)
    new_q = ir.node(q.op_type, [x, *q.inputs[1:]], attributes=dict(q.attributes), domain=q.domain, name=f"{label}_moved")
    new_dq = ir.node(dq.op_type, [new_q.outputs[0], *dq.inputs[1:]], attributes=dict(dq.attributes), domain=dq.domain, name=f"{gu.node_label(dq)}_moved")
    graph.insert_before(anchor, [new_q, new_dq])
    return new_dq.outputs[0]


def _quantized_pair(dq: ir.Node | None) -> tuple[ir.Node, list[ir.Node], float] | None:
    """(q, its DQ readers, scale) when `dq` reads a per-tensor Q whose readers share that scale."""
    q = qr.producer(dq.inputs[0]) if dq is not None else None
    readers = _dq_readers(q) if qr.is_q(q) else None
    scale = qr.per_tensor_scale(q) if readers else None
    if scale is None or any(qr.per_tensor_scale(r) != scale for r in readers):
        return None
    if qr.quant_dtype(q) != ir.DataType.INT8 or qr.quant_dtype(dq) != ir.DataType.INT8:
        return None
    return q, readers, scale


def _names(nodes: Iterable[ir.Node]) -> tuple[str, ...]:
    return tuple(node.outputs[0].name for node in nodes)


# --- rewrites -------------------------------------------------------------------------------------


def fold_weight_quantize(graph: ir.Graph, report: TransformReport) -> list[Site]:
    """float initializer -> Q -> DQ becomes int8 initializer -> DQ (qdq_math matches ORT bit for bit)."""
    sites = []
    for q in [n for n in graph if qr.is_q(n)]:
        weight = gu.constant_array(q.inputs[0])
        if weight is None or not weight.dtype == np.float32:
            continue
        zero_point, scale = qr.zero_point_array(q), qr.scale_array(q)
        if scale is None or zero_point is None or zero_point.dtype != np.int8 or gu.attr(q, "block_size", 0):
            report.skipped(qr._label(q), "weight Q is not int8 with constant scale and zero point")
            continue
        axis = gu.attr(q, "axis", 1) if scale.size > 1 else None
        quantized = qdq_math.quantize(weight, scale, zero_point, axis=axis)
        value = gu.add_initializer(graph, quantized, name_hint=f"{q.inputs[0].name}_int8")
        readers = [use.node for use in q.outputs[0].uses()]
        q.outputs[0].replace_all_uses_with(value, replace_graph_outputs=False)
        _remove_if_unused(graph, q)
        sites.append(Site(qr._label(q), "folded weight Q into an int8 initializer: exact", _names(readers)))
    return sites


def _chain(dq2: ir.Node):
    """(x, q1, dq1, q2, readers of q2) for x -> q1 -> dq1 -> q2 -> dq2, else None."""
    q2 = qr.producer(dq2.inputs[0])
    dq1 = qr.dq_of(q2.inputs[0]) if qr.is_q(q2) else None
    first = _quantized_pair(dq1)
    if first is None or gu.constant_array(first[0].inputs[0]) is not None:
        return None  # before reading dq2's pair: most DQs head no chain, and that read was the cost
    second = _quantized_pair(dq2)
    if second is None:
        return None
    return first[0].inputs[0], first[0], dq1, q2, second[1]


def remove_redundant_chains(graph: ir.Graph, report: TransformReport) -> list[Site]:
    """x -> Q -> DQ -> Q -> DQ becomes x -> Q -> DQ at the coarser of the two scales."""
    sites = []
    for dq2 in [n for n in graph if qr.is_dq(n)]:
        chain = _chain(dq2) if dq2.graph is graph else None
        if chain is None:
            continue
        x, q1, dq1, q2, readers = chain
        s1, s2 = qr.per_tensor_scale(q1), qr.per_tensor_scale(q2)
        coarse, fine = max(s1, s2), min(s1, s2)
        q2.replace_input_with(0, x)
        if s1 != s2:
            _set_pair_scale(graph, q2, readers, coarse)
        _remove_if_unused(graph, dq1, q1)
        if s1 == s2:
            sites.append(Site(qr._label(q1, dq1, q2), f"removed a Q/DQ chain at one scale {s1:g}: exact", _names(readers)))
            continue
        bound = lambda x, c=coarse, f=fine: c + f / 2 + excess(x, f)  # noqa: E731
        detail = f"merged a Q/DQ chain at scales {s1:g}, {s2:g} into the coarser {coarse:g}"
        sites.append(Site(qr._label(q1, dq1, q2), detail, _names(readers), (x.name,), bound, coarse + fine / 2))
    return sites


def _feeds_concat(dqs: list[ir.Node]) -> bool:
    return any(gu.is_op(use.node, "Concat") for dq in dqs for use in dq.outputs[0].uses())


def carry_scale_through(graph: ir.Graph, report: TransformReport) -> list[Site]:
    """The Q/DQ after MaxPool/Reshape/Transpose/Flatten takes the scale of the DQ before it."""
    sites = []
    for node in [n for n in graph if gu.is_op(n, *qr.PASSTHROUGH_OPS)]:
        before = _quantized_pair(qr.dq_of(qr.input_at(node, 0)))
        for use in list(node.outputs[0].uses()):
            after = _quantized_pair(_dq_readers(use.node)[0]) if qr.is_q(use.node) and _dq_readers(use.node) else None
            if before is None or after is None or after[2] == before[2]:
                continue
            q, readers, s_out = after
            if _feeds_concat(readers):
                report.skipped(qr._label(node, q), "output Q/DQ feeds a Concat: align_concat_scales sets its scale")
                continue
            _set_pair_scale(graph, q, readers, before[2])
            detail = f"{node.op_type} output scale {s_out:g} -> input scale {before[2]:g}"
            sites.append(Site(qr._label(node, q), detail, _names(readers), (node.outputs[0].name,),
                              requantize_bound(s_out, before[2]), (s_out + before[2]) / 2))
    return sites


def align_concat_scales(graph: ir.Graph, report: TransformReport) -> list[Site]:
    """Every quantized Concat input takes the largest scale among them."""
    sites = []
    for concat in gu.live_nodes(graph, "Concat"):
        pairs = [_quantized_pair(qr.dq_of(v)) for v in concat.inputs if qr.dq_of(v) is not None]
        if len({p[2] for p in pairs if p}) < 2:
            continue
        if any(p is None for p in pairs):
            report.skipped(qr._label(concat), "a Concat input DQ is not a per-tensor int8 Q/DQ pair")
            continue
        target = max(p[2] for p in pairs)
        for q, readers, scale in {id(p[0]): p for p in pairs}.values():
            if scale != target:
                _set_pair_scale(graph, q, readers, target)
                sites.append(Site(qr._label(concat, q), f"Concat input scale {scale:g} -> {target:g}", _names(readers),
                                  (q.inputs[0].name,), requantize_bound(scale, target), (scale + target) / 2))
    return sites


def move_qdq_to_residual(graph: ir.Graph, report: TransformReport) -> list[Site]:
    """Conv -> Q -> DQ -> Add(., r): the Q/DQ moves onto r (dropped if r is already quantized)."""
    sites = []
    for conv, q, dq, add, index in list(qr.conv_add_qdq(graph)):
        pair = _quantized_pair(dq)
        residual = add.inputs[1 - index]
        if pair is None or not gu.only_feeds(conv.outputs[0], q) or pair[1] != [dq] or not gu.only_feeds(dq.outputs[0], add):
            report.skipped(qr._label(conv, q, add), "Conv output Q/DQ is shared or not a per-tensor int8 pair")
            continue
        scale = pair[2]
        add.replace_input_with(index, conv.outputs[0])
        inputs, residual_error = (conv.outputs[0].name,), 0
        if qr.dq_of(residual) is None:
            add.replace_input_with(1 - index, _insert_qdq_before(graph, add, residual, q, dq))
            inputs, residual_error = inputs + (residual.name,), 1
        _remove_if_unused(graph, dq, q)

        def bound(c, r=None, s=scale):
            return s / 2 + excess(c, s) + (0 if r is None else s / 2 + excess(r, s))

        moved = "moved to the residual input" if residual_error else "dropped (residual already quantized)"
        sites.append(Site(qr._label(conv, q, add), f"Conv output Q/DQ {moved}", (add.outputs[0].name,),
                          inputs, bound, scale / 2 * (1 + residual_error)))
    return sites


REWRITES = (
    fold_weight_quantize,
    remove_redundant_chains,
    carry_scale_through,
    align_concat_scales,
    move_qdq_to_residual,
)


# --- driver and verification ----------------------------------------------------------------------


def optimize_qdq(model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]] | None = None, *,
                 ir_model: ir.Model | None = None) -> TransformResult:
    """Every rewrite of REWRITES, repeated until none applies (at most MAX_ROUNDS rounds); each one
    verified with onnxruntime on `feeds` when given. `model` is not mutated. Defaults to no feeds.

    `ir_model` is `ir.from_proto(model)` when the caller already has one (e.g. the one validate_qdq
    read): it is edited in place, so pass one that is not needed afterwards. Defaults to converting
    `model`."""
    feeds = None if feeds is None else [dict(feed) for feed in feeds]
    # from_proto without gu.to_ir's copy: onnx-ir never writes into the proto it reads (the
    # no-mutation test checks it), and the copy is a tenth of the time on a ResNet-50.
    ir_model = ir.from_proto(model) if ir_model is None else ir_model
    report = TransformReport()
    for _ in range(MAX_ROUNDS):
        changed = False
        for rewrite in REWRITES:
            ir_model, applied = _apply(ir_model, rewrite, report, feeds)
            changed |= applied
        if not changed:
            break
    if not report.matches:
        return TransformResult(gu.copy_model(model), False, report)
    optimized = gu.to_onnx(ir_model)
    if feeds:
        report.figures["model_outputs_max_abs_change"] = _max_output_change(model, optimized, feeds)
    return TransformResult(optimized, True, report)


def _apply(ir_model: ir.Model, rewrite, report: TransformReport, feeds) -> tuple[ir.Model, bool]:
    """Run one rewrite; verify it when `feeds` are given, undoing it if it breaks its bound."""
    before = gu.to_onnx(ir_model) if feeds else None
    sites = rewrite(ir_model.graph, report)
    if not sites:
        return ir_model, False
    after = gu.to_onnx(ir_model) if feeds else None
    measured = [_measure(before, after, site, feeds) for site in sites] if feeds else [(None, site.nominal, True) for site in sites]
    failed = [(site, m[:2]) for site, m in zip(sites, measured) if not m[2]]
    if failed:
        for site, (change, bound) in failed:
            report.skipped(site.nodes, f"{rewrite.__name__} undone: change {change:.3g} exceeds its bound {bound:.3g}")
        return ir.from_proto(before), False
    for site, (change, bound, _) in zip(sites, measured):
        note = f"max abs change {change:.3g} <= bound {bound:.3g}" if change is not None else f"bound {bound:.3g} in range"
        report.matched(site.nodes, f"{site.detail} ({note})")
    _add_figures(report, rewrite.__name__, measured)
    return ir_model, True


def _add_figures(report: TransformReport, name: str, measured) -> None:
    figure = report.figures.setdefault(name, {"sites": 0, "max_abs_change": None, "max_bound": 0.0})
    figure["sites"] += len(measured)
    figure["max_bound"] = max([figure["max_bound"]] + [float(m[1]) for m in measured])
    changes = [m[0] for m in measured if m[0] is not None]
    if changes:
        figure["max_abs_change"] = max(changes + [figure["max_abs_change"] or 0.0])


def _with_outputs(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """`model` with `names` appended as graph outputs (float32 tensors of any shape)."""
    extended = gu.copy_model(model)
    present = {o.name for o in extended.graph.output}
    for name in dict.fromkeys(names):
        if name not in present:
            extended.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return extended


def _measure(before: onnx.ModelProto, after: onnx.ModelProto, site: Site, feeds) -> tuple[float, float, bool]:
    """(largest |after - before| over the site outputs, largest bound, whether every element kept
    within its bound plus ULP_SLACK float32 ulps)."""
    old = run_model(_with_outputs(before, site.outputs + site.inputs), feeds)
    new = run_model(_with_outputs(after, site.outputs), feeds)
    worst_change, worst_bound, within = 0.0, 0.0, True
    for old_run, new_run in zip(old, new):
        bound = np.asarray(site.bound(*(old_run[name] for name in site.inputs)), dtype=np.float64)
        for name in site.outputs:
            o, n = old_run[name].astype(np.float64), new_run[name].astype(np.float64)
            change = np.abs(n - o)
            ulps = ULP_SLACK * np.spacing(np.maximum(np.abs(o), np.abs(n)).astype(np.float32))
            within &= bool(np.all(change <= bound * (1 + 1e-6) + ulps))
            worst_change = max(worst_change, float(change.max(initial=0.0)))
            worst_bound = max(worst_bound, float(bound.max(initial=0.0)))
    return worst_change, worst_bound, within


def _max_output_change(model: onnx.ModelProto, optimized: onnx.ModelProto, feeds) -> float:
    pairs = zip(run_model(model, feeds), run_model(optimized, feeds))
    return max((float(np.max(np.abs(a[k].astype(np.float64) - b[k]), initial=0.0)) for a, b in pairs for k in a), default=0.0)
