"""The transform family of `pytest --model`: every registered graph transform, checked on the model.

One item per transform, `transform[<name>]::equivalence`: the transform alone on the original model,
verified as the pipeline verifies a step (value equivalence in the ONNX Runtime reference on the
check inputs; decision agreement for remove_output_sigmoid). A transform that finds nothing to
rewrite is skipped with its reason. One more item, `transform[pipeline]::equivalence`, runs the
selected transforms in the registry's documented order and names the first step that fails.

Normalization done outside the model (`--mean`/`--std`): the check inputs stay inputs of the model
as given (already normalized); the folded model reads raw values, so it is fed
`x * std + mean` per channel. `run_transforms` is shared with the `optimize` command.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx

from .checks import Check, CheckFailed, CheckSkipped
from .context import ModelContext, RunOptions
from .errors import ConfigError

if TYPE_CHECKING:
    from .transforms.pipeline import PipelineResult, PipelineStep
    from .transforms.verify import Verification

# The transforms are imported where they are used: the registry pulls in onnxsim (which imports
# torch where it is installed, over a second), and this module loads with the plugin in every
# pytest run.

FAMILY_PIPELINE = "transform[pipeline]"
CHECK_NAME = "equivalence"
EXTERNAL_NORMALIZATION = "fuse_input_normalization"

BN_CONV_MODES = ("exact", "plain", "skip_padded")  # fold_bn_conv.MODES, kept equal by a test

# What each transform looks for, for the skip reason of a model that has none of it.
PATTERNS = {
    "simplify": "constant subgraph or no-op for onnxsim to simplify",
    "optimize": "pattern for onnxoptimizer's fusion and elimination passes",
    "fuse_repconv": "RepVGG/RepConv block (an Add of parallel Conv branches over one input)",
    "fold_conv_bn": "Conv -> BatchNormalization pair",
    "fuse_input_normalization": "input normalization (Sub/Add/Mul/Div/BatchNormalization on an input, read by Convs)",
    "fold_bn_conv": "BatchNormalization -> Conv pair",
    "remove_output_sigmoid": "Sigmoid in front of a graph output",
}


@dataclasses.dataclass(frozen=True)
class TransformSettings:
    """Which transforms run and with which options.

    `names` defaults to every registered transform; `mean`/`std` (per channel) describe
    normalization done outside the model (None: fold the one in the graph); `thresholds` are
    probability thresholds mapped to logits by remove_output_sigmoid; `bn_conv_mode` is
    fold_bn_conv's mode. Defaults to "exact".
    """

    names: tuple[str, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    thresholds: tuple[float, ...] = ()
    bn_conv_mode: str = "exact"

    @property
    def external_normalization(self) -> bool:
        return self.mean is not None or self.std is not None

    def selected(self) -> tuple[str, ...]:
        """The selected names in the documented (registry) order."""
        names = _registry().transform_names()
        return names if self.names is None else tuple(n for n in names if n in self.names)

    def kwargs(self, name: str, feeds) -> dict:
        """Keyword options of transform `name` (plain fold_bn_conv also measures its border error)."""
        if name == EXTERNAL_NORMALIZATION and self.external_normalization:
            return {"mean": self.mean, "std": self.std}
        if name == "fold_bn_conv":
            return {"mode": self.bn_conv_mode} | ({"check_feeds": list(feeds)} if self.bn_conv_mode == "plain" else {})
        if name == "remove_output_sigmoid":
            return {"thresholds": self.thresholds}
        return {}


# --- options ---------------------------------------------------------------------------------------


def add_options(group) -> None:
    group.addoption("--transform", action="append", default=[], dest="transform", metavar="NAME",
                    help=f"graph transform to check (repeatable): {', '.join(PATTERNS)}. Defaults to all")
    group.addoption("--mean", dest="transform_mean", metavar="M1,M2,...",
                    help="per-channel mean of preprocessing done outside the model, folded by fuse_input_normalization")
    group.addoption("--std", dest="transform_std", metavar="S1,S2,...",
                    help="per-channel std of preprocessing done outside the model (see --mean)")
    group.addoption("--threshold", action="append", default=[], dest="transform_threshold", metavar="P",
                    help="probability threshold (repeatable) that remove_output_sigmoid maps to a logit threshold")
    group.addoption("--bn-conv-mode", dest="bn_conv_mode", default="exact", metavar="MODE",
                    help=f"fold_bn_conv mode: {', '.join(BN_CONV_MODES)}. Defaults to exact")


def read_options(config) -> dict:
    return {"transform_settings": settings_from(
        names=config.getoption("transform"), mean=config.getoption("transform_mean"), std=config.getoption("transform_std"),
        thresholds=config.getoption("transform_threshold"), bn_conv_mode=config.getoption("bn_conv_mode"))}


def settings_from(*, names=(), mean=None, std=None, thresholds=(), bn_conv_mode="exact") -> TransformSettings:
    """Validated settings from command-line text; a bad value is a ConfigError naming the flag."""
    for name in names or ():
        _registry().get_transform(name)
    if bn_conv_mode not in BN_CONV_MODES:
        raise ConfigError(f"--bn-conv-mode {bn_conv_mode!r} is unknown; use one of {', '.join(BN_CONV_MODES)}")
    probabilities = tuple(parse_floats(str(t), flag="--threshold") for t in thresholds or ())
    from .transforms.remove_output_sigmoid import logit_threshold

    for (value,) in probabilities:
        logit_threshold(value)  # raises ConfigError outside (0, 1)
    return TransformSettings(
        names=tuple(names) or None, mean=_vector(mean, "--mean"), std=_vector(std, "--std"),
        thresholds=tuple(p for (p,) in probabilities), bn_conv_mode=bn_conv_mode)


def parse_floats(text: str, *, flag: str) -> tuple[float, ...]:
    """'123.7,116.3,103.5' -> (123.7, 116.3, 103.5)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is malformed; write comma-separated numbers, e.g. 123.7,116.3,103.5") from None
    if flag == "--threshold" and len(values) != 1:
        raise ConfigError(f"--threshold {text!r} gives {len(values)} values; repeat --threshold for each probability")
    return values


