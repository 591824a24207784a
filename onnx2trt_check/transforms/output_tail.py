"""Move an output's trailing data movement out of the graph, into post-processing.

A Transpose to NHWC, a Reshape/Flatten/Squeeze/Unsqueeze, or a nearest/linear Resize with integer
upsampling factors between the last compute node and a graph output only moves (or, for linear
Resize, interpolates) elements the compute node already produced; post-processing can read the right
elements instead, which saves the copy (a large one for an upsampled heatmap) on the device. The
output keeps its name and gets the compute node's shape; the recipe that restores the old output
(tail_recipe.py) is in `report.figures["recipes"]` and is verified on the check inputs by
`verify_output_tails`: the recipe applied in numpy to the new outputs gives the old outputs bit for
bit, or within float rounding where a linear Resize interpolates.

Left in the graph, with the reason: cubic and crop-and-resize Resizes, downsampling or non-integer
factors, Resize before opset 11, a tail whose value other nodes read too, and decoded-box tails
(Add/Mul with constant grid offsets or anchors, Concat of decoded parts): those are arithmetic, not
element movement, and moving them is out of scope.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms import graph_utils as gu
from onnx2trt_check.transforms.base import TransformReport, TransformResult
from onnx2trt_check.transforms.tail_recipe import COORDINATE_MODES, NEAREST_MODES, apply_recipe, is_exact
from onnx2trt_check.transforms.verify import Runner, Verification, compare_runs

TAIL_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Resize")
DECODE_OPS = ("Add", "Sub", "Mul", "Div", "Pow")
DECODE_PATH_OPS = ("Concat", "Reshape", "Transpose", "Slice", "Sigmoid", "Exp")
DECODE_DEPTH = 5
# A linear Resize is recomputed in float64 and rounded once; ONNX Runtime interpolates in float32
# (a few roundings of weights and products). The allowance, in ulps of the output's largest
# magnitude per linear step, is far above that and far below a wrong weight or a shifted index.
LINEAR_ULPS = 8
# ...plus the rounding of the source coordinate: ONNX Runtime computes it in float32, within an ulp
# of a coordinate of up to the axis length L, so an interpolation weight is off by up to ~L ulps of
# 1 and the result by that times the neighbours' difference (at most twice the largest magnitude):
# 2 L ulps per upsampled axis. hunt19 measured on standard normal data, in ulps of the largest
# magnitude: align_corners x2 at L = 32, 128, 300: 12, 60, 226; half_pixel x3: 9, 35, 129; 8 failed an
# honest 128 x 128 map upsampled x4 (align_corners) by the tool's own data. A wrong mode or index is
# off by a share of the neighbours' difference, orders of magnitude above it.
COORDINATE_ULPS_PER_LENGTH = 2


def output_tail(model: onnx.ModelProto) -> TransformResult:
    """Remove the trailing movement ops of every graph output; the recipes are in the report."""
    ir_model = gu.to_ir(model, infer_shapes=True)
    graph = ir_model.graph
    report = TransformReport(figures={"recipes": {}})
    opset = ir_model.opset_imports.get("", 1)
    for output in list(graph.outputs):
        tail, stop = _walk(output, opset, report)
        if not tail:
            report.skipped([output.name], stop)
            continue
        recipe = _rewrite(graph, output, tail)
        report.figures["recipes"][recipe["output"]] = recipe
        report.matched([gu.node_label(node) for node, _ in tail], f"output '{recipe['output']}': {len(tail)} node(s) to post-processing")
    if not report.matches:
        return TransformResult(gu.copy_model(model), False, report)
    return TransformResult(gu.to_onnx(ir_model), True, report)


def _walk(output: ir.Value, opset: int, report: TransformReport) -> tuple[list[tuple[ir.Node, dict]], str]:
    """The removable tail nodes from the output backwards, each with its recipe step, and why the
    walk stopped (a reason for the report when nothing is removable)."""
    if sum(1 for value in output.graph.outputs if value is output) > 1:
        return [], f"output '{output.name}' is listed twice among the graph outputs"
    if output.uses():  # e.g. an RNN's per-step output that a head also reads
        return [], f"output '{output.name}' is also read by other nodes of the graph: its tail computes what they read and stays"
    tail, value = [], output
    while True:
        node = value.producer()
        if not gu.is_op(node, *TAIL_OPS):
            return tail, _stop_reason(output, node, report)
        step = recipe_step(node, opset)
        if isinstance(step, str):
            report.skipped([gu.node_label(node)], step)
            return tail, step
        tail.append((node, step))
        value = node.inputs[0]
        if value.is_graph_input() or value.is_initializer() or value.is_graph_output() or gu.consumer_count(value) != 1:
            return tail, ""


def _stop_reason(output: ir.Value, node: ir.Node | None, report: TransformReport) -> str:
    if node is None:
        return f"output '{output.name}' is a graph input or constant"
    reason = f"output '{output.name}' comes from {node.op_type} '{gu.node_label(node)}', not from {'/'.join(TAIL_OPS)}"
    table = _decode_table(node)
    if table is not None:
        reason = (f"output '{output.name}' ends in a box decode ({table.op_type} '{gu.node_label(table)}' with a constant table: "
                  "grid offsets or anchors): arithmetic, not element movement; moving it to post-processing is out of scope")
        report.skipped([gu.node_label(node)], reason)
    return reason


def _is_table(array: np.ndarray | None) -> bool:
    """A constant over two axes or more (a grid [1, 1, H, W, 2], anchors [1, 3, 1, 1, 2]); a bias or
    a per-channel scale varies along one axis only."""
    return array is not None and sum(d > 1 for d in array.shape) >= 2


def _is_bias(node: ir.Node) -> bool:
    """An Add right after a MatMul/Gemm/Conv: a layer's bias (exporters split Linear this way)."""
    return node.op_type == "Add" and any(v is not None and gu.is_op(v.producer(), "MatMul", "Gemm", "Conv") for v in node.inputs)


