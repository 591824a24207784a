"""The transform family of `pytest --model`: every registered graph transform, checked on the model.

One item per transform, `transform::equivalence[<name>]`: the transform alone on the original model,
verified as the pipeline verifies a step (value equivalence in the ONNX Runtime reference on the
check inputs; decision agreement for remove_output_sigmoid, which strips only the outputs declared
as scores with --threshold, at their thresholds). A transform that finds nothing to rewrite is
skipped with its reason. One more item, `transform::equivalence[pipeline]`, runs the
selected transforms in the registry's documented order and names the first step that fails.

The transforms run through transforms.run (shared with the `optimize` command and the public API).
The items of one model share one PipelineMemo: the model itself is not run again (its outputs are
the reference run's), and the pipeline takes the single-transform items' steps up to its first
modifying one instead of transforming and verifying the same thing twice.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import TYPE_CHECKING

import onnx
import pytest

from ..context import ModelContext, RunOptions
from ..errors import CheckFailed, CheckSkipped, first_line
from ..liveness import dead_model_problem
from ..transforms.run import (
    TransformSettings,
    border_error_lines,
    failing_output_lines,
    run_transforms,
    settings_from,
    skip_reason,
    unfolded_advice,
    unfolded_normalization,
)
from .core import Check
from .options import value
from .stash import STATE

if TYPE_CHECKING:
    from ..transforms.pipeline import PipelineMemo, PipelineResult, PipelineStep

FAMILY_PIPELINE = "transform[pipeline]"
CHECK_NAME = "equivalence"

# --- options ---------------------------------------------------------------------------------------


def read_options(config) -> dict:
    return {"transform_settings": settings_from(
        names=value(config, "transform"), mean=value(config, "transform_mean"), std=value(config, "transform_std"),
        thresholds=value(config, "transform_threshold"), bn_conv_mode=value(config, "bn_conv_mode"))}


def settings_of(options: RunOptions) -> TransformSettings:
    return options.extra.get("transform_settings") or TransformSettings()


def session_plugin(config, options: RunOptions):
    """A --threshold that fits no model of the run (an output none has, or no name and no model
    with one output) is a usage error before any item runs."""
    if problem := settings_of(options).score_problem(list(config.stash[STATE].outputs.values())):
        raise pytest.UsageError(problem)
    return None


# --- the checks ------------------------------------------------------------------------------------


def checks(options: RunOptions) -> list[Check]:
    """One item per selected transform, then the pipeline item."""
    items = [Check(f"transform[{name}]", CHECK_NAME, transform_check(name)) for name in settings_of(options).selected()]
    return items + [Check(FAMILY_PIPELINE, CHECK_NAME, check_pipeline)]


def _skip_if_the_model_does_not_run(ctx: ModelContext) -> None:
    """A transform is verified against the model's own ORT run: where ONNX Runtime cannot run the
    model, nothing can be verified, and a FAILED item would blame the transform. The items skip
    with ORT's reason, as the targets do (reference::run fails with the whole message)."""
    try:
        ctx.onnx_reference
    except Exception as exc:  # ORT's own errors (NotImplemented, InvalidGraph, ...)
        raise CheckSkipped(f"ONNX Runtime cannot run the model ({type(exc).__name__}: {first_line(exc)}), so no transform can be verified against it") from None


def transform_check(name: str):
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        _skip_if_the_model_does_not_run(ctx)
        settings = settings_of(ctx.options)
        verification = verification_of(ctx)
        result = run_transforms(ctx.loaded.proto, verification.feeds, settings, names=[name], memo=verification.memo)
        step = result.steps[0]
        if not step.passed:
            raise CheckFailed(step_failure(step, len(verification.feeds), verification.other_shapes), step_figures(step) | _feeds_figures(verification))
        if not step.modified:
            raise CheckSkipped(f"{name}: {skip_reason(step)}")
        _fail_on_a_dead_model(name, verification)
        return step_figures(step) | _feeds_figures(verification)

    return check


def check_pipeline(ctx: ModelContext) -> dict:
    __tracebackhide__ = True
    _skip_if_the_model_does_not_run(ctx)
    settings = settings_of(ctx.options)
    verification = verification_of(ctx)
    result = run_transforms(ctx.loaded.proto, verification.feeds, settings, memo=verification.memo)
    _MEMOS.pop(ctx, None)  # its last use
    figures = pipeline_figures(ctx.loaded.proto, result)
    if not result.passed:
        failed = result.steps[-1]
        head = f"pipeline stopped at '{failed.name}' (step {len(result.steps)} of {len(settings.selected())}):"
        raise CheckFailed("\n".join([head, step_failure(failed, len(verification.feeds), verification.other_shapes), "steps run:", *_step_lines(result)]),
                          figures | _feeds_figures(verification))
    unfolded = unfolded_normalization(result, settings)
    if unfolded:  # what `optimize` refuses to write: the result would compute on raw pixels as if normalized; a
        # failure even when no other step changed the model, since --mean/--std asked for a change
        raise CheckFailed(f"pipeline: --mean/--std could not be folded into the model ({unfolded}), so its result would read "
                          f"raw values as if they were normalized (`optimize` writes nothing for it); {unfolded_advice(unfolded)}", figures)
    if not figures["changed"]:
        raise CheckSkipped("pipeline: no transform changed the model")
    _fail_on_a_dead_model("pipeline", verification)
    return figures | _feeds_figures(verification)


