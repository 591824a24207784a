"""The public Python API: what a notebook or a build script calls, and what the CLI commands call.

    check(models, ...)     every check of `pytest --model`, run by pytest; the JSON report back
    optimize(model, ...)   the graph transforms, each step verified; the result written if asked
    quantize(model, ...)   post-training int8 to a QDQ model; its accuracy against the float model
    bisect(model, ...)     where a target's accuracy loss comes from (layerwise, sensitivity, reduce)

Options are keyword-only and mean what the command-line options of the same name mean. A model is a
path (or, for optimize and quantize, an onnx.ModelProto). Misuse raises a CheckError subclass with a
one-line message; nothing is written unless `output` is given, and never over an existing file
without `force=True`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from . import validate
from .api_arguments import checked_arguments
from .bisection.modes import BisectOutcome
from .errors import ConfigError
from .fileio import checked_output
from .leftovers import temporary_folder
from .quant.pipeline import Int8Build, Int8Settings, bisect_command
from .quant.verify import Int8Verdict
from .transforms.pipeline import PipelineResult
from .transforms.run import TransformSettings

ModelSource = str | os.PathLike | onnx.ModelProto
Shapes = Mapping[str, Sequence[int]]


# ---------------------------------------------------------------- check


@dataclasses.dataclass
class CheckResult:
    """pytest's exit code and the run's JSON report (report.report_document); passed: exit 0 and an item passed (--co runs none)."""

    exit_code: int
    report: dict

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and self.report.get("counts", {}).get("passed", 0) > 0


@checked_arguments
def check(models: str | os.PathLike | Sequence[str | os.PathLike], *, pytest_args: Sequence[str] = (),
          report_json: str | os.PathLike | None = None) -> CheckResult:
    """`pytest --model M ...` for every model (a file or a folder), in this process. `pytest_args`
    are any other options of `pytest --model` (e.g. ["--target", "ort", "-q"]). The report is also
    kept at `report_json` when given. Defaults to a temporary file, removed afterwards. Like every
    `pytest --model` run it writes nothing else outside the user's cache folder (pytest's cache, for
    `--lf`), unless asked (`--artifact-dir`, baselines). A usage error (pytest's exit code 4: a bad
    option, model or data) raises ConfigError with its line."""
    import pytest

    paths = [models] if isinstance(models, str | os.PathLike) else list(models) if isinstance(models, Sequence) else []
    if not paths or not all(isinstance(p, str | os.PathLike) for p in paths):
        raise ConfigError(f"check() got no model path in {models!r}; pass a model file or a folder of models, or a list of them")
    usage = _usage_errors()
    with temporary_folder("onnx2trt_check-api-") as folder:
        report = Path(report_json) if report_json is not None else Path(folder) / "report.json"
        # Not pytest_plugin/fast_exit.py's gc.freeze at exit: this process is the user's program.
        args = [*(f"--model={os.fspath(p)}" for p in paths), f"--report-json={report}", "-p", "no:onnx2trt_check_fast_exit", *pytest_args]
        exit_code = int(pytest.main(args, plugins=[usage]))
        document = json.loads(report.read_text(encoding="utf-8")) if report.is_file() and exit_code != 4 else {}
    if exit_code == 4:
        raise ConfigError(usage.message or f"pytest refused the arguments {list(pytest_args)} (exit code 4; its message is above)")
    return CheckResult(exit_code, document)


def _usage_errors():
    """A pytest plugin object that keeps the message of the usage error raised while configuring,
    so check() raises it as a ConfigError, as every other function of the API does."""
    import pytest

    class UsageErrors:
        message: str | None = None

        @pytest.hookimpl(wrapper=True)
        def pytest_cmdline_main(self, config):  # wraps pytest_configure, which is historic (no wrappers)
            try:
                return (yield)
            except pytest.UsageError as exc:
                self.message = str(exc)
                raise

    return UsageErrors()


# ---------------------------------------------------------------- shared input handling


def _load(model: ModelSource) -> tuple[onnx.ModelProto, str]:
    from .model import inlined, load_model
    from .scope import check_scope

    if isinstance(model, onnx.ModelProto):
        check_scope(model, "<ModelProto>")
        return inlined(model)[0], "<ModelProto>"  # a copy where it has local functions, as a loaded file (load_model)
    if not isinstance(model, str | os.PathLike):
        raise ConfigError(f"model must be a path or an onnx.ModelProto, not {type(model).__name__}")
    return load_model(model).proto, os.fspath(model)


def _shapes(input_shapes: Shapes | None) -> dict[str, tuple[int, ...]]:
    """{name: dims}, every dim an int >= 0 as --input-shape gives (0: an empty dim, e.g. a KV cache's past)."""
    shapes = {}
    for name, shape in (input_shapes or {}).items():
        dims = tuple(shape) if isinstance(shape, Sequence) and not isinstance(shape, str) else ()
        if not dims or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0 for d in dims):
            raise ConfigError(f"input shape {name}: {shape!r} is not a list of integers >= 0; pass e.g. {{'{name}': (1, 3, 224, 224)}}")
        shapes[str(name)] = tuple(int(d) for d in dims)
    return shapes