def _decode_table(node: ir.Node, depth: int = DECODE_DEPTH) -> ir.Node | None:
    """The Add/Sub/Mul/Div/Pow with a constant table (`_is_table`: a grid, anchors) that `node` reaches within `depth` steps back through decode-like ops
    (Concat, Reshape, Transpose, Slice, Sigmoid, Exp and the arithmetic itself): the signature of
    a detector's box decoding."""
    if node is None or depth < 0 or not gu.is_op(node, *DECODE_OPS, *DECODE_PATH_OPS):
        return None
    if gu.is_op(node, *DECODE_OPS) and any(_is_table(gu.constant_array(v)) for v in node.inputs) and not _is_bias(node):
        return node
    for value in node.inputs:
        found = _decode_table(value.producer(), depth - 1) if value is not None else None
        if found is not None:
            return found
    return None


def recipe_step(node: ir.Node, opset: int) -> dict | str:
    """The recipe step that redoes `node` in numpy, or why it cannot be moved."""
    op = node.op_type
    if op == "Transpose":
        perm = gu.attr(node, "perm")
        rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
        if perm is None and rank is None:
            return f"Transpose '{gu.node_label(node)}' has no perm and an input of unknown rank"
        return {"op": "transpose", "perm": list(perm) if perm is not None else list(range(rank))[::-1]}
    if op == "Reshape":
        shape = gu.constant_array(node.inputs[1])
        if shape is None:
            return f"Reshape '{gu.node_label(node)}' reads a computed shape"
        return {"op": "reshape", "shape": [int(d) for d in shape], "allowzero": int(gu.attr(node, "allowzero", 0))}
    if op == "Flatten":
        return {"op": "flatten", "axis": int(gu.attr(node, "axis", 1))}
    if op in ("Squeeze", "Unsqueeze"):
        return _axes_step(node, op.lower())
    return resize_step(node, opset)


def _axes_step(node: ir.Node, op: str) -> dict | str:
    axes_input = node.inputs[1] if len(node.inputs) > 1 else None
    axes = gu.constant_array(axes_input) if axes_input is not None else gu.attr(node, "axes")
    if axes_input is not None and axes is None:
        return f"{node.op_type} '{gu.node_label(node)}' reads computed axes"
    if axes is None and op == "unsqueeze":
        return f"Unsqueeze '{gu.node_label(node)}' has no axes"
    return {"op": op, "axes": None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]}


