"""The int8 family of `pytest --model`: the options of the `ort-int8` target, the quantizer's report
item `quantize::report[int8]`, and with `--calibration-sweep` one `calibration::accuracy[<calibrator>]`
item per calibrator, with a summary table of their figures.

Calibration data is read and checked against every model's inputs when the run is configured, so a
bad file is a usage error (exit 4) before any test runs.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest

from ..compare import format_stats
from ..context import ModelContext, RunOptions
from ..data import fit, is_template, read_source, source_file
from ..errors import CheckError, CheckFailed, CheckSkipped, ConfigError
from ..gathered_rows import artifact_indices, compare
from ..quant.float_counterpart import has_qdq
from ..quant.idle_options import NO_CALIBRATION_DATA, OWN_QDQ, idle_quantizer_options
from ..quant.verify import verification_split
from ..report import PROPERTY_KEY, accuracy_figures
from ..targets import TARGETS, get_target, select_targets
from ..targets import ort_int8 as int8
from .core import Check
from .options import value

TARGET = "ort-int8"
HELD_OUT_NOTE = ("ort-int8: no --inputs, so the int8 model is judged on a held-out fifth of the calibration data "
                 "(every 5th feed, not used to calibrate), not on the generated inputs")
ONE_FEED_NOTE = ("ort-int8: no --inputs, and the calibration data holds one distinct feed: the int8 model is judged on the "
                 "feed it was calibrated on, not on held-out data (pass --inputs for an unbiased figure)")
QDQ_CALIBRATION_NOTE = ("ort-int8: no --inputs, so the model's own Q/DQ are judged on every feed of the calibration data "
                        "(nothing is calibrated on them), not on the generated inputs")
# The calibrators of --calibration-sweep: (method, percentile). Percentile at 99.99 and 99.999, the
# values TensorRT's tools and ONNX Runtime default to.
SWEEP = (("max", None), ("percentile", 99.99), ("percentile", 99.999), ("entropy", None), ("mse", None))


def read_options(config) -> dict:
    settings = {name: value(config, name) for name in ("calibration_method", "calibration_percentile", "per_tensor", "cle", "cle_relu6", "bias_correction", "quant_exclude", "calibration_sweep")}
    settings["calibration_data"] = _calibration_path(value(config, "calibration_data"))
    _check_percentile(settings["calibration_percentile"])
    for pattern in settings["quant_exclude"]:
        _check_pattern(pattern)
    if settings["calibration_sweep"] and settings["calibration_data"] is None:
        raise ConfigError("--calibration-sweep needs calibration data; pass --calibration-data calib.npz")
    _check_quantizer_options(settings)
    return settings


# Options of our quantizer (option dest -> flag): they shape the int8 build from --calibration-data,
# and do nothing without it (a model with its own Q/DQ nodes is run as it is).
QUANTIZER_OPTIONS = {"calibration_method": "--calibration-method", "calibration_percentile": "--percentile", "per_tensor": "--per-tensor",
                     "cle": "--cle", "cle_relu6": "--cle-relu6", "bias_correction": "--bias-correction", "quant_exclude": "--exclude"}


def _check_quantizer_options(settings: dict) -> None:
    """An option that does nothing in this combination is a usage error, not silently ignored."""
    not_quantizing = NO_CALIBRATION_DATA if settings["calibration_data"] is None else None
    if problem := idle_quantizer_options(_given(settings), not_quantizing=not_quantizing):
        raise ConfigError(problem)


def _given(settings: dict) -> dict[str, object]:
    return {flag: settings.get(name) for name, flag in QUANTIZER_OPTIONS.items()}


def check_options(options: RunOptions) -> None:
    """Calibration data with a --target selection that holds no int8 target (ort-int8, trt-int8,
    trt-best), and no --calibration-sweep, would change nothing: a usage error."""
    if options.extra.get("calibration_data") is None or not options.targets or options.extra.get("calibration_sweep"):
        return
    int8_targets = [t.name for t in TARGETS if t.precision == "int8"]
    if not set(options.targets) & set(int8_targets):
        raise ConfigError(f"--calibration-data feeds the int8 targets, and --target selects none of {', '.join(int8_targets)}; "
                          "add one of them (or --calibration-sweep) or leave it out")


def _calibration_path(text: str | None) -> Path | None:
    if text is None or is_template(text):  # {model}: each model's file is checked when it is loaded
        return None if text is None else Path(text)
    path = source_file(text)
    if not path.is_file():
        raise ConfigError(f"calibration data file '{path}' does not exist; check the --calibration-data path")
    return Path(text)


def _check_percentile(value: float | None) -> None:
    if value is not None and not 0.0 < value <= 100.0:
        raise ConfigError(f"--percentile {value} is outside (0, 100]; pass e.g. 99.99")


def _check_pattern(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--exclude '{pattern}' is not a valid regex ({exc}); escape it or pass the exact node name") from None


def checks(options: RunOptions) -> list[Check]:
    """The report item when ort-int8 is selected; the sweep items when asked for."""
    found = []
    if any(t.name == TARGET for t in select_targets(options.targets)):
        found.append(Check("quantize[int8]", "report", check_report))
    if options.extra.get("calibration_sweep"):
        found += [Check(f"calibration[{_sweep_label(m, p)}]", "accuracy", sweep_check(m, p)) for m, p in SWEEP]
    return found


def _sweep_label(method: str, percentile: float | None) -> str:
    return f"{method}-{percentile:g}" if percentile is not None else method


def check_report(ctx: ModelContext) -> dict:
    __tracebackhide__ = True
    _skip_if_qdq(ctx, "it is deployed as it is, nothing is quantized by us")
    from ..quant.pipeline import report_figures  # here: the quantizer imports scipy, and most runs never quantize

    return report_figures(int8.int8_build(ctx))  # a model with nothing to quantize is refused by the quantizer (ModelError: a failed item)


def _skip_if_qdq(ctx: ModelContext, consequence: str) -> None:
    int8.refuse_integer_ops(ctx)
    if int8.model_has_qdq(ctx):
        raise CheckSkipped(f"the model already holds Q/DQ nodes; {consequence}")


def sweep_check(method: str, percentile: float | None):
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        _skip_if_qdq(ctx, "there is nothing to calibrate")
        from ..quant.pipeline import settings_from  # here: the quantizer imports scipy

        base = settings_from(ctx.options.extra)
        settings = dataclasses.replace(base, method=method, percentile=percentile or base.percentile)
        path = ctx.artifact(f"int8-{_sweep_label(method, percentile)}", lambda: int8.int8_build(ctx, settings).model)
        started = time.perf_counter()
        outputs = get_target(TARGET).run(path, int8.judging_feeds(ctx))
        figures = {"calibrator": _sweep_label(method, percentile), "configuration": settings.label, "engine": get_target(TARGET).engine}
        indices = artifact_indices(ctx, int8.judging_reference(ctx), path, int8.judging_feeds(ctx), get_target(TARGET).run, outputs)
        return figures | _compared(ctx, outputs, time.perf_counter() - started, figures, indices)

    return check


def _compared(ctx: ModelContext, outputs, seconds: float, figures: dict, indices: tuple) -> dict:
    """Every output against the model's reference (on the judging feeds) under the int8 tolerance profile;
    rows a TopK's indices gather paired by both sides' `indices` (gathered_rows)."""
    results, reference = [], int8.judging_reference(ctx)
    for name in reference.names:
        tolerance = ctx.options.tolerances.for_output(name, "int8")
        results.append((compare(name, reference.per_output(name), [o[name] for o in outputs], tolerance, ctx.output_layouts.get(name), *indices),
                        tolerance))
    compared = {"seconds": round(seconds, 4), "outputs": {s.name: s.figures() for s, _ in results}}
    failed = [(s, t) for s, t in results if not s.passed]
    if failed:
        header = f"int8 calibrated by {figures['calibrator']} differs from the reference in {len(failed)} of {len(results)} output(s)"
        raise CheckFailed("\n".join([header] + [format_stats(s, t) for s, t in failed]), figures | compared)
    return compared


# ---------------------------------------------------------------- configure time and summary


def session_plugin(config, options: RunOptions):
    """Check the calibration data against every model's inputs, tell the ort-int8 target whether
    it can run, and collect the sweep's figures for the terminal summary."""
    # The registered RunState, not config.stash[STATE]: pytester's in-process runs re-import the
    # plugin modules, and a stash key from an earlier import finds nothing.
    state = config.pluginmanager.get_plugin("onnx2trt_check_state")
    source = options.extra.get("calibration_data")
    try:  # read once per run; a source with {model} is read per model, by _check_model
        raw = read_source(source, "--calibration-data") if source is not None and not is_template(source) else None
    except CheckError as exc:
        raise pytest.UsageError(str(exc)) from None
    unsplit: set[str] = set()  # models whose calibration data holds one distinct feed: nothing held out
    qdq = {str(path): _check_model(state, path, raw, unsplit) for path in state.model_paths if path not in state.refused}
    _refuse_quantizer_options_on_qdq(options.extra, qdq)
    if source is not None and not (options.feeds.npz or options.feeds.data_loader):
        for info in state.models.values():  # the summary's and the JSON report's notes of each model
            info.notes.append(QDQ_CALIBRATION_NOTE if qdq.get(info.path) else ONE_FEED_NOTE if info.path in unsplit else HELD_OUT_NOTE)
    get_target(TARGET).configure(calibration_data=source is not None, qdq_model=any(qdq.values()))
    if options.targets and set(options.targets) == {TARGET} and (reason := get_target(TARGET).unavailable_reason()):
        # the only target asked for cannot run on any model: a green run that checked no int8 (redteam14)
        raise pytest.UsageError(f"--target {TARGET}: {reason}")
    return SweepSummary()


