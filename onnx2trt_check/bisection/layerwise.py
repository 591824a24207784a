"""Layer-by-layer comparison of a target model against its reference: where the error starts and
which node makes it grow.

Both models run once per feed with every float tensor of the top-level graph exposed as an output
(2 model executions per feed in total). Target tensors are matched to reference tensors by these
rules, applied in order (`match_tensors`):

1. same name: a target tensor whose name exists in the reference is that tensor;
2. Q/DQ: the output of a DequantizeLinear fed by a QuantizeLinear is the float tensor the
   QuantizeLinear consumed (so `x_dequantized` is compared with `x`, and carries x's quantization
   error); a DequantizeLinear of a weight (no QuantizeLinear before it) is not an activation;
3. Cast: the output of a Cast is the tensor its input matches (fp16 artifacts: `x` cast to fp16
   and back, the converter's `graph_input_cast` tensors).
Rules 2 and 3 apply to helper nodes only: Q, DQ and Cast nodes whose name is not a reference node.
Several target tensors may match one reference tensor; each is a row of the report.

Each row is attributed to a node: a DQ output to the nodes that consume it (the quantized node, as
the quantizer's `exclude` names it); any other tensor to the node that produced it, looking through
helper Casts. A node's error amplification treats it together with its helpers: the relative L2
error of what it delivers (through trailing helper Casts) over the worst relative L2 error of the
float tensors that feed its helpers, each plus 1e-3: errors below 0.1% count as noise, so an exact
input does not divide by zero and the first rounding of an exact tensor (0 -> 0.3% for int8) does
not outrank a real fault. Nodes whose inputs are exact are not ranked by that ratio at all (it would
be a ratio over the epsilon): they are the error sources, listed apart by their output error.

The first divergent tensor is the first row in topological order that fails the tolerance. The
default tolerance is an SQNR floor of 20 dB (relative L2 error 10%) and no element-wise test, plus
compare.py's NaN/Inf rule: SQNR is a relative measure, so one floor suits tensors of any scale.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes

from onnx2trt_check.compare import Tolerance, compare_output
from onnx2trt_check.errors import InputDataError
from onnx2trt_check.precision.activations import FLOAT_DTYPES
from onnx2trt_check.protos import in_deployable_form
from onnx2trt_check.runtime import create_session
from onnx2trt_check.transforms.graph_utils import node_label

DEFAULT_MIN_SQNR_DB = 20.0
DEFAULT_TOLERANCE = Tolerance(atol=None, rtol=None, min_sqnr_db=DEFAULT_MIN_SQNR_DB)
HELPER_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Cast"})
AMPLIFICATION_EPS = 1e-3


@dataclasses.dataclass
class TensorComparison:
    """One matched tensor: `tensor` in the target, `reference` in the reference model."""

    tensor: str
    reference: str
    nodes: list[str]
    max_abs: float
    sqnr_db: float
    cosine: float
    relative_error: float
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclasses.dataclass
class NodeAmplification:
    node: str
    op_type: str
    input_error: float
    output_error: float
    amplification: float


@dataclasses.dataclass
class LayerwiseReport:
    """`amplification`: nodes whose inputs already carry error, by how much they grow it;
    `sources`: nodes whose inputs are exact but whose output is not (the error starts there), by
    output error. Kept apart because a ratio over an exact input is a ratio over an epsilon."""

    tensors: list[TensorComparison]
    amplification: list[NodeAmplification]
    min_sqnr_db: float | None
    executions: int
    sources: list[NodeAmplification] = dataclasses.field(default_factory=list)

    @property
    def first_divergent(self) -> TensorComparison | None:
        return next((row for row in self.tensors if not row.passed), None)

    def to_dict(self) -> dict:
        """JSON-ready (non-finite figures become the strings "inf", "-inf", "nan")."""
        first = self.first_divergent
        data = {
            "first_divergent": _plain(dataclasses.asdict(first)) if first else None,
            "tensors": [_plain({**dataclasses.asdict(row), "passed": row.passed}) for row in self.tensors],
            "amplification": [_plain(dataclasses.asdict(a)) for a in self.amplification],
            "error_sources": [_plain(dataclasses.asdict(a)) for a in self.sources],
            "min_sqnr_db": _plain(self.min_sqnr_db),
            "executions": self.executions,
        }
        return data

    def format(self) -> str:
        """The first divergent tensor and its node first, then what was compared, where error
        starts (nodes with exact inputs) and which nodes amplify it."""
        first = self.first_divergent
        if first is None:
            lines = ["no tensor beyond tolerance"]
        else:
            lines = [
                f"first divergent: node {', '.join(first.nodes) or '(graph input)'}, tensor {first.tensor!r} (reference {first.reference!r}): "
                f"SQNR {first.sqnr_db:.2f} dB, cosine {first.cosine:.6f}, max abs {first.max_abs:.4g}; " + "; ".join(first.problems)
            ]
        lines.append(f"layerwise: {len(self.tensors)} tensors compared in {self.executions} model executions")
        if self.sources:
            lines.append("error sources (exact inputs, inexact output), largest output rel. error first:")
            lines += [f"  {a.node} ({a.op_type}): {a.output_error:.3g}" for a in self.sources]
        lines.append("largest error amplification (output rel. error / input rel. error), nodes whose inputs carry error:")
        lines += [f"  {a.node} ({a.op_type}): x{a.amplification:.3g} ({a.input_error:.3g} -> {a.output_error:.3g})" for a in self.amplification]
        lines += [] if self.amplification else ["  (none)"]
        return "\n".join(lines)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def layerwise_compare(
    reference_model: onnx.ModelProto,
    target_model: onnx.ModelProto,
    feeds: Iterable[Mapping[str, np.ndarray]],
    *,
    tolerance: Tolerance | float | None = None,
    top_k: int = 10,
    run_target: Callable[[onnx.ModelProto, list], Mapping[str, list[np.ndarray]]] | None = None,
) -> LayerwiseReport:
    """Compare every matched tensor of `target_model` with `reference_model` over `feeds`.

    `tolerance` is a Tolerance or an SQNR floor in dB; defaults to DEFAULT_TOLERANCE (20 dB floor).
    `top_k` nodes with the largest error amplification (among nodes whose inputs carry error) and
    `top_k` error sources (exact inputs, inexact output) are reported; defaults to 10.
    `run_target(model, feeds)` gives the target's tensors by name (a list per tensor, one array per
    feed) when something other than ONNX Runtime runs it, e.g. a TensorRT engine with every tensor
    marked as an output; tensors it does not give (fused away) are not compared. Defaults to ONNX
    Runtime with every tensor exposed. Neither model is mutated."""
    feeds = list(feeds)
    if not feeds:
        raise InputDataError("feeds is empty; pass at least one feed (a dict of input name -> array)")
    tolerance = _tolerance(tolerance)
    reference, ref_values = _run_exposed(reference_model, feeds)
    if run_target is None:
        target, tgt_values = _run_exposed(target_model, feeds)
    else:
        target, tgt_values = _typed_ir(target_model), run_target(target_model, feeds)
    ref_nodes = {node.name for node in reference.graph if node.name}
    matches = match_tensors({name for name in ref_values}, target.graph, ref_nodes)
    matches = {name: ref for name, ref in matches.items() if name in tgt_values}
    values = values_by_name(target.graph)
    rows = [_row(name, ref, ref_values[ref], tgt_values[name], values, ref_nodes, tolerance) for name, ref in matches.items()]
    nodes = node_amplification(target.graph, {row.tensor: row.relative_error for row in rows}, ref_nodes)
    amplifiers = sorted((a for a in nodes if a.input_error > 0), key=lambda a: -a.amplification)
    sources = sorted((a for a in nodes if a.input_error == 0 and a.output_error > 0), key=lambda a: -a.output_error)
    return LayerwiseReport(rows, amplifiers[:top_k], tolerance.min_sqnr_db, 2 * len(feeds), sources[:top_k])


def _tolerance(tolerance: Tolerance | float | None) -> Tolerance:
    if tolerance is None:
        return DEFAULT_TOLERANCE
    if isinstance(tolerance, Tolerance):
        return tolerance
    return Tolerance(atol=None, rtol=None, min_sqnr_db=float(tolerance))


def _run_exposed(model: onnx.ModelProto, feeds: list) -> tuple[ir.Model, dict[str, list[np.ndarray]]]:
    """An IR copy with every float tensor exposed, and each tensor's values over the feeds."""
    copy = _typed_ir(model)
    names = exposed_tensors(copy.graph)
    computed = [name for name in names if name not in {v.name for v in copy.graph.inputs}]
    session = create_session(_with_outputs(copy, computed), optimized=False)
    values: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for feed in feeds:
        results = dict(zip(computed, session.run(computed, dict(feed))))
        for name in names:
            values[name].append(results[name] if name in results else np.asarray(feed[name]))
    return copy, values


