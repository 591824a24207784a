"""Which nodes must stay in higher precision: per-node sensitivity and a small fp32 fallback set.

A precision lowering is any callable `lower(model, *, keep_fp32: set[str]) -> ModelProto` that
returns the model in reduced precision except the named nodes. Three are provided:
`fp16_emulation` (Cast to fp16 and back after each lowered node's outputs and on its float weights,
a faithful fp16-storage emulation on ORT's CPU provider, which runs most ops in fp32 anyway),
`fp16_converter` (precision/fp16.py's converter, the file that gets deployed, with no fallback but
`keep_fp32`) and `int8_quantizer` (quant/quantize.py with `exclude=keep_fp32`).

The search (`search_fallback`) starts from the fully lowered model (keep nothing, so for fp16 its
answer is the whole fallback list), then, with a sensitivity ranking, keeps the smallest prefix of
the ranking that meets the SQNR floor (exponential then binary search over the prefix length), and
finally minimizes that set with delta debugging (Zeller's ddmin) to a 1-minimal set: removing any
one node breaks the floor. Every evaluation lowers the model and runs it over all feeds once; the
report counts these runs per phase.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes

from onnx2trt_check.errors import ConfigError, InputDataError
from onnx2trt_check.quant.objective import Objective, output_sqnr_db, score_key
from onnx2trt_check.runtime import run_model
from onnx2trt_check.targets.fp16_bodies import emulate_bodies, has_bodies
from onnx2trt_check.transforms.graph_utils import node_label

Lowering = Callable[..., onnx.ModelProto]
DEFAULT_MIN_SQNR_DB = 30.0


# --- lowerings ----------------------------------------------------------------------------------


def fp16_emulation(model: onnx.ModelProto, *, keep_fp32: Iterable[str] = (), weights: bool = True) -> onnx.ModelProto:
    """fp16 storage emulated in fp32, on every edge where precision/fp16.py's artifact with
    `keep_fp32` blocked (and no other fallback) holds a value in fp16: Cast(fp16) -> Cast(fp32)
    rounds it there and overflows it to inf. As the converter builds the artifact:
    * a lowered node's float outputs are fp16 for every reader (a kept reader casts them up);
    * a value a lowered node reads from a kept node or a graph input is cast down for that node
      only (kept readers read it exact);
    * a float initializer (with `weights`) that a lowered node reads is stored in fp16, and kept
      readers read it cast back up;
    * inputs the converter leaves float (Resize's scales) are not cast for their node;
    * lowered means: not in `keep_fp32`, not an op the converter cannot convert (its op block list)
      and not a reader of a weight beyond the fp16 range (convert_to_fp16 blocks those).
    tests/test_bisect_sensitivity.py holds it equal to fp16_storage_emulation of the converted
    file. The post-cast tensor keeps the original name. Run it with ORT graph optimizations off (the
    reference session), which keeps the casts. Defaults: weights rounded."""
    copy = ir.from_proto(model)
    if any(value.type is None for node in copy.graph for value in node.outputs if value.name):
        copy = ir_passes.ShapeInferencePass()(copy).model  # output dtypes decide what is rounded
    lowered = _lowered_nodes(copy.graph, set(keep_fp32))
    for node in copy.graph:  # named by their labels before outputs are renamed: emulate_bodies matches labels
        node.name = node.name or (node_label(node) if any(a.type == ir.AttributeType.GRAPH for a in node.attributes.values()) else "")
    rounded: dict[ir.Value, ir.Value] = {}  # value -> its rounded copy for lowered readers
    for node in list(copy.graph):
        if node in lowered:
            _round_reads(copy.graph, node, rounded)
            for output in node.outputs:
                if output.dtype == ir.DataType.FLOAT:
                    rounded_output = _round_output(copy.graph, node, output)
                    rounded[rounded_output] = rounded_output  # read as it is by everyone
    if weights:
        _round_shared_weights(copy.graph, lowered, rounded)
    if not has_bodies(model):
        return ir.to_proto(copy)
    return emulate_bodies(ir.to_proto(copy), fp16_converter(model, keep_fp32=keep_fp32))  # Loop/If/Scan bodies as converted


def _lowered_nodes(graph: ir.Graph, keep: set[str]) -> set[ir.Node]:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    from onnx2trt_check.precision.fp16 import FP16_MAX

    kept = {node for node in graph if node_label(node) in keep or node.op_type in DEFAULT_OP_BLOCK_LIST}
    for value in list(graph.initializers.values()) + [n.outputs[0] for n in graph if n.op_type == "Constant" and n.outputs]:
        array = _float_constant(value)
        if array is not None and array.size and float(np.max(np.abs(array))) > FP16_MAX:  # convert_to_fp16's weight-overflow
            kept |= {use.node for use in value.uses()} | ({value.producer()} if value.producer() else set())
    return {node for node in graph if node not in kept}


def _float_constant(value: ir.Value) -> np.ndarray | None:
    tensor = value.const_value
    if tensor is None and value.producer() is not None and value.producer().op_type == "Constant":
        attribute = value.producer().attributes.get("value")
        tensor = attribute.as_tensor() if attribute is not None and attribute.type == ir.AttributeType.TENSOR else None
    return tensor.numpy() if tensor is not None and tensor.dtype == ir.DataType.FLOAT else None


def _always_float(node: ir.Node, index: int) -> bool:
    from onnxruntime.transformers.float16 import ALWAYS_FLOAT_INPUTS

    return index in ALWAYS_FLOAT_INPUTS.get(node.op_type, ())


def _round_reads(graph: ir.Graph, node: ir.Node, rounded: dict) -> None:
    """A lowered node's float reads of a kept node's output or of a graph input (any value not
    rounded yet: lowered producers come first in graph order) go through a round trip, one per
    value shared by its lowered readers."""
    for index, value in enumerate(node.inputs):
        if value is None or value.dtype != ir.DataType.FLOAT or _always_float(node, index) or value.is_initializer():
            continue
        if value.producer() is None and value.const_value is not None:
            continue  # a constant without a node: a weight, rounded with the initializers
        if value not in rounded:
            nodes, rounded[value] = _round_trip(value, f"{value.name}__to_lowered")
            graph.insert_before(node, nodes)
        node.replace_input_with(index, rounded[value])


def _round_shared_weights(graph: ir.Graph, lowered: set[ir.Node], rounded: dict) -> None:
    """A float initializer some lowered node reads (outside the always-float inputs) is rounded
    for every reader: the converter stores it in fp16 and casts it back up for kept readers."""
    for value in list(graph.initializers.values()):
        if value.dtype != ir.DataType.FLOAT or value.is_graph_input():
            continue
        uses = list(value.uses())
        if not any(use.node in lowered and not _always_float(use.node, use.idx) for use in uses):
            continue
        nodes, copy = _round_trip(value, f"{value.name}__fp16_weight")
        graph.insert_before(next(iter(graph)), nodes)
        for use in uses:
            use.node.replace_input_with(use.idx, copy)


def _round_trip(value: ir.Value, name: str) -> tuple[list[ir.Node], ir.Value]:
    half = ir.node("Cast", [value], {"to": ir.DataType.FLOAT16}, name=f"{name}__to_fp16")
    full = ir.node("Cast", [half.outputs[0]], {"to": ir.DataType.FLOAT}, name=f"{name}__to_fp32")
    half.outputs[0].name, full.outputs[0].name = f"{name}__fp16", f"{name}__fp32"
    full.outputs[0].dtype = ir.DataType.FLOAT
    return [half, full], full.outputs[0]


def _round_output(graph: ir.Graph, node: ir.Node, output: ir.Value) -> ir.Value:
    """Every reader of `output` (and the graph output) reads it rounded, under its name."""
    name = output.name
    nodes, rounded = _round_trip(output, name)
    output.replace_all_uses_with(rounded, replace_graph_outputs=True)
    nodes[0].replace_input_with(0, output)  # replace_all_uses_with also moved the cast's own input
    output.name, rounded.name = f"{name}__unrounded", name
    graph.insert_after(node, nodes)
    return rounded


def fp16_converter(model: onnx.ModelProto, *, keep_fp32: Iterable[str] = ()) -> onnx.ModelProto:
    """precision/fp16.py's conversion with no fallback but `keep_fp32` (no sensitive-op list, no
    data-driven blocking): the plain conversion the search starts from."""
    from onnx2trt_check.precision.fp16 import convert_to_fp16

    return convert_to_fp16(model, block_ops=(), block_nodes=sorted(keep_fp32)).model


def int8_quantizer(calibration_feeds: Iterable[Mapping[str, np.ndarray]], *, exclude: Iterable[str] = (), **options) -> Lowering:
    """A lowering that quantizes with quant/quantize.py, leaving the kept nodes (and `exclude`) in
    float; `options` go to quantize_model (method, percentile, per_channel). The ranges are
    calibrated once per model, with nothing kept, and reused for every keep set: a search compares
    keep sets, not calibrations (and automatic calibration is too costly to repeat per set)."""
    from onnx2trt_check.quant.insert_qdq import insert_qdq, plan_qdq
    from onnx2trt_check.quant.opset_upgrade import upgrade_for_qdq
    from onnx2trt_check.quant.quantize import quantize_model

    feeds, user_exclude, ranges, upgraded = list(calibration_feeds), sorted(exclude), {}, {}
    per_channel = options.get("per_channel", True)

    def lower(model: onnx.ModelProto, *, keep_fp32: Iterable[str] = ()) -> onnx.ModelProto:
        if id(model) not in upgraded:  # below opset 13: converted and checked once (the search lowers one model)
            upgraded[id(model)] = (model, upgrade_for_qdq(model, feeds)[0])
        model = upgraded[id(model)][1]
        plan = plan_qdq(model, per_channel=per_channel, exclude=[*user_exclude, *sorted(keep_fp32)])
        if any(name not in ranges for name in plan.activations):
            report = quantize_model(model, feeds, exclude=user_exclude, **options).report
            ranges.update({t.name: t.amax for t in report.tensors if t.kind == "activation"})
        return insert_qdq(model, plan, ranges)[0]

    return lower


# --- evaluation ---------------------------------------------------------------------------------


class _Evaluator:
    """Lowers and runs the model for a keep set, caching by set and counting runs per phase; each
    lowered run is scored by `objective` against the model's own run (higher is better)."""

    def __init__(self, model: onnx.ModelProto, feeds: list, lower: Lowering, objective: Objective = output_sqnr_db) -> None:
        self.model, self.feeds, self.lower, self.objective = model, feeds, lower, objective
        self.figure = getattr(objective, "figure", None)  # a task objective's figure; None: output SQNR (dB)
        self.reference = run_model(model, feeds)
        self.cache: dict[frozenset[str], float] = {}
        self.runs: dict[str, int] = {"reference": 1}
        self.phase = "search"

    def sqnr(self, keep: Iterable[str]) -> float:
        key = frozenset(keep)
        if key not in self.cache:
            self.runs[self.phase] = self.runs.get(self.phase, 0) + 1
            self.cache[key] = self.objective(self.reference, run_model(self.lower(self.model, keep_fp32=set(key)), self.feeds))
        return self.cache[key]