def _specs(proto: onnx.ModelProto, input_shapes: Shapes | None, data=None):
    from .data import data_shapes
    from .model import resolve_input_specs

    return resolve_input_specs(proto, _shapes(input_shapes), data_shapes=data_shapes(data, proto) if data is not None else None)


def feed_options(*, inputs, seed: int, num_feeds: int, input_ranges: Mapping[str, tuple[float, float]] | None = None):
    """The input options checked (seed, count, ranges) and the --inputs data read (a .npz or a
    data-loader script), before any model is loaded."""
    from .data import FeedOptions, is_loader, parse_range, read_source

    ranges = dict(parse_range(f"{name}:{low},{high}" if name != "*" else f"{low},{high}") for name, (low, high) in (input_ranges or {}).items())
    options = FeedOptions(seed=validate.seed(seed), num_feeds=validate.integer(num_feeds, "--num-feeds", low=1), ranges=ranges,
                          npz=Path(inputs) if inputs and not is_loader(inputs) else None, data_loader=str(inputs) if inputs and is_loader(inputs) else None)
    return dataclasses.replace(options, raw=read_source(inputs, "--inputs") if inputs is not None else None)


def input_feeds(proto: onnx.ModelProto, *, inputs, input_shapes: Shapes | None, seed: int, num_feeds: int,
                input_ranges: Mapping[str, tuple[float, float]] | None = None):
    """The feeds the input options describe, and a label saying where they came from."""
    options = feed_options(inputs=inputs, seed=seed, num_feeds=num_feeds, input_ranges=input_ranges)
    return _model_feeds(proto, options, input_shapes), options.source


def _model_feeds(proto: onnx.ModelProto, options, input_shapes: Shapes | None):
    from .data import model_feeds

    return model_feeds(proto, options, _shapes(input_shapes))[1]


def _write(output, model: onnx.ModelProto, *, force: bool) -> Path:
    from .fileio import save_model

    return save_model(model, output, force=force)


# ---------------------------------------------------------------- optimize


@dataclasses.dataclass
class OptimizeResult:
    """The pipeline's result (the model after the last step that passed, every step with its
    verification), the settings it ran with, where the feeds came from, and the written file."""

    pipeline: PipelineResult
    settings: TransformSettings
    feeds_source: str
    feeds: int
    nodes_before: int
    written: Path | None = None
    # output_tail's post-processing recipe (tail_recipe.recipe_document) when it moved a tail out of
    # the graph, and where it was written (beside the model: OUT.recipe.json).
    recipe: dict | None = None
    recipe_written: Path | None = None
    unverifiable: str | None = None  # why the model's own outputs cannot tell an error (liveness), else None
    other_shapes: str = ""  # the other input shapes the steps were verified at, or why not (shape_probe); "" when none
    # The float inputs' range on the feeds (feed_notes.value_range_note): raw 0..255 pixels fed to a
    # model that reads normalized values were verified on without a word (zoo13).
    input_ranges: list[str] = dataclasses.field(default_factory=list)
    one_feed: bool = False  # verified on one feed whose liveness nothing could show (liveness.one_feed_unchecked)

    @property
    def model(self) -> onnx.ModelProto:
        return self.pipeline.model

    @property
    def passed(self) -> bool:
        return self.pipeline.passed and not self.unverifiable


