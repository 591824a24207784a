"""The export against its source and a derived model against its original, for `pytest --model`.

With `--reference-script FILE.py[:func]` the source framework's outputs are the run's reference (for
every target too) and one item checks the ONNX file itself against them:
  export::parity      the model in ONNX Runtime (graph as written) against the script's outputs,
                      under the fp32 tolerances (the same report as a target's accuracy item)
With `--reference-model ORIGINAL.onnx` the original is the reference and two items describe the
derived model against it:
  derived::parity     the derived model (graph as written) against the original, same tolerances
  derived::size       parameters and MACs of both, and the layers whose channel counts differ
Task figures of both side by side come from the task family (--labels / --metric).
Both options check one model (`--model` names exactly one file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..compare import compare_output, format_stats
from ..config import PRECISION_PROFILES
from ..context import ModelContext, RunOptions
from ..errors import CheckFailed, ConfigError, first_line
from ..gathered_rows import compare, ort_indices, reference_indices, reference_model, selects_by_topk
from ..liveness import dead_model_problem
from ..original_inputs import probe_view
from ..output_layout import output_layouts
from ..quant.float_counterpart import float_outputs, has_qdq, integer_ops
from ..references import REFERENCE_KEY, ReferenceModel, ReferenceScript
from ..report import accuracy_figures
from ..shape_probe import probes, unvaried
from ..transforms.verify import half_compute_dtype
from .core import Check
from .options import value


def read_options(config) -> dict:
    script, original = value(config, "reference_script"), value(config, "reference_model")
    if script and original:
        raise ConfigError("--reference-script and --reference-model both name a reference; pass one of them")
    if not (script or original):
        return {}
    _single_model(value(config, "model"), "--reference-script" if script else "--reference-model")
    return {REFERENCE_KEY: ReferenceScript(script) if script else ReferenceModel(original)}


def _single_model(models: list[str], option: str) -> None:
    if len(models) != 1 or Path(models[0]).is_dir():
        raise ConfigError(f"{option} is the reference of one model; pass exactly one --model file (got {', '.join(models) or 'none'})")


def check_model(ctx: ModelContext) -> None:
    """A reference model must match the checked model's inputs and outputs (by name or count)."""
    source = ctx.options.extra.get(REFERENCE_KEY)
    if source is not None:
        source.check(ctx.loaded.proto)


def checks(options: RunOptions) -> list[Check]:
    source = options.extra.get(REFERENCE_KEY)
    if isinstance(source, ReferenceScript):
        return [Check("export", "parity", check_export_parity)]
    if isinstance(source, ReferenceModel):
        return [Check("derived", "parity", check_derived_parity), Check("derived", "size", check_derived_size)]
    return []


def check_export_parity(ctx: ModelContext) -> dict:
    __tracebackhide__ = True
    figures = _parity(ctx, "the ONNX file (onnxruntime, graph as written)")
    _fail_on_a_dead_reference(ctx)
    return figures


def check_derived_parity(ctx: ModelContext) -> dict:
    """The outputs both models have agree, and the derived model has every output of the original:
    one it lost is one the deployment's post-processing no longer gets."""
    __tracebackhide__ = True
    figures = _parity(ctx, "the derived model (onnxruntime, graph as written)")
    source: ReferenceModel = ctx.options.extra[REFERENCE_KEY]
    matching = source.matching(ctx.loaded.proto)
    if lost := matching.unmatched:
        raise CheckFailed(f"the derived model lacks output(s) {', '.join(map(repr, lost))} of {source.label}: nothing computes them; "
                          f"the {len(figures['outputs'])} output(s) both have agree", figures)
    only = matching.original_only
    view, feeds = probe_view(ctx.loaded.proto, source.proto, only, ctx.feeds, ctx.original_only_feeds)
    found = [_parity_at(ctx, source, figures, probe, only) for probe in probes(view, feeds)]
    figures["other_shapes"] = "; ".join(found + ([left] if (left := unvaried(ctx.loaded.proto, ctx.feeds)) else []))
    figures["summary"] += f"; {figures['other_shapes']}" if figures["other_shapes"] else ""
    _fail_on_a_dead_reference(ctx)
    return figures


def _fail_on_a_dead_reference(ctx: ModelContext) -> None:
    """A failure for a parity that passed where the reference ignores its inputs on the data
    (liveness): agreement there proves nothing upstream of the dead layer (review10: a derived model
    with a wrong weight passed at max abs 0, and `-k parity` ran without reference::run, which fails
    such a model). A parity that failed stays a failure: the models differ even there."""
    if problem := dead_model_problem(ctx.loaded.proto, ctx.feeds, ctx.reference.outputs):
        raise CheckFailed(f"parity: cannot be verified: {problem} (see reference::run)")