def _typed_ir(model: onnx.ModelProto) -> ir.Model:
    """An IR copy in which every node output has a type (inferred where missing). Sorted first: onnx's
    inference types nothing of an unsorted graph, and untyped tensors were left out of the comparison."""
    copy = ir.from_proto(in_deployable_form(model))
    if any(value.type is None for node in copy.graph for value in node.outputs if value.name):
        copy = ir_passes.ShapeInferencePass()(copy).model
    return copy


def exposed_tensors(graph: ir.Graph) -> list[str]:
    """Float graph inputs, then float node outputs in topological (graph) order."""
    inputs = [value for value in graph.inputs if not value.is_initializer()]
    outputs = [value for node in graph for value in node.outputs]
    return list(dict.fromkeys(v.name for v in inputs + outputs if v.name and v.dtype in FLOAT_DTYPES))


def _with_outputs(model: ir.Model, names: Sequence[str]) -> onnx.ModelProto:
    proto = ir.to_proto(model)  # a fresh proto: the IR copy keeps its own outputs
    present = {output.name for output in proto.graph.output}
    typed = {value.name: value for node in model.graph for value in node.outputs}
    for name in names:
        if name not in present:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, typed[name].dtype.value, None))
    return proto


def is_helper(node: ir.Node | None, reference_nodes: set[str]) -> bool:
    """A Q, DQ or Cast node that the reference does not have (inserted by lowering)."""
    return node is not None and node.op_type in HELPER_OPS and node.name not in reference_nodes