@checked_arguments
def optimize(model: ModelSource, *, output: str | os.PathLike | None = None, force: bool = False,
             passes: Sequence[str] | None = None, mean: Sequence[float] | str | None = None, std: Sequence[float] | str | None = None,
             thresholds: Mapping[str, float | Sequence[float]] | Sequence[str | float] = (), bn_conv_mode: str = "exact",
             output_tail: bool = False,
             inputs: str | os.PathLike | None = None, input_shapes: Shapes | None = None, seed: int = 0, num_feeds: int = 4) -> OptimizeResult:
    """The registered transforms (`passes`, in registry order. Defaults to all but output_tail) on
    `model`, every step that changed it verified on the feeds; written to `output` only when every
    step passed and the model's outputs depend on its inputs there (`unverifiable` says why not:
    equal outputs of a dead network verify nothing). output_tail changes the layout of the outputs (the deployment must apply its
    recipe), so it runs only when named in `passes` or with `output_tail=True`.
    `thresholds` declare the outputs that are scores, the only ones whose output Sigmoid is
    removed: {"scores": [0.3, 0.7]}, or ["scores:0.3", "scores:0.7"], or [0.5] for the only output
    of a single-output model. Defaults to none: every output Sigmoid stays. When output_tail moved a
    tail out of the graph, its recipe is written beside (OUT.recipe.json), never over an existing
    file without `force`."""
    from .feed_notes import value_range_note
    from .liveness import one_feed_unchecked
    from .optimize_output import recipe_of, recipe_target, write_optimized
    from .transforms.run import folded_as_asked, pass_names, run_verifiable, settings_from

    names = tuple(pass_names(passes) if isinstance(passes, str) else passes or ()) + (("output_tail",) if output_tail and passes else ())
    settings = settings_from(names=names, mean=mean, std=std, thresholds=thresholds, bn_conv_mode=bn_conv_mode)
    settings = settings if output_tail else settings.without_opt_in()
    target = checked_output(model, output, force=force) if output is not None else None
    recipe_file = recipe_target(target, settings, force=force)
    validate.distinct_outputs([("-o", output), ("its recipe", recipe_file)], {"--inputs": inputs})
    options = feed_options(inputs=inputs, seed=seed, num_feeds=num_feeds)
    proto, name = _load(model)
    if problem := settings.score_problem([[output.name for output in proto.graph.output]]):
        raise ConfigError(problem)
    feeds = _model_feeds(proto, options, input_shapes)
    run = run_verifiable(proto, feeds, settings, name)
    result = OptimizeResult(folded_as_asked(run.pipeline, settings), settings, options.source, len(feeds), len(proto.graph.node),
                            unverifiable=run.unverifiable, other_shapes=run.other_shapes, input_ranges=value_range_note(feeds),
                            one_feed=one_feed_unchecked(proto, feeds))
    result.recipe = recipe_of(result.pipeline, target)
    if target is not None and result.passed:
        result.written, result.recipe_written = write_optimized(Path(target), result.model, recipe_file, result.recipe, force=force)
    return result


# ---------------------------------------------------------------- quantize


@dataclasses.dataclass
class QuantizeResult:
    """Our int8 build (the QDQ model, the quantizer's report, each preparation step), its verdict
    against the float model under the int8 floor (per output SQNR, cosine, top-1 agreement; the
    worst tensors when it fails), where the test feeds came from, the command line of `bisect` that
    explains a failure, and the written file (None when nothing was written)."""

    build: Int8Build
    settings: Int8Settings
    calibration_feeds: int
    verdict: Int8Verdict
    test_source: str
    test_feeds: int
    bisect_command: str
    written: Path | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    one_feed: bool = False  # judged on one feed whose liveness nothing could show (liveness.one_feed_unchecked)

    @property
    def model(self) -> onnx.ModelProto:
        return self.build.model

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    @property
    def accuracy(self) -> dict[str, dict[str, float | None]]:
        return self.verdict.figures()


