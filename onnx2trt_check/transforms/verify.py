"""Is a transformed model still the same function? Both models run in the ONNX Runtime reference
(graph optimizations off) on the same feeds and every output is compared element by element.

Default tolerance, per output, from the dtype's machine epsilon `eps` and the reference output
`ref` (all feeds together):

    rtol = sqrt(eps)                 float32: 3.5e-4, float16: 3.1e-2, float64: 1.5e-8
                                     (float16's for a model computing in half inside: half_compute_dtype)
    atol = sqrt(eps) * scale         the element's own scale, at least the dtype's smallest normal
                                     number (float32: 1.2e-38): below it values are subnormal, which
                                     GPUs flush to zero (hypothesis found a fold "off" by 1.4e-45);
                                     float16 keeps its subnormals: one step of them (6e-8), as its
                                     smallest normal (6.1e-5) passed a fold 50% off on small values
    scale = the smallest, over the output's axes, of max(|ref|) across the slice holding the element
            at its index on that axis (slices of at least 16 elements; else max(|ref|) of the output)
    an element passes when |after - ref| <= atol + rtol * |ref|

Why this shape: a graph rewrite reorders the same arithmetic, so its error is a few roundings of
the *accumulated* terms, which are on the scale of the output's largest values, not of each element
(an output that is zero by cancellation has a nonzero rounding error). But an output may join parts
of different scales: a detector's decode concatenates box coordinates in pixels (up to 640) with
class probabilities in [0, 1], and on the whole output's scale the probabilities could move by
0.22 (zoo13: a fold 0.05 off in the scores was verified and written). A slice along one axis (a
feature row or column, a channel) is computed alike, so its largest value is the scale of its
elements' terms; the smallest such slice scale is the element's. A slice of under 16 elements says
too little about the terms' scale (a lone logit near zero by cancellation), and is not used. sqrt(eps) keeps half the
significant digits: far above reordering noise, far below what a wrong fold produces (an error on
the order of the values themselves). Integer and bool outputs must match exactly. NaN must sit at
the same places in both outputs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import onnx

from onnx2trt_check.errors import InputDataError
from onnx2trt_check.quant.feed_batch import first_axis_sizes, split_values, stack_feeds
from onnx2trt_check.runtime import run_model

# run_model's signature: a model and a list of feeds to one dict of outputs per feed.
Runner = Callable[[onnx.ModelProto, list], list[dict[str, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class OutputError:
    """How far one output moved: the worst element over every feed, and the tolerance used."""

    name: str
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    mismatched: int
    total: int
    passed: bool
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Equivalence:
    passed: bool
    outputs: tuple[OutputError, ...]
    summary: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_HALF_TYPES = {onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.BFLOAT16: np.float16}


def half_compute_dtype(model: onnx.ModelProto) -> type | None:
    """np.float16 when the main graph computes in half precision inside, as onnxconverter-common with
    keep_io_types and ModelOpt's int8 mode (its fp16 high-precision dtype) write it behind float32
    inputs and outputs; else None. Such a model's rewrites re-round in half precision, so its
    tolerance comes from float16's eps, not its outputs'. "Inside" is by weight: at least half of the
    float weights' elements are half (stored so, or cast to it on the fly), or there are no float
    weights (int8 behind Q/DQ) and the graph casts to half. One fp16 region in an fp32 model keeps
    fp32's tolerance: loosening every comparison of the model 100-fold for it could pass a wrong rewrite."""
    graph = model.graph
    casts = [node for node in graph.node if node.op_type == "Cast" and any(a.name == "to" and a.i in _HALF_TYPES for a in node.attribute)]
    cast_to_half = {node.input[0] for node in casts}
    half = full = 0
    for tensor in graph.initializer:
        size = math.prod(tensor.dims)
        if tensor.data_type in _HALF_TYPES or tensor.name in cast_to_half:
            half += size
        elif tensor.data_type == onnx.TensorProto.FLOAT:
            full += size
    if half + full == 0:
        return np.float16 if casts else None
    return np.float16 if half >= full else None


