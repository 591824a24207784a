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
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from .bisection.modes import BisectOutcome
from .errors import ConfigError
from .fileio import checked_output
from .quant.pipeline import Int8Build, Int8Settings
from .transforms.pipeline import PipelineResult
from .transforms.run import TransformSettings

ModelSource = str | os.PathLike | onnx.ModelProto
Shapes = Mapping[str, Sequence[int]]


# ---------------------------------------------------------------- check


@dataclasses.dataclass
class CheckResult:
    """pytest's exit code and the JSON report of the run (report.report_document's schema)."""

    exit_code: int
    report: dict

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def check(models: str | os.PathLike | Sequence[str | os.PathLike], *, pytest_args: Sequence[str] = (),
          report_json: str | os.PathLike | None = None) -> CheckResult:
    """`pytest --model M ...` for every model (a file or a folder), in this process. `pytest_args`
    are any other options of `pytest --model` (e.g. ["--target", "ort", "-q"]). The report is also
    kept at `report_json` when given. Defaults to a temporary file, removed afterwards. A usage
    error (pytest's exit code 4: a bad option, model or data) raises ConfigError with its line."""
    import pytest

    paths = [models] if isinstance(models, str | os.PathLike) else list(models)
    if not paths:
        raise ConfigError("check() got no model; pass a model file or a folder of models")
    usage = _usage_errors()
    with tempfile.TemporaryDirectory(prefix="onnx2trt_check-api-") as folder:
        report = Path(report_json) if report_json is not None else Path(folder) / "report.json"
        args = [*(f"--model={os.fspath(p)}" for p in paths), "-p", "no:cacheprovider", f"--report-json={report}", *pytest_args]
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
    from .model import load_model
    from .scope import check_scope

    if isinstance(model, onnx.ModelProto):
        check_scope(model, "<ModelProto>")
        return model, "<ModelProto>"
    if not isinstance(model, str | os.PathLike):
        raise ConfigError(f"model must be a path or an onnx.ModelProto, not {type(model).__name__}")
    return load_model(model).proto, os.fspath(model)


def _shapes(input_shapes: Shapes | None) -> dict[str, tuple[int, ...]]:
    """{name: dims} with every dim a positive integer (what --input-shape NAME:1x3x224x224 gives)."""
    shapes = {}
    for name, shape in (input_shapes or {}).items():
        dims = tuple(shape) if isinstance(shape, Sequence) and not isinstance(shape, str) else ()
        if not dims or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0 for d in dims):
            raise ConfigError(f"input shape {name}: {shape!r} is not a list of positive integers; pass e.g. {{'{name}': (1, 3, 224, 224)}}")
        shapes[str(name)] = tuple(int(d) for d in dims)
    return shapes


def _specs(proto: onnx.ModelProto, input_shapes: Shapes | None, data=None):
    from .data import data_shapes
    from .model import resolve_input_specs

    return resolve_input_specs(proto, _shapes(input_shapes), data_shapes=data_shapes(data, proto) if data is not None else None)


def feed_options(*, inputs, seed: int, num_feeds: int, input_ranges: Mapping[str, tuple[float, float]] | None = None):
    """The input options checked (seed, count, ranges) and the --inputs data read (a .npz or a
    data-loader script), before any model is loaded."""
    from . import validate
    from .data import FeedOptions, is_loader, parse_range, read_source

    ranges = dict(parse_range(f"{name}:{low},{high}" if name != "*" else f"{low},{high}") for name, (low, high) in (input_ranges or {}).items())
    options = FeedOptions(seed=validate.seed(seed), num_feeds=validate.integer(num_feeds, "--num-feeds", low=1), ranges=ranges,
                          npz=Path(inputs) if inputs and not is_loader(inputs) else None, data_loader=str(inputs) if inputs and is_loader(inputs) else None)
    return dataclasses.replace(options, raw=read_source(inputs, "--inputs") if inputs else None)


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

    @property
    def model(self) -> onnx.ModelProto:
        return self.pipeline.model

    @property
    def passed(self) -> bool:
        return self.pipeline.passed


def optimize(model: ModelSource, *, output: str | os.PathLike | None = None, force: bool = False,
             passes: Sequence[str] | None = None, mean: Sequence[float] | str | None = None, std: Sequence[float] | str | None = None,
             thresholds: Sequence[float] = (), bn_conv_mode: str = "exact",
             inputs: str | os.PathLike | None = None, input_shapes: Shapes | None = None, seed: int = 0, num_feeds: int = 4) -> OptimizeResult:
    """The registered transforms (`passes`, in registry order. Defaults to all) on `model`, every
    step that changed it verified on the feeds; written to `output` only when every step passed."""
    from .transforms.run import run_transforms, settings_from

    settings = settings_from(names=tuple(passes or ()), mean=mean, std=std, thresholds=thresholds, bn_conv_mode=bn_conv_mode)
    target = checked_output(model, output, force=force) if output is not None else None
    options = feed_options(inputs=inputs, seed=seed, num_feeds=num_feeds)
    proto, _ = _load(model)
    feeds = _model_feeds(proto, options, input_shapes)
    result = OptimizeResult(run_transforms(proto, feeds, settings), settings, options.source, len(feeds), len(proto.graph.node))
    if target is not None and result.passed:
        result.written = _write(target, result.model, force=force)
    return result