# --- sensitivity --------------------------------------------------------------------------------


def score_text(value: float, figure: str | None) -> str:
    """'output SQNR 31.20 dB', or for a task objective's `figure` 'top1 0.9167'."""
    return f"output SQNR {value:.2f} dB" if figure is None else f"{figure} {value:.4g}"


@dataclasses.dataclass
class NodeSensitivity:
    """The objective's score (output SQNR in dB, worst output; or a task objective's `figure`)
    when only `node` is lowered, and when only it is kept."""

    node: str
    op_type: str
    only_lowered_sqnr_db: float
    only_kept_sqnr_db: float
    figure: str | None = None

    def why(self) -> str:
        return (f"alone in reduced precision: {score_text(self.only_lowered_sqnr_db, self.figure)}; "
                f"alone kept in fp32: {score_text(self.only_kept_sqnr_db, self.figure)}")


def node_names(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(label, op type) of every node: its name, or for an unnamed node `OpType(first output)`
    (graph_utils.node_label), the label every lowering, the quantizer's exclude and the fp16
    converter's block list accept."""
    return [(node_label(node), node.op_type) for node in ir.from_proto(model).graph]


def node_sensitivity(model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]], lower: Lowering, *,
                     nodes: Iterable[str] | None = None, objective: Objective = output_sqnr_db) -> list[NodeSensitivity]:
    """Per node (`nodes`, defaulting to all), most sensitive first: ranked by the score with only it
    lowered (lowest first), ties by the score with only it kept (highest first); a task objective's
    scores tie first by their output SQNR (objective.score_key). 2 runs per node."""
    evaluator = _Evaluator(model, _feed_list(feeds), lower, objective)
    return _sensitivities(evaluator, nodes)