def default_tolerance(reference: np.ndarray, dtype=None) -> tuple[float, float]:
    """(atol, rtol) for a floating output, by the formula in the module docstring; `dtype` (the
    model's half compute type) replaces the output's when it is coarser."""
    coarse = _coarser(reference, dtype)
    rtol = float(np.sqrt(coarse.eps))
    finite = np.abs(reference[np.isfinite(reference)])
    scale = float(finite.max()) if finite.size else 0.0
    return max(rtol * scale, _floor(coarse)), rtol


def _floor(coarse: np.finfo) -> float:
    """atol's floor (module docstring): float16's smallest step, another dtype's smallest normal number."""
    return float(coarse.smallest_subnormal if coarse.dtype == np.float16 else coarse.tiny)


def _coarser(reference: np.ndarray, dtype=None) -> np.finfo:
    """The float type info of the output's dtype, or of the compute dtype where that is coarser."""
    own = np.finfo(reference.dtype)
    return own if dtype is None or own.eps >= np.finfo(dtype).eps else np.finfo(dtype)


def check_equivalence(
    before: onnx.ModelProto,
    after: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    run: Runner = run_model,
) -> Equivalence:
    """Run both models on `feeds` (one feed dict or several) and compare every output of `before`.

    `atol`/`rtol` replace the default tolerance of the module docstring when given. `run` executes
    a model on feeds (the pipeline passes one that remembers outputs it has already computed).
    """
    feeds = as_feed_list(feeds)
    half = half_compute_dtype(before)
    return compare_runs(run(before, feeds), run(after, feeds), atol=atol, rtol=rtol, tolerance_dtype=half)


def as_feed_list(feeds) -> list[Mapping[str, np.ndarray]]:
    """One feed dict or several, as a non-empty list: no feeds would make any check pass."""
    feeds = [feeds] if isinstance(feeds, Mapping) else list(feeds)
    if not feeds:
        raise InputDataError("no feeds to compare the models on; pass at least one dict of input arrays")
    return feeds