def _vector(text, flag: str) -> tuple[float, ...] | None:
    return None if text is None else parse_floats(str(text), flag=flag)


def _registry():
    from .transforms import registry

    return registry


def settings_of(options: RunOptions) -> TransformSettings:
    return options.extra.get("transform_settings") or TransformSettings()


# --- running the transforms ------------------------------------------------------------------------


def run_transforms(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], settings: TransformSettings,
                   *, names: Sequence[str] | None = None) -> PipelineResult:
    """`run_pipeline` over `names` (defaults to `settings.selected()`), in that order.

    With external normalization the pipeline is run in two parts: the steps after a modifying
    fuse_input_normalization are verified on raw feeds, since the model they get reads raw values.
    """
    from .transforms.pipeline import PipelineResult

    names = list(settings.selected() if names is None else names)
    split = names.index(EXTERNAL_NORMALIZATION) + 1 if settings.external_normalization and EXTERNAL_NORMALIZATION in names else len(names)
    first = _run_part(model, feeds, names[:split], settings)
    if not first.passed or split == len(names):
        return first
    fold = first.steps[-1]
    rest_feeds = raw_feeds(feeds, folded_inputs(fold.report), settings) if fold.modified else feeds
    second = _run_part(first.model, rest_feeds, names[split:], settings)
    return PipelineResult(second.model, first.steps + second.steps, second.failed_step)


def _run_part(model, feeds, names, settings: TransformSettings) -> PipelineResult:
    from .transforms.pipeline import run_pipeline

    entries = [_entry(name, settings) for name in names]
    options = {name: settings.kwargs(name, feeds) for name in names}
    return run_pipeline(model, feeds, passes=entries, options=options)


def _entry(name: str, settings: TransformSettings):
    entry = _registry().get_transform(name)
    if name == EXTERNAL_NORMALIZATION and settings.external_normalization:
        # The registry verifies on the same feeds before and after, which cannot hold here:
        # the folded model reads raw values.
        return entry._replace(verifier=verify_external_normalization)
    return entry


def folded_inputs(report) -> set[str]:
    """Graph inputs an external fold made raw: each match of fuse_input_normalization with
    external statistics starts with the input's name (its report labels the match that way)."""
    return {match.nodes[0] for match in report.matches if match.nodes} if report else set()


def raw_feeds(feeds, inputs: set[str], settings: TransformSettings) -> list[dict[str, np.ndarray]]:
    """`feeds` with each of `inputs` mapped back to raw values, x * std + mean per channel (axis 1),
    computed in float64 and cast back to the input's dtype."""
    return _mapped(feeds, inputs, lambda x, mean, std: x * std + mean, settings)


def normalized_feeds(feeds, inputs: set[str], settings: TransformSettings) -> list[dict[str, np.ndarray]]:
    """The inverse of `raw_feeds`: (x - mean) / std per channel, in float64."""
    return _mapped(feeds, inputs, lambda x, mean, std: (x - mean) / std, settings)


