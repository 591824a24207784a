"""The core family of `pytest --model`: structure, the reference run, one accuracy item per target.

A check is a small function over the library: it returns its figures (a JSON-ready dict) when it
passes and raises `CheckFailed` (message plus figures) or `CheckSkipped` (reason) otherwise. Checks
come in a stable order, so test ids are stable: `<model>::<family>::<name>`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import onnx

from .. import trt_ops
from ..compare import format_stats
from ..context import ModelContext, RunOptions
from ..errors import CheckFailed, CheckSkipped
from ..gathered_rows import compare, target_indices
from ..liveness import constant_outputs, dead_model_problem, one_feed_unchecked
from ..references import REFERENCE_KEY
from ..targets import select_targets
from ..trt import flavour, isolated
from ..trt.ops_check import check_ops
from ..weights import nonfinite_constants
from . import trt_jobs


@dataclasses.dataclass(frozen=True)
class Check:
    family: str
    name: str
    run: Callable[[ModelContext], dict]

    @property
    def stem(self) -> str:
        """The family without its parameter: 'target' of 'target[ort]'."""
        return self.family.partition("[")[0]

    @property
    def parameter(self) -> str | None:
        """The family's parameter: 'ort' of 'target[ort]', None for 'structure'."""
        _, bracket, inside = self.family.partition("[")
        return inside.removesuffix("]") if bracket else None


def check_checker(ctx: ModelContext) -> dict:
    # By path: faster than serializing the loaded proto again (0.3 s vs 0.5 s for 100 MB), and
    # models over 2 GB with external data work too. No full_check: its strict shape inference is
    # the shape_inference item's job.
    try:
        onnx.checker.check_model(str(ctx.path))
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise CheckFailed(f"onnx.checker rejects the model: {exc}") from None
    return {"nodes": len(ctx.loaded.graph.node), "initializers": len(ctx.loaded.graph.initializer)}


def check_shape_inference(ctx: ModelContext) -> dict:
    try:
        inferred = ctx.inferred
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        raise CheckFailed(f"shape inference fails: {exc}") from None
    unknown = [o.name for o in inferred.graph.output if not _has_static_shape(o)]
    figures = {"value_infos": len(inferred.graph.value_info), "outputs_without_static_shape": unknown}
    return figures


def _has_static_shape(value: onnx.ValueInfoProto) -> bool:
    tensor = value.type.tensor_type
    return tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim[1:])


def check_versions(ctx: ModelContext) -> dict:
    proto = ctx.loaded.proto
    opsets = {(o.domain or "ai.onnx"): o.version for o in proto.opset_import}
    figures = {"ir_version": proto.ir_version, "opsets": opsets, "producer": f"{proto.producer_name} {proto.producer_version}".strip()}
    if "ai.onnx" not in opsets:
        raise CheckFailed("the model imports no opset of the default ONNX domain; re-export it with an opset", figures)
    if proto.ir_version > onnx.IR_VERSION:
        raise CheckFailed(f"IR version {proto.ir_version} is newer than this onnx ({onnx.IR_VERSION}) reads; upgrade onnx or export an older IR", figures)
    table = trt_ops.load_op_table()
    low, high = table.source["opset_range"]
    if not low <= opsets["ai.onnx"] <= high:
        raise CheckFailed(f"opset {opsets['ai.onnx']} is outside {low}..{high}, the range of {table.citation}; re-export with an opset in it", figures)
    return figures


def check_finite_weights(ctx: ModelContext) -> dict:
    """NaN in any constant, or an infinity in a learned parameter, fails (weights.py says why an
    infinity elsewhere, e.g. a transformer's -inf mask fill, is an ordinary value)."""
    found = nonfinite_constants(ctx.loaded.proto)
    failures = [f for f in found if f.is_failure]
    figures = {"tensors_with_nan_or_inf": {f.name: f.nan + f.inf for f in failures},
               "constants_with_inf": {f.name: f.inf for f in found if not f.is_failure}}
    if failures:
        listing = ", ".join(f"'{f.name}' ({f.nan} NaN, {f.inf} inf{' in a weight' if f.parameter else ''})" for f in failures[:5])
        raise CheckFailed(f"{len(failures)} weight tensor(s) hold NaN/Inf: {listing}; the export or training diverged", figures)
    if found:
        figures["summary"] = f"{len(found)} constant(s) hold +-inf outside any weight (e.g. a mask fill): not a failure"
    return figures


def _parsed(ctx: ModelContext):
    """The selected flavour's parse of the model."""
    chosen = flavour.select()
    try:
        return trt_jobs.parse_job(ctx, chosen).result()
    except isolated.TrtCrashed as error:
        raise CheckFailed(f"{chosen.label} crashed while parsing the model ({error})") from None


def check_trt_parse(ctx: ModelContext) -> dict:
    """The real TensorRT ONNX parser's verdict (skipped with the install hint without TensorRT)."""
    try:
        result = _parsed(ctx)
    except flavour.TrtUnavailable as error:
        raise CheckSkipped(str(error)) from None
    figures = {"tensorrt": result.flavour.label, "parse_seconds": round(result.seconds, 4), "network_layers": result.layers,
               "inputs": [dataclasses.asdict(i) for i in result.inputs]}
    if result.needs_gpu:
        raise CheckSkipped(f"{result.flavour.label} needs a GPU to parse this model (its parser made a CUDA call, no verdict here): "
                           f"{result.issues[0].line()[:300]}")
    if not result.ok:
        raise CheckFailed(result.failure(), figures)
    return figures