def compare_runs(
    expected: list[dict[str, np.ndarray]],
    actual: list[dict[str, np.ndarray]],
    *,
    names: Iterable[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    tolerance_dtype=None,
) -> Equivalence:
    """Compare two models' outputs (one dict per feed): every output of `expected`, or `names`.
    `tolerance_dtype` (np.float16 for a model computing in half inside) sets the default tolerance's eps."""
    expected_by_name, actual_by_name = _stack(expected), _stack(actual)
    names = list(expected_by_name if names is None else names)
    errors = tuple(_compare(n, expected_by_name[n], actual_by_name.get(n), atol, rtol, tolerance_dtype) for n in names)
    passed = all(e.passed for e in errors)
    return Equivalence(passed, errors, _summary(passed, errors))


@dataclasses.dataclass(frozen=True)
class Verification:
    """The pipeline's verdict on one step, whatever rule produced it."""

    passed: bool
    summary: str
    figures: dict


def verify_values(before, after, feeds, result, options, run: Runner = run_model) -> Verification:
    """The pipeline's default rule: `check_equivalence` with the default tolerance."""
    equivalence = check_equivalence(before, after, feeds, run=run)
    return Verification(equivalence.passed, equivalence.summary, equivalence.to_dict())


def declares_batch(model: onnx.ModelProto) -> bool:
    """Whether the model's deployment contract includes a batch: every graph input (initializers
    aside) has a shape whose first dimension is left free (a dim_param or no dim_value)."""
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    return bool(inputs) and all(_free_first_dim(i) for i in inputs)


def _free_first_dim(value: onnx.ValueInfoProto) -> bool:
    tensor = value.type.tensor_type
    return value.type.HasField("tensor_type") and tensor.HasField("shape") and len(tensor.shape.dim) > 0 \
        and not tensor.shape.dim[0].HasField("dim_value")


def run_batched(model: onnx.ModelProto, feeds: list, expected: list[dict[str, np.ndarray]],
                run: Runner = run_model) -> list[dict[str, np.ndarray]] | None:
    """`model`'s outputs on `feeds` from one run per group of feeds that stack (the same shapes after
    the first axis: shape_probe adds feeds of smaller and larger free dimensions to the data's), split back per
    feed by the first-axis sizes of `expected` (the original model's per-feed outputs), or None
    where that is not sound: a model that declares no batch, no group of two feeds, a run that
    raises, an output missing or not carrying the batch on axis 0. A transform verifier that
    fails on these outputs must be run again per feed (pipeline._verify): a graph may still mix
    the batch axis in a way these checks do not see (a Softmax over axis 0)."""
    groups = _stackable_groups(feeds)
    if len(groups) == 1 or all(len(group) == 1 for group in groups):
        return _run_stacked(model, feeds, expected, run)
    outputs: list = [None] * len(feeds)
    for group in groups:
        part = _run_stacked(model, [feeds[i] for i in group], [expected[i] for i in group], run) if len(group) > 1 else _run_one(model, feeds[group[0]], run)
        if part is None:
            return None
        for index, values in zip(group, part):
            outputs[index] = values
    return outputs


def _stackable_groups(feeds: list) -> list[list[int]]:
    """Indices of the feeds, grouped by what stacking needs equal: names, dtypes, shapes after axis 0."""
    groups: dict[tuple, list[int]] = {}
    for index, feed in enumerate(feeds):
        arrays = {name: np.asarray(value) for name, value in feed.items()}
        key = tuple(sorted((name, a.dtype.str, a.shape[1:] if a.ndim else None) for name, a in arrays.items()))
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def _run_one(model: onnx.ModelProto, feed, run: Runner) -> list | None:
    try:
        return run(model, [feed])
    except Exception:  # noqa: BLE001 - the caller's per-feed run meets the same error and reports it
        return None


def _run_stacked(model: onnx.ModelProto, feeds: list, expected: list[dict[str, np.ndarray]],
                 run: Runner) -> list[dict[str, np.ndarray]] | None:
    stacked, sizes = stack_feeds(feeds), first_axis_sizes(expected)
    if stacked is None or sizes is None or not declares_batch(model):
        return None
    try:
        (outputs,) = run(model, [stacked])
    except Exception:  # noqa: BLE001 - e.g. a Reshape to a fixed shape: the feeds run one by one instead
        return None
    if outputs.keys() != sizes.keys() or any(np.ndim(v) == 0 or len(v) != sum(sizes[n]) for n, v in outputs.items()):
        return None
    return split_values(outputs, sizes)


def _stack(runs: list[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    return {name: [run[name] for run in runs] for name in (runs[0] if runs else {})}


def _compare(name, expected: list, actual: list | None, atol, rtol, tolerance_dtype=None) -> OutputError:
    if actual is None:
        return _failed(name, "missing from the transformed model's outputs")
    if [e.shape for e in expected] != [a.shape for a in actual]:
        return _failed(name, _shape_note(expected, actual))
    ref = np.concatenate([e.reshape(-1) for e in expected])
    out = np.concatenate([a.reshape(-1) for a in actual])
    if not np.issubdtype(ref.dtype, np.floating):
        mismatched = int(np.count_nonzero(ref != out))
        return OutputError(name, float(mismatched > 0), 0.0, 0.0, 0.0, mismatched, ref.size, mismatched == 0)
    scales = element_scales(expected) if atol is None else None
    return _compare_floats(name, ref, out, atol, rtol, tolerance_dtype, scales)


# A slice holding fewer elements says too little about the scale of its elements' terms.
MIN_SLICE = 16


def element_scales(expected: list[np.ndarray]) -> np.ndarray:
    """Each element's scale (module docstring), flattened and concatenated as the feeds are:
    outputs of one shape are sliced together, so a slice spans every feed."""
    groups: dict[tuple, list[int]] = {}
    for index, value in enumerate(expected):
        groups.setdefault(np.shape(value), []).append(index)
    scales: list = [None] * len(expected)
    for indices in groups.values():
        stacked = np.abs(np.stack([np.asarray(expected[i]) for i in indices]))  # maxima are exact in the own dtype: no float64 copy
        per_element = _slice_scales(np.where(np.isfinite(stacked), stacked, 0.0))
        for position, index in enumerate(indices):
            scales[index] = per_element[position].reshape(-1)
    return np.concatenate(scales) if scales else np.zeros(0)


def _slice_scales(magnitudes: np.ndarray) -> np.ndarray:
    """[feeds, *shape] magnitudes to each element's smallest slice maximum over the output's axes
    (the feed axis is never one: a feed is no computation of its own)."""
    whole = np.full(magnitudes.shape, magnitudes.max(initial=0.0))
    for axis in range(1, magnitudes.ndim):
        if magnitudes.shape[axis] > 1 and magnitudes.size // magnitudes.shape[axis] >= MIN_SLICE:
            others = tuple(a for a in range(magnitudes.ndim) if a != axis)
            whole = np.minimum(whole, magnitudes.max(axis=others, keepdims=True))
    return whole


def _compare_floats(name, ref: np.ndarray, out: np.ndarray, atol, rtol, tolerance_dtype=None, scales=None) -> OutputError:
    default_atol, default_rtol = default_tolerance(ref, tolerance_dtype)
    rtol = default_rtol if rtol is None else rtol
    if atol is None:  # per element where the scales are known, on the same floor
        atol = default_atol if scales is None else np.maximum(default_rtol * scales, _floor(_coarser(ref, tolerance_dtype)))
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    if ref.size and not np.isfinite(ref64).any():
        # NaN at the same place is no difference, but with no finite element there is nothing to
        # verify: any rewrite would pass with "max abs 0".
        return OutputError(name, float("nan"), float("nan"), float(np.max(atol, initial=0.0)), rtol, ref.size, ref.size, False,
                           f"the model's own output holds no finite value ({ref.size} elements NaN/Inf) on these feeds: "
                           "nothing to verify; use inputs it computes finite outputs on")
    nan_moved = np.isnan(ref64) != np.isnan(out64)
    both = ~(np.isnan(ref64) | np.isnan(out64))
    diff = np.where(both, np.abs(out64 - ref64), 0.0)
    diff[np.isinf(ref64) & (ref64 == out64)] = 0.0  # equal infinities are no error
    # Where the reference is +-inf its rtol bound is inf too, which no diff exceeds: an infinity the
    # rewrite turned finite (or flipped) is an error only this test sees.
    infinity_moved = np.isinf(ref64) & (out64 != ref64)
    allowed = atol + rtol * np.abs(np.where(both, ref64, 0.0))
    bad = nan_moved | infinity_moved | (diff > allowed)
    with np.errstate(invalid="ignore"):  # inf / inf where the reference is infinite: NaN, skipped by _max
        rel = np.divide(diff, np.abs(ref64), out=np.zeros_like(diff), where=both & (ref64 != 0))
    return OutputError(
        name, _max(diff), _max(rel), _shown_atol(atol, diff, allowed), rtol, int(bad.sum()), ref.size, not bad.any(),
        "NaN at different places" if nan_moved.any() else "",
    )


def _shown_atol(atol, diff: np.ndarray, allowed: np.ndarray) -> float:
    """One atol for the figures: the scalar, or the per-element one at the element nearest to (or
    furthest past) its bound."""
    if np.ndim(atol) == 0:
        return float(atol)
    if not diff.size:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
    return float(atol[int(np.nanargmax(np.nan_to_num(ratio, nan=-1.0)))])


def _max(values: np.ndarray) -> float:
    return float(np.nanmax(values)) if values.size else 0.0


def _shape_note(expected: list, actual: list) -> str:
    """The first feed whose output shapes differ: a probe's feed of another size (shape_probe) read
    'shape (1, 2, 4, 4) instead of (1, 2, 4, 4)' when the data's first feed was named."""
    index = next((i for i, (e, a) in enumerate(zip(expected, actual)) if e.shape != a.shape), min(len(expected), len(actual)) - 1)
    where = f" on feed {index + 1} of {len(expected)}" if len(expected) > 1 else ""
    return f"shape {actual[index].shape} instead of {expected[index].shape}{where}"


def _failed(name: str, note: str) -> OutputError:
    return OutputError(name, float("inf"), float("inf"), 0.0, 0.0, 1, 1, False, note)


def _summary(passed: bool, errors: tuple[OutputError, ...]) -> str:
    if not errors:
        return "equivalent: no outputs to compare"
    worst = max(errors, key=lambda e: (not e.passed, e.max_abs / max(e.atol, 1e-300)))
    detail = (
        f"output '{worst.name}' max abs {worst.max_abs:.3g} (atol {worst.atol:.3g}, rtol {worst.rtol:.3g}), "
        f"max rel {worst.max_rel:.3g}, {worst.mismatched}/{worst.total} elements off"
        + (f", {worst.note}" if worst.note else "")
    )
    verdict = "equivalent" if passed else "NOT equivalent"
    return f"{verdict} over {len(errors)} output(s); worst: {detail}"