def _mapped(feeds, inputs: set[str], function, settings: TransformSettings) -> list[dict[str, np.ndarray]]:
    mean = np.asarray(settings.mean if settings.mean is not None else (0.0,), dtype=np.float64)
    std = np.asarray(settings.std if settings.std is not None else (1.0,), dtype=np.float64)

    def apply(array: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (array.ndim - 2)
        return function(array.astype(np.float64), mean.reshape(shape), std.reshape(shape)).astype(array.dtype)

    return [{name: apply(array) if name in inputs else array for name, array in feed.items()} for feed in feeds]


def verify_external_normalization(before, after, feeds, result, options, run=None) -> Verification:
    """The folded model on raw feeds against the original on those raw feeds normalized again,
    (raw - mean) / std in float64: both see the same raw data, as a deployment would feed it.
    `run` (the pipeline's remembering runner) serves the plain comparison without --mean/--std."""
    from .runtime import run_model
    from .transforms.verify import Verification, compare_runs, verify_values

    if options.get("mean") is None and options.get("std") is None:
        return verify_values(before, after, feeds, result, options, run=run or run_model)
    settings = TransformSettings(mean=options.get("mean"), std=options.get("std"))
    inputs = folded_inputs(result.report)
    raw = raw_feeds(feeds, inputs, settings)
    normalized = normalized_feeds(raw, inputs, settings)
    equivalence = compare_runs(run_model(before, normalized), run_model(after, raw))
    return Verification(equivalence.passed, f"on raw inputs (x * std + mean): {equivalence.summary}", equivalence.to_dict())


# --- the checks ------------------------------------------------------------------------------------


def checks(options: RunOptions) -> list[Check]:
    """One item per selected transform, then the pipeline item."""
    items = [Check(f"transform[{name}]", CHECK_NAME, transform_check(name)) for name in settings_of(options).selected()]
    return items + [Check(FAMILY_PIPELINE, CHECK_NAME, check_pipeline)]


def transform_check(name: str):
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        settings = settings_of(ctx.options)
        result = run_transforms(ctx.loaded.proto, ctx.feeds, settings, names=[name])
        step = result.steps[0]
        if not step.passed:
            raise CheckFailed(step_failure(step, len(ctx.feeds)), step_figures(step))
        if not step.modified:
            raise CheckSkipped(f"{name}: {skip_reason(step)}")
        return step_figures(step) | {"feeds": len(ctx.feeds)}

    return check


def check_pipeline(ctx: ModelContext) -> dict:
    __tracebackhide__ = True
    settings = settings_of(ctx.options)
    result = run_transforms(ctx.loaded.proto, ctx.feeds, settings)
    figures = pipeline_figures(ctx.loaded.proto, result)
    if not result.passed:
        failed = result.steps[-1]
        head = f"pipeline stopped at '{failed.name}' (step {len(result.steps)} of {len(settings.selected())}):"
        raise CheckFailed("\n".join([head, step_failure(failed, len(ctx.feeds)), "steps run:", *_step_lines(result)]), figures)
    if not figures["changed"]:
        raise CheckSkipped("pipeline: no transform changed the model")
    return figures | {"feeds": len(ctx.feeds)}


def skip_reason(step: PipelineStep) -> str:
    """The report's distinct skip reasons, or that the model holds no candidate at all."""
    reasons = list(dict.fromkeys(skip.reason for skip in step.report.skips)) if step.report else []
    if not reasons:
        return f"no {PATTERNS.get(step.name, 'match')} in the model"
    more = f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""
    return "; ".join(reasons[:3]) + more


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
        "nodes_before": len(model.graph.node), "nodes_after": len(result.model.graph.node),
        "changed": [step.name for step in result.steps if step.modified and step.passed],
        "failed_step": result.failed_step,
        "steps": [{"name": s.name, "modified": s.modified, "passed": s.passed, "nodes_before": s.nodes_before,
                   "nodes_after": s.nodes_after, "matches": len(s.report.matches) if s.report else 0,
                   "verification": s.verification.summary if s.verification else s.error} for s in result.steps],
    }


def step_failure(step: PipelineStep, feeds: int) -> str:
    """Which transform, what it rewrote, and how the outputs moved (or why it could not be verified)."""
    head = f"{step.name} ({step.nodes_before} -> {step.nodes_after} nodes)"
    if step.error:
        return f"{head} failed: {step.error}"
    lines = [f"{head} changed the model's function on {feeds} feed(s): {step.verification.summary}"]
    lines += failing_output_lines(step.verification.figures)
    lines += [f"  rewrote {', '.join(m.nodes)}: {m.detail}" for m in step.report.matches[:5]]
    for output, error in step.report.figures.get("border_error", {}).items():
        lines.append(f"  plain BN->Conv fold at '{output}' (pads {error['pads']}): max abs error {error['border_max_abs']:.3g} "
                     f"in the border band, {error['interior_max_abs']:.3g} inside; --bn-conv-mode exact corrects it")
    return "\n".join(lines)


def failing_output_lines(figures: dict) -> list[str]:
    """One line per output or decision that failed, with the tolerance that was applied."""
    lines = []
    for output in [*figures.get("outputs", ()), *figures.get("other_outputs", {}).get("outputs", ())]:
        if not output["passed"]:
            lines.append(f"  output '{output['name']}': {output['mismatched']}/{output['total']} elements outside "
                         f"|after - before| <= atol {output['atol']:.3g} + rtol {output['rtol']:.3g} * |before|; "
                         f"max abs {output['max_abs']:.3g}, max rel {output['max_rel']:.3g}"
                         + (f"; {output['note']}" if output["note"] else ""))
    failed = [d for d in figures.get("decisions", []) if not d["agree"]]
    lines += [f"  decisions at t={d['threshold']!r} (logit {d['logit']:.9g}): {d['disagreements']}/{d['total']} differ "
              f"outside the rounding band" for d in failed[:5]]
    return lines


def _step_lines(result: PipelineResult) -> list[str]:
    return [f"  {step.summary()}" for step in result.steps]