def resize_step(node: ir.Node, opset: int) -> dict | str:
    """A nearest or linear Resize with integer upsampling factors, as a recipe step; or why not."""
    label = f"Resize '{gu.node_label(node)}'"
    mode = gu.attr(node, "mode", "nearest")
    coordinates = gu.attr(node, "coordinate_transformation_mode", "half_pixel")
    if opset < 11:
        return f"{label} is opset {opset}: its coordinate rules predate the modes recipes follow; re-export with opset >= 11"
    if mode not in ("nearest", "linear"):
        return f"{label} is {mode}: only nearest and linear upsampling are moved to post-processing"
    if coordinates not in COORDINATE_MODES:
        return f"{label} uses {coordinates}: it reads a region of interest and stays in the graph"
    nearest = gu.attr(node, "nearest_mode", "round_prefer_floor")
    if mode == "nearest" and nearest not in NEAREST_MODES:
        return f"{label} has nearest_mode {nearest}"
    scales = _scales(node)
    if isinstance(scales, str):
        return f"{label} {scales}"
    if any(s < 1 or s != int(s) for s in scales):
        return f"{label} scales {scales} are not integer upsampling factors: downsampling or fractional factors stay in the graph"
    return {"op": "resize", "mode": mode, "scales": [int(s) for s in scales], "coordinate_transformation_mode": coordinates,
            "nearest_mode": nearest}


def _scales(node: ir.Node) -> list[float] | str:
    """Per-axis factors from the scales input, or from sizes over a static input shape."""
    inputs = list(node.inputs) + [None] * (4 - len(node.inputs))
    scales, sizes = (gu.constant_array(v) if v is not None else None for v in inputs[2:4])
    if scales is not None and scales.size:
        values = [float(s) for s in scales]
    elif sizes is not None and sizes.size and gu.static_shape(node.inputs[0]) is not None:
        if gu.attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
            return "keeps the aspect ratio of given sizes"
        shape = gu.static_shape(node.inputs[0])
        axes = gu.attr(node, "axes")
        chosen = [shape[a] for a in axes] if axes is not None else list(shape)
        values = [int(s) / n for s, n in zip(sizes, chosen)]
    else:
        return "has no constant scales (nor constant sizes over a static input shape)"
    return _full_rank(values, gu.attr(node, "axes"), node.inputs[0])


def _full_rank(values: list[float], axes, data: ir.Value) -> list[float] | str:
    if axes is None:
        return values
    if data.shape is None:
        return "has axes over an input of unknown rank"
    full = [1.0] * len(data.shape)
    for axis, value in zip(axes, values):
        full[axis] = value
    return full


def _rewrite(graph: ir.Graph, output: ir.Value, tail: list[tuple[ir.Node, dict]]) -> dict:
    """Replace the tail by nothing (the compute value takes the output's name) or, when that value
    cannot be renamed (a graph input, an initializer, another output, read elsewhere), by one
    Identity. Returns the recipe entry."""
    name, start = output.name, tail[-1][0].inputs[0]
    old_shape = _shape_list(output)
    steps = [step for _, step in reversed(tail)]
    renamable = start.producer() is not None and not start.is_graph_output() and gu.consumer_count(start) == 1
    constants = [v for node, _ in tail for v in node.inputs[1:] if v is not None]
    if renamable:
        _detach(graph, [node for node, _ in tail])
        for position, value in enumerate(graph.outputs):
            if value is output:
                graph.outputs[position] = start
        output.name, start.name = None, name
        start.type = start.type or output.type
    else:
        identity = ir.node("Identity", [start])
        identity.outputs[0].type, identity.outputs[0].shape = start.type or output.type, start.shape
        gu.replace_with_nodes(graph, [node for node, _ in tail], [identity], output, identity.outputs[0])
        output = identity.outputs[0]
        # replace_nodes_and_values gives the new value the old one's type and shape: the old
        # output's, which the Identity does not compute (hunt19)
        output.type, output.shape = start.type or output.type, start.shape
    gu.drop_unused_initializers(graph, constants)
    return {"output": name, "old_shape": old_shape, "new_shape": _shape_list(start if renamable else output), "steps": steps,
            "exact": is_exact(steps)}


def _detach(graph: ir.Graph, nodes: list[ir.Node]) -> None:
    for node in nodes:
        for index in range(len(node.inputs)):
            node.replace_input_with(index, None)
        graph.remove(node, safe=False)


def _shape_list(value: ir.Value) -> list | None:
    if value.shape is None:
        return None
    return [d if isinstance(d, int) else str(d) for d in value.shape]