def _parity_at(ctx: ModelContext, source: ReferenceModel, figures: dict, probe, only: tuple[str, ...]) -> str:
    """Both models at a shape the data does not have, where the derived model declares that
    dimension free (shape_probe: another batch, smaller and larger free dimensions): what it found.
    The probe's feeds also hold the inputs `only` the original takes (original_inputs.probe_view)."""
    from ..runtime import run_model

    feeds = [{name: array for name, array in feed.items() if name not in only} for feed in probe.feeds]
    extras = [{name: feed[name] for name in only} for feed in probe.feeds] if only else []
    try:
        names, original = source.run(ctx.loaded.proto, ctx.path, feeds, extras)
    except Exception as exc:  # noqa: BLE001 - ORT's own errors: the original's dimension is not free after all
        return f"not compared at {probe.describe()}: {source.label} fails there ({first_line(exc)})"
    try:
        derived = run_model(ctx.path, feeds)
    except Exception as exc:  # noqa: BLE001 - ORT's own errors are the finding
        raise CheckFailed(f"the derived model fails at {probe.describe()}, where {source.label} runs: {first_line(exc)}", figures) from None
    precision, indices = output_precisions(ctx.loaded.proto), _paired_at(ctx, source, feeds, original, derived)
    # The probe's own layouts: a part sized by the data's dimension, or a free part taking the rest,
    # would be cut at the wrong place at another size (output_layout.Segments).
    layouts, results = output_layouts(ctx.loaded.proto, feeds), []
    for name in names:
        tolerance = ctx.options.tolerances.for_output(name, precision.get(name, own_precision(ctx.loaded.proto)))
        results.append((compare(name, [o[name] for o in original], [d[name] for d in derived], tolerance, layouts.get(name), *indices),
                        tolerance))
    if (failed := [(s, t) for s, t in results if not s.passed]) and _repeats_the_data(ctx, source, probe, names, original, derived):
        return f"also agrees at {probe.describe()}: both give the same rows' outputs as at the data's batch, compared on every feed"
    if failed:
        header = f"the derived model differs from {source.label} at {probe.describe()} in {len(failed)} of {len(results)} output(s)"
        raise CheckFailed("\n".join([header] + [format_stats(s, t) for s, t in failed]), figures)
    return f"also agrees at {probe.describe()}"


def _repeats_the_data(ctx: ModelContext, source: ReferenceModel, probe, names, original, derived) -> bool:
    """At a batch probe (its feeds the data's rows, restacked), whether each model gives back what the
    same rows gave at the data's batch, to fp32's tolerances (a batch that moves an int8 model's rows
    by a quantum is compared as it is): then the probe is a sample of the comparison made on every
    feed, and a rate floor re-judged on its few rows is no finding (mut20: the sample pruned model at
    96.4% top-1 over 360 rows, under the README's `logits:atol=10,min_top1=0.95`, failed at batch 2 on
    2 of 32 rows, the same 2 rows as at batch 1)."""
    if not getattr(probe, "rows", ()):
        return False  # another size: new inputs, nothing to compare them with
    for name in names:
        for data, outputs in ((ctx.reference, original), (ctx.onnx_reference, derived)):
            try:
                per_feed = data.per_output(name)
                expected = [np.concatenate([np.asarray(per_feed[feed])[row:row + 1] for feed, row in rows]) for rows in probe.rows]
            except (KeyError, IndexError, ValueError):  # outputs matched by position, a scalar output
                return False
            got = [np.asarray(output[name]) for output in outputs]
            if any(e.shape != g.shape for e, g in zip(expected, got)) or not compare_output(name, expected, got, PRECISION_PROFILES["fp32"]).passed:
                return False  # an output without the batch first, or one the batch changes: compared as it is
    return True


def _paired_at(ctx: ModelContext, source: ReferenceModel, feeds, original, derived) -> tuple:
    """Both models' indices behind outputs a TopK's indices gather (gathered_rows), or (None, None)."""
    original_model = reference_model(source, ctx.loaded.proto) if selects_by_topk(ctx.loaded.proto) else None
    if original_model is None or (indices := ort_indices(original_model, feeds, original, optimized=False)) is None:
        return None, None
    return indices, ort_indices(ctx.loaded.proto, feeds, derived, optimized=False)