def match_tensors(reference_names: set[str], graph: ir.Graph, reference_nodes: set[str] = frozenset()) -> dict[str, str]:
    """Target tensor name -> reference tensor name, by the module's matching rules, in the target's
    topological order."""
    matches: dict[str, str] = {}
    values = values_by_name(graph)
    for name in exposed_tensors(graph):
        origin = _origin(values[name], reference_names, reference_nodes)
        if origin is not None:
            matches[name] = origin
    return matches


def values_by_name(graph: ir.Graph) -> dict[str, ir.Value]:
    """Graph inputs and node outputs of the top-level graph by name."""
    found = {value.name: value for value in graph.inputs}
    found.update({value.name: value for node in graph for value in node.outputs if value.name})
    return found


def _origin(value: ir.Value | None, reference_names: set[str], reference_nodes: set[str]) -> str | None:
    while value is not None:
        if value.name in reference_names:
            return value.name
        producer = value.producer()
        if not is_helper(producer, reference_nodes) or producer.op_type == "QuantizeLinear":
            return None
        if producer.op_type == "DequantizeLinear":
            quantizer = producer.inputs[0].producer() if producer.inputs[0] is not None else None
            if not is_helper(quantizer, reference_nodes) or quantizer.op_type != "QuantizeLinear":
                return None  # a weight's DQ: not an activation
            value = quantizer.inputs[0]
        else:
            value = producer.inputs[0]
    return None


def attributed_nodes(value: ir.Value, reference_nodes: set[str]) -> list[str]:
    """The node(s) a tensor's error is charged to (see the module doc)."""
    producer = value.producer()
    if is_helper(producer, reference_nodes) and producer.op_type == "DequantizeLinear":
        return sorted({_label(node) for node in _real_consumers(value, reference_nodes)})
    source = _source(value, reference_nodes).producer()
    return [_label(source)] if source is not None else []