# ---------------------------------------------------------------- quantize


@dataclasses.dataclass
class QuantizeResult:
    """Our int8 build (the QDQ model, the quantizer's report, each preparation step), its accuracy
    against the float model per output (SQNR dB, cosine, top-1 agreement or None) on the test feeds,
    where those came from, and the written file."""

    build: Int8Build
    settings: Int8Settings
    calibration_feeds: int
    accuracy: dict[str, dict[str, float | None]]
    test_source: str
    test_feeds: int
    written: Path | None = None

    @property
    def model(self) -> onnx.ModelProto:
        return self.build.model


def quantize(model: ModelSource, *, calibration_data: str | os.PathLike, output: str | os.PathLike | None = None, force: bool = False,
             calibration_method: str = "entropy", percentile: float = 99.99, per_channel: bool = True, cle: bool = False,
             cle_relu6: str = "skip", bias_correction: bool = False, exclude: Sequence[str] = (),
             inputs: str | os.PathLike | None = None, input_shapes: Shapes | None = None) -> QuantizeResult:
    """Post-training int8 quantization of a float model by TensorRT's Q/DQ placement rules,
    calibrated on `calibration_data` (a .npz or a data-loader script); the result is measured
    against the float model on `inputs`. Defaults to the calibration data."""
    from .data import fit, read_source
    from .quant.float_counterpart import has_qdq
    from .quant.pipeline import check_settings, quantize_for_tensorrt

    _check_choice(calibration_method, "--method", ("entropy", "max", "percentile", "mse"))
    _check_choice(cle_relu6, "--cle-relu6", ("skip", "swap_to_relu"))
    settings = Int8Settings(method=calibration_method, percentile=percentile, per_channel=per_channel, cle=cle,
                            cle_relu6=cle_relu6, bias_correction=bias_correction, exclude=tuple(exclude))
    check_settings(settings)
    target = checked_output(model, output, force=force) if output is not None else None
    calibration_raw = read_source(calibration_data, "--calibration-data")
    test_raw = read_source(inputs, "--inputs") if inputs else None
    proto, name = _load(model)
    if has_qdq(proto):
        raise ConfigError(f"'{name}' already holds Q/DQ nodes; quantize its float model instead")
    specs = _specs(proto, input_shapes, calibration_raw)  # open dims settled by the calibration data
    calibration = fit(calibration_raw, specs)
    test, source = (fit(test_raw, specs), f"test inputs '{inputs}'") if inputs else (
        calibration, "the calibration data (no test inputs given: pass some for an unbiased figure)")
    build = quantize_for_tensorrt(proto, calibration, settings)
    result = QuantizeResult(build, settings, len(calibration), int8_accuracy(proto, build.model, test), source, len(test))
    if target is not None:
        result.written = _write(target, build.model, force=force)
    return result