def _sensitivities(evaluator: _Evaluator, nodes: Iterable[str] | None, phase: str = "sensitivity") -> list[NodeSensitivity]:
    all_nodes = dict(node_names(evaluator.model))
    chosen = list(all_nodes) if nodes is None else _checked(nodes, all_nodes)
    evaluator.phase = phase
    found = [NodeSensitivity(name, all_nodes[name], evaluator.sqnr(set(all_nodes) - {name}), evaluator.sqnr({name}), evaluator.figure) for name in chosen]
    return sorted(found, key=lambda s: (score_key(s.only_lowered_sqnr_db), tuple(-x for x in score_key(s.only_kept_sqnr_db))))


def _checked(nodes: Iterable[str], all_nodes: Mapping[str, str]) -> list[str]:
    chosen = list(dict.fromkeys(nodes))
    unknown = [name for name in chosen if name not in all_nodes]
    if unknown:
        raise ConfigError(f"nodes {unknown} are not in the model; pass node names from the graph")
    return chosen


def _feed_list(feeds: Iterable[Mapping[str, np.ndarray]]) -> list:
    feeds = list(feeds)
    if not feeds:
        raise InputDataError("feeds is empty; pass at least one feed (a dict of input name -> array)")
    return feeds


# --- the fallback search ------------------------------------------------------------------------