# --- verification ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RestoredOutput:
    """How the recipe applied to the new output compares with the old output, over every feed."""

    name: str
    exact: bool  # bit-exact required (movement only) or within the linear allowance
    max_abs: float
    atol: float
    passed: bool
    note: str = ""


def verify_output_tails(before, after, feeds, result: TransformResult, options, run: Runner = run_model) -> Verification:
    """The pipeline's rule for this transform: on `feeds`, each recipe applied in numpy to the new
    output gives the old output (bit for bit when it only moves elements; per linear Resize within
    LINEAR_ULPS ulps of the output's largest magnitude, plus COORDINATE_ULPS_PER_LENGTH per element of
    each axis it upsamples), and every other output keeps its values."""
    feeds = list(feeds)
    expected, actual = run(before, feeds), run(after, feeds)
    recipes = result.report.figures.get("recipes", {})
    restored = [restore(name, recipe["steps"], [e[name] for e in expected], [a[name] for a in actual]) for name, recipe in recipes.items()]
    others = compare_runs(expected, actual, names=[n for n in expected[0] if n not in recipes])
    failed = [r for r in restored if not r.passed]
    head = (f"recipe of '{failed[0].name}' does NOT restore it: {failed[0].note or f'max abs {failed[0].max_abs:.3g}'}" if failed
            else f"{len(restored)} recipe(s) restore the old outputs ({sum(r.exact for r in restored)} bit-exact)")
    figures = {"restored": [dataclasses.asdict(r) for r in restored], "other_outputs": others.to_dict()}
    return Verification(not failed and others.passed, f"{head}; other outputs {others.summary}", figures)


def restore(name: str, steps: list[dict], old: list[np.ndarray], new: list[np.ndarray]) -> RestoredOutput:
    """Apply `steps` to every new output and compare with the old one."""
    exact, worst, atol = is_exact(steps), 0.0, 0.0
    for before, after in zip(old, new):
        try:
            got, ulps = _applied(steps, after)
        except ValueError as error:  # a reshape or transpose that does not fit: the recipe is wrong
            return RestoredOutput(name, exact, float("inf"), 0.0, False, f"the recipe fails on the new output: {error}")
        if got.shape != before.shape or got.dtype != before.dtype:
            return RestoredOutput(name, exact, float("inf"), 0.0, False, f"gives {got.dtype}{list(got.shape)}, not {before.dtype}{list(before.shape)}")
        if exact and not np.array_equal(got, before, equal_nan=before.dtype.kind == "f"):
            return RestoredOutput(name, True, _max_abs(got, before), 0.0, False, "elements differ where the recipe only moves them")
        atol = max(atol, _linear_allowance(ulps, before))
        worst = max(worst, _max_abs(got, before))
    return RestoredOutput(name, exact, worst, atol, exact or worst <= atol)


def _applied(steps: list[dict], array: np.ndarray) -> tuple[np.ndarray, int]:
    """apply_recipe(steps, array), and the ulps its linear Resizes may be off by: LINEAR_ULPS each, plus
    COORDINATE_ULPS_PER_LENGTH times the length of each axis they upsample (their input's)."""
    ulps = 0
    for step in steps:
        if step["op"] == "resize" and step["mode"] == "linear":
            lengths = sum(length for length, scale in zip(np.shape(array), step["scales"]) if scale != 1)
            ulps += LINEAR_ULPS + COORDINATE_ULPS_PER_LENGTH * lengths
        array = apply_recipe([step], array)
    return np.asarray(array), ulps


def _linear_allowance(ulps: int, reference: np.ndarray) -> float:
    finite = np.abs(reference[np.isfinite(reference)]) if reference.dtype.kind == "f" else np.abs(reference)
    scale = float(finite.max()) if finite.size else 0.0
    return ulps * float(np.finfo(reference.dtype).eps if reference.dtype.kind == "f" else 0) * scale


def _max_abs(got: np.ndarray, reference: np.ndarray) -> float:
    if got.shape != reference.shape:
        return float("inf")
    got, reference = got.astype(np.float64), reference.astype(np.float64)
    if np.any(np.isnan(got) != np.isnan(reference)):  # a NaN moved: unbounded, not skipped
        return float("inf")
    with np.errstate(invalid="ignore"):  # inf - inf: equal infinities and NaN pairs are no error
        diff = np.where((got == reference) | np.isnan(got), 0.0, np.abs(got - reference))
    return float(diff.max()) if diff.size else 0.0
