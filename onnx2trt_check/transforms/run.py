"""Running a list of registered transforms with verification: what the `optimize` command, the
public API and the transform family of `pytest --model` share.

Normalization done outside the model (`--mean`/`--std`): the check inputs stay inputs of the model
as given (already normalized); the folded model reads raw values, so it is fed `x * std + mean` per
channel.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx

from ..errors import ConfigError

if TYPE_CHECKING:
    from .pipeline import PipelineMemo, PipelineResult, PipelineStep
    from .verify import Verification

# The registry is imported where it is used: it pulls in onnxsim (which imports torch where it is
# installed, over a second), and a run that never transforms should not pay for it.

EXTERNAL_NORMALIZATION = "fuse_input_normalization"
# Transforms that change the layout of the model's outputs (the deployment's post-processing must
# apply their recipe): `pytest --model` checks them by default, since a check deploys nothing, but
# `optimize`, which writes the file that is deployed, runs them only when asked.
OPT_IN = ("output_tail",)

BN_CONV_MODES = ("exact", "plain", "skip_padded")  # fold_bn_conv.MODES, kept equal by a test

# The passes of other tools (onnxsim, onnxoptimizer), which walk subgraphs themselves.
TOOL_PASSES = ("simplify", "optimize")
# What each transform looks for, for the skip reason of a model that has none of it.
PATTERNS = {
    "simplify": "constant subgraph or no-op for onnxsim to simplify",
    "optimize": "pattern for onnxoptimizer's fusion and elimination passes",
    "fuse_repconv": "RepVGG/RepConv block (an Add of parallel Conv branches over one input)",
    "bn_across_maxpool": "BatchNormalization next to a MaxPool with a foldable layer on its other side",
    "fold_conv_bn": "Conv -> BatchNormalization pair",
    "fold_gemm_bn": "Gemm/MatMul -> BatchNormalization pair",
    "fuse_input_normalization": "input normalization (Sub/Add/Mul/Div/BatchNormalization on an input or its Cast to float, read by Convs)",
    "fold_bn_conv": "BatchNormalization -> [reflect/edge/wrap Pad ->] Conv pair",
    "fold_bn_gemm": "BatchNormalization -> [Flatten/Reshape ->] Gemm/MatMul chain",
    "remove_output_sigmoid": "Sigmoid in front of a graph output",
    "output_tail": "Transpose/Reshape/Flatten/Squeeze/Unsqueeze/Resize between the last compute node and a graph output",
}


@dataclasses.dataclass(frozen=True)
class TransformSettings:
    """Which transforms run and with which options.

    `names` defaults to every registered transform; `mean`/`std` (per channel) describe
    normalization done outside the model (None: fold the one in the graph); `scores` are the
    outputs declared as scores, each with its probability thresholds ("" for the only output of a
    single-output model), the only outputs remove_output_sigmoid strips. Defaults to none.
    `bn_conv_mode` is fold_bn_conv's mode. Defaults to "exact".
    """

    names: tuple[str, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scores: tuple[tuple[str, tuple[float, ...]], ...] = ()
    bn_conv_mode: str = "exact"

    @property
    def external_normalization(self) -> bool:
        return self.mean is not None or self.std is not None

    def without_opt_in(self) -> TransformSettings:
        """These settings with the opt-in transforms left out, unless named explicitly."""
        if self.names is not None:
            return self
        return dataclasses.replace(self, names=tuple(n for n in _registry().transform_names() if n not in OPT_IN))

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
            return {"scores": dict(self.scores)}
        return {}

    def score_problem(self, models_outputs: Sequence[Sequence[str]]) -> str | None:
        """Why the declared scores fit none of the models (each given by its output names), or
        None: a named output no model has, or a bare threshold and no model with one output."""
        every = sorted({name for outputs in models_outputs for name in outputs})
        unknown = [name for name, _ in self.scores if name and name not in every]
        if unknown:
            return f"--threshold names {', '.join(map(repr, unknown))}, which no model has as an output; outputs: {', '.join(every)}"
        if any(not name for name, _ in self.scores) and not any(len(outputs) == 1 for outputs in models_outputs):
            return f"--threshold without an output name needs a model with one output; name the score output: --threshold OUTPUT:P (outputs: {', '.join(every)})"
        return None


def pass_names(text: str | None) -> tuple[str, ...]:
    """'fold_conv_bn, fold_bn_conv' -> ('fold_conv_bn', 'fold_bn_conv'); None -> () (all)."""
    if text is None:
        return ()
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise ConfigError(f"--passes {text!r} has an empty name; write comma-separated transform names")
    return names


def settings_from(*, names=(), mean=None, std=None, thresholds=(), bn_conv_mode="exact") -> TransformSettings:
    """Validated settings from command-line text; a bad value is a ConfigError naming the flag.
    `thresholds` declare score outputs: "OUTPUT:P" or "P" (the only output) texts or numbers, or a
    mapping output -> P or [P, ...] (the Python API)."""
    for name in names or ():
        _registry().get_transform(name)
    if bn_conv_mode not in BN_CONV_MODES:
        raise ConfigError(f"--bn-conv-mode {bn_conv_mode!r} is unknown; use one of {', '.join(BN_CONV_MODES)}")
    mean, std = _vector(mean, "--mean"), _vector(std, "--std")
    _check_normalization(mean, std)
    if (mean is not None or std is not None) and names and EXTERNAL_NORMALIZATION not in names:
        raise ConfigError(f"--mean/--std are folded by {EXTERNAL_NORMALIZATION}, which the selected transforms leave out; "
                          "select it too or leave --mean/--std out")
    return TransformSettings(names=tuple(names) or None, mean=mean, std=std, scores=parse_scores(thresholds), bn_conv_mode=bn_conv_mode)


def parse_scores(thresholds) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """'scores:0.3', 'scores:0.7', '0.5' -> (('scores', (0.3, 0.7)), ('', (0.5,))). The output name
    is everything before the last ':' (names like 'out:0' keep theirs); each probability in (0, 1)."""
    from .remove_output_sigmoid import logit_threshold

    pairs = thresholds.items() if isinstance(thresholds, Mapping) else (_split_score(t) for t in thresholds or ())
    scores: dict[str, list[float]] = {}
    for output, values in pairs:
        for value in (values,) if isinstance(values, str | int | float) else values:
            (probability,) = parse_floats(str(value), flag="--threshold")
            logit_threshold(probability)  # raises ConfigError outside (0, 1)
            scores.setdefault(str(output), []).append(probability)
    return tuple((output, tuple(sorted(set(values)))) for output, values in scores.items())


def _split_score(text) -> tuple[str, str]:
    output, _, probability = str(text).rpartition(":")
    return output, probability


def _check_normalization(mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> None:
    """What fuse_input_normalization would refuse, refused before any model is read."""
    if any(not np.isfinite(v) for v in (mean or ()) + (std or ())):
        raise ConfigError(f"--mean {mean} / --std {std}: pass finite numbers, one per channel")
    if std is not None and 0.0 in std:
        raise ConfigError(f"--std {','.join(f'{v:g}' for v in std)} has a zero; pass the nonzero per-channel std of the preprocessing")
    if mean is not None and std is not None and len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise ConfigError(f"--mean has {len(mean)} values and --std {len(std)}; pass one per channel for both")


def parse_floats(text: str, *, flag: str) -> tuple[float, ...]:
    """'123.7,116.3,103.5' -> (123.7, 116.3, 103.5)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        form = "a probability, e.g. --threshold 0.5 or --threshold scores:0.5" if flag == "--threshold" else "comma-separated numbers, e.g. 123.7,116.3,103.5"
        raise ConfigError(f"{flag} {text!r} is malformed; write {form}") from None
    if flag == "--threshold" and len(values) != 1:
        raise ConfigError(f"--threshold {text!r} gives {len(values)} values; repeat --threshold for each probability")
    return values


