"""Outputs whose rows a TopK's indices select (boxes, labels = Gather(x, TopK(scores).indices)), compared
after pairing their rows by the item each selects.

Why: the order among near-tied scores is rounding's choice, so row i of the reference and row i of an
int8 target are different objects where two candidates swap rank. Compared position by position, every
honest int8 end-to-end detector failed (hunt17: boxes 5.6 dB by position, 54.9 dB with rows paired by
the TopK's index). Rows that both sides select are compared under the usual rules (SQNR floors, label
agreement); the share of items both select is judged like a TopK's indices output (agreement.
selection_agreement): exactly under fp32, under the agreement floor under int8 and fp16.

The indices are rarely an output: each side's model is run once more with the TopK's indices as extra
outputs (`probe`, for the comparison only: no written artifact holds them), and they are used only
where that run gives the side's own outputs back exactly. Anything not paired so (a TensorRT engine,
a reference script, a graph the rules below do not follow) keeps the strict positional comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx

from .agreement import allowed_disagreements
from .compare import OutputStats, Tolerance, compare_output
from .output_layout import OutputLayout

# Ops that keep every row where it is: applied element by element, or along axes after the rows.
_ELEMENTWISE = {"Identity", "Cast", "QuantizeLinear", "DequantizeLinear", "Sigmoid", "Relu", "Clip", "Neg", "Abs", "Floor",
                "Ceil", "Round", "Exp", "Log", "Sqrt", "Unsqueeze", "Squeeze"}
_BINARY = {"Add", "Sub", "Mul", "Div"}
# Ops an index may pass on its way from the TopK to a Gather: a broadcast over box columns (Unsqueeze,
# Expand), a type, a flat offset (batch x anchors), a stack with the batch index (GatherND).
_INDEX_OPS = {"Identity", "Cast", "Unsqueeze", "Squeeze", "Expand", "Add", "Sub", "Mul", "Concat"}


def gathered_outputs(model: onnx.ModelProto) -> dict[str, str]:
    """Output name -> the TopK indices value that selects its rows along the TopK's axis, for outputs
    made by Gather (axis 0), GatherElements or GatherND on those indices, through ops that keep rows
    (element-wise, with a scalar or vector constant, a Concat of such parts or of the TopK's values, a
    constant table's Gather of gathered labels). The TopK's own outputs are not here (output_layout
    judges its indices; its values are sorted and compared by position)."""
    graph = model.graph
    producers = {name: node for node in graph.node for name in node.output}
    constants = {t.name: len(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            constants[node.output[0]] = len(value.dims) if value is not None else 0
    found, shapes = {}, _shapes(model) if any(node.op_type == "TopK" for node in graph.node) else {}
    for output in graph.output:
        node = producers.get(output.name)
        while node is not None and node.op_type == "Identity":
            node = producers.get(node.input[0])
        if node is None or node.op_type == "TopK":
            continue
        source = _row_source(output.name, producers, constants, shapes)
        if source is not None:
            found[output.name] = source
    return _pairable(found, producers, shapes)


def index_outputs(model: onnx.ModelProto) -> dict[str, str]:
    """Output name -> the TopK indices value it is (through Identity or an integer Cast: output_layout's
    TopK indices output, compared as the set each row selects). Only their order is checked here:
    the first of a top-5 is the top-1 a user reads, and a derived TopK with sorted=0 gave it wrong on
    every row while the sets passed ('top-1 100%')."""
    from .output_layout import indices_topk

    producers = {name: node for node in model.graph.node for name in node.output}
    topks = {output.name: indices_topk(producers, output.name) for output in model.graph.output}
    return {name: topk.output[1] for name, topk in topks.items() if topk is not None}


def selects_by_topk(model: onnx.ModelProto) -> bool:
    """Whether the graph has a TopK, so an output may be gathered by its indices or be them: the cheap
    gate before `probe`, which finds those outputs (gathered_outputs infers shapes: once per probe,
    not again for the gate)."""
    return any(node.op_type == "TopK" for node in model.graph.node)


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    from .output_layout import _inferred

    inferred = _inferred(model, {})
    return inferred[1] if inferred else {}


def _last_axis(node: onnx.NodeProto, shapes, default: int = 0) -> int | None:
    """A node's axis attribute made non-negative by its first input's rank, None where that rank is unknown."""
    axis, rank = _axis(node, default), len(shapes.get(node.input[0]) or [])
    return axis if axis >= 0 else (axis + rank if rank else None)


def _pairable(found: dict[str, str], producers, shapes) -> dict[str, str]:
    """`found` without the outputs whose TopK is not along the last axis of a known rank (the pairing
    reads the indices' last axis as the items: review19, a target that swapped two batch columns of a
    TopK along axis 0 passed, each column's items paired with the other's) or keeps every item of
    its axis (a sort: its order is all it says, as output_layout._sorts_whole_axis; review19, a sort
    given reversed passed fp32 paired)."""
    from .output_layout import _has, _ints, _sorts_whole_axis

    kept = {}
    for name, index in found.items():
        topk = producers[index]
        axis, rank = _ints(topk, "axis")[0] if _has(topk, "axis") else -1, len(shapes.get(topk.input[0]) or [])
        if (axis == -1 or (rank and axis == rank - 1)) and not _sorts_whole_axis(topk, shapes):
            kept[name] = index
    return kept


def _row_source(name: str, producers, constants, shapes, depth: int = 0) -> str | None:
    """The TopK indices whose items the rows of `name` are, or None."""
    node = producers.get(name)
    if node is None or depth > 64:
        return None
    op, deeper = node.op_type, depth + 1
    if op == "TopK":
        return node.output[1] if name == node.output[0] and len(node.output) > 1 else None
    if op in _ELEMENTWISE:
        return _row_source(node.input[0], producers, constants, shapes, deeper)
    if op in _BINARY or op == "Concat":
        # A constant operand broadcasts along the columns only where it is a scalar or a vector (4 box
        # scales); one of a row's size moves with positions, not items.
        varying = [i for i in node.input if not (op in _BINARY and constants.get(i, 2) <= 1)]
        sources = {_row_source(i, producers, constants, shapes, deeper) for i in varying}
        return sources.pop() if len(sources) == 1 and None not in sources else None
    if op == "Gather" and node.input[0] in constants and _axis(node) == 0:  # a label map applied to gathered labels
        return _row_source(node.input[1], producers, constants, shapes, deeper)
    if (op == "Gather" and _axis(node) == 0) or op in ("GatherElements", "GatherND"):
        source = _index_source(node.input[1], producers, 0)
        topk = producers.get(source) if source else None
        if op == "GatherElements" and topk is not None and (_last_axis(node, shapes) is None or _last_axis(node, shapes) != _last_axis(topk, shapes, -1)):
            return None  # gathered along another axis than the TopK selected along (review19: or one a negative axis hides)
        return source
    return None


def _index_source(name: str, producers, depth: int) -> str | None:
    node = producers.get(name)
    if node is None or depth > 64:
        return None
    if node.op_type == "TopK":
        return name if len(node.output) > 1 and name == node.output[1] else None
    if node.op_type not in _INDEX_OPS:
        return None
    sources = {_index_source(i, producers, depth + 1) for i in node.input} - {None}
    return sources.pop() if len(sources) == 1 else None


def _axis(node: onnx.NodeProto, default: int = 0) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), default)


class Selections(dict):
    """Output name -> the indices that selected its rows, on one feed; `unsorted`: the outputs whose TopK
    gave its values out of its own order there (sorted=0: review19, a derived model whose rows came in
    any order passed paired, the pairing restoring the reference's order)."""

    unsorted: frozenset = frozenset()
    # The outputs whose TopK promises no order (sorted=0): an original that says so is not held to the
    # order its runtime happens to give on some feed (k = 1 always looks sorted).
    unpromised: frozenset = frozenset()


def probe(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], run: Callable, outputs: Sequence[Mapping[str, np.ndarray]],
          names: Sequence[str] | None = None) -> list[Selections] | None:
    """Per feed, output name -> the indices that selected its rows, for the gathered outputs (of
    `names`, default all), and which of those and of the TopK indices outputs came out of their
    TopK's order, where `run(model with the TopKs' outputs as extra outputs, feeds)` gives `outputs`
    back exactly; None where no output is either, the run fails or gives nothing back exactly."""
    gathered = {name: index for name, index in gathered_outputs(model).items() if names is None or name in names}
    ordered = {name: index for name, index in index_outputs(model).items() if names is None or name in names}
    if not (gathered or ordered) or not outputs:
        return None
    producers = {name: node for node in model.graph.node for name in node.output}
    topks = {index: producers[index] for index in {*gathered.values(), *ordered.values()}}
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    have = {o.name for o in extended.graph.output}
    for value in sorted({v for topk in topks.values() for v in topk.output[:2] if v} - have):
        extended.graph.output.append(onnx.ValueInfoProto(name=value))  # typeless: ONNX Runtime infers it
    try:
        ran = run(extended, feeds)
    except Exception:  # noqa: BLE001 - no indices: the positional comparison, as before
        return None
    same = [name for name in {**gathered, **ordered} if all(name in r and name in o and _identical(r[name], o[name]) for r, o in zip(ran, outputs))]
    if not same or len(ran) != len(outputs):
        return None
    return [_selections(r, {name: gathered[name] for name in same if name in gathered}, {name: ordered[name] for name in same if name in ordered}, topks)
            for r in ran]


def _selections(ran: Mapping[str, np.ndarray], gathered: Mapping[str, str], ordered: Mapping[str, str], topks) -> Selections:
    """The indices of one feed's run, the outputs whose TopK gave its values out of order there, and
    those whose TopK promises no order (sorted=0)."""
    both = {**gathered, **ordered}
    selections = Selections({name: np.asarray(ran[index]) for name, index in gathered.items()})
    selections.unsorted = frozenset(name for name, index in both.items() if not _in_order(ran.get(topks[index].output[0]), topks[index]))
    selections.unpromised = frozenset(name for name, index in both.items() if _sorted_attr(topks[index]) == 0)
    return selections


def _sorted_attr(topk: onnx.NodeProto) -> int:
    return next((a.i for a in topk.attribute if a.name == "sorted"), 1)


def _in_order(values, topk: onnx.NodeProto) -> bool:
    """Whether a TopK's values come largest first along its axis, or smallest first for largest=0;
    equal neighbours and NaN are in order. Unknown values count as in order."""
    axis = _axis(topk, -1)
    if values is None or not -np.ndim(values) <= axis < np.ndim(values):
        return True
    steps = np.diff(np.asarray(values, dtype=np.float64), axis=axis)
    largest = next((a.i for a in topk.attribute if a.name == "largest"), 1)
    return not bool(np.any(steps > 0) if largest else np.any(steps < 0))


def _identical(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


@dataclasses.dataclass
class PairedStats(OutputStats):
    """The figures of an output compared row by row after pairing by the selecting TopK's index: over
    the rows both sides select (`paired_rows` of `selected_rows` the reference selects)."""

    paired_rows: int = 0
    selected_rows: int = 0


def compare(name: str, reference: Sequence[np.ndarray], target: Sequence[np.ndarray], tolerance: Tolerance,
            layout: OutputLayout | None = None, reference_indices: Sequence[Mapping] | None = None,
            target_indices: Sequence[Mapping] | None = None) -> OutputStats:
    """compare_output, with the rows of an output gathered by a TopK's indices paired by those indices
    when both sides' indices are known (`probe`) and fit the output; else compare_output as it is."""
    paired = _paired(name, reference, target, reference_indices, target_indices)
    stats = compare_output(name, reference, target, tolerance, layout) if paired is None else _compare_paired(name, reference, target, tolerance, layout, paired)
    if disordered := _out_of_order(name, reference_indices, target_indices):
        stats.problems.insert(0, f"the target gives its rows out of its TopK's score order on {disordered} of {len(target_indices)} "
                                 f"feed(s) where the reference's are in order (a TopK with sorted=0?): the first of a row is not "
                                 f"its best; rounding's swaps of near-tied rows are forgiven, not an order the scores do not give")
    return stats


def _compare_paired(name: str, reference, target, tolerance: Tolerance, layout, paired) -> PairedStats:
    ref_rows, got_rows, kept, total = paired
    stats = compare_output(name, ref_rows, got_rows, tolerance, layout) if kept else compare_output(name, reference, target, tolerance, layout)
    stats = PairedStats(**{f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}, paired_rows=kept, selected_rows=total)
    allowed = 0 if tolerance.min_top1 is None else allowed_disagreements(tolerance.min_top1, total, alone=True)
    if total - kept > allowed:
        floor = "the same items (fp32: exact)" if tolerance.min_top1 is None else f"the floor {tolerance.min_top1:.3%}"
        stats.problems.insert(0, f"the target selects {kept} of the reference's {total} rows ({kept / total:.3%}; the TopK "
                                 f"indices that gather them), below {floor}")
    elif kept:
        stats.problems = [f"{p} (over the {kept} of {total} rows both select, paired by the TopK's index)" for p in stats.problems]
    return stats


def _out_of_order(name: str, reference_indices, target_indices) -> int:
    """On how many feeds the target's rows of `name` are out of its TopK's order and the reference's are not."""
    if reference_indices is None or target_indices is None:
        return 0
    unsorted = [name in getattr(t, "unsorted", ()) and name not in getattr(r, "unsorted", ()) | getattr(r, "unpromised", frozenset())
                for r, t in zip(reference_indices, target_indices)]
    return sum(unsorted)


def _paired(name: str, reference, target, reference_indices, target_indices):
    """(reference rows, target rows, rows both select, rows the reference selects), or None where the
    indices are missing or do not fit the output: shapes [*rows, k] whose prefix the output's shape is."""
    if reference_indices is None or target_indices is None or not (len(reference) == len(target) == len(reference_indices) == len(target_indices)):
        return None
    if not _aligned(name, reference_indices, target_indices):
        return None
    ref_rows, got_rows, kept, total = [], [], 0, 0
    for r, t, ri, ti in zip(reference, target, reference_indices, target_indices):
        if name not in ri or name not in ti:
            return None
        r, t, ri, ti = np.asarray(r), np.asarray(t), np.asarray(ri[name]), np.asarray(ti[name])
        if ri.ndim < 1 or ri.shape != ti.shape or r.shape != t.shape or r.shape[:ri.ndim] != ri.shape:
            return None
        k, rest = ri.shape[-1], r.shape[ri.ndim:]
        r, t, ri, ti = r.reshape(-1, k, *rest), t.reshape(-1, k, *rest), ri.reshape(-1, k), ti.reshape(-1, k)
        chosen_r, chosen_t = [], []
        for row in range(len(ri)):
            if len(np.unique(ri[row])) != k or len(np.unique(ti[row])) != k:
                return None  # an item twice: not a TopK's selection
            _, at_r, at_t = np.intersect1d(ri[row], ti[row], assume_unique=True, return_indices=True)
            order = np.argsort(at_r, kind="stable")  # in the reference's order
            chosen_r.append(r[row][at_r[order]])
            chosen_t.append(t[row][at_t[order]])
            kept += len(at_r)
        total += ri.size
        shape = (1,) * (ri.ndim - 1) + (-1,) + rest
        ref_rows.append(np.concatenate(chosen_r).reshape(shape) if chosen_r else r[:0])
        got_rows.append(np.concatenate(chosen_t).reshape(shape) if chosen_t else t[:0])
    return (ref_rows, got_rows, kept, total) if total else None


def _aligned(name: str, reference_indices, target_indices) -> bool:
    """Whether every output the reference selects by the same indices as `name` (boxes and labels of
    one TopK) the target selects by the same indices as `name` too. Paired each by its own, a derived
    model whose labels came from a second, unsorted TopK passed fp32 with every label on another
    box (review19)."""
    for ri, ti in zip(reference_indices, target_indices):
        mine = np.asarray(ri.get(name))
        for other, theirs in ri.items():
            if other != name and np.shape(theirs) == mine.shape and np.array_equal(theirs, mine):
                if other not in ti or name not in ti or not np.array_equal(ti[other], ti[name]):
                    return False
    return True


def figures_note(stats: OutputStats) -> str:
    """'; over the 98 of 100 rows both select, paired by the TopK's index' for a paired output, else ''."""
    if not isinstance(stats, PairedStats) or not stats.selected_rows:
        return ""
    return f"; over the {stats.paired_rows} of {stats.selected_rows} rows both select, paired by the TopK's index"




def ort_indices(model: onnx.ModelProto | str, feeds, outputs, *, optimized: bool) -> list[dict[str, np.ndarray]] | None:
    """`probe` of a model ONNX Runtime on the CPU runs (runtime.create_session's options)."""
    from .runtime import run_model  # here: most comparisons never pair

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(model)
    return probe(proto, feeds, lambda extended, fed: run_model(extended, fed, optimized=optimized), outputs)


def reference_indices(reference, feeds) -> list[dict[str, np.ndarray]] | None:
    """The indices behind a reference run's gathered outputs (context.ReferenceRun), probed once per run:
    None where no ONNX model ONNX Runtime ran is known for it (a reference script)."""
    if getattr(reference, "model", None) is None:
        return None
    cache = reference.__dict__.setdefault("_gathered_indices", {})
    if "indices" not in cache:
        cache["indices"] = ort_indices(reference.model, feeds, reference.outputs, optimized=False)
    return cache["indices"]


def target_indices(ctx, target, reference, outputs) -> tuple[list | None, list | None]:
    """(reference's, target's) indices behind the gathered outputs of a target's run (pytest_plugin.core):
    ONNX Runtime targets only, probed through the target's own run; (None, None) when the model gathers
    no output by a TopK's indices or the target is TensorRT."""
    if not target.engine.startswith("onnxruntime"):
        return None, None
    return artifact_indices(ctx, reference, target.artifact(ctx), target.feeds(ctx), target.run, outputs)


def artifact_indices(ctx, reference, artifact, feeds, run: Callable, outputs) -> tuple[list | None, list | None]:
    """(reference's, artifact's) indices, the artifact probed through `run` (an ONNX Runtime target's);
    (None, None) when the model gathers no output by a TopK's indices."""
    if not selects_by_topk(ctx.loaded.proto) or (ref := reference_indices(reference, feeds)) is None:
        return None, None
    return ref, probe(ctx.loaded.proto if str(artifact) == str(ctx.path) else onnx.load(artifact), feeds, run, outputs)


def reference_model(source, model: onnx.ModelProto) -> onnx.ModelProto | None:
    """The original model of a --reference-model source that ONNX Runtime runs on the model's own feeds
    under its output names (matched by name, no input cast, no input of its own): what `reference_indices` probes; else None."""
    if not hasattr(source, "matching"):
        return None
    matching = source.matching(model)
    same = all(a == b for a, b in [*matching.inputs.items(), *matching.outputs.items()])
    return source.proto if same and not matching.casts and not getattr(matching, "original_only", ()) else None


def paired_indices(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, feeds, reference, quantized) -> tuple[list | None, list | None]:
    """(float model's, int8 model's) indices behind the gathered outputs, as quant.verify runs them (the
    float model as written, the int8 one optimized); (None, None) where the model gathers none."""
    if not selects_by_topk(float_model):
        return None, None
    ref = ort_indices(float_model, feeds, reference, optimized=False)
    return (ref, ort_indices(int8_model, feeds, quantized, optimized=True)) if ref is not None else (None, None)
