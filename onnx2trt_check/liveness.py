"""Whether a model's outputs depend on its inputs on the data given: a comparison can only see an
error upstream of where the data reaches.

zoo10: a random-init Keras MobileNetV2 gives softmax 0.1 on every input. Every target, int8
included, passed at max abs 0; `optimize` and `quantize` wrote their artifacts as "verified"; and a
wrong weight upstream of the dead layer passed too. Every face asks this module before it calls a
comparison of such a model's outputs a verdict: `reference::run` fails, the items that compare with
the reference fail as "cannot be verified", and the commands write nothing (the `quantize` floor's
--accept-degraded aside).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from .model import graph_inputs
from .protos import input_independent_outputs

# Said where a verdict rests on one feed whose perturbations could not tell (one_feed_unchecked): liveness
# compares feeds, so one cannot show a dead network (redteam19).
ONE_FEED_NOTE = ("one feed: whether the outputs depend on the inputs is not checked (a dead network, outputs the same on "
                 "every input, passes every comparison); give 2 or more feeds")
PERTURBATIONS = 2

ADVICE = ("a dead network: activations all clipped or zero, e.g. random initialization; data in the wrong range; or a "
          "detector that finds nothing in it")


def ignores_its_inputs(feeds: Sequence[Mapping[str, np.ndarray]], outputs: Sequence[Sequence[np.ndarray]]) -> bool:
    """Whether differing `feeds` give the same values in every output (`outputs`: per output, its
    value per feed): bit-identical, or for a float output apart by float32 rounding alone (ROUNDING
    of the largest magnitude among its elements that move: zoo13's random-init deep CNN moved its softmax by 1.5e-8, 1-2 ulps,
    between feeds, and a wrong weight upstream passed). Any output that differs beyond that, of any
    type, proves the inputs reach the model.
    Evidence of a dead network is only a non-empty, finite float output that is not saturated: class
    ids, masks, NMS indices, empty detections and probabilities at 0/1 to ROUNDING (a confident sigmoid is
    1.0 in float32 above a logit of 17) coincide on a few feeds of a healthy model, and NaN is
    another failure, which the comparisons report as such ("no finite value")."""
    def same(values) -> bool:
        return all(_same(values[0], other) for other in values[1:])

    def graded(values) -> bool:
        return all(np.issubdtype(o.dtype, np.floating) and o.size and np.isfinite(o).all() and not _saturated(o) for o in values)

    names = list(feeds[0]) if feeds else []
    feeds_differ = any(not same([np.asarray(feed[name]) for feed in feeds]) for name in names)
    outputs = [[np.asarray(o) for o in values] for values in outputs]
    return len(feeds) > 1 and feeds_differ and all(map(same, outputs)) and any(map(graded, outputs))


# Float outputs apart by at most this share of the largest magnitude among the elements that move
# differ by rounding alone (about 8 float32 ulps; ONNX Runtime's kernels move a value by a few
# ulps): no signal of the inputs.
ROUNDING = 1e-6


def _same(first: np.ndarray, other: np.ndarray) -> bool:
    if np.array_equal(first, other, equal_nan=True):
        return True
    if first.shape != other.shape or not (np.issubdtype(first.dtype, np.floating) and np.issubdtype(other.dtype, np.floating)):
        return False
    a, b = first.astype(np.float64), other.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    # The scale of the elements that move: one constant element far larger (a -1e9 logit bias of a
    # suppressed class) made a healthy model's logits, moving by units, rounding (review14).
    moved = a != b
    scale = max(float(np.abs(a[moved]).max(initial=0.0)), float(np.abs(b[moved]).max(initial=0.0)))
    return bool(np.abs(a - b).max(initial=0.0) <= ROUNDING * scale)


def _saturated(values: np.ndarray) -> bool:
    """Every value 0 or 1 to ROUNDING, with a 1 among them: a probability at its bound (sigmoid,
    one-hot softmax), which stays there over a range of inputs (review14: a confident sigmoid at
    0.9999996..0.9999999 on feeds of one class was called a dead network)."""
    low, high = np.abs(values) <= ROUNDING, np.abs(values - 1) <= ROUNDING
    return bool(np.all(low | high) and np.any(high))


def batch_rows(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], runs: Sequence[Mapping[str, np.ndarray]] = ()):
    """(one feed per row, the run's outputs per row) of a single feed that holds a batch of 2 or more
    rows, or None. A batch of 16 images given as one .npz feed left liveness unchecked (redteam19's
    note), and a dead network passed every comparison. Rows are samples only where the graph says the
    first axis is a batch: every input and output names its first dimension with one dim_param."""
    names = {_first_dim(value) for value in [*graph_inputs(model), *model.graph.output]}
    if len(feeds) != 1 or len(names) != 1 or not next(iter(names)):
        return None
    arrays = [*feeds[0].values(), *(value for run in runs[:1] for value in run.values())]
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in arrays}
    if len(sizes) != 1 or (size := sizes.pop()) is None or size < 2:
        return None
    return ([{k: np.asarray(v)[i:i + 1] for k, v in feeds[0].items()} for i in range(size)],
            [{k: np.asarray(v)[i:i + 1] for k, v in runs[0].items()} for i in range(size)] if runs else [])


def _first_dim(value: onnx.ValueInfoProto) -> str:
    """The dim_param of a tensor's first dimension, '' where it has none."""
    tensor = value.type.tensor_type
    return tensor.shape.dim[0].dim_param if value.type.HasField("tensor_type") and tensor.HasField("shape") and tensor.shape.dim else ""


def dead_model_problem(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]],
                       runs: Sequence[Mapping[str, np.ndarray]]) -> str | None:
    """Why no comparison of `model`'s outputs on `feeds` can be a verdict (`runs`: its outputs per
    feed), or None. Outputs the graph computes from weights alone are left out: they are constant by
    construction and said in the notes of a run. One feed of one row is judged with perturbed
    copies of it (one_feed_liveness)."""
    names = _input_dependent(model, runs)
    rows = len(feeds) == 1 and (split := batch_rows(model, feeds, runs)) is not None
    if rows:
        feeds, runs = split
    elif len(feeds) == 1:
        return _dead_on_perturbations(model, feeds[0]) if one_feed_liveness(model, feeds[0]) is False else None
    if not ignores_its_inputs(feeds, _as_discrete(model, names, [[run[name] for run in runs] for name in names])):
        return None
    return (f"every output is the same on all {len(feeds)} {'rows of the one feed' if rows else 'feeds'}, which differ: the model ignores its inputs on this data "
            f"(its outputs move by float32 rounding at most, {ROUNDING:g} of the largest value among those that move; {ADVICE}), so no comparison "
            f"of its outputs can see an error upstream")