@checked_arguments
def quantize(model: ModelSource, *, calibration_data: str | os.PathLike, output: str | os.PathLike | None = None, force: bool = False,
             calibration_method: str = "auto", percentile: float = 99.99, per_channel: bool = True, cle: bool = False,
             cle_relu6: str = "skip", bias_correction: bool = False, exclude: Sequence[str] = (),
             inputs: str | os.PathLike | None = None, input_shapes: Shapes | None = None, accept_degraded: bool = False,
             atol: float | None = None, rtol: float | None = None, min_cosine: float | None = None, min_sqnr_db: float | None = None,
             output_tolerances: Sequence[str] = (), project: str | os.PathLike | None = None,
             labels: str | os.PathLike | None = None, metric: str | None = None) -> QuantizeResult:
    """Post-training int8 quantization of a float model by TensorRT's Q/DQ placement rules,
    calibrated on `calibration_data` (a .npz or a data-loader script), then verified: the result is
    measured against the float model on `inputs` (Defaults to a held-out fifth of the calibration
    data, which the quantizer then does not see) under the int8 floor of the `ort-int8` check, and
    written to `output` only when it passes, or with `accept_degraded`. Defaults: automatic
    calibration, per-channel weights, no CLE, no bias correction, nothing excluded.

    The floor is the one `pytest --model` run in the `project` folder (Defaults to the current
    folder) applies: the int8 profile, then [tool.onnx2trt_check] of its pyproject.toml, its pytest
    ini's onnx2trt_* keys, then `atol` ... `output_tolerances` as pytest's --atol, --rtol,
    --min-cosine, --min-sqnr, --output-tolerance OUT:key=value.

    With `labels` (one per row of `inputs`) and/or `metric` (FILE.py[:func], task_metrics), the
    automatic calibration maximizes the metric's first figure on the `inputs` feeds (ties broken
    by output SQNR) and the verdict reports the task figures of both models."""
    from .config import check_output_names, project_tolerances
    from .data import cap_note, fit, read_source
    from .liveness import one_feed_unchecked
    from .quant.float_counterpart import has_qdq, integer_ops_reason
    from .quant.pipeline import check_settings, quantize_for_tensorrt
    from .quant.verify import verification_split, verify_int8
    from .runnable import require_runnable
    from .task_metrics import task_objective

    settings = Int8Settings(method=calibration_method, percentile=percentile, per_channel=per_channel, cle=cle,
                            cle_relu6=cle_relu6, bias_correction=bias_correction, exclude=tuple(exclude))
    check_settings(settings)
    given = {"atol": atol, "rtol": rtol, "min_cosine": min_cosine, "min_sqnr_db": min_sqnr_db}
    tolerances = project_tolerances(Path(project) if project is not None else None, command_line=given, output_tolerances=output_tolerances)
    target = checked_output(model, output, force=force) if output is not None else None
    validate.distinct_outputs([("-o", output)], {"--calibration-data": calibration_data, "--inputs": inputs, "--labels": labels, "--metric": metric})
    calibration_raw = read_source(calibration_data, "--calibration-data")
    test_raw = read_source(inputs, "--inputs") if inputs is not None else None
    if (labels is not None or metric is not None) and test_raw is None:
        raise ConfigError("--labels/--metric score the --inputs feeds (the labels are theirs); pass --inputs")
    proto, name = _load(model)
    if reason := integer_ops_reason(proto):
        raise ConfigError(f"'{name}': {reason}")
    if has_qdq(proto):
        raise ConfigError(f"'{name}' already holds Q/DQ nodes; quantize its float model instead")
    check_output_names(output_tolerances, {o.name for o in proto.graph.output})
    specs = _specs(proto, input_shapes, calibration_raw)  # open dims settled by the calibration data
    split = verification_split(fit(calibration_raw, specs), fit(test_raw, specs, proto=proto) if test_raw is not None else None)
    require_runnable(proto, split.calibration, name)
    source = f"test inputs '{inputs}'{cap_note(test_raw)}" if inputs else split.describe(os.fspath(calibration_data)) + cap_note(calibration_raw)
    source += f" ({split.overlap_text()})" if split.shared else ""
    task, objective = task_objective(proto, labels=labels, metric=metric, model=None if name == "<ModelProto>" else Path(name), feeds=split.test)
    searched = objective is not None and settings.method == "auto"
    build = quantize_for_tensorrt(proto, split.calibration, settings, **({"objective": objective, "selection_feeds": split.test} if searched else {}))
    command = bisect_command(name, calibration_data, settings, inputs=inputs, input_shapes=input_shapes)
    verdict = verify_int8(proto, build.model, split.test, tolerances=tolerances, metric=task)
    result = QuantizeResult(build, settings, len(split.calibration), verdict, source, len(split.test), command, notes=_task_notes(objective, settings),
                            one_feed=one_feed_unchecked(proto, split.test))
    if target is not None and (result.passed or accept_degraded):
        result.written = _write(target, build.model, force=force)
    return result


