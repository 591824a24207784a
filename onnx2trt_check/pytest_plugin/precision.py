"""The precision family of `pytest --model`: the fp16 artifact's report, TensorRT build spreads, and
the options of the fp16 and TensorRT targets (targets/fp16.py, targets/tensorrt.py).

Items:
  fp16::report[artifact]         the converter's report: nodes kept fp32, each with its reasons and
                                 max|x|; made when a selected target deploys the fp16 artifact
  trt-builds::spread[<target>]   with --trt-builds N: N engines built without the engine cache, the
                                 spread (min/median/max) of their max-abs error and SQNR
The terminal summary states once per run why TensorRT items were skipped.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ..compare import compare_output
from ..context import ModelContext, RunOptions
from ..data import fit, is_template, read_source, source_file
from ..errors import CheckError, CheckFailed, CheckSkipped, ConfigError
from ..precision.fp16 import check_block_nodes, not_applicable
from ..report import PROPERTY_KEY
from ..targets import TARGETS, select_targets
from ..targets.fp16 import Fp16Settings, fp16_artifact, fp16_conversion
from ..targets.tensorrt import TensorRtTarget
from ..targets.trt import trt_unavailable_reason
from .core import Check
from .options import typed, value

FP16_REPORT_FAMILY = "fp16[artifact]"
# Targets that deploy (or emulate) the fp16 artifact; trt-fp16 only on its default artifact path.
FP16_ARTIFACT_TARGETS = ("ort-fp16", "cpu-fp16-emu", "trt-fp16")


def read_options(config) -> dict:
    builds = value(config, "trt_builds")
    if builds is not None and builds < 2:  # 0 too: asked for, it would silently build nothing
        raise ConfigError(f"--trt-builds {builds} gives no spread; pass N >= 2 (or leave it out)")
    data = value(config, "fp16_calibration_data")
    if data and not is_template(data):  # {model}: read with each model
        read_source(data, "--fp16-calibration-data")  # readable, with samples: checked once, before any item
    return {
        "fp16_calibration_data": data,
        "fp16_block": tuple(value(config, "fp16_block") or ()),
        "fp16_no_fallback": bool(value(config, "fp16_no_fallback")),
        "engine_cache": value(config, "engine_cache"),
        "trt_builds": builds or 0,
        "trt_flags": bool(value(config, "trt_flags")),
        TYPED_KEY: tuple(typed(config, (*FP16_ARTIFACT_OPTIONS.values(), *TRT_OPTIONS.values()))),
    }


# The options that shape TensorRT builds, used by trt-* targets only.
TRT_OPTIONS = {"trt_builds": "--trt-builds", "engine_cache": "--engine-cache", "trt_flags": "--trt-flags"}
# Those of the options above given on the command line itself (options.typed): the ones refused when idle.
TYPED_KEY = "precision_typed_flags"


# The options that shape the fp16 artifact (option dest -> flag), used by FP16_ARTIFACT_TARGETS only.
FP16_ARTIFACT_OPTIONS = {"fp16_calibration_data": "--fp16-calibration-data", "fp16_block": "--fp16-block", "fp16_no_fallback": "--fp16-no-fallback"}


def check_options(options: RunOptions) -> None:
    """An fp16 artifact option with a --target selection that deploys no fp16 artifact would
    change nothing: a usage error, not silently ignored."""
    typed_flags = options.extra.get(TYPED_KEY, ())
    given = [flag for flag in FP16_ARTIFACT_OPTIONS.values() if flag in typed_flags]
    if given and options.targets and not set(options.targets) & set(FP16_ARTIFACT_TARGETS):
        raise ConfigError(f"{', '.join(given)} shape{'s' if len(given) == 1 else ''} the fp16 artifact, and --target selects none of "
                          f"{', '.join(FP16_ARTIFACT_TARGETS)}; add one of them or leave {'it' if len(given) == 1 else 'them'} out")
    trt = [flag for flag in TRT_OPTIONS.values() if flag in typed_flags]
    if trt and options.targets and not any(isinstance(t, TensorRtTarget) for t in select_targets(options.targets)):
        raise ConfigError(f"{', '.join(trt)} would change nothing: --target selects no trt-* target (nothing is built); "
                          f"add one or leave {'it' if len(trt) == 1 else 'them'} out")
    if options.extra.get("fp16_calibration_data") and options.extra.get("fp16_no_fallback"):
        raise ConfigError("--fp16-calibration-data would change nothing: its feeds decide the fp16 artifact's fp32 fallback, "
                          "which --fp16-no-fallback turns off; leave one of them out")


def check_model(ctx: ModelContext) -> None:
    """--fp16-calibration-data fitted to the model (names, shapes, dtypes, and more than one value:
    data.fit) and every --fp16-block name found in it, before any item runs: a bad value is the
    run's usage error, not failed fp16 items."""
    if data := ctx.options.extra.get("fp16_calibration_data"):  # this model's file when the option has {model}
        path = source_file(data)
        fit(_read_once(str(data), path.stat().st_mtime_ns if path.is_file() else 0), ctx.specs)
    if (block := ctx.options.extra.get("fp16_block")) and not_applicable(ctx.loaded.proto) is None:
        check_block_nodes(ctx.loaded.proto, block)


@functools.lru_cache(maxsize=1)
def _read_once(data: str, _mtime_ns: int):
    """One read of the data (a loader script's code runs once) for all the run's models."""
    return read_source(data, "--fp16-calibration-data")