def check_trt_ops(ctx: ModelContext) -> dict:
    """Nodes TensorRT cannot take: the parser's answer where a flavour is installed, else the op table's."""
    try:
        inferred = ctx.inferred
    except (onnx.shape_inference.InferenceError, RuntimeError):
        inferred = None  # trt_ops falls back to lenient inference; the shape_inference item reports the failure
    try:
        parsed = _parsed(ctx)
    except flavour.TrtUnavailable:
        parsed = None
    report = check_ops(ctx.path, ctx.loaded.proto, inferred=inferred, parse=parsed)
    figures = report.figures()
    if report.errors:
        listing = "\n".join(f"  {line}" for line in report.errors[:20])
        raise CheckFailed(f"{len(report.errors)} node(s) that TensorRT cannot take, according to {report.source}:\n{listing}", figures)
    return figures


def check_reference(ctx: ModelContext) -> dict:
    try:
        run = ctx.reference
    except Exception as exc:  # ORT's own errors (InvalidGraph, NotImplemented...) are the finding
        raise CheckFailed(_reference_failure(ctx, exc)) from None
    nonfinite = {name: int(sum(np.size(o) - np.count_nonzero(np.isfinite(o)) for o in run.per_output(name))) for name in run.names}
    figures = {"feeds": len(ctx.feeds), "outputs": run.names, "seconds": round(run.seconds, 4), "notes": ctx.notes, "source": run.source}
    if any(nonfinite.values()):
        bad = ", ".join(f"'{n}' ({c} elements)" for n, c in nonfinite.items() if c)
        raise CheckFailed(f"reference outputs hold NaN/Inf: {bad}; the model is not finite on these inputs", figures)
    if problem := dead_model_problem(ctx.loaded.proto, ctx.feeds, run.outputs):
        raise CheckFailed(f"{problem}; give real data (--inputs, --data-loader) or the range the model expects (--input-range)", figures)
    if constant := constant_outputs(ctx.loaded.proto, ctx.feeds, run.outputs):
        figures["constant_outputs"] = constant
    if one_feed_unchecked(ctx.loaded.proto, ctx.feeds):
        # liveness compares feeds, the rows of one batch, or one feed with perturbed copies of it: where none could tell (redteam19)
        figures["one_feed"] = True
    return figures


def _reference_failure(ctx: ModelContext, exc: Exception) -> str:
    if ctx.options.extra.get(REFERENCE_KEY) is not None:  # --reference-script / --reference-model
        return f"the reference cannot be computed: {type(exc).__name__}: {exc}"
    return f"ONNX Runtime cannot run the model: {type(exc).__name__}: {exc}"


def accuracy_check(target) -> Callable[[ModelContext], dict]:
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        reason = target.unavailable_reason()
        if reason:
            raise CheckSkipped(reason)  # the item id names the target: one reason reads the same for all
        reference = _reference_or_fail(ctx, target)
        artifact = target.artifact(ctx)
        started = time.perf_counter()
        outputs = target.run(artifact, target.feeds(ctx))
        seconds = time.perf_counter() - started
        return _compare_all(ctx, target, reference, outputs, seconds)

    return check


def _reference_or_fail(ctx: ModelContext, target):
    """The target's reference outputs; a failure when there are none, or when they cannot tell an
    error from none (liveness: the model ignores its inputs on the target's feeds): a pass at max abs
    0 there would be a claim about nothing, and a skip left a gate that selects the targets alone
    (`-k target`) green on a model nothing verified (review10)."""
    try:
        reference = target.reference(ctx)
    except Exception:
        raise CheckFailed("cannot be verified: no reference outputs, the reference run failed (see the reference::run item)") from None
    if problem := dead_model_problem(ctx.loaded.proto, target.feeds(ctx), reference.outputs):
        raise CheckFailed(f"cannot be verified: on the feeds {target.name} is judged on, {problem}")
    return reference


def _compare_all(ctx: ModelContext, target, reference, outputs, seconds: float) -> dict:
    results = []
    profile, profiles = target.tolerance_precision(ctx), target.output_precisions(ctx)
    indices = target_indices(ctx, target, reference, outputs)  # rows a TopK's indices gather, paired by them (gathered_rows)
    for name in reference.names:
        tolerance = ctx.options.tolerances.for_output(name, profiles.get(name, profile))
        stats = compare(name, reference.per_output(name), [o[name] for o in outputs], tolerance, ctx.output_layouts.get(name), *indices)
        results.append((stats, tolerance))
    figures = {"engine": target.engine, **target.figures(ctx), "tolerance_profile": profile, "seconds": round(seconds, 4),
               "outputs": {s.name: s.figures() for s, _ in results}}
    if in_float := [name for name in reference.names if profiles.get(name, profile) != profile]:
        figures["outputs_in_float"] = in_float  # no Q/DQ reaches them: judged by the target's own precision
    failed = [(s, t) for s, t in results if not s.passed]
    if failed:
        header = f"{target.name} ({target.description}) differs from the reference in {len(failed)} of {len(results)} output(s)"
        raise CheckFailed("\n".join([header] + [format_stats(s, t) for s, t in failed]), figures)
    return figures


STRUCTURE_CHECKS = (
    Check("structure", "checker", check_checker),
    Check("structure", "shape_inference", check_shape_inference),
    Check("structure", "versions", check_versions),
    Check("structure", "finite_weights", check_finite_weights),
    Check("structure", "trt_ops", check_trt_ops),
    Check("structure", "trt_parse", check_trt_parse),
    Check("reference", "run", check_reference),
)


def read_options(config) -> dict:
    return {}


def checks(options: RunOptions) -> list[Check]:
    """Structure, reference, and one accuracy check per selected target."""
    target_checks = [Check(f"target[{t.name}]", "accuracy", accuracy_check(t)) for t in select_targets(options.targets)]
    return list(STRUCTURE_CHECKS) + target_checks