def _check_choice(value, option: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{option} {value!r} is unknown; choose from {', '.join(choices)}")


def int8_accuracy(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, feeds) -> dict[str, dict[str, float | None]]:
    """Per output: SQNR (dB), cosine and (class scores) top-1 agreement of int8 against fp32, both
    run by ONNX Runtime on the CPU."""
    from .compare import cosine_similarity, sqnr_db, top_k_agreement
    from .runtime import run_model

    reference = run_model(float_model, feeds, optimized=False)
    quantized = run_model(int8_model, feeds, optimized=True)
    figures = {}
    for name in reference[0]:
        ref, got = [r[name] for r in reference], [q[name] for q in quantized]
        flat_ref, flat_got = np.concatenate([r.ravel() for r in ref]), np.concatenate([g.ravel() for g in got])
        top1, _ = top_k_agreement(ref, got)
        figures[name] = {"sqnr_db": float(sqnr_db(flat_ref, flat_got)), "cosine": float(cosine_similarity(flat_ref, flat_got)), "top1": top1}
    return figures


# ---------------------------------------------------------------- bisect


def bisect(model: str | os.PathLike, *, target: str, mode: str = "layerwise",
           inputs: str | os.PathLike | None = None, input_shapes: Shapes | None = None,
           input_ranges: Mapping[str, tuple[float, float]] | None = None, seed: int = 0, num_feeds: int = 4,
           calibration_data: str | os.PathLike | None = None, calibration_method: str | None = None,
           fp16_block: Sequence[str] = (), exclude: Sequence[str] = (), lowering: str | None = None,
           min_sqnr_db: float | None = None, atol: float | None = None, rtol: float | None = None,
           max_feeds: int = 4, rank: bool = False, plot: str | os.PathLike | None = None,
           output_dir: str | os.PathLike | None = None, force: bool = False) -> BisectOutcome:
    """Where target `target`'s accuracy loss comes from, by `mode` (bisect.modes.MODES):
    "layerwise" (Defaults; `plot` writes the HTML plot), "sensitivity" (the nodes to keep in fp32),
    or "reduce" (a minimal failing subgraph written into `output_dir`)."""
    from .bisection import modes
    from .context import ModelContext

    if mode not in modes.MODES:
        raise ConfigError(f"bisect mode '{mode}' is unknown; choose from {', '.join(modes.MODES)}")
    if (mode == "reduce") != (output_dir is not None):
        raise ConfigError("--reduce needs -o DIR and -o is only for --reduce; pass both or neither")
    if plot is not None and mode != "layerwise":
        raise ConfigError("--plot draws the layerwise report; leave out --sensitivity/--reduce or --plot")
    _check_bisect_numbers(max_feeds=max_feeds, min_sqnr_db=min_sqnr_db, atol=atol, rtol=rtol)
    chosen = modes.bisectable(target)
    _refuse_existing(plot, output_dir, force=force)
    options = _bisect_options(target, inputs, input_shapes, input_ranges, seed, num_feeds, calibration_data, calibration_method,
                              fp16_block, exclude, atol, rtol)
    ctx = ModelContext(Path(model), options)
    if mode == "sensitivity":
        return modes.sensitivity(ctx, chosen, lowering=lowering, calibration=calibration_data, calibration_method=calibration_method,
                                 min_sqnr_db=min_sqnr_db, max_feeds=max_feeds, rank=rank)
    if mode == "reduce":
        return modes.reduce(ctx, chosen, output_dir=Path(output_dir), force=force, lowering=lowering, calibration=calibration_data,
                            calibration_method=calibration_method, fp16_block=tuple(fp16_block), min_sqnr_db=min_sqnr_db, max_feeds=max_feeds)
    return modes.layerwise(ctx, chosen, min_sqnr_db=min_sqnr_db, max_feeds=max_feeds, plot=Path(plot) if plot else None)


def _check_bisect_numbers(*, max_feeds, min_sqnr_db, atol, rtol) -> None:
    from . import validate

    validate.integer(max_feeds, "--max-feeds", low=1)
    validate.number(min_sqnr_db, "--min-sqnr", example="20")
    validate.number(atol, "--atol", low=0.0, example="1e-4")
    validate.number(rtol, "--rtol", low=0.0, example="1e-4")


def _refuse_existing(plot, output_dir, *, force: bool) -> None:
    """Every output checked before the search runs: the plot file, and for --reduce a folder whose
    model.onnx and inputs.npz are new or may be replaced."""
    from . import validate

    if plot is not None:
        validate.output_file(plot, "--plot", force=force)
    if output_dir is not None:
        validate.output_folder(output_dir, "-o")
        for name in ("model.onnx", "inputs.npz"):
            validate.output_file(Path(output_dir) / name, "-o", force=force)


def _bisect_options(target, inputs, input_shapes, input_ranges, seed, num_feeds, calibration_data, calibration_method,
                    fp16_block, exclude, atol, rtol):
    """The RunOptions `pytest --model` would build from the same options: feeds, shapes, tolerances,
    and the precision families' settings the targets read from `extra` (absent ones take the
    targets' defaults)."""
    from .config import ToleranceConfig
    from .context import RunOptions
    from .data import read_source

    if calibration_data is not None:
        read_source(calibration_data, "--calibration-data")  # readable and not empty, before the model is loaded
    feeds = feed_options(inputs=inputs, seed=seed, num_feeds=num_feeds, input_ranges=input_ranges)
    tolerances = ToleranceConfig()
    tolerances.layer({k: v for k, v in (("atol", atol), ("rtol", rtol)) if v is not None}, {}, "command line")
    shapes = {name: tuple(int(d) for d in shape) for name, shape in (input_shapes or {}).items()}
    extra = {"calibration_data": Path(calibration_data) if calibration_data else None, "calibration_method": calibration_method,
             "quant_exclude": tuple(exclude), "fp16_block": tuple(fp16_block), "fp16_calibration_data": None, "fp16_no_fallback": False}
    return RunOptions(feeds=feeds, input_shapes=shapes, tolerances=tolerances, targets=(target,), extra=extra)