def _fail_on_a_dead_model(name: str, verification: Verification) -> None:
    """A failure for a step that passed on outputs which ignore the inputs (liveness): equal outputs
    there prove nothing about the transform, and a skip left `-k transform` green on a model nothing
    verified. A step that failed keeps its own message (it changed even those outputs, or the
    checker refused it); reference::run fails with the cause."""
    if verification.unverifiable:
        raise CheckFailed(f"{name}: cannot be verified: {verification.unverifiable} (see reference::run)")


# One memo per model context, weak, so it is released with its context (and after the pipeline item).
_MEMOS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclasses.dataclass
class Verification:
    """What the transform items of one model verify on: the run's feeds and, where the model declares
    its batch or other dimensions free, feeds of other shapes (shape_probe.with_other_shapes, as
    `optimize` verifies), the memo of runs and steps they share, the note on those shapes, and why no
    step can be verified on the run's feeds (liveness.dead_model_problem, decided once per model)."""

    feeds: list
    memo: PipelineMemo
    other_shapes: str
    unverifiable: str | None


def verification_of(ctx: ModelContext) -> Verification:
    """The transform items' Verification; the model's own outputs on the run's feeds are its ORT
    reference run (the graph as written, on the same feeds: what run_model computes)."""
    if ctx not in _MEMOS:
        from ..runtime import run_model
        from ..shape_probe import with_other_shapes
        from ..transforms.pipeline import PipelineMemo

        feeds, extra, note = with_other_shapes(ctx.loaded.proto, ctx.feeds, lambda probe: run_model(ctx.path, probe))
        context = weakref.ref(ctx)  # the memo must not keep its own key alive
        memo = PipelineMemo(ctx.loaded.proto, feeds, reference=lambda: context().onnx_reference.outputs + extra)
        _MEMOS[ctx] = Verification(feeds, memo, note, dead_model_problem(ctx.loaded.proto, ctx.feeds, ctx.onnx_reference.outputs))
    return _MEMOS[ctx]


# --- figures and messages --------------------------------------------------------------------------


def step_figures(step: PipelineStep) -> dict:
    """nodes_before/nodes_after lead (the summary row shows them), then what the step did."""
    report = step.report.to_dict() if step.report else {"matches": [], "skips": [], "figures": {}}
    figures = {
        "nodes_before": step.nodes_before, "nodes_after": step.nodes_after,
        "matches": len(report["matches"]), "skips": len(report["skips"]),
        "verification": step.verification.summary if step.verification else step.error,
        "verification_figures": _condensed(step.verification.figures) if step.verification else {},
        "report": report,
    }
    if "logit_thresholds" in report["figures"]:
        figures["logit_thresholds"] = report["figures"]["logit_thresholds"]
    return figures


def _condensed(figures: dict) -> dict:
    """Decision checks summed per threshold (one entry per feed would swamp the report)."""
    if "decisions" not in figures:
        return figures
    per_threshold: dict[float, dict] = {}
    for decision in figures["decisions"]:
        total = per_threshold.setdefault(decision["threshold"], {"threshold": decision["threshold"], "logit": decision["logit"],
                                                                   "disagreements": 0, "in_band": 0, "flipped_in_band": 0, "total": 0})
        for key in ("disagreements", "in_band", "flipped_in_band", "total"):
            total[key] += decision[key]
        total["agree"] = total["disagreements"] == 0
    return {**figures, "decisions": list(per_threshold.values())}


def pipeline_figures(model: onnx.ModelProto, result: PipelineResult) -> dict:
    return {
        "nodes_before": len(model.graph.node), "nodes_after": result.nodes_after,
        "changed": [step.name for step in result.steps if step.modified and step.passed],
        "failed_step": result.failed_step,
        "steps": [{"name": s.name, "modified": s.modified, "passed": s.passed, "nodes_before": s.nodes_before,
                   "nodes_after": s.nodes_after, "matches": len(s.report.matches) if s.report else 0,
                   "verification": s.verification.summary if s.verification else s.error} for s in result.steps],
    }


def _feeds_figures(verification: Verification) -> dict:
    """How many feeds the steps were verified on and their other shapes: a failed item says it too
    (a result failing only at a probe's size named no size but the data's)."""
    return {"feeds": len(verification.feeds), "other_shapes": verification.other_shapes}


def step_failure(step: PipelineStep, feeds: int, other_shapes: str = "") -> str:
    """Which transform, what it rewrote, and how the outputs moved (or why it could not be verified)."""
    head = f"{step.name} ({step.nodes_before} -> {step.nodes_after} nodes)"
    if step.error:
        return f"{head} failed: {step.error}"
    lines = [f"{head} changed the model's function on {feeds} feed(s): {step.verification.summary}"]
    lines += [f"  other shapes: {other_shapes}"] if other_shapes else []
    lines += failing_output_lines(step.verification.figures)
    lines += [f"  rewrote {', '.join(m.nodes)}: {m.detail}" for m in step.report.matches[:5]]
    return "\n".join(lines + border_error_lines(step.report))


def _step_lines(result: PipelineResult) -> list[str]:
    return [f"  {step.summary()}" for step in result.steps]
