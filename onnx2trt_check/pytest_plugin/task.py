"""Task accuracy for `pytest --model`: ground truth (--labels) and a user metric (--metric), for the
reference and every target, with --max-metric-drop as the gate.

Items (with --labels or --metric):
  task::metric[reference]   the figures of the run's reference (the model in ONNX Runtime, or the
                            --reference-script / --reference-model outputs)
  task::metric[model]       with a reference source: the model itself (ONNX Runtime, graph as
                            written) against the reference: what the export or the derivation gave up
  task::metric[<target>]    each target against its reference
A target item fails when a figure is more than --max-metric-drop below the reference's; without
that option it cannot fail, and its summary says so (CANNOT FAIL). The figures
also go into the baselines (baseline.TASK_KEY), gated there like the other accuracy figures.
"""

from __future__ import annotations

import weakref

from .. import baseline as store
from .. import validate
from ..context import ModelContext, RunOptions
from ..errors import CheckError, CheckFailed, CheckSkipped, ConfigError
from ..references import REFERENCE_KEY
from ..targets import select_targets
from ..task_metrics import TaskMetric, check_label_rows, excessive_drops, figures_text, load_task_metric, metric_drops, unfailable_text
from .core import Check, _reference_or_fail
from .options import value

METRIC_KEY, DROP_KEY = "task_metric", "max_metric_drop"
# hunt19: without a limit a target's or a derived model's task item passed any drop, without a word
# ('task[model] PASSED top1 0 (reference 1, drop 1)' for a distilled student that learned nothing)
NO_LIMIT = ("CANNOT FAIL: no --max-metric-drop, so a drop of any size passes; pass the drop you accept, "
            "e.g. --max-metric-drop 0.01 (one point of a 0..1 accuracy)")


def read_options(config) -> dict:
    drop = validate.number(value(config, "max_metric_drop"), "--max-metric-drop", low=0.0, example="0.01")
    metric = load_task_metric(labels=value(config, "labels"), metric=value(config, "metric"))
    if drop is not None and metric is None:
        raise ConfigError("--max-metric-drop needs task figures; pass --labels FILE.npy and/or --metric FILE.py[:func]")
    return {METRIC_KEY: metric, DROP_KEY: drop}


def check_model(ctx: ModelContext) -> None:
    metric = ctx.options.extra.get(METRIC_KEY)
    if metric is not None and metric.labels is not None:
        check_label_rows(metric.labels, ctx.feeds)


def checks(options: RunOptions) -> list[Check]:
    if options.extra.get(METRIC_KEY) is None:
        return []
    found = [Check("task[reference]", "metric", check_reference_metric)]
    if options.extra.get(REFERENCE_KEY) is not None:
        found.append(Check("task[model]", "metric", check_model_metric))
    return found + [Check(f"task[{t.name}]", "metric", target_metric_check(t)) for t in select_targets(options.targets)]


# Figures per model context and reference run, so each reference is scored once per model.
_SCORED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def score(ctx: ModelContext, outputs: list[dict]) -> dict[str, float]:
    """The task figures of `outputs` (one dict per feed); a misfit is this item's failure."""
    try:
        return ctx.options.extra[METRIC_KEY].evaluate(outputs)
    except CheckError as exc:
        raise CheckFailed(str(exc)) from None


def reference_figures(ctx: ModelContext, reference) -> dict[str, float]:
    per_reference = _SCORED.setdefault(ctx, {})
    if id(reference) not in per_reference:
        per_reference[id(reference)] = (reference, score(ctx, reference.outputs))
    return per_reference[id(reference)][1]


def check_reference_metric(ctx: ModelContext) -> dict:
    __tracebackhide__ = True
    try:
        reference = ctx.reference
    except Exception:
        raise CheckFailed("cannot be measured: no reference outputs, the reference run failed (see the reference::run item)") from None
    figures = reference_figures(ctx, reference)
    return {"source": reference.source, "metric": _metric(ctx).source, "figures": figures, "summary": figures_text(figures)}


def check_model_metric(ctx: ModelContext) -> dict:
    __tracebackhide__ = True
    try:
        reference = ctx.reference
    except Exception:
        raise CheckFailed("cannot be verified: no reference outputs, the reference run failed (see the reference::run item)") from None
    return _judged(ctx, "the model (onnxruntime, graph as written)", score(ctx, ctx.onnx_reference.outputs), reference)


def target_metric_check(target):
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        reason = target.unavailable_reason()
        if reason:
            raise CheckSkipped(reason)
        reference = _reference_or_fail(ctx, target)
        outputs = target.run(target.artifact(ctx), ctx.feeds)
        return {"engine": target.engine} | _judged(ctx, f"{target.name} ({target.description})", score(ctx, outputs), reference)

    return check


def _judged(ctx: ModelContext, what: str, figures: dict[str, float], reference) -> dict:
    """Figures, the reference's and the drops; a CheckFailed when a drop exceeds --max-metric-drop."""
    expected = reference_figures(ctx, reference)
    drops, limit = metric_drops(expected, figures), ctx.options.extra.get(DROP_KEY)
    result = {"metric": _metric(ctx).source, "reference_source": reference.source, "figures": figures, "reference": expected,
              "drop": drops, "max_metric_drop": limit, "summary": figures_text(figures, expected)}
    vacuous = unfailable_text(expected, limit, bounded=_metric(ctx).function is None) if limit is not None else NO_LIMIT
    if vacuous:  # the budget no drop can exceed: taken, and said where the verdict is (unfailable_text says why)
        result |= {"cannot_fail": vacuous, "summary": f"{result['summary']}; {vacuous}"}
    beyond = excessive_drops(drops, limit)
    if beyond:
        listing = ", ".join(f"{name} {expected[name]:.4g} -> {figures[name]:.4g} (drop {drop:.4g})" for name, drop in beyond.items())
        raise CheckFailed(f"{what} loses task accuracy beyond --max-metric-drop {limit}: {listing}", result)
    return result


def _metric(ctx: ModelContext) -> TaskMetric:
    return ctx.options.extra[METRIC_KEY]


def baseline_figures(ctx: ModelContext, outputs: list[dict]) -> dict[str, dict[str, float]]:
    """{baseline.TASK_KEY: figures} for a baseline's accuracy block; {} without a task metric."""
    if ctx.options.extra.get(METRIC_KEY) is None:
        return {}
    return {store.TASK_KEY: score(ctx, outputs)}