def checks(options: RunOptions) -> list[Check]:
    selected = select_targets(options.targets)
    found = [Check(FP16_REPORT_FAMILY, "report", check_fp16_report)] if any(t.name in FP16_ARTIFACT_TARGETS for t in selected) else []
    if options.extra.get("trt_builds"):
        # Without TensorRT the default selection holds no trt-* target; the items still appear
        # (skipped with the reason), so asking for builds never silently does nothing.
        trt_targets = [t for t in (selected if options.targets else TARGETS) if isinstance(t, TensorRtTarget)]
        found += [Check(f"trt-builds[{t.name}]", "spread", build_spread_check(t, options.extra["trt_builds"])) for t in trt_targets]
    return found


def check_fp16_report(ctx: ModelContext) -> dict:
    __tracebackhide__ = True
    try:
        result, path = fp16_conversion(ctx), fp16_artifact(ctx)
    except CheckError as error:
        raise CheckFailed(f"the fp16 artifact cannot be built: {error}") from None
    report = result.report
    return {
        "artifact": str(path),
        "fallback": Fp16Settings.from_extra(ctx.options.extra).describe_fallback(),
        "blocked": [
            {"node": node.name, "op_type": node.op_type, "max_abs": node.max_abs, "reasons": [str(r) for r in node.reasons]}
            for node in report.blocked
        ],
        "converted_ops": report.converted_ops,
        "overflow_limit": report.overflow_limit,
        "underflow_fraction": report.underflow_fraction,
        "feeds_used": report.feeds_used,
    }


def spread(values) -> dict[str, float]:
    """min, median and max of the values (NaN-free, at least one)."""
    array = np.asarray(values, dtype=np.float64)
    return {"min": float(array.min()), "median": float(np.median(array)), "max": float(array.max())}


def build_spread_check(target: TensorRtTarget, builds: int):
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        reason = target.unavailable_reason()
        if reason:
            raise CheckSkipped(reason)
        plan = target.plan(ctx)
        path, runner = target.prepare(ctx, plan=plan, engine_cache=False)
        per_build = [_build_errors(ctx, target, runner.run(path, ctx.feeds)) for _ in range(builds)]
        return _spread_figures(target, plan.path, per_build)

    return check


def _build_errors(ctx: ModelContext, target, outputs: list[dict]) -> dict:
    """The worst max-abs error and SQNR over the outputs of one build, and whether it passed."""
    reference = ctx.reference
    stats = [
        compare_output(name, reference.per_output(name), [o[name] for o in outputs], ctx.options.tolerances.for_output(name, target.precision))
        for name in reference.names
    ]
    return {"max_abs": max(s.max_abs for s in stats), "sqnr_db": min(s.sqnr_db for s in stats), "passed": all(s.passed for s in stats)}


def _spread_figures(target, path: str, per_build: list[dict]) -> dict:
    figures = {
        "engine": target.engine,
        "path": path,
        "builds": per_build,
        "max_abs": spread([b["max_abs"] for b in per_build]),
        "sqnr_db": spread([b["sqnr_db"] for b in per_build]),
    }
    failed = sum(not b["passed"] for b in per_build)
    if failed:
        raise CheckFailed(f"{target.name}: {failed} of {len(per_build)} builds differ from the reference beyond the tolerance ({path})", figures)
    return figures


@dataclasses.dataclass(eq=False)  # a plugin object: pluggy keeps plugins in sets, so it must hash by identity
class PrecisionSummary:
    """Session hooks: collects this family's results and the TensorRT skips, and writes them in the
    terminal summary (the TensorRT reason once per run, not once per target and model)."""

    blocked: dict[str, list[dict]] = dataclasses.field(default_factory=dict)
    spreads: list[tuple[str, str, dict]] = dataclasses.field(default_factory=list)
    trt_skips: set[str] = dataclasses.field(default_factory=set)

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "call":
            return
        for key, entry in report.user_properties:
            if key == PROPERTY_KEY:
                self._collect(entry, report.outcome)

    def _collect(self, entry: dict, outcome: str) -> None:
        family = entry["family"]
        if family == FP16_REPORT_FAMILY and outcome == "passed":
            self.blocked[entry["model"]] = entry["figures"].get("blocked", [])
        elif family.startswith("trt-builds[") and outcome != "skipped":
            self.spreads.append((entry["model"], family, entry["figures"]))
        if outcome == "skipped" and (family.startswith("target[trt-") or family.startswith("trt-builds[")):
            self.trt_skips.add(entry["model"])

    def pytest_terminal_summary(self, terminalreporter) -> None:
        lines = summary_lines(self)
        if lines:
            terminalreporter.write_sep("-", "onnx2trt_check precision")
            for line in lines:
                terminalreporter.write_line(line)


def summary_lines(summary: PrecisionSummary) -> list[str]:
    lines = []
    for model, blocked in summary.blocked.items():
        listing = ", ".join(f"'{b['node']}' ({b['reasons'][0]})" for b in blocked[:5]) + (", ..." if len(blocked) > 5 else "")
        lines.append(f"{model}: fp16 artifact keeps {len(blocked)} node(s) in fp32" + (f": {listing}" if blocked else ""))
    for model, family, figures in summary.spreads:
        if "max_abs" in figures:
            m, s = figures["max_abs"], figures["sqnr_db"]
            lines.append(f"{model} {family}: [tensorrt] {len(figures['builds'])} builds, max abs {m['min']:.3g}/{m['median']:.3g}/{m['max']:.3g}, SQNR {s['min']:.1f}/{s['median']:.1f}/{s['max']:.1f} dB (min/median/max)")
    if summary.trt_skips:
        lines.append(f"TensorRT items skipped on {len(summary.trt_skips)} model(s): {trt_unavailable_reason() or 'see each item'}")
    return lines


def session_plugin(config, options: RunOptions) -> PrecisionSummary:
    return PrecisionSummary()