@dataclasses.dataclass
class FallbackSearch:
    """The nodes to keep in higher precision (`exclude`: pass it as the quantizer's `exclude` or the
    fp16 converter's `block_nodes`), each with why, and what the search cost in model runs."""

    exclude: list[str]
    reasons: dict[str, str]
    met: bool
    min_sqnr_db: float
    lowered_sqnr_db: float
    final_sqnr_db: float
    candidates: int
    runs: dict[str, int]
    figure: str | None = None  # the floor's and scores' figure: a task objective's, None for output SQNR (dB)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}

    def _value(self, value: float) -> str:
        return f"{value:.2f} dB" if self.figure is None else f"{self.figure} {value:.4g}"

    def format(self) -> str:
        verdict = "meets" if self.met else "cannot meet"
        floor = f"{self.min_sqnr_db} dB floor" if self.figure is None else f"{self.figure} >= {self.min_sqnr_db:.4g} floor"
        lines = [f"fallback search: {len(self.exclude)} node(s) kept in fp32 {verdict} the {floor} "
                 f"(fully lowered {self._value(self.lowered_sqnr_db)} -> {self._value(self.final_sqnr_db)}); "
                 f"model runs: " + ", ".join(f"{phase} {count}" for phase, count in self.runs.items())]
        lines += [f"  {name}: {self.reasons[name]}" for name in self.exclude]
        return "\n".join(lines)