def _task_notes(objective, settings: Int8Settings) -> list[str]:
    if objective is None:
        return []
    if settings.method != "auto":
        return [f"--calibration-method {settings.method} searches nothing: the task figure only scores the result"]
    return [f"auto calibration objective: {objective.describe()}, on the --inputs feeds; "
            "the same feeds verify the result, so its task figure is not held out"]


# ---------------------------------------------------------------- bisect


@checked_arguments
def bisect(model: str | os.PathLike, *, target: str, mode: str = "layerwise",
           inputs: str | os.PathLike | None = None, input_shapes: Shapes | None = None,
           input_ranges: Mapping[str, tuple[float, float]] | None = None, seed: int = 0, num_feeds: int = 4,
           calibration_data: str | os.PathLike | None = None, calibration_method: str | None = None,
           percentile: float | None = None, per_channel: bool = True, cle: bool = False, cle_relu6: str | None = None,
           bias_correction: bool = False, fp16_block: Sequence[str] = (), fp16_no_fallback: bool = False,
           exclude: Sequence[str] = (), lowering: str | None = None,
           min_sqnr_db: float | None = None, atol: float | None = None, rtol: float | None = None,
           max_feeds: int = 4, rank: bool = False, plot: str | os.PathLike | None = None,
           output_dir: str | os.PathLike | None = None, force: bool = False,
           labels: str | os.PathLike | None = None, metric: str | None = None, max_metric_drop: float | None = None) -> BisectOutcome:
    """Where target `target`'s accuracy loss comes from, by `mode` (bisect.modes.MODES):
    "layerwise" (Defaults; `plot` writes the HTML plot), "sensitivity" (the nodes to keep in fp32),
    or "reduce" (a minimal failing subgraph written into `output_dir`). The artifact is built as
    `pytest --model` builds it with the same options: the int8 ones (calibration_method ... exclude;
    Defaults to automatic calibration) for ort-int8, and for fp16 targets `fp16_block` and
    `fp16_no_fallback` (no data-driven fallback and no sensitive-op list: TensorRT 10's fp16 builder
    flag keeps no layer in fp32, and this reproduces its overflows on the CPU; it also drops the
    fallback from the fp16 lowerings of --sensitivity and --reduce, which start from a full lowering
    anyway). Nodes without a name are named `OpType(first output)` in every report and option.
    With `labels` (one per row of `inputs`) and/or `metric`, "sensitivity" scores by the task
    figure on the first `max_feeds` inputs, floor: the float model's figure less `max_metric_drop`.
    An option that would change nothing for `target` and `mode` is a ConfigError."""
    from .bisection import modes
    from .bisection import options as bisect_options
    from .context import ModelContext

    if mode not in modes.MODES:
        raise ConfigError(f"bisect mode '{mode}' is unknown; choose from {', '.join(modes.MODES)}")
    if (mode == "reduce") != (output_dir is not None):
        raise ConfigError("--reduce needs -o DIR and -o is only for --reduce; pass both or neither")
    if plot is not None and mode != "layerwise":
        raise ConfigError("--plot draws the layerwise report; leave out --sensitivity/--reduce or --plot")
    bisect_options.check_numbers(max_feeds=max_feeds, min_sqnr_db=min_sqnr_db, atol=atol, rtol=rtol)
    if percentile is not None and not 0.0 < percentile <= 100.0:
        raise ConfigError(f"--percentile {percentile} is outside (0, 100]; pass e.g. 99.99")
    task = modes.task_options(mode, inputs, labels, metric, max_metric_drop, min_sqnr_db)
    chosen = modes.bisectable(target)
    given = {
        "--fp16-block": bool(fp16_block), "--fp16-no-fallback": fp16_no_fallback, "--calibration-data": calibration_data is not None,
        "--calibration-method": calibration_method, "--percentile": percentile is not None, "--per-tensor": not per_channel,
        "--cle": cle, "--cle-relu6": cle_relu6 is not None, "--bias-correction": bias_correction, "--exclude": bool(exclude),
        "--lowering": lowering is not None, "--rank": rank}
    bisect_options.refuse_idle_options(mode, chosen, given)
    bisect_options.refuse_existing(model, plot, output_dir, force=force, inputs=bisect_options.input_files(inputs, calibration_data, labels, metric))
    int8 = {"calibration_data": Path(calibration_data) if calibration_data else None, "calibration_method": calibration_method,
            "calibration_percentile": percentile, "per_tensor": not per_channel, "cle": cle, "cle_relu6": cle_relu6,
            "bias_correction": bias_correction, "quant_exclude": tuple(exclude)}
    fp16 = {"fp16_block": tuple(fp16_block), "fp16_calibration_data": None, "fp16_no_fallback": fp16_no_fallback}
    options = _bisect_options(target, inputs, input_shapes, input_ranges, seed, num_feeds, calibration_data, {**int8, **fp16}, atol, rtol)
    # The artifacts the search builds (fp16/int8 files) live as long as the call: nothing is left
    # in the temporary folder (the outcome holds figures, and --reduce/--plot write to the user's paths).
    with temporary_folder("onnx2trt_check-bisect-") as folder:
        ctx = ModelContext(Path(model), dataclasses.replace(options, artifact_dir=Path(folder)))
        if chosen.precision == "int8":
            bisect_options.refuse_quantizer_options_on_qdq(ctx.loaded.proto, given)
        modes.refuse_unrunnable(ctx)
        if mode == "sensitivity":
            return modes.sensitivity(ctx, chosen, lowering=lowering, calibration=calibration_data,
                                     min_sqnr_db=min_sqnr_db, max_feeds=max_feeds, rank=rank, task=task)
        if mode == "reduce":
            return modes.reduce(ctx, chosen, output_dir=Path(output_dir), force=force, lowering=lowering, calibration=calibration_data,
                                fp16_block=tuple(fp16_block), min_sqnr_db=min_sqnr_db, max_feeds=max_feeds)
        return modes.layerwise(ctx, chosen, min_sqnr_db=min_sqnr_db, max_feeds=max_feeds, plot=Path(plot) if plot else None)


def _bisect_options(target, inputs, input_shapes, input_ranges, seed, num_feeds, calibration_data, extra, atol, rtol):
    """The RunOptions `pytest --model` would build from the same options: feeds, shapes, tolerances,
    and the precision families' settings the targets read from `extra` (absent ones take the
    targets' defaults)."""
    from .config import project_tolerances
    from .context import RunOptions
    from .data import read_source

    if calibration_data is not None:
        read_source(calibration_data, "--calibration-data")  # readable and not empty, before the model is loaded
    feeds = feed_options(inputs=inputs, seed=seed, num_feeds=num_feeds, input_ranges=input_ranges)
    tolerances = project_tolerances(command_line={"atol": atol, "rtol": rtol})  # as pytest --model run here
    shapes = _shapes(input_shapes)
    return RunOptions(feeds=feeds, input_shapes=shapes, tolerances=tolerances, targets=(target,), extra=extra)