def _real_consumers(value: ir.Value, reference_nodes: set[str]) -> list[ir.Node]:
    found = []
    for use in value.uses():
        node = use.node
        if is_helper(node, reference_nodes):
            found += [n for out in node.outputs for n in _real_consumers(out, reference_nodes)]
        else:
            found.append(node)
    return found


def _source(value: ir.Value, reference_nodes: set[str]) -> ir.Value:
    """Walk back through helper nodes to the tensor a real node (or the graph input) produced."""
    while is_helper(value.producer(), reference_nodes) and value.producer().inputs[0] is not None:
        value = value.producer().inputs[0]
    return value


def _delivered(value: ir.Value, errors: Mapping[str, float], reference_nodes: set[str]) -> ir.Value:
    """Walk forward through a chain of sole-consumer helper Casts to the first compared tensor."""
    while value.name not in errors and len(value.uses()) == 1:
        consumer = value.uses()[0].node
        if not is_helper(consumer, reference_nodes) or consumer.op_type != "Cast":
            break
        value = consumer.outputs[0]
    return value


def _label(node: ir.Node) -> str:
    return node_label(node)


def _row(name, reference, ref_arrays, tgt_arrays, values, ref_nodes, tolerance) -> TensorComparison:
    stats = compare_output(name, ref_arrays, tgt_arrays, tolerance)
    error = relative_l2_error(ref_arrays, tgt_arrays)
    # An identical tensor has not diverged, even one compare_output refuses as an output because it
    # holds no finite value (a transformer's -inf attention-mask Constant was named first divergent).
    return TensorComparison(
        tensor=name, reference=reference, nodes=attributed_nodes(values[name], ref_nodes),
        max_abs=stats.max_abs, sqnr_db=stats.sqnr_db, cosine=stats.cosine,
        relative_error=error, problems=[] if error == 0.0 else list(stats.problems),
    )


def relative_l2_error(reference: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> float:
    """||target - reference|| / ||reference|| over all feeds, in float64. Elements where both are
    the same non-finite value are equal; any other non-finite element makes the error inf; a
    differing shape too. 0 when both are exactly zero."""
    if len(reference) != len(target) or any(np.shape(r) != np.shape(t) for r, t in zip(reference, target)):
        return math.inf
    ref = np.concatenate([np.asarray(r, np.float64).ravel() for r in reference])
    got = np.concatenate([np.asarray(t, np.float64).ravel() for t in target])
    same = (ref == got) | (np.isnan(ref) & np.isnan(got))
    if not np.all(np.isfinite(ref[~same]) & np.isfinite(got[~same])):
        return math.inf
    # Equal elements add nothing to the noise and all of their value to the signal.
    noise = float(np.linalg.norm(np.subtract(got, ref, out=np.zeros_like(ref), where=~same)))
    signal = float(np.linalg.norm(np.where(np.isfinite(ref), ref, 0.0)))
    if noise == 0.0:
        return 0.0
    return noise / signal if signal > 0.0 else math.inf


def amplification_ratio(input_error: float, output_error: float) -> float:
    """(output + eps) / (input + eps); 1.0 when both are infinite (the error passes through)."""
    if math.isinf(input_error) and math.isinf(output_error):
        return 1.0
    return (output_error + AMPLIFICATION_EPS) / (input_error + AMPLIFICATION_EPS)


def node_amplification(graph: ir.Graph, errors: Mapping[str, float], reference_nodes: set[str]) -> list[NodeAmplification]:
    """Each real node's amplification, over the relative errors of the compared tensors by name."""
    found = []
    for node in graph:
        if is_helper(node, reference_nodes):
            continue
        outputs = [errors.get(_delivered(v, errors, reference_nodes).name) for v in node.outputs if v is not None]
        outputs = [e for e in outputs if e is not None]
        if not outputs:
            continue
        sources = [_source(v, reference_nodes) for v in node.inputs if v is not None and not v.is_initializer()]
        inputs = [errors[v.name] for v in sources if v.name in errors]
        in_error, out_error = max(inputs, default=0.0), max(outputs)
        found.append(NodeAmplification(_label(node), node.op_type, in_error, out_error, amplification_ratio(in_error, out_error)))
    return found