def _refuse_quantizer_options_on_qdq(settings: dict, qdq: dict[str, bool]) -> None:
    """When every model of the run holds its own Q/DQ nodes, nothing is quantized (the calibration
    data only judges them): our quantizer's options would change nothing, a usage error."""
    if qdq and all(qdq.values()) and (problem := idle_quantizer_options(_given(settings), not_quantizing=f"every model of this run: {OWN_QDQ}")):
        raise pytest.UsageError(problem)


def _check_model(state, path: Path, raw, unsplit: set[str]) -> bool:
    """Fit the calibration data to one model (a usage error for the only model of the run, the
    model's failed load item in a run over several), adding the model to `unsplit` when the data
    holds one distinct feed; whether the model holds Q/DQ nodes."""
    context = state.context_for(path)
    source = context.options.extra.get("calibration_data")  # this model's file when the option has {model}
    try:
        if source is not None:
            feeds = fit(context.own_data(raw if raw is not None else read_source(source, "--calibration-data")), context.specs)
            if not verification_split(feeds).held_out:
                unsplit.add(str(path))
            from ..quant.pipeline import check_exclude_matches  # here: the quantizer imports scipy

            check_exclude_matches(context.loaded.proto, context.options.extra.get("quant_exclude") or ())
    except CheckError as exc:
        if len(state.model_paths) == 1:
            raise pytest.UsageError(str(exc)) from None
        state.refused[path] = str(exc)
    return has_qdq(context.loaded.proto)


class SweepSummary:
    """pytest hooks: gathers the calibration items' figures (from every xdist worker's reports) and
    prints one row per calibrator after the run."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, dict]] = []

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "call":
            return
        for key, entry in report.user_properties:
            if key == PROPERTY_KEY and entry["family"].startswith("calibration["):
                self.rows.append((entry["model"], entry["family"], report.outcome, entry["figures"]))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.rows:
            return
        terminalreporter.write_sep("=", "onnx2trt_check int8 calibration sweep")
        for line in sweep_lines(self.rows):
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config) -> None:
        get_target(TARGET).configure(calibration_data=False, qdq_model=False)  # the registry outlives the run


def sweep_lines(rows: list[tuple[str, str, str, dict]]) -> list[str]:
    """Per model, one line per calibrator in sweep order: outcome and its accuracy figures."""
    order = {f"calibration[{_sweep_label(m, p)}]": i for i, (m, p) in enumerate(SWEEP)}
    lines, model = [], None
    for row_model, family, outcome, figures in sorted(rows, key=lambda r: (r[0], order.get(r[1], len(order)))):
        if row_model != model:
            model = row_model
            lines.append(model)
        lines.append(f"  {family:<32} {outcome.upper():<8} {accuracy_figures(figures)}")
    return lines