def _input_dependent(model: onnx.ModelProto, runs: Sequence[Mapping[str, np.ndarray]]) -> list[str]:
    """The outputs of `runs` the graph computes from its inputs: the others are constant by construction."""
    by_graph = set(input_independent_outputs(model))
    return [name for name in (runs[0] if runs else {}) if name not in by_graph]


def _dead_on_perturbations(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> str:
    return (f"every output is the same on the one feed and {PERTURBATIONS} perturbed copies of it (float inputs plus noise of a "
            f"quarter of their spread, integer inputs shuffled), which differ: the model ignores its inputs "
            f"(its outputs move by float32 rounding at most; {ADVICE}), so no comparison of its outputs can see an error upstream")


def one_feed_unchecked(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> bool:
    """Whether the verdicts on `feeds` rest on one feed of one row whose liveness nothing could show:
    its perturbed copies did not run, or moved no output that could show it (ONE_FEED_NOTE)."""
    return len(feeds) == 1 and bool(feeds[0]) and batch_rows(model, feeds) is None and one_feed_liveness(model, feeds[0]) is None


# (model, feed) -> verdict, for the few models of a run: every target and face asks again (id() is
# safe while the entry holds both objects).
_ONE_FEED_MEMO: dict[tuple[int, int], tuple[object, object, bool | None]] = {}


def one_feed_liveness(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> bool | None:
    """Whether `model`'s outputs depend on its inputs, judged on one feed and PERTURBATIONS copies of
    it that ONNX Runtime runs: True where an output moves, False where they differ and every output
    stays (ignores_its_inputs: a dead network), None where that cannot be told (the copies do not
    run or do not differ, or no output is evidence). Why perturbed copies of the user's own feed and
    not random inputs: they keep its range, and an integer input (token ids, class ids) keeps its
    values, shuffled. redteam19: a dead network given one image passed every target at max abs 0."""
    key = (id(model), id(feed))
    if key not in _ONE_FEED_MEMO:
        if len(_ONE_FEED_MEMO) > 16:
            _ONE_FEED_MEMO.clear()
        _ONE_FEED_MEMO[key] = (model, feed, _one_feed_liveness(model, feed))
    return _ONE_FEED_MEMO[key][2]


def _one_feed_liveness(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> bool | None:
    from .runtime import run_model

    rng = np.random.default_rng(0)
    feeds = [dict(feed), *({name: _perturbed(np.asarray(value), rng) for name, value in feed.items()} for _ in range(PERTURBATIONS))]
    try:
        runs = run_model(model, feeds)
    except Exception:  # noqa: BLE001 - the copies are outside what the model takes: nothing to tell
        return None
    names = _input_dependent(model, runs)
    outputs = [[np.asarray(run[name]) for run in runs] for name in names]
    if any(not all(_same(values[0], other) for other in values[1:]) for values in outputs):
        return True
    # Dead only where every input moved in every copy: an input they could not change (a single
    # token id, a scalar) may be all the outputs read, the others rightly ignored there (review20: a
    # decoder given one token gave the same logits for any float attention mask, softmax over one key).
    unmoved = any(all(_same(np.asarray(feed[name]), np.asarray(copy[name])) for copy in feeds[1:]) for name in feed)
    return False if not unmoved and ignores_its_inputs(feeds, _as_discrete(model, names, outputs)) else None


# Ops whose outputs are integers or bools whatever their inputs: a float Cast of one is a class id or a mask.
_DISCRETE_OPS = {"ArgMax", "ArgMin", "NonZero", "NonMaxSuppression", "Shape", "Size", "Equal", "Less", "LessOrEqual", "Greater",
                 "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf"}
_MOVES = {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose"}
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def _as_discrete(model: onnx.ModelProto, names: Sequence[str], outputs: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
    """`outputs` (per output in `names`, its values per feed), those the graph casts to float from
    integer or bool values as int64: a class id in a float tensor is a class id (review20: a labeler
    whose output is Cast(ArgMax) to float, given one image, kept its class on the perturbed copies
    and was called a dead network), no evidence (ignores_its_inputs)."""
    discrete = _discrete_outputs(model)
    return [[np.asarray(v).astype(np.int64) if name in discrete and np.isfinite(v).all() else np.asarray(v) for v in values]
            for name, values in zip(names, outputs)]


def _discrete_outputs(model: onnx.ModelProto) -> set[str]:
    producers = {name: (node, index) for node in model.graph.node for index, name in enumerate(node.output)}
    integer_inputs = {v.name for v in model.graph.input if v.type.tensor_type.elem_type not in _FLOAT_TYPES}
    found = set()
    for output in model.graph.output:
        name = output.name
        while name in producers and producers[name][0].op_type in _MOVES:
            name = producers[name][0].input[0]
        node, _ = producers.get(name, (None, 0))
        if node is None or node.op_type != "Cast" or not node.input:
            continue
        source, index = producers.get(node.input[0], (None, 0))
        if node.input[0] in integer_inputs or (source is not None and (source.op_type in _DISCRETE_OPS or (source.op_type == "TopK" and index == 1)
                                                                       or (source.op_type == "Cast" and _cast_to(source) not in _FLOAT_TYPES))):
            found.add(output.name)
    return found


def _cast_to(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "to"), onnx.TensorProto.FLOAT)


def _perturbed(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A float array plus Gaussian noise of a quarter of its spread (of its magnitude where it has
    none, 0.25 where it is all zero); any other array with its elements shuffled."""
    if np.issubdtype(value.dtype, np.floating) and value.size:
        wide = value.astype(np.float64)
        spread = float(np.std(wide)) or float(np.abs(wide).max()) or 1.0
        return (wide + rng.normal(0.0, 0.25 * spread, value.shape)).astype(value.dtype)
    return rng.permutation(value.reshape(-1)).reshape(value.shape) if value.ndim else value



def constant_outputs(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]],
                     runs: Sequence[Mapping[str, np.ndarray]]) -> list[str]:
    """The outputs of a model that give the same values on all `feeds`, which differ, where they are
    no evidence of a dead network (ignores_its_inputs): class ids, masks or saturated probabilities
    that never move. zoo16: a classifier exported with its ArgMax alone, one class on all 397 test
    digits, passed every item with a conv weight negated. hunt20: a segmenter's bool mask and its pixel
    count were all False and 0 on every feed while its logits moved; a derived model with the mask's
    threshold changed passed derived::parity at max abs 0. Not a failure (a healthy model can decide
    one class on all feeds of that class), but no comparison of this run can see an error upstream
    of them alone: the summary says so. [] when every output moves."""
    names = _input_dependent(model, runs)
    if len(feeds) < 2 or not names:
        return []
    feeds_differ = any(not all(_same(np.asarray(feeds[0][k]), np.asarray(f[k])) for f in feeds[1:]) for k in feeds[0])
    constant = [n for n in names if all(_same(np.asarray(runs[0][n]), np.asarray(r[n])) for r in runs[1:])]
    return constant if feeds_differ else []