def _vector(value, flag: str) -> tuple[float, ...] | None:
    """Command-line text ('123.7,116.3,103.5') or, from the Python API, a sequence of numbers."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_floats(value, flag=flag)
    return parse_floats(",".join(str(v) for v in value), flag=flag)


def _registry():
    from . import registry

    return registry


def run_transforms(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], settings: TransformSettings,
                   *, names: Sequence[str] | None = None, memo: PipelineMemo | None = None) -> PipelineResult:
    """`run_pipeline` over `names` (defaults to `settings.selected()`), in that order. `memo` shares
    runs and steps between calls over the same model, feeds and settings (pipeline.PipelineMemo).
    Defaults to none.

    With external normalization the pipeline is run in two parts: the steps after a modifying
    fuse_input_normalization are verified on raw feeds, since the model they get reads raw values.
    """
    from ..protos import in_deployable_form
    from .pipeline import PipelineResult

    model = memo.model if memo is not None and memo.source is model else in_deployable_form(model)
    names = list(settings.selected() if names is None else names)
    split = names.index(EXTERNAL_NORMALIZATION) + 1 if settings.external_normalization and EXTERNAL_NORMALIZATION in names else len(names)
    first = _run_part(model, feeds, names[:split], settings, memo)
    if not first.passed or split == len(names):
        return first
    fold = first.steps[-1]
    rest_feeds = raw_feeds(feeds, folded_inputs(fold.report), settings) if fold.modified else feeds
    second = _run_part(first.model, rest_feeds, names[split:], settings, memo)
    return PipelineResult(second.model, first.steps + second.steps, second.failed_step)  # `second` made its copy


@dataclasses.dataclass
class VerifiedRun:
    """run_verifiable's result: the pipeline, why no verification of it is a verdict (None when
    one is), and the other input shapes the steps were also verified at ("" when none was tried)."""

    pipeline: PipelineResult
    unverifiable: str | None
    other_shapes: str


def run_verifiable(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], settings: TransformSettings,
                   name: str) -> VerifiedRun:
    """run_transforms verified against `model`'s own run on every feed (a ModelError naming `name`
    where ONNX Runtime cannot run it); that run is the pipeline's reference, so it is not run twice.
    Where the model declares its batch or other dimensions free, the steps are also verified on feeds
    of another batch size and of smaller and larger free dimensions (shape_probe; plant12: a result with batch 1
    baked into a Reshape was written), unless the model itself fails there. Liveness: a model whose outputs ignore the inputs verifies nothing."""
    from ..liveness import dead_model_problem
    from ..runnable import runnable_outputs
    from ..runtime import run_model
    from ..shape_probe import with_other_shapes
    from .pipeline import PipelineMemo

    outputs = runnable_outputs(model, feeds, name)
    unverifiable = dead_model_problem(model, feeds, outputs)  # on the data alone: another shape's outputs always differ
    feeds, extra, note = with_other_shapes(model, feeds, lambda probe: run_model(model, probe))
    outputs = outputs + extra
    pipeline = run_transforms(model, feeds, settings, memo=PipelineMemo(model, feeds, reference=lambda: outputs))
    return VerifiedRun(pipeline, unverifiable, note)


def folded_as_asked(pipeline: PipelineResult, settings: TransformSettings) -> PipelineResult:
    """`pipeline`, unless it was asked to fold --mean/--std and could not: a result written without
    that preprocessing would be fed raw values and compute on them as if normalized (ConfigError)."""
    reason = unfolded_normalization(pipeline, settings)
    if reason:
        raise ConfigError(f"--mean/--std could not be folded into the model ({reason}); nothing written: the result "
                          f"would not read raw values. {unfolded_advice(reason).capitalize()}")
    return pipeline


def unfolded_advice(reason: str) -> str:
    """What to do about an unfolded --mean/--std: one value per channel helps only when the reason is a
    channel count; it was suggested for every reason (an ambiguous fold, a uint8 input) and could not work."""
    per_channel = "give one value per input channel, or " if re.search(r"normalization has \d+ channels", reason) else ""
    return per_channel + "leave --mean/--std out"


def unfolded_normalization(pipeline: PipelineResult, settings: TransformSettings) -> str:
    """Why the --mean/--std asked for were not folded by a pipeline that passed, or "" (folded, or
    not asked for): its result would be fed raw values and compute on them as if normalized."""
    step = next((s for s in pipeline.steps if s.name == EXTERNAL_NORMALIZATION), None)
    if settings.external_normalization and pipeline.passed and step is not None and not step.modified:
        return skip_reason(step)
    return ""


def _run_part(model, feeds, names, settings: TransformSettings, memo) -> PipelineResult:
    from .pipeline import run_pipeline

    entries = [_entry(name, settings) for name in names]
    options = {name: settings.kwargs(name, feeds) for name in names}
    return run_pipeline(model, feeds, passes=entries, options=options, memo=memo)


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
    from ..runtime import run_model
    from .verify import Verification, compare_runs, verify_values

    if options.get("mean") is None and options.get("std") is None:
        return verify_values(before, after, feeds, result, options, run=run or run_model)
    settings = TransformSettings(mean=options.get("mean"), std=options.get("std"))
    inputs = folded_inputs(result.report)
    raw = raw_feeds(feeds, inputs, settings)
    normalized = normalized_feeds(raw, inputs, settings)
    equivalence = compare_runs(run_model(before, normalized), run_model(after, raw))
    return Verification(equivalence.passed, f"on raw inputs (x * std + mean): {equivalence.summary}", equivalence.to_dict())


def skip_reason(step: PipelineStep) -> str:
    """The report's distinct skip reasons, or that the model holds no candidate at all."""
    reasons = list(dict.fromkeys(skip.reason for skip in step.report.skips)) if step.report else []
    if not reasons:
        # hunt20: "no Conv -> BatchNormalization pair in the model" where a Loop body held one
        where = "the main graph (its If/Loop/Scan bodies are not transformed)" if step.bodies and step.name not in TOOL_PASSES else "the model"
        return f"no {PATTERNS.get(step.name, 'match')} in {where}"
    more = f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""
    return "; ".join(reasons[:3]) + more


def border_error_lines(report) -> list[str]:
    """Per padded plain BN->Conv fold, the error it measured in the border band and inside."""
    return [f"  plain BN->Conv fold at '{output}' (pads {error['pads']}): max abs error {error['border_max_abs']:.3g} "
            f"in the border band, {error['interior_max_abs']:.3g} inside; --bn-conv-mode exact corrects it"
            for output, error in (report.figures.get("border_error", {}) if report else {}).items()]


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