def output_precisions(proto) -> dict[str, str]:
    """The tolerance profile of each output: the model's own (own_precision), except that an output
    of a quantized model that no Q/DQ node or integer op reaches is computed in float and judged so
    (zoo13: a BERT with one Q/DQ'd pooler weight passed a 30% wrong FFN weight at int8's 20 dB)."""
    precision = own_precision(proto)
    profiles = {output.name: precision for output in proto.graph.output}
    if precision == "int8":
        floating = "fp16" if half_compute_dtype(proto) is not None else "fp32"
        profiles.update(dict.fromkeys(float_outputs(proto), floating))
    return profiles


def own_precision(proto) -> str:
    """The tolerance profile of what the model itself computes: int8 when it is quantized (Q/DQ or
    ONNX Runtime's integer ops), fp16 when it computes in half inside, else fp32. A quantized model
    judged against its float original under fp32 tolerances fails at any SQNR (ModelOpt int8 at
    34 dB: 156 of 160 logits off)."""
    if has_qdq(proto) or integer_ops(proto):
        return "int8"
    return "fp16" if half_compute_dtype(proto) is not None else "fp32"


def _parity(ctx: ModelContext, what: str) -> dict:
    """Every output of the model as written against the reference, under the tolerances of the
    model's own precision (own_precision)."""
    reference = _reference_run(ctx)
    try:
        model = ctx.onnx_reference
    except Exception as exc:  # noqa: BLE001 - ORT's own errors: the model does not run on the data, a finding
        raise CheckFailed(f"ONNX Runtime cannot run the model on the data: {type(exc).__name__}: {first_line(exc)}") from None
    results = []
    precision, profiles = own_precision(ctx.loaded.proto), output_precisions(ctx.loaded.proto)
    indices = (reference_indices(reference, ctx.feeds), reference_indices(model, ctx.feeds)) if selects_by_topk(ctx.loaded.proto) else (None, None)
    for name in reference.names:
        tolerance = ctx.options.tolerances.for_output(name, profiles.get(name, precision))
        results.append((compare(name, reference.per_output(name), model.per_output(name), tolerance, ctx.output_layouts.get(name), *indices),
                        tolerance))
    figures = {"engine": "onnxruntime (graph as written)", "tolerance_profile": precision, "reference": reference.source, "outputs": {s.name: s.figures() for s, _ in results}}
    if in_float := [name for name in reference.names if profiles.get(name, precision) != precision]:
        figures["outputs_in_float"] = in_float  # no Q/DQ reaches them: judged by the float profile
    figures["summary"] = accuracy_figures(figures) + f" against {reference.source}"
    failed = [(s, t) for s, t in results if not s.passed]
    if failed:
        header = f"{what} differs from {reference.source} in {len(failed)} of {len(results)} output(s)"
        raise CheckFailed("\n".join([header] + [format_stats(s, t) for s, t in failed]), figures)
    return figures


def _reference_run(ctx: ModelContext):
    try:
        return ctx.reference
    except Exception as exc:  # the user's script or the original model: the reason is the finding
        raise CheckFailed(f"the reference cannot be computed: {type(exc).__name__}: {exc}") from None


def check_derived_size(ctx: ModelContext) -> dict:
    __tracebackhide__ = True
    from ..model_size import size_figures

    source: ReferenceModel = ctx.options.extra[REFERENCE_KEY]
    feed = ctx.feeds[0]
    extra = ctx.original_only_feeds[0] if ctx.original_only_feeds else None
    figures = size_figures(source.proto, ctx.loaded.proto, feed, source.original_feed(ctx.loaded.proto, feed, extra))
    return figures | {"summary": size_summary(figures)}


def size_summary(figures: dict) -> str:
    """'params 28.8k -> 7.9k (0.27x), MACs 2.52M -> 0.7M (0.28x), 4 layer(s) with other channel counts'."""
    parts = [f"params {_short(figures['original']['params'])} -> {_short(figures['derived']['params'])}"
             + (f" ({figures['params_ratio']:.2f}x)" if figures["params_ratio"] is not None else "")]
    if figures["original"]["macs"] is not None and figures["derived"]["macs"] is not None:
        parts.append(f"MACs {_short(figures['original']['macs'])} -> {_short(figures['derived']['macs'])} ({figures['macs_ratio']:.2f}x)")
    else:
        parts.append("MACs not counted")
    return ", ".join(parts + [f"{len(figures['channels'])} layer(s) with other channel counts"])


def _short(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"