def search_fallback(model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]], lower: Lowering, *,
                    min_sqnr_db: float = DEFAULT_MIN_SQNR_DB, rank: bool = False,
                    ranking: Sequence[str | NodeSensitivity] | None = None, objective: Objective = output_sqnr_db) -> FallbackSearch:
    """A small set of nodes to keep in fp32 so the output SQNR meets `min_sqnr_db` (Defaults to 30 dB).
    `objective` scores a lowered run against the float run in the floor's unit (a TaskObjective:
    the floor is a task figure). Defaults to the worst output's SQNR (quant.objective.output_sqnr_db).

    With a `ranking` (node names or node_sensitivity's result, most sensitive first) or `rank=True`
    (computes it: 2 runs per node), the smallest passing prefix of the ranking is found first;
    without one, delta debugging starts from every node. Either way ddmin then minimizes the set.
    """
    evaluator = _Evaluator(model, _feed_list(feeds), lower, objective)
    all_nodes = [name for name, _ in node_names(model)]
    if rank and ranking is None:
        ranking = _sensitivities(evaluator, None)
    evaluator.phase = "start"
    lowered = evaluator.sqnr(())
    candidates = _candidates(evaluator, all_nodes, ranking, min_sqnr_db) if lowered < min_sqnr_db else []
    met = candidates is not None
    evaluator.phase = "ddmin"
    kept = list(candidates) if met else list(all_nodes)
    if len(kept) > 1 and met:
        kept = ddmin(kept, lambda keep: evaluator.sqnr(keep) >= min_sqnr_db)
    reasons = _reasons(evaluator, kept, ranking)
    final = evaluator.sqnr(kept)
    return FallbackSearch(kept, reasons, met, min_sqnr_db, float(lowered), float(final), len(all_nodes if candidates is None else candidates),
                          dict(evaluator.runs), evaluator.figure)


def _candidates(evaluator: _Evaluator, all_nodes: list[str], ranking, floor: float) -> list[str] | None:
    """The set ddmin starts from: the smallest passing ranking prefix, or every node; None when
    even keeping every candidate misses the floor."""
    if ranking is None:
        return all_nodes if evaluator.sqnr(all_nodes) >= floor else None
    order = [item.node if isinstance(item, NodeSensitivity) else item for item in ranking]
    evaluator.phase = "greedy"
    length = smallest_passing_prefix(len(order), lambda k: evaluator.sqnr(order[:k]) >= floor)
    return None if length is None else order[:length]


def smallest_passing_prefix(count: int, passes: Callable[[int], bool]) -> int | None:
    """The smallest k in 1..count with passes(k), assuming passing is monotone in k: doubling until
    a pass, then bisection between the last failing and the first passing k. None if count fails."""
    low, high = 0, 1  # passes(low) is known False (k=0 is the fully lowered model)
    while high < count and not passes(high):
        low, high = high, min(2 * high, count)
    if not passes(high):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if passes(middle) else (middle, high)
    return high


def ddmin(items: Sequence[str], passes: Callable[[list[str]], bool]) -> list[str]:
    """Zeller's delta debugging: a 1-minimal subset of `items` (which passes) that still passes,
    trying each of n chunks, then each complement, and doubling n when neither passes. The empty
    set is assumed to fail. Order of `items` is kept."""
    current, chunks = list(items), 2
    while len(current) >= 2:
        parts = _split(current, chunks)
        reduced = next((part for part in parts if passes(part)), None)
        if reduced is not None:
            current, chunks = reduced, 2
            continue
        complement = next((c for c in (_without(current, part) for part in parts) if chunks > 2 and passes(c)), None)
        if complement is not None:
            current, chunks = complement, max(chunks - 1, 2)
        elif chunks >= len(current):
            break
        else:
            chunks = min(2 * chunks, len(current))
    return current


def _split(items: list[str], parts: int) -> list[list[str]]:
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)]
    return [items[bounds[i]:bounds[i + 1]] for i in range(parts) if bounds[i] < bounds[i + 1]]


def _without(items: list[str], part: list[str]) -> list[str]:
    drop = set(part)
    return [item for item in items if item not in drop]


def _reasons(evaluator: _Evaluator, kept: list[str], ranking) -> dict[str, str]:
    known = {item.node: item for item in ranking or () if isinstance(item, NodeSensitivity)}
    missing = [name for name in kept if name not in known]
    if missing:
        known.update({s.node: s for s in _sensitivities(evaluator, missing, "explain")})
    evaluator.phase = "final"
    return {name: known[name].why() for name in kept}
